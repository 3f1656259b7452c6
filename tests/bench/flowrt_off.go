//go:build !flowrt_api

package main

import "errors"

// flowrtBuilt says whether this binary measures flowrt. Build with
// -tags flowrt_api to include it.
const flowrtBuilt = false

// flowrtLog stands in for flowrt.go's adapter when flowrt is not built.
type flowrtLog struct{ appender }

func (f *flowrtLog) AppendBatch([][]byte) error { return errFlowrtOff }

var errFlowrtOff = errors.New("bench/flowrt: not built (build with -tags flowrt_api)")

func openFlowrt(string) (*flowrtLog, error) { return nil, errFlowrtOff }
