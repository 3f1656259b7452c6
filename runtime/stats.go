package runtime

import "github.com/flowrt/flowrt/consumer"

// FlowStats is a snapshot of one flow's counters since the runtime
// started. The counters only grow, across restarts of the flow.
type FlowStats struct {
	Flow   string
	Stream string
	// Matched counts the events the trigger selected (each attempt).
	Matched uint64
	// Filtered counts matched events whose every record a filter dropped
	// (acked, nothing delivered).
	Filtered uint64
	// Processed counts events delivered to every sink.
	Processed uint64
	// Failed counts attempts that failed (before a retry or dead letter).
	Failed uint64
	// The consumer's counters: retries scheduled, events dead-lettered,
	// events fetched and not done, the floor and committed offset, the
	// stream's last sequence, the lag behind it, and handler latency.
	Retried      uint64
	DeadLettered uint64
	InFlight     int64
	Floor        uint64
	Committed    uint64
	Last         uint64
	Lag          uint64
	Latency      consumer.Histogram
}

func (f *flow) stats() FlowStats {
	f.mu.Lock()
	s := f.base
	if f.reader != nil {
		s = addStats(s, f.reader.Stats())
	}
	f.mu.Unlock()
	return FlowStats{
		Flow:         f.name,
		Stream:       f.stream,
		Matched:      f.counters.matched.Load(),
		Filtered:     f.counters.filtered.Load(),
		Processed:    f.counters.processed.Load(),
		Failed:       f.counters.failed.Load(),
		Retried:      s.Retried,
		DeadLettered: s.DeadLettered,
		InFlight:     s.InFlight,
		Floor:        s.Floor,
		Committed:    s.Committed,
		Last:         s.Last,
		Lag:          s.Lag,
		Latency:      s.Latency,
	}
}

// addStats adds a reader's counters to those of earlier readers; the
// gauges (in flight, offsets, lag) are the newer reader's.
func addStats(base, s consumer.Stats) consumer.Stats {
	out := s
	out.Delivered += base.Delivered
	out.Acked += base.Acked
	out.Retried += base.Retried
	out.DeadLettered += base.DeadLettered
	out.Latency = addHistograms(base.Latency, s.Latency)
	return out
}

func addHistograms(a, b consumer.Histogram) consumer.Histogram {
	out := consumer.Histogram{Counts: make([]uint64, len(consumer.LatencyBuckets)), Count: a.Count + b.Count, Sum: a.Sum + b.Sum}
	for i := range out.Counts {
		if i < len(a.Counts) {
			out.Counts[i] += a.Counts[i]
		}
		if i < len(b.Counts) {
			out.Counts[i] += b.Counts[i]
		}
	}
	return out
}
