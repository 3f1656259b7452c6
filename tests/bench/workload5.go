package main

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
)

// pacedMaxSeconds bounds workload 5's paced phase: at a low sustained rate
// it appends fewer than -n5paced events, about this many seconds' worth.
const pacedMaxSeconds = 5

// Row key suffixes of a pipeline's second and third figures.
const (
	appendsSuffix = "-appends"
	pacedSuffix   = "-paced"
)

// What a row's p50/p99 measure in workload 5 (result.Latency).
const (
	latencyAppend = "append"         // one Append, from its call to its return
	latencySink   = "append-to-sink" // from just before Append to the consumer's sink
)

// pipelineVariant is one store with a consumer, driven by workload 5.
type pipelineVariant struct {
	key  string // -only filter, ratios, targets, JSON; the rows add suffixes
	name string // table name of the end-to-end row; the other rows extend it
	role role
	// open opens the store in dir, a fresh empty directory, and starts its
	// consumer, which calls deliver with each event's data.
	open func(dir string, deliver func([]byte)) (pipeline, error)
}

// endToEnd is workload 5: writers producers append single events, each
// waiting for its own commit, while a consumer with a no-op sink acks them
// durably. Each pipeline is measured twice in one run: sustained (the
// producers as fast as they can) and paced at half the sustained rate (the
// append-to-sink latency). The raw reference is workload 2's.
type endToEnd struct {
	writers, n, paced int
	ref               *workload[appender] // the raw group commit, driven as workload 2
	pipelines         []pipelineVariant
	targets           []target
}

func workload5(s sizes) runner {
	c := &endToEnd{
		writers: s.writers,
		n:       s.n5,
		paced:   s.n5paced,
		ref: &workload[appender]{
			id:             5,
			warm:           warmup(s.n5, 2),
			size:           s.n5,
			recordsPerUnit: s.writers,
			drive:          driveConcurrent(s.writers),
			variants: []variant[appender]{{key: "raw", name: fmt.Sprintf("raw pwrite+fsync/batch of %d", s.writers),
				role: roleReference, open: func(d string) (appender, error) { return openRawGroup(d, s.writers) }}},
		},
		pipelines: []pipelineVariant{{key: "jetstream", role: rolePeer,
			name: "JetStream SyncAlways, async pub + pull consumer",
			open: func(d string, deliver func([]byte)) (pipeline, error) { return openJetStreamPipeline(d, deliver) }}},
		targets: []target{
			{kind: targetVariantsAtLeast, num: "flowrt", den: "raw", limit: 0.30,
				desc: fmt.Sprintf("flowrt end-to-end events/s ≥ 0.30× raw fsync/batch of %d", s.writers)},
			{kind: targetP99AtMost, num: "flowrt" + pacedSuffix, limit: 5,
				desc: "flowrt-paced append-to-sink p99 ≤ 5 ms"},
		},
	}
	if flowrtBuilt {
		c.pipelines = append(c.pipelines, pipelineVariant{key: "flowrt", role: roleFlowrt, name: "flowrt flow, no-op sink",
			open: func(d string, deliver func([]byte)) (pipeline, error) { return openFlowrtPipeline(d, deliver) }})
	}
	return c
}

func (c *endToEnd) run(ctx context.Context, e *env) (*workloadReport, error) {
	rep := &workloadReport{
		ID: 5,
		Title: fmt.Sprintf("end to end: %d producers × %d single-event appends, each waiting for its own commit, "+
			"while a consumer with a no-op sink acks durably; then paced at ½ the sustained rate", c.writers, c.n),
		Unit:    "append (raw, its appends) or from just before Append to the sink (end to end, paced)",
		Records: c.writers * c.n,
		Warmup:  c.writers * c.ref.warm,
		Rounds:  e.rounds,
	}
	var keys []string
	rows := make(map[string][]result)
	add := func(rs ...result) {
		for _, r := range rs {
			if _, ok := rows[r.Key]; !ok {
				keys = append(keys, r.Key)
			}
			rows[r.Key] = append(rows[r.Key], r)
		}
	}
	for round := range e.rounds {
		if v := c.ref.variants[0]; e.only == nil || e.only[v.key] {
			fmt.Fprintf(e.progress, "W5 round %d/%d %-18s ", round+1, e.rounds, v.key)
			res, err := c.ref.measure(ctx, e, v)
			if err != nil {
				fmt.Fprintln(e.progress, "FAILED:", err)
				if ctx.Err() != nil {
					return nil, err
				}
				res = result{Key: v.key, Name: v.name, Role: v.role.String(), Error: err.Error()}
			} else {
				fmt.Fprintf(e.progress, "%10.0f records/s in %.1fs\n", res.RecordsPerSec, res.Seconds)
			}
			res.Latency = latencyAppend
			add(res)
		}
		for _, v := range c.pipelines {
			if e.only != nil && !e.only[v.key] {
				continue
			}
			fmt.Fprintf(e.progress, "W5 round %d/%d %-18s ", round+1, e.rounds, v.key)
			rs, err := c.measure(ctx, e, v)
			if err != nil {
				fmt.Fprintln(e.progress, "FAILED:", err)
				if ctx.Err() != nil {
					return nil, err
				}
				rs = c.failed(v, err)
			} else {
				fmt.Fprintf(e.progress, "%10.0f events/s end to end in %.1fs; appends %.0f/s; paced %.0f/s: p50 %.0f µs, p99 %.0f µs\n",
					rs[0].RecordsPerSec, rs[0].Seconds, rs[1].RecordsPerSec, rs[2].RecordsPerSec, rs[2].P50Micros, rs[2].P99Micros)
			}
			add(rs...)
		}
	}
	for _, k := range keys {
		by := func(r result) float64 { return r.RecordsPerSec }
		if strings.HasSuffix(k, pacedSuffix) {
			by = func(r result) float64 { return r.P99Micros }
		}
		rep.Results = append(rep.Results, medianBy(rows[k], by))
	}
	rep.evaluate(c.targets, len(e.payloads.recs[0]))
	rep.Notes = c.notes(rep)
	return rep, nil
}

// failed returns the three rows of a pipeline whose round failed.
func (c *endToEnd) failed(v pipelineVariant, err error) []result {
	rs := pipelineRows(v)
	for i := range rs {
		rs[i].Error = err.Error()
	}
	return rs
}

// pipelineRows returns a pipeline's rows, named: end to end, the
// producers' appends, and the paced phase.
func pipelineRows(v pipelineVariant) []result {
	return []result{
		{Key: v.key, Name: v.name + ", end to end", Role: v.role.String(), Latency: latencySink},
		{Key: v.key + appendsSuffix, Name: v.name + ", its appends", Role: roleDetail.String(), Latency: latencyAppend},
		{Key: v.key + pacedSuffix, Name: v.name + ", paced at ½", Role: roleDetail.String(), Latency: latencySink},
	}
}

// notes says what the latencies measure and how each pipeline was paced.
func (c *endToEnd) notes(rep *workloadReport) []string {
	notes := []string{
		"end to end: events ÷ the time from the first Append until the consumer's durable ack covers the last event",
		"p50/p99: raw and \"its appends\" rows per Append; \"end to end\" and \"paced\" rows from just before Append to the sink",
	}
	for _, r := range rep.Results {
		if r.Error == "" && r.PacedRate > 0 {
			notes = append(notes, fmt.Sprintf("%s: %d producers paced at %.0f events/s in total (½ of that round's sustained rate), %d events",
				r.Key, c.writers, r.PacedRate, r.Events))
		}
	}
	return notes
}

// medianBy returns the round with the median figure by (the lower one of
// an even count), or a failed round if any failed.
func medianBy(rs []result, by func(result) float64) result {
	for _, r := range rs {
		if r.Error != "" {
			return r
		}
	}
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b result) int { return cmp.Compare(by(a), by(b)) })
	return rs[(len(rs)-1)/2]
}
