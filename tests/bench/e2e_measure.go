package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// phaseRun is what one phase of workload 5 measured.
type phaseRun struct {
	production
	events     int
	e2e        time.Duration // from the first Append until the ack covers the last event
	sink       *latencies    // every event's append-to-sink latency
	writeBytes float64       // bytes the process wrote from the start until the ack (/proc/self/io)
}

// measure runs one round of the pipeline v in a fresh directory: a
// warm-up, the sustained phase, then the paced phase at half the rate the
// sustained phase reached. It returns the pipeline's three rows
// (pipelineRows). The warm-up is not counted; e.settle runs before each
// timed phase.
func (c *endToEnd) measure(ctx context.Context, e *env, v pipelineVariant) (rs []result, err error) {
	dir, err := os.MkdirTemp(e.root, "w5-"+v.key+"-")
	if err != nil {
		return nil, fmt.Errorf("bench: variant directory: %w", err)
	}
	defer os.RemoveAll(dir)
	d := newDeliveries()
	pl, err := v.open(dir, d.deliver)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", v.key, err)
	}
	open := true
	defer func() {
		if open {
			pl.Close()
		}
	}()
	if _, err := c.phase(ctx, pl, d, c.ref.warm, 0, e.payloads, c.writers*c.n); err != nil {
		return nil, fmt.Errorf("%s warm-up: %w", v.key, err)
	}
	e.settle()
	sus, err := c.phase(ctx, pl, d, c.n, 0, e.payloads, c.paced)
	if err != nil {
		return nil, fmt.Errorf("%s sustained: %w", v.key, err)
	}
	rate := float64(sus.events) / sus.e2e.Seconds()
	perWriter := max(min(c.paced, int(rate/2*pacedMaxSeconds))/c.writers, 1)
	e.settle()
	pac, err := c.phase(ctx, pl, d, perWriter, rate/2, e.payloads, 0)
	if err != nil {
		return nil, fmt.Errorf("%s paced: %w", v.key, err)
	}
	open = false
	if err := pl.Close(); err != nil {
		return nil, fmt.Errorf("%s: close: %w", v.key, err)
	}
	size, err := dirSize(dir)
	if err != nil {
		return nil, err
	}
	fileBytes := float64(size) / float64(c.writers*(c.ref.warm+c.n+perWriter))

	rs = pipelineRows(v)
	rs[0].fill(sus.e2e, sus.events, sus.sink, sus.writeBytes, fileBytes)
	rs[1].fill(sus.elapsed, sus.events, sus.appends, sus.writeBytes, fileBytes)
	rs[2].fill(pac.elapsed, pac.events, pac.sink, pac.writeBytes, fileBytes)
	rs[2].PacedRate, rs[2].Events = rate/2, pac.events
	return rs, nil
}

// fill sets r's figures: events in elapsed, the percentiles of lat, and
// the bytes written during the phase and stored per event.
func (r *result) fill(elapsed time.Duration, events int, lat *latencies, writeBytes, fileBytes float64) {
	r.Seconds = elapsed.Seconds()
	r.RecordsPerSec = float64(events) / elapsed.Seconds()
	r.MicrosPerOp = elapsed.Seconds() * 1e6 / float64(events)
	r.P50Micros = micros(lat.percentile(50))
	r.P99Micros = micros(lat.percentile(99))
	r.WriteBytesPerRecord = writeBytes / float64(events)
	r.FileBytesPerRecord = fileBytes
}

// phase runs the producers for n events each at rate (0: as fast as they
// can), waits until the consumer's durable ack covers them all, checks that
// each was delivered once, and starts the deliveries' next phase with room
// for next samples.
func (c *endToEnd) phase(ctx context.Context, pl pipeline, d *deliveries, n int, rate float64, p *payloads, next int) (phaseRun, error) {
	ph := phaseRun{events: c.writers * n}
	before, err := readIO()
	if err != nil {
		return ph, err
	}
	if ph.production, err = produce(ctx, pl, d, c.writers, n, rate, p); err != nil {
		return ph, err
	}
	if err := pl.WaitAcked(ctx); err != nil {
		return ph, err
	}
	ph.e2e = time.Since(ph.start)
	after, err := readIO()
	if err != nil {
		return ph, err
	}
	ph.writeBytes = float64(after.writeBytes - before.writeBytes)
	var got int
	if ph.sink, got, err = d.phase(next); err != nil {
		return ph, err
	}
	if got != ph.events {
		return ph, fmt.Errorf("bench: the consumer delivered %d events, want %d", got, ph.events)
	}
	return ph, nil
}

// waitAcked polls acked every ackPoll until it reports that the durable
// ack covers last. It fails when ctx ends, when acked fails, or when the
// ack has not moved for stallTimeout.
func waitAcked(ctx context.Context, last uint64, acked func() (uint64, error)) error {
	tick := time.NewTicker(ackPoll)
	defer tick.Stop()
	var seen uint64
	progress := time.Now()
	for {
		got, err := acked()
		if err != nil {
			return err
		}
		if got >= last {
			return nil
		}
		if got != seen {
			seen, progress = got, time.Now()
		} else if time.Since(progress) > stallTimeout {
			return fmt.Errorf("bench: consumer stuck: durable ack at %d, want %d", got, last)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return errors.Join(ctx.Err(), fmt.Errorf("bench: durable ack at %d, want %d", got, last))
		}
	}
}
