package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/flowrt/flowrt/consumer"
)

// errSinkClosed is returned by a file sink's Deliver after Close.
var errSinkClosed = errors.New("flowrt/runtime: sink closed")

// FileSink returns a sink appending each delivery to the file at path as
// one line of JSON (Delivery.MarshalJSON), fsynced before Deliver returns,
// so what is acked is on disk. The file is opened (O_APPEND|O_CREATE,
// 0o644) at the first delivery; its directory must exist. A partial last
// line, left by a crash in the middle of a write, is cut then: its
// delivery never succeeded, so its event is delivered again. The
// returned Sink is also an io.Closer.
//
// Concurrent Delivers share fsyncs (group commit): each appends its line
// under a mutex, and one of them syncs the file for every line written
// so far. A Deliver returns nil only after an fsync that covered its line.
//
// A delivery that cannot be encoded fails with a consumer.Permanent
// error. Once a write or an fsync has failed, the file may end with a
// partial line, so every later Deliver returns that error (it is sticky,
// and retryable: the flow's events wait until the process restarts with
// a repaired file). Deliver after Close fails. Close is idempotent. The
// sink is safe for concurrent use.
func FileSink(path string) Sink {
	s := &fileSink{path: path}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// syncFile is how the file sink fsyncs: a variable, so tests can see and
// fail its syncs.
var syncFile = (*os.File).Sync

type fileSink struct {
	path string

	mu      sync.Mutex
	cond    *sync.Cond // signalled when a sync ends or the sink fails
	f       *os.File   // nil until the first delivery
	err     error      // the first write or fsync error: sticky
	closed  bool
	written uint64 // lines appended
	synced  uint64 // lines covered by a completed fsync
	syncing bool   // a Deliver is syncing, without the mutex
}

func (s *fileSink) Deliver(ctx context.Context, d Delivery) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	line, err := d.MarshalJSON()
	if err != nil {
		return consumer.Permanent(fmt.Errorf("flowrt/runtime: file sink %s: encode delivery %s: %w", s.path, d.ID, err))
	}
	line = append(line, '\n')

	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.err != nil:
		return s.err
	case s.closed:
		return fmt.Errorf("%w: file sink %s", errSinkClosed, s.path)
	}
	if s.f == nil {
		f, err := openLines(s.path)
		if err != nil {
			// Nothing was written: the next delivery tries again.
			return fmt.Errorf("flowrt/runtime: file sink: open: %w", err)
		}
		s.f = f
	}
	if _, err := s.f.Write(line); err != nil {
		return s.fail(fmt.Errorf("flowrt/runtime: file sink %s: write: %w", s.path, err))
	}
	s.written++
	mine := s.written
	for s.synced < mine {
		if s.err != nil {
			return s.err
		}
		if s.syncing {
			s.cond.Wait()
			continue
		}
		// Lead a sync for every line written so far; the others wait.
		s.syncing = true
		target := s.written
		s.mu.Unlock()
		err := syncFile(s.f)
		s.mu.Lock()
		s.syncing = false
		if err != nil {
			s.fail(fmt.Errorf("flowrt/runtime: file sink %s: fsync: %w", s.path, err))
		} else {
			s.synced = target
		}
		s.cond.Broadcast()
	}
	return nil
}

// openLines opens a JSON-lines file for appending, first cutting a
// partial last line: the remains of a write a crash interrupted. Its
// delivery never returned nil, so its event is delivered again.
func openLines(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	end, err := completeLines(f)
	if err == nil {
		var fi os.FileInfo
		if fi, err = f.Stat(); err == nil && fi.Size() != end {
			if err = f.Truncate(end); err == nil {
				err = f.Sync()
			}
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("cut a partial last line: %w", err)
	}
	return f, nil
}

// completeLines returns the length of f up to and including its last
// newline (0 when it has none).
func completeLines(f *os.File) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 4096)
	for end := fi.Size(); end > 0; {
		start := max(end-int64(len(buf)), 0)
		n, err := f.ReadAt(buf[:end-start], start)
		if err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return start + int64(i) + 1, nil
		}
		end = start
	}
	return 0, nil
}

// fail records err as the sink's sticky error, wakes the waiters and
// returns it. s.mu is held.
func (s *fileSink) fail(err error) error {
	if s.err == nil {
		s.err = err
	}
	s.cond.Broadcast()
	return s.err
}

// Close waits for a sync in progress, syncs what is not yet synced and
// closes the file. Later Delivers fail; Close is idempotent.
func (s *fileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	for s.syncing {
		s.cond.Wait()
	}
	if s.f == nil {
		return nil
	}
	var errs []error
	if s.err == nil && s.synced < s.written {
		// Deliveries waiting for a sync: this one covers them.
		if err := syncFile(s.f); err != nil {
			errs = append(errs, s.fail(fmt.Errorf("flowrt/runtime: file sink %s: fsync: %w", s.path, err)))
		} else {
			s.synced = s.written
		}
	}
	if err := s.f.Close(); err != nil {
		errs = append(errs, fmt.Errorf("flowrt/runtime: file sink %s: close: %w", s.path, err))
	}
	s.cond.Broadcast()
	return errors.Join(errs...)
}
