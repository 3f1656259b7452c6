//go:build !noflowrt

package main

import (
	"fmt"
	"path/filepath"

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
