//go:build !noflowrt

package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	flowruntime "github.com/flowrt/flowrt/runtime"
)

// flowrtFlow is the name of workload 5's flow, and of its consumer.
const flowrtFlow = "w5"

// flowrtStopWait bounds the runtime's graceful stop in Close.
const flowrtStopWait = 30 * time.Second

// flowrtPipeline is workload 5's flowrt variant: the journal opened with
// default options and a runtime (default options) running one flow,
// triggered by the benchmark's event type on the stream the producers
// append to, whose only sink passes each event's data to deliver and
// returns nil. The flow's consumer has the default options: one worker,
// and the ack floor committed at most every 100 ms while events flow.
// Append is one Log.Append of one event (concurrent calls are
// group-committed); WaitAcked polls the flow's committed floor. Safe for
// concurrent use.
type flowrtPipeline struct {
	log  *eventlog.Log
	rt   *flowruntime.Runtime
	last atomic.Uint64 // the highest sequence appended
}

func openFlowrtPipeline(dir string, deliver func([]byte)) (*flowrtPipeline, error) {
	l, err := eventlog.Open(filepath.Join(dir, "flowrt.db"), nil)
	if err != nil {
		return nil, fmt.Errorf("bench/flowrt: open: %w", err)
	}
	rt, err := flowruntime.New(l, nil)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("bench/flowrt: new runtime: %w", err)
	}
	sink := flowruntime.SinkFunc(func(_ context.Context, d flowruntime.Delivery) error {
		deliver(d.Event.Data)
		return nil
	})
	err = rt.Add(flowruntime.Flow{Name: flowrtFlow, On: flowruntime.Trigger{Stream: flowrtStream, Types: []string{eventType}},
		Sinks: []flowruntime.Sink{sink}})
	if err == nil {
		err = rt.Start(context.Background())
	}
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("bench/flowrt: start runtime: %w", err)
	}
	return &flowrtPipeline{log: l, rt: rt}, nil
}

func (f *flowrtPipeline) Append(rec []byte) (uint64, error) {
	res, err := f.log.Append(flowrtStream, eventlog.Event{Type: eventType, Data: rec})
	if err != nil {
		return 0, fmt.Errorf("bench/flowrt: append: %w", err)
	}
	seq := res[0].Seq
	for {
		cur := f.last.Load()
		if seq <= cur || f.last.CompareAndSwap(cur, seq) {
			return seq, nil
		}
	}
}

// WaitAcked waits until the flow's committed floor is the last sequence
// appended. It fails if the runtime stops or the flow fails an event.
func (f *flowrtPipeline) WaitAcked(ctx context.Context) error {
	return waitAcked(ctx, f.last.Load(), func() (uint64, error) {
		select {
		case <-f.rt.Done():
			return 0, fmt.Errorf("bench/flowrt: runtime stopped: %w", f.rt.Wait())
		default:
		}
		st := f.rt.Stats()[0]
		if st.Failed > 0 {
			return 0, fmt.Errorf("bench/flowrt: flow %s failed %d events", st.Flow, st.Failed)
		}
		return st.Committed, nil
	})
}

// Close stops the runtime, which drains the flow and commits its floor,
// then closes the journal.
func (f *flowrtPipeline) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), flowrtStopWait)
	defer cancel()
	var errs []error
	if err := f.rt.Stop(ctx); err != nil {
		errs = append(errs, fmt.Errorf("bench/flowrt: stop runtime: %w", err))
	}
	if err := f.log.Close(); err != nil {
		errs = append(errs, fmt.Errorf("bench/flowrt: close: %w", err))
	}
	return errors.Join(errs...)
}
