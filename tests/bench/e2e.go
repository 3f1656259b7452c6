package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"time"
)

// pipeline is what workload 5 drives: producers append, and a consumer of
// the same store hands every event's data to the deliver function the
// pipeline was opened with, then acks it durably as the variant defines.
//
// Append returns once rec is committed, and the sequence the store gave it;
// it is safe for concurrent use and does not keep rec. deliver may be
// called before the Append of the event has returned. WaitAcked blocks
// until the consumer's durable ack covers every event appended so far, or
// fails after stallTimeout without progress; it is called with no Append in
// flight. Close stops the consumer and everything the pipeline started.
type pipeline interface {
	Append(rec []byte) (uint64, error)
	WaitAcked(ctx context.Context) error
	Close() error
}

// stampSize is how many bytes at the start of a workload 5 payload carry
// its send time: nanoseconds since the run's clock base, little-endian.
const stampSize = 8

// ackPoll is how often WaitAcked looks at the consumer's durable ack.
const ackPoll = time.Millisecond

// deliveries stamps payloads with their send time and measures, for each
// event the consumer delivers, the time from the stamp to the delivery.
// The stamp is in the payload because the consumer can see an event before
// the Append that wrote it has returned. Times are taken on the monotonic
// clock, as durations since base. Safe for concurrent use.
type deliveries struct {
	base time.Time

	mu  sync.Mutex
	lat *latencies // the current phase's samples
	n   int        // events delivered in the current phase
	bad int        // payloads too short to carry a stamp
}

func newDeliveries() *deliveries { return &deliveries{base: time.Now(), lat: newLatencies(0)} }

// stamp writes the current time into buf's first stampSize bytes.
func (d *deliveries) stamp(buf []byte) {
	binary.LittleEndian.PutUint64(buf, uint64(time.Since(d.base)))
}

// deliver is the consumer's sink: it records the delivered event's
// append-to-sink latency.
func (d *deliveries) deliver(data []byte) {
	now := time.Since(d.base)
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(data) < stampSize {
		d.bad++
		return
	}
	d.n++
	d.lat.record(now - time.Duration(binary.LittleEndian.Uint64(data)))
}

// phase starts a new phase of capacity events and returns the samples and
// the count of the phase that ends.
func (d *deliveries) phase(capacity int) (*latencies, int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	lat, n, bad := d.lat, d.n, d.bad
	d.lat, d.n, d.bad = newLatencies(capacity), 0, 0
	if bad > 0 {
		return nil, 0, fmt.Errorf("bench: %d events delivered without a send stamp", bad)
	}
	return lat, n, nil
}

// production is what one run of the producers measured.
type production struct {
	appends *latencies    // every Append's own latency
	start   time.Time     // just before the producers' first Appends
	elapsed time.Duration // from start until the last Append returned
}

// produce runs writers producers appending n events each, every one waiting
// for its own commit, and stamps each payload just before its Append. With
// rate 0 they append as fast as they can; otherwise they are paced at rate
// events/s in total: each producer appends every writers/rate seconds, the
// producers evenly staggered, and one that falls behind appends at once
// until it is back on schedule.
func produce(ctx context.Context, pl pipeline, d *deliveries, writers, n int, rate float64, p *payloads) (production, error) {
	var (
		wg       sync.WaitGroup
		lats     = make([]*latencies, writers)
		errs     = make([]error, writers)
		begin    = make(chan struct{})
		start    time.Time
		interval time.Duration
	)
	if rate > 0 {
		interval = time.Duration(float64(writers) / rate * float64(time.Second))
	}
	for w := range writers {
		lats[w] = newLatencies(n)
		wg.Go(func() {
			buf := make([]byte, len(p.rec(0)))
			timer := time.NewTimer(time.Hour)
			defer timer.Stop()
			<-begin
			offset := interval * time.Duration(w) / time.Duration(writers)
			for i := range n {
				if interval > 0 {
					if wait := time.Until(start.Add(offset + interval*time.Duration(i))); wait > 0 {
						timer.Reset(wait)
						select {
						case <-timer.C:
						case <-ctx.Done():
						}
					}
				}
				if err := ctx.Err(); err != nil {
					errs[w] = err
					return
				}
				copy(buf, p.rec(w*n+i))
				t0 := time.Now()
				d.stamp(buf)
				if _, err := pl.Append(buf); err != nil {
					errs[w] = fmt.Errorf("producer %d append %d: %w", w, i, err)
					return
				}
				lats[w].record(time.Since(t0))
			}
		})
	}
	start = time.Now()
	close(begin)
	wg.Wait()
	prod := production{start: start, elapsed: time.Since(start), appends: newLatencies(writers * n)}
	for _, err := range errs {
		if err != nil {
			return prod, err
		}
	}
	prod.appends.merge(lats...)
	return prod, nil
}
