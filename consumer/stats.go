package consumer

import (
	"sync/atomic"
	"time"

	"github.com/flowrt/flowrt/eventlog"
)

// Stats is a snapshot of a Reader's counters since it was opened.
type Stats struct {
	Consumer     string
	Stream       string
	Delivered    uint64 // handler invocations
	Acked        uint64 // invocations that returned nil
	Retried      uint64 // failures scheduled for another attempt
	DeadLettered uint64 // events sent to the dead letters
	InFlight     int64  // events fetched and not yet done
	Redelivering int64  // dead letters picked up for redelivery and not yet done
	Floor        uint64 // every event at or below it is done
	Committed    uint64 // the durable ack offset
	Last         uint64 // the stream's last sequence
	Lag          uint64 // Last - Floor
	Latency      Histogram
}

// LatencyBuckets are the upper bounds, in seconds, of the handler latency
// histogram (Prometheus-style cumulative buckets).
var LatencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Histogram is a cumulative latency histogram: Counts[i] observations took
// at most LatencyBuckets[i] seconds; Count and Sum cover all of them.
type Histogram struct {
	Counts []uint64
	Count  uint64
	Sum    float64 // seconds
}

type counters struct {
	delivered, acked, retried, deadLettered atomic.Uint64
	inFlight, redelivering                  atomic.Int64
	latency                                 histogram
}

type histogram struct {
	buckets [14]atomic.Uint64 // len(LatencyBuckets)
	count   atomic.Uint64
	sumNs   atomic.Int64
}

func (h *histogram) observe(d time.Duration) {
	s := d.Seconds()
	for i, ub := range LatencyBuckets {
		if s <= ub {
			h.buckets[i].Add(1)
			break
		}
	}
	h.count.Add(1)
	h.sumNs.Add(int64(d))
}

func (h *histogram) snapshot() Histogram {
	out := Histogram{Counts: make([]uint64, len(LatencyBuckets)), Count: h.count.Load(), Sum: time.Duration(h.sumNs.Load()).Seconds()}
	var cum uint64
	for i := range LatencyBuckets {
		cum += h.buckets[i].Load()
		out.Counts[i] = cum
	}
	return out
}

// Stats returns the Reader's counters and its lag behind the stream. It is
// safe to call at any time, from any goroutine.
func (r *Reader) Stats() Stats {
	s := Stats{
		Consumer:     r.name,
		Stream:       r.stream,
		Delivered:    r.stats.delivered.Load(),
		Acked:        r.stats.acked.Load(),
		Retried:      r.stats.retried.Load(),
		DeadLettered: r.stats.deadLettered.Load(),
		InFlight:     r.stats.inFlight.Load(),
		Redelivering: r.stats.redelivering.Load(),
		Floor:        r.floor.Load(),
		Committed:    r.committed.Load(),
		Latency:      r.stats.latency.snapshot(),
	}
	_ = r.j.View(func(tx *eventlog.Tx) error {
		if si, err := tx.Info(r.stream); err == nil {
			s.Last = si.Last
		}
		return nil
	})
	if s.Last > s.Floor {
		s.Lag = s.Last - s.Floor
	}
	return s
}
