//go:build !noflowrt

package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
)

// flowrtBuilt says whether this binary measures flowrt.
const flowrtBuilt = true

// flowrtStream is the stream every benchmark event is appended to.
const flowrtStream = "events"

// flowrtLog is flowrt's journal, opened with default options. Append is one
// Log.Append of one event (concurrent calls are group-committed by the
// journal); AppendBatch is one Log.Append of the whole batch. IDs are left
// zero so the journal generates them. Append is safe for concurrent use;
// AppendBatch is called from one goroutine.
type flowrtLog struct {
	log    *eventlog.Log
	events []eventlog.Event
}

func openFlowrt(dir string) (*flowrtLog, error) {
	l, err := eventlog.Open(filepath.Join(dir, "flowrt.db"), nil)
	if err != nil {
		return nil, fmt.Errorf("bench/flowrt: open: %w", err)
	}
	return &flowrtLog{log: l}, nil
}

func (f *flowrtLog) Append(rec []byte) error {
	_, err := f.log.Append(flowrtStream, eventlog.Event{Type: eventType, Data: rec})
	if err != nil {
		return fmt.Errorf("bench/flowrt: append: %w", err)
	}
	return nil
}

func (f *flowrtLog) AppendBatch(recs [][]byte) error {
	f.events = f.events[:0]
	for _, rec := range recs {
		f.events = append(f.events, eventlog.Event{Type: eventType, Data: rec})
	}
	if _, err := f.log.Append(flowrtStream, f.events...); err != nil {
		return fmt.Errorf("bench/flowrt: append batch: %w", err)
	}
	return nil
}

func (f *flowrtLog) Close() error {
	if err := f.log.Close(); err != nil {
		return fmt.Errorf("bench/flowrt: close: %w", err)
	}
	return nil
}

// flowrtReader is workload 4's flowrt variant: the prefilled journal
// reopened with default options and, for each read, a new durable consumer
// (consumer.Open with default options) whose handler does nothing and
// returns nil. Scan runs the consumer until its handler has seen the
// stream's last sequence, then calls Shutdown, which commits the ack floor
// durably, and checks that the committed offset is that last sequence. A
// read that delivers nothing for stallTimeout fails. Not safe for
// concurrent use.
type flowrtReader struct {
	log   *eventlog.Log
	last  uint64
	count uint64
	r     *consumer.Reader // prepared, not yet run
}

func openFlowrtReader(dir string, n int) (*flowrtReader, error) {
	l, err := eventlog.Open(filepath.Join(dir, "flowrt.db"), nil)
	if err != nil {
		return nil, fmt.Errorf("bench/flowrt: open: %w", err)
	}
	si, err := l.Info(flowrtStream)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("bench/flowrt: stream info: %w", err)
	}
	if si.Count != uint64(n) {
		l.Close()
		return nil, fmt.Errorf("bench/flowrt: stream holds %d events, want %d", si.Count, n)
	}
	return &flowrtReader{log: l, last: si.Last, count: si.Count}, nil
}

func (f *flowrtReader) Prepare(context.Context) error {
	name := newReadName()
	r, err := consumer.Open(f.log, flowrtStream, name, nil)
	if err != nil {
		return fmt.Errorf("bench/flowrt: open consumer: %w", err)
	}
	if off := r.Offset(); off != 0 {
		r.Close()
		return fmt.Errorf("bench/flowrt: consumer %q is not new: it starts after %d", name, off)
	}
	f.r = r
	return nil
}

func (f *flowrtReader) Scan(ctx context.Context) error {
	r := f.r
	if r == nil {
		return errors.New("bench/flowrt: scan without prepare")
	}
	f.r = nil
	var (
		once     sync.Once
		lastSeen = make(chan struct{})
		runErr   = make(chan error, 1)
	)
	h := func(_ context.Context, e eventlog.Event) error {
		if e.Seq == f.last {
			once.Do(func() { close(lastSeen) })
		}
		return nil
	}
	go func() { runErr <- r.Run(ctx, h) }()
	if err := f.waitLast(r, lastSeen, runErr); err != nil {
		return err
	}
	if err := r.Shutdown(ctx); err != nil {
		<-runErr
		return fmt.Errorf("bench/flowrt: shutdown: %w", err)
	}
	if err := <-runErr; !errors.Is(err, consumer.ErrClosed) {
		return fmt.Errorf("bench/flowrt: run: %w", err)
	}
	if off := r.Offset(); off != f.last {
		return fmt.Errorf("bench/flowrt: committed offset %d after shutdown, want %d", off, f.last)
	}
	if st := r.Stats(); st.Acked != f.count {
		return fmt.Errorf("bench/flowrt: %d events acked, want %d", st.Acked, f.count)
	}
	return nil
}

// waitLast waits until the handler has seen the last event. If Run returns
// first, or nothing is delivered for stallTimeout, it closes r, waits for
// Run and fails.
func (f *flowrtReader) waitLast(r *consumer.Reader, lastSeen <-chan struct{}, runErr <-chan error) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var delivered uint64
	progress := time.Now()
	for {
		select {
		case <-lastSeen:
			return nil
		case err := <-runErr:
			return fmt.Errorf("bench/flowrt: consumer stopped before the last event: %w", err)
		case now := <-tick.C:
			if d := r.Stats().Delivered; d != delivered {
				delivered, progress = d, now
			} else if now.Sub(progress) > stallTimeout {
				r.Close()
				<-runErr
				return fmt.Errorf("bench/flowrt: consumer stuck after %d of %d events", delivered, f.count)
			}
		}
	}
}

func (f *flowrtReader) Close() error {
	var errs []error
	if f.r != nil {
		errs = append(errs, f.r.Close())
		f.r = nil
	}
	if err := f.log.Close(); err != nil {
		errs = append(errs, fmt.Errorf("bench/flowrt: close: %w", err))
	}
	return errors.Join(errs...)
}
