package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// errStateMismatch is returned, wrapped, when a counting flow's committed
// state is not exactly one count per event: the benchmark then stops with
// an error instead of reporting a rate for a wrong result.
var errStateMismatch = errors.New("bench/flowrt: flow state is not exact")

// stateVariant is one flow workload 7 runs over its prefilled journal.
type stateVariant struct {
	key  string // -only filter, targets, JSON; also names the flow
	name string // table name
	role role
	// workers is the flow consumer's Workers.
	workers int
	// count adds a Reduce step counting the events of each key, whose
	// state commits in the transaction of the ack floor.
	count bool
}

// flowState is workload 7: one journal is prefilled with n events spread
// over keys keys, and each variant runs a new flow over all of them from
// the start, one at a time: a flow whose only sink does nothing, and the
// same flow with a Reduce step counting per key. The rate is events ÷ the
// time from the runtime's Start until the flow's committed floor covers the
// last event. The variants alternate within each round; every counting run
// checks that its committed state is exact.
type flowState struct {
	n, keys  int
	variants []stateVariant
	targets  []target
}

func workload7(s sizes) runner {
	c := &flowState{
		n:    s.n7,
		keys: s.keys7,
		targets: []target{
			{kind: targetVariantsAtLeast, num: "count", den: "plain", limit: 0.80,
				desc: "flow counting per key events/s ≥ 0.80× the same flow without state"},
			{kind: targetVariantsAtLeast, num: "count-w4", den: "plain-w4", limit: 0.80, info: true,
				desc: "with 4 workers: flow counting per key events/s ≥ 0.80× the same flow without state"},
		},
	}
	if flowrtBuilt {
		c.variants = []stateVariant{
			{key: "plain", name: "flow, no state", role: roleReference, workers: 1},
			{key: "count", name: "flow, count per key", role: roleDetail, workers: 1, count: true},
			{key: "plain-w4", name: "flow, no state, 4 workers", role: roleDetail, workers: 4},
			{key: "count-w4", name: "flow, count per key, 4 workers", role: roleDetail, workers: 4, count: true},
		}
	}
	return c
}

func (c *flowState) run(ctx context.Context, e *env) (*workloadReport, error) {
	rep := &workloadReport{
		ID: 7,
		Title: fmt.Sprintf("flow state: %d events over %d keys prefilled %d per commit; a new flow reads them all from the start, "+
			"without state and counting per key (the state commits with the ack floor)", c.n, c.keys, prefillBatch),
		Records: c.n,
		Rounds:  e.rounds,
	}
	var selected []stateVariant
	for _, v := range c.variants {
		if e.only == nil || e.only[v.key] {
			selected = append(selected, v)
		}
	}
	if len(selected) == 0 {
		rep.evaluate(c.targets, len(e.payloads.recs[0]))
		return rep, nil
	}
	dir, err := os.MkdirTemp(e.root, "w7-")
	if err != nil {
		return nil, fmt.Errorf("bench: journal directory: %w", err)
	}
	defer os.RemoveAll(dir)
	fmt.Fprintf(e.progress, "W7 prefill        %-18s ", "flowrt")
	start := time.Now()
	j, err := prefillStateJournal(ctx, dir, c.n, c.keys, e.seed, e.payloads)
	if err != nil {
		fmt.Fprintln(e.progress, "FAILED:", err)
		if ctx.Err() != nil {
			return nil, err
		}
		for _, v := range selected {
			rep.Results = append(rep.Results, result{Key: v.key, Name: v.name, Role: v.role.String(), Error: "prefill: " + err.Error()})
		}
		rep.evaluate(c.targets, len(e.payloads.recs[0]))
		return rep, nil
	}
	elapsed := time.Since(start)
	fmt.Fprintf(e.progress, "%10.0f records/s in %.1fs\n", float64(c.n)/elapsed.Seconds(), elapsed.Seconds())

	rounds := make([][]result, len(selected))
	for round := range e.rounds {
		for i, v := range selected {
			fmt.Fprintf(e.progress, "W7 round %d/%d %-18s ", round+1, e.rounds, v.key)
			res, err := c.measure(ctx, e, j, dir, v, round)
			if err != nil {
				fmt.Fprintln(e.progress, "FAILED:", err)
				if ctx.Err() != nil || errors.Is(err, errStateMismatch) {
					return nil, err
				}
				res = result{Key: v.key, Name: v.name, Role: v.role.String(), Error: err.Error()}
			} else {
				fmt.Fprintf(e.progress, "%10.0f events/s in %.2fs\n", res.RecordsPerSec, res.Seconds)
			}
			rounds[i] = append(rounds[i], res)
		}
	}
	for _, rs := range rounds {
		rep.Results = append(rep.Results, median(rs))
	}
	rep.evaluate(c.targets, len(e.payloads.recs[0]))
	rep.Notes = c.notes(rep, selected, rounds)
	return rep, nil
}

// measure runs the flow of v, named after it and the round so that it is
// a new consumer reading from the start, over the journal prefilled in
// dir, and sizes dir once the journal is closed.
func (c *flowState) measure(ctx context.Context, e *env, j *stateJournal, dir string, v stateVariant, round int) (result, error) {
	name := fmt.Sprintf("w7-%s-%d", v.key, round+1)
	run, err := j.runFlow(ctx, e.settle, name, v.workers, v.count)
	if err != nil {
		return result{}, fmt.Errorf("%s: %w", v.key, err)
	}
	size, err := dirSize(dir)
	if err != nil {
		return result{}, err
	}
	return result{
		Key:                 v.key,
		Name:                v.name,
		Role:                v.role.String(),
		Seconds:             run.elapsed.Seconds(),
		RecordsPerSec:       float64(c.n) / run.elapsed.Seconds(),
		MicrosPerOp:         run.elapsed.Seconds() * 1e6 / float64(c.n),
		WriteBytesPerRecord: run.writeBytes / float64(c.n),
		FileBytesPerRecord:  float64(size) / float64(c.n),
		FloorSeconds:        run.floor.Seconds(),
		AllocsPerRecord:     float64(run.allocs) / float64(c.n),
	}, nil
}

// notes says how the runs were timed and checked; for each variant's
// median run when its in-memory ack floor reached the last event and its
// allocations per event; and each round's ratio of a counting flow to the
// plain one with as many workers.
func (c *flowState) notes(rep *workloadReport, selected []stateVariant, rounds [][]result) []string {
	notes := []string{
		"each run: the prefilled journal reopened, a new runtime with one new flow (consumer defaults: ack floor committed " +
			"every 100 ms or 100,000 events); timed from rt.Start until its committed floor (rt.Stats, polled every 1 ms) is the last event",
		"a consumer whose floor reaches the stream's last event commits within 10 ms (CommitInterval/10): the in-memory figures below leave that wait out",
		"× ref: events/s ÷ \"flow, no state\" (1 worker); file B/rec: the whole journal after the run ÷ events",
		fmt.Sprintf("every counting run checked after its stop: its committed state (snapshot.Read) has a count for each key "+
			"equal to its events, summing to %d", c.n),
	}
	for _, r := range rep.Results {
		if r.Error == "" {
			notes = append(notes, fmt.Sprintf("%s: last event acked in memory after %.3f s (%.0f events/s), durable %.0f ms later; %.1f heap allocations per event",
				r.Key, r.FloorSeconds, float64(c.n)/r.FloorSeconds, (r.Seconds-r.FloorSeconds)*1000, r.AllocsPerRecord))
		}
	}
	byKey := make(map[string][]result)
	for i, v := range selected {
		byKey[v.key] = rounds[i]
	}
	for _, pair := range [][2]string{{"count", "plain"}, {"count-w4", "plain-w4"}} {
		num, den := byKey[pair[0]], byKey[pair[1]]
		if len(num) == 0 || len(den) == 0 {
			continue
		}
		var durable, acked []string
		for r := range num {
			if num[r].Error != "" || den[r].Error != "" {
				durable, acked = append(durable, "failed"), append(acked, "failed")
				continue
			}
			durable = append(durable, fmt.Sprintf("%.3f", num[r].RecordsPerSec/den[r].RecordsPerSec))
			acked = append(acked, fmt.Sprintf("%.3f", den[r].FloorSeconds/num[r].FloorSeconds))
		}
		notes = append(notes, fmt.Sprintf("%s ÷ %s by round: %s; acked in memory: %s",
			pair[0], pair[1], strings.Join(durable, ", "), strings.Join(acked, ", ")))
	}
	return notes
}
