package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// syncCall names the system call that makes a raw write durable.
type syncCall int

const (
	syncFdatasync syncCall = iota // data and the size, not the timestamps
	syncFsync                     // data and every inode field
)

// rawFile is the disk's limit: records written at the end of one file with
// pwrite and made durable with fdatasync or fsync, nothing else. Append is
// one pwrite and one sync per record (workload 1); AppendBatch is one pwrite
// of the whole batch and one sync (workload 3). Safe for concurrent use.
type rawFile struct {
	mu   sync.Mutex
	f    *os.File
	fd   int
	off  int64
	how  syncCall
	buf  []byte
	werr error // sticky: after a failed write or sync every call returns it
}

func openRaw(dir string, how syncCall) (*rawFile, error) {
	f, err := os.OpenFile(filepath.Join(dir, "raw.log"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("bench/raw: %w", err)
	}
	return &rawFile{f: f, fd: int(f.Fd()), how: how}, nil
}

func (r *rawFile) Append(rec []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.writeLocked(rec)
}

func (r *rawFile) AppendBatch(recs [][]byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf = r.buf[:0]
	for _, rec := range recs {
		r.buf = append(r.buf, rec...)
	}
	return r.writeLocked(r.buf)
}

// writeLocked is one pwrite at the end of the file and one sync.
func (r *rawFile) writeLocked(b []byte) error {
	if r.werr != nil {
		return r.werr
	}
	if _, err := r.f.WriteAt(b, r.off); err != nil {
		r.werr = fmt.Errorf("bench/raw: pwrite: %w", err)
		return r.werr
	}
	r.off += int64(len(b))
	var err error
	switch r.how {
	case syncFdatasync:
		err = syscall.Fdatasync(r.fd)
	default:
		err = syscall.Fsync(r.fd)
	}
	if err != nil {
		r.werr = fmt.Errorf("bench/raw: sync: %w", err)
	}
	return r.werr
}

func (r *rawFile) Close() error {
	if err := r.f.Close(); err != nil {
		return fmt.Errorf("bench/raw: close: %w", err)
	}
	return nil
}

// coalesceWait is how long rawGroup waits for a batch to fill before it
// commits a partial one. With one record in flight per writer every batch
// fills at once and this never fires; it only bounds a run's tail.
const coalesceWait = 5 * time.Millisecond

// rawGroup is the disk's limit for concurrent writers (workload 2): one
// writer goroutine coalesces the records of up to size concurrent Appends,
// writes them with one pwrite and one fsync, then releases every caller.
// Safe for concurrent use.
type rawGroup struct {
	raw  *rawFile
	size int
	reqs chan rawRequest
	done chan struct{} // closed when run returns
	recs [][]byte
}

type rawRequest struct {
	rec  []byte
	done chan error
}

func openRawGroup(dir string, size int) (*rawGroup, error) {
	raw, err := openRaw(dir, syncFsync)
	if err != nil {
		return nil, err
	}
	g := &rawGroup{raw: raw, size: size, reqs: make(chan rawRequest, size), done: make(chan struct{})}
	go g.run()
	return g, nil
}

func (g *rawGroup) Append(rec []byte) error {
	done := make(chan error, 1)
	g.reqs <- rawRequest{rec: rec, done: done}
	return <-done
}

// run commits batches until Close closes reqs.
func (g *rawGroup) run() {
	defer close(g.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	batch := make([]rawRequest, 0, g.size)
	for {
		req, ok := <-g.reqs
		if !ok {
			return
		}
		batch = append(batch[:0], req)
	fill:
		for len(batch) < g.size {
			select {
			case req, ok := <-g.reqs:
				if !ok {
					break fill
				}
				batch = append(batch, req)
				continue
			default:
			}
			timer.Reset(coalesceWait)
			select {
			case req, ok := <-g.reqs:
				if !ok {
					break fill
				}
				batch = append(batch, req)
			case <-timer.C:
				break fill
			}
		}
		g.recs = g.recs[:0]
		for _, r := range batch {
			g.recs = append(g.recs, r.rec)
		}
		err := g.raw.AppendBatch(g.recs)
		for _, r := range batch {
			r.done <- err
		}
	}
}

func (g *rawGroup) Close() error {
	close(g.reqs)
	<-g.done
	return g.raw.Close()
}
