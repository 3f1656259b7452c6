//go:build noflowrt

package main

import (
	"context"
	"errors"
	"time"
)

// flowrtBuilt says whether this binary measures flowrt. The noflowrt tag
// leaves flowrt out, for a peers-only run while the journal does not build.
const flowrtBuilt = false

var errFlowrtOff = errors.New("bench/flowrt: not built (built with -tags noflowrt)")

// flowrtLog stands in for flowrt.go's adapter when flowrt is not built; it
// is never opened.
type flowrtLog struct{}

func openFlowrt(string) (*flowrtLog, error) { return nil, errFlowrtOff }

func (*flowrtLog) Append([]byte) error        { return errFlowrtOff }
func (*flowrtLog) AppendBatch([][]byte) error { return errFlowrtOff }
func (*flowrtLog) Close() error               { return nil }

// flowrtReader stands in for flowrt.go's workload 4 reader; it is never
// opened.
type flowrtReader struct{}

func openFlowrtReader(string, int) (*flowrtReader, error) { return nil, errFlowrtOff }

func (*flowrtReader) Prepare(context.Context) error { return errFlowrtOff }
func (*flowrtReader) Scan(context.Context) error    { return errFlowrtOff }
func (*flowrtReader) Close() error                  { return nil }

// flowrtPipeline stands in for flowrt_e2e.go's workload 5 pipeline; it is
// never opened.
type flowrtPipeline struct{}

func openFlowrtPipeline(string, func([]byte)) (*flowrtPipeline, error) { return nil, errFlowrtOff }

func (*flowrtPipeline) Append([]byte) (uint64, error)   { return 0, errFlowrtOff }
func (*flowrtPipeline) WaitAcked(context.Context) error { return errFlowrtOff }
func (*flowrtPipeline) Close() error                    { return nil }

// stateJournal stands in for flowrt_state.go's workload 7 journal; it is
// never prefilled.
type stateJournal struct{}

func prefillStateJournal(context.Context, string, int, int, uint64, *payloads) (*stateJournal, error) {
	return nil, errFlowrtOff
}

// stateRun is what one flow run of workload 7 measured.
type stateRun struct {
	elapsed, floor time.Duration
	writeBytes     float64
	allocs         uint64
}

func (*stateJournal) runFlow(context.Context, func(), string, int, bool) (stateRun, error) {
	return stateRun{}, errFlowrtOff
}
