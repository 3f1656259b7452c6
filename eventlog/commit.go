package eventlog

import (
	"fmt"
	goruntime "runtime"
	"runtime/debug"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// request is one unit of work for the committer: a closure run inside the
// shared write transaction. events and bytes size the batch.
type request struct {
	fn     func(*Tx) error
	events int
	bytes  int
	done   chan error // buffered; receives exactly once
}

// Update runs fn in a write transaction and returns once the transaction is
// committed and, under the default SyncInterval, fsynced. Concurrent Update
// and Append calls are group-committed: they share one bbolt transaction and
// one fsync.
//
// fn may be called more than once: if another closure in the same group
// fails, the group is rolled back and run again without it. fn must
// therefore only act through the Tx and must not keep it after returning.
// An error from fn rolls back fn's changes and is returned by Update; a
// panic in fn is returned as an error.
func (l *Log) Update(fn func(*Tx) error) error {
	return l.submit(&request{fn: fn, events: 1})
}

func (l *Log) submit(r *request) error {
	if l.opts.ReadOnly {
		return ErrReadOnly
	}
	if err := l.writeErr(); err != nil {
		return err
	}
	r.done = make(chan error, 1)
	l.closeMu.RLock()
	if l.closed {
		l.closeMu.RUnlock()
		return ErrClosed
	}
	l.reqs <- r
	l.closeMu.RUnlock()
	return <-r.done
}

// maxYields bounds how long the committer waits for answered writers to
// come back, in scheduler yields.
const maxYields = 8

// commitLoop is the committer: it takes whatever requests are waiting,
// bounded by MaxBatchEvents and MaxBatchBytes, commits them in one
// transaction, and starts the next batch as soon as that commit returns.
// There is no delay window: an idle journal commits a lone append at once.
func (l *Log) commitLoop() {
	defer close(l.donec)
	batch := make([]*request, 0, 64)
	for {
		var first *request
		select {
		case first = <-l.reqs:
		case <-l.stopc:
			// Close waits for senders, so nothing new arrives: drain.
			for {
				select {
				case r := <-l.reqs:
					l.commit([]*request{r})
				default:
					return
				}
			}
		}
		batch = append(batch[:0], first)
		events, bytes := first.events, first.bytes
	fill:
		for events < l.opts.MaxBatchEvents && bytes < l.opts.MaxBatchBytes {
			select {
			case r := <-l.reqs:
				batch = append(batch, r)
				events += r.events
				bytes += r.bytes
			default:
				break fill
			}
		}
		l.commit(batch)
		clear(batch)
		// Let the writers just answered run and queue their next requests
		// before the next batch is taken, yielding for as long as the queue
		// keeps growing: without a delay window, this is what keeps batches
		// full under concurrency. An idle journal has nobody to yield to,
		// so a lone append pays one yield.
		for n, i := len(l.reqs), 0; i < maxYields; i++ {
			goruntime.Gosched()
			m := len(l.reqs)
			if m == n {
				break
			}
			n = m
		}
	}
}

// commit runs the batch in one transaction. A closure that fails is answered
// with its error and the rest are run again without it.
func (l *Log) commit(batch []*request) {
	pending := batch
	for len(pending) > 0 {
		if err := l.writeErr(); err != nil {
			for _, r := range pending {
				r.done <- err
			}
			return
		}
		failed, err := l.tryCommit(pending)
		if failed >= 0 {
			pending[failed].done <- err
			pending = append(pending[:failed:failed], pending[failed+1:]...)
			continue
		}
		if err != nil {
			// Publish a variable nothing writes again: readers load it
			// concurrently.
			werr := fmt.Errorf("flowrt/eventlog: commit to %s failed; appends are refused until reopened: %w", l.path, mapWriteError(err))
			l.werr.CompareAndSwap(nil, &werr)
			err = l.writeErr()
		} else {
			l.notify()
		}
		for _, r := range pending {
			r.done <- err
		}
		return
	}
}

// tryCommit returns the index of the first closure that failed, with its
// error, or -1 with the commit's error.
func (l *Log) tryCommit(batch []*request) (failed int, err error) {
	failed = -1
	var btx *bolt.Tx
	defer containPanic(l.path, &err)
	defer func() {
		// bbolt panicked on a damaged page outside the closures, in flush
		// or Commit: roll back so that its write lock is released (Close
		// needs it), then let containPanic report the panic.
		if r := recover(); r != nil {
			if btx != nil {
				func() {
					defer func() { _ = recover() }()
					_ = btx.Rollback()
				}()
			}
			panic(r)
		}
	}()
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	btx, err = l.db.Begin(true)
	if err != nil {
		return -1, err
	}
	tx := newTx(l, btx)
	for i, r := range batch {
		if err := runClosure(r.fn, tx); err != nil {
			_ = btx.Rollback() // the error that matters is the closure's
			return i, err
		}
	}
	if err := tx.flush(); err != nil {
		_ = btx.Rollback()
		return -1, err
	}
	return -1, btx.Commit()
}

func runClosure(fn func(*Tx) error, tx *Tx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if panickedInBolt() {
				err = &CorruptError{Path: tx.log.path, Err: fmt.Errorf("bbolt: %v", r)}
				return
			}
			err = fmt.Errorf("flowrt/eventlog: update function panicked: %v\n%s", r, debug.Stack())
		}
	}()
	return fn(tx)
}

// panickedInBolt reports, when called by a deferred function that recovered
// a panic, whether the panic was raised inside bbolt. bbolt panics, or
// faults, on a damaged page: that is corruption, not a bug in the closure.
func panickedInBolt() bool {
	pcs := make([]uintptr, 64)
	frames := goruntime.CallersFrames(pcs[:goruntime.Callers(3, pcs)])
	for {
		f, more := frames.Next()
		if !strings.HasPrefix(f.Function, "runtime.") {
			return strings.HasPrefix(f.Function, "go.etcd.io/bbolt")
		}
		if !more {
			return false
		}
	}
}
