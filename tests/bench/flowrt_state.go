//go:build !noflowrt

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	flowruntime "github.com/flowrt/flowrt/runtime"
	"github.com/flowrt/flowrt/snapshot"
)

// stateJournal is workload 7's journal: prefilled once with keyed events
// on the benchmark's stream, closed, and reopened by every run.
type stateJournal struct {
	path   string
	n      int
	last   uint64         // the stream's last sequence
	perKey map[string]int // how many events each key has
}

// prefillStateJournal creates a journal in dir holding n events of the
// benchmark's type, prefillBatch per Append, whose keys are drawn
// uniformly from keys keys with the seed; event i carries payload i.
func prefillStateJournal(ctx context.Context, dir string, n, keys int, seed uint64, p *payloads) (j *stateJournal, err error) {
	j = &stateJournal{path: filepath.Join(dir, "flowrt.db"), n: n, perKey: make(map[string]int, keys)}
	l, err := eventlog.Open(j.path, nil)
	if err != nil {
		return nil, fmt.Errorf("bench/flowrt: open: %w", err)
	}
	defer func() {
		if cerr := l.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("bench/flowrt: close: %w", cerr)
		}
	}()
	r := rand.New(rand.NewPCG(seed, uint64(keys)))
	names := make([]string, keys)
	for k := range names {
		names[k] = "k" + strconv.Itoa(k)
	}
	events := make([]eventlog.Event, 0, prefillBatch)
	for i := 0; i < n; i += prefillBatch {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		events = events[:0]
		for e := i; e < min(i+prefillBatch, n); e++ {
			key := names[r.IntN(keys)]
			j.perKey[key]++
			events = append(events, eventlog.Event{Type: eventType, Key: key, Data: p.rec(e)})
		}
		res, err := l.Append(flowrtStream, events...)
		if err != nil {
			return nil, fmt.Errorf("bench/flowrt: prefill at event %d: %w", i, err)
		}
		j.last = res[len(res)-1].Seq
	}
	return j, nil
}

// stateRun is what one flow run of workload 7 measured.
type stateRun struct {
	elapsed    time.Duration // from rt.Start until the committed floor is the last event
	floor      time.Duration // from rt.Start until the in-memory ack floor was, as first polled
	writeBytes float64       // bytes the process wrote in elapsed (/proc/self/io)
	allocs     uint64        // heap allocations of the process in elapsed
}

// runFlow reopens the journal and runs one new flow, name, over every
// event: its only sink does nothing, and with count a Reduce step counts
// the events of each key first. The flow's consumer has the default
// options but workers. settle runs once the runtime is ready, before the
// timed part: from rt.Start until the flow's committed floor is the last
// event. The runtime is then stopped (not timed) and the run checked:
// every event processed once, and with count, the committed state exact
// (errStateMismatch otherwise).
func (j *stateJournal) runFlow(ctx context.Context, settle func(), name string, workers int, count bool) (run stateRun, err error) {
	l, err := eventlog.Open(j.path, nil)
	if err != nil {
		return run, fmt.Errorf("bench/flowrt: open: %w", err)
	}
	defer func() {
		if cerr := l.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("bench/flowrt: close: %w", cerr)
		}
	}()
	rt, err := flowruntime.New(l, nil)
	if err != nil {
		return run, fmt.Errorf("bench/flowrt: new runtime: %w", err)
	}
	f := flowruntime.Flow{
		Name:  name,
		On:    flowruntime.Trigger{Stream: flowrtStream, Types: []string{eventType}},
		Sinks: []flowruntime.Sink{flowruntime.SinkFunc(func(context.Context, flowruntime.Delivery) error { return nil })},
	}
	if count {
		f.Steps = []flowruntime.Step{flowruntime.Reduce(flowruntime.ReduceSpec{Func: "count"})}
	}
	if workers > 1 {
		f.Consumer = &consumer.Options{Workers: workers}
	}
	if err := rt.Add(f); err != nil {
		return run, fmt.Errorf("bench/flowrt: add flow: %w", err)
	}
	settle()
	var mem runtime.MemStats
	runtime.ReadMemStats(&mem)
	mallocs := mem.Mallocs
	before, err := readIO()
	if err != nil {
		return run, err
	}
	start := time.Now()
	if err := rt.Start(ctx); err != nil {
		return run, fmt.Errorf("bench/flowrt: start runtime: %w", err)
	}
	stopped := false
	defer func() {
		if !stopped {
			stopCtx, cancel := context.WithTimeout(context.Background(), flowrtStopWait)
			defer cancel()
			rt.Stop(stopCtx)
		}
	}()
	err = waitAcked(ctx, j.last, func() (uint64, error) {
		st, err := flowStats(rt)
		if run.floor == 0 && st.Floor >= j.last {
			run.floor = time.Since(start)
		}
		return st.Committed, err
	})
	if err != nil {
		return run, err
	}
	run.elapsed = time.Since(start)
	after, err := readIO()
	if err != nil {
		return run, err
	}
	runtime.ReadMemStats(&mem)
	run.writeBytes = float64(after.writeBytes - before.writeBytes)
	run.allocs = mem.Mallocs - mallocs
	if run.floor == 0 {
		run.floor = run.elapsed
	}

	stopCtx, cancel := context.WithTimeout(ctx, flowrtStopWait)
	defer cancel()
	stopped = true
	if err := rt.Stop(stopCtx); err != nil {
		return run, fmt.Errorf("bench/flowrt: stop runtime: %w", err)
	}
	st := rt.Stats()[0]
	if st.Processed != uint64(j.n) || st.Failed != 0 || st.Committed != j.last {
		return run, fmt.Errorf("bench/flowrt: flow %s processed %d events (%d failed attempts), committed %d; want %d events, committed %d",
			name, st.Processed, st.Failed, st.Committed, j.n, j.last)
	}
	if count {
		if err := j.checkCounts(l, name); err != nil {
			return run, err
		}
	}
	return run, nil
}

// flowStats returns the counters of the runtime's only flow. It fails if
// the runtime has stopped or the flow failed an event.
func flowStats(rt *flowruntime.Runtime) (flowruntime.FlowStats, error) {
	select {
	case <-rt.Done():
		return flowruntime.FlowStats{}, fmt.Errorf("bench/flowrt: runtime stopped: %w", rt.Wait())
	default:
	}
	st := rt.Stats()[0]
	if st.Failed > 0 {
		return st, fmt.Errorf("bench/flowrt: flow %s failed %d events", st.Flow, st.Failed)
	}
	return st, nil
}

// checkCounts reads the committed state of the counting flow name and
// checks that every key's count is the number of its events, and so that
// the counts sum to the number of events.
func (j *stateJournal) checkCounts(l *eventlog.Log, name string) error {
	entries, err := snapshot.Read(l, name, "")
	if err != nil {
		return fmt.Errorf("bench/flowrt: %w", err)
	}
	var sum, wrong int
	var first string
	for _, e := range entries {
		var n float64
		if err := json.Unmarshal(e.Value, &n); err != nil {
			return fmt.Errorf("%w: flow %s: key %q holds %q: %v", errStateMismatch, name, e.Key, e.Value, err)
		}
		sum += int(n)
		if want := j.perKey[e.Key]; float64(want) != n {
			if wrong == 0 {
				first = fmt.Sprintf("key %q counts %v, want %d", e.Key, n, want)
			}
			wrong++
		}
	}
	if sum != j.n || len(entries) != len(j.perKey) || wrong > 0 {
		return errors.Join(errStateMismatch, fmt.Errorf("flow %s: %d keys counting %d events, want %d keys and %d events; %d keys wrong (%s)",
			name, len(entries), sum, len(j.perKey), j.n, wrong, first))
	}
	return nil
}
