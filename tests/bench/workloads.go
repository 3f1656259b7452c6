package main

import (
	"fmt"
	"time"
)

// sizes are the workload sizes, from the flags.
type sizes struct {
	n1          int // workload 1: appends
	writers, n2 int // workload 2: writers, and appends per writer
	n3, batch   int // workload 3: records, and records per batch
	n4          int // workload 4: records prefilled and read; the heap check's small backlog
	heapN       int // heap check: the large backlog
	n5          int // workload 5: appends per producer (writers producers) in the sustained phase
	n5paced     int // workload 5: events of the paced phase, at most
	n7, keys7   int // workload 7: events prefilled, and the keys they are spread over
}

// defaultSizes are BASELINE.md's headline sizes; quick ones are 10× smaller.
func defaultSizes(quick bool) sizes {
	s := sizes{n1: 20_000, writers: 64, n2: 1_000, n3: 1_000_000, batch: 1_000, n4: 1_000_000, heapN: 10_000_000,
		n5: 1_000, n5paced: 20_000, n7: 200_000, keys7: 10_000}
	if quick {
		s.n1, s.n2, s.n3, s.n4, s.heapN = s.n1/10, s.n2/10, s.n3/10, s.n4/10, s.heapN/10
		s.n5, s.n5paced, s.n7 = s.n5/10, s.n5paced/10, s.n7/10
	}
	return s
}

// warmup is the warm-up, in drive units: 2% of the run, at least lo.
func warmup(n, lo int) int { return max(n/50, lo) }

// payloadSize is the size of every record, for every variant.
const payloadSize = 256

// workloads returns the runners of workloads 1–5 and 7 by number (6,
// recovery time, is not written yet).
func workloads(s sizes) map[int]runner {
	return map[int]runner{1: workload1(s), 2: workload2(s), 3: workload3(s), 4: workload4(s), 5: workload5(s), 7: workload7(s)}
}

func workload1(s sizes) runner {
	w := &workload[appender]{
		id:             1,
		title:          fmt.Sprintf("one durable writer: %d appends, each waiting for its commit", s.n1),
		unit:           "append",
		warm:           warmup(s.n1, 20),
		size:           s.n1,
		recordsPerUnit: 1,
		drive:          driveSerial,
		variants: []variant[appender]{
			{key: "raw", name: "raw pwrite+fdatasync/record", role: roleReference,
				open: func(d string) (appender, error) { return openRaw(d, syncFdatasync) }},
			{key: "bbolt", name: "bbolt 1 record/Update", role: rolePeer,
				open: func(d string) (appender, error) { return openBolt(d, boltUpdate, 0) }},
			{key: "jetstream", name: "JetStream SyncAlways, sync pub", role: rolePeer,
				open: func(d string) (appender, error) { return openJetStream(d, jsSyncAlways, jsSyncPublish) }},
		},
		targets: []target{{kind: targetRatioAtLeast, limit: 0.60, desc: "flowrt records/s ≥ 0.60× raw fdatasync/record"}},
	}
	if flowrtBuilt {
		w.variants = append(w.variants, variant[appender]{key: "flowrt", name: "flowrt Append", role: roleFlowrt,
			open: func(d string) (appender, error) { return openFlowrt(d) }})
	}
	return w
}

func workload2(s sizes) runner {
	w := &workload[appender]{
		id: 2,
		title: fmt.Sprintf("%d concurrent durable writers: %d × %d single-record appends, each waiting for its own commit",
			s.writers, s.writers, s.n2),
		unit:           "append",
		warm:           warmup(s.n2, 2),
		size:           s.n2,
		recordsPerUnit: s.writers,
		drive:          driveConcurrent(s.writers),
		variants: []variant[appender]{
			{key: "raw", name: fmt.Sprintf("raw pwrite+fsync/batch of %d", s.writers), role: roleReference,
				open: func(d string) (appender, error) { return openRawGroup(d, s.writers) }},
			{key: "bbolt-batch", name: "bbolt Batch, 10ms delay (default)", role: rolePeer,
				open: func(d string) (appender, error) { return openBolt(d, boltBatch, 0) }},
			{key: "bbolt-batch-1ms", name: "bbolt Batch, 1ms delay", role: rolePeer,
				open: func(d string) (appender, error) { return openBolt(d, boltBatch, time.Millisecond) }},
			{key: "jetstream", name: fmt.Sprintf("JetStream SyncAlways, async pub %d", jsMaxPending), role: rolePeer,
				open: func(d string) (appender, error) { return openJetStream(d, jsSyncAlways, jsAsyncPublish) }},
		},
		targets: []target{{kind: targetRatioAtLeast, limit: 0.40,
			desc: fmt.Sprintf("flowrt records/s ≥ 0.40× raw fsync/batch of %d", s.writers)}},
	}
	if flowrtBuilt {
		w.variants = append(w.variants, variant[appender]{key: "flowrt", name: "flowrt Append, concurrent", role: roleFlowrt,
			open: func(d string) (appender, error) { return openFlowrt(d) }})
	}
	return w
}

func workload3(s sizes) runner {
	batches := s.n3 / s.batch
	w := &workload[batchAppender]{
		id: 3,
		title: fmt.Sprintf("bulk append: %d records in batches of %d, one commit per batch",
			batches*s.batch, s.batch),
		unit:           fmt.Sprintf("batch of %d", s.batch),
		warm:           warmup(batches, 2),
		size:           batches,
		recordsPerUnit: s.batch,
		drive:          driveBulk(s.batch),
		variants: []variant[batchAppender]{
			{key: "raw", name: fmt.Sprintf("raw pwrite+fsync/%d", s.batch), role: roleReference,
				open: func(d string) (batchAppender, error) { return openRaw(d, syncFsync) }},
			{key: "bbolt", name: fmt.Sprintf("bbolt %d records/Update", s.batch), role: rolePeer,
				open: func(d string) (batchAppender, error) { return openBolt(d, boltUpdate, 0) }},
			{key: "jetstream-default", name: fmt.Sprintf("JetStream default, async pub %d", jsMaxPending), role: rolePeer,
				open: func(d string) (batchAppender, error) { return openJetStream(d, jsDefault, jsAsyncPublish) }},
		},
		targets: []target{
			{kind: targetRatioAtLeast, limit: 0.25, desc: fmt.Sprintf("flowrt records/s ≥ 0.25× raw fsync/%d", s.batch)},
			{kind: targetBytesAtMost, limit: 1.5, desc: fmt.Sprintf("flowrt disk bytes written/record ≤ 1.5× the %d B payload", payloadSize)},
		},
	}
	if flowrtBuilt {
		w.variants = append(w.variants, variant[batchAppender]{key: "flowrt", name: fmt.Sprintf("flowrt Append, %d/call", s.batch), role: roleFlowrt,
			open: func(d string) (batchAppender, error) { return openFlowrt(d) }})
	}
	return w
}
