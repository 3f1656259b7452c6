package main

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// driveSerial appends n records one at a time, each waiting for its commit:
// workload 1. The blocking unit is one Append.
func driveSerial(ctx context.Context, a appender, n int, p *payloads) (*latencies, error) {
	lat := newLatencies(n)
	for i := range n {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rec := p.rec(i)
		t0 := time.Now()
		if err := a.Append(rec); err != nil {
			return nil, fmt.Errorf("append %d: %w", i, err)
		}
		lat.record(time.Since(t0))
	}
	return lat, nil
}

// driveConcurrent returns the driver of workload 2: writers goroutines each
// append n records one at a time, each waiting for its own commit. The
// blocking unit is one Append; every writer's latencies are kept.
func driveConcurrent(writers int) func(context.Context, appender, int, *payloads) (*latencies, error) {
	return func(ctx context.Context, a appender, n int, p *payloads) (*latencies, error) {
		var (
			wg    sync.WaitGroup
			lats  = make([]*latencies, writers)
			errs  = make([]error, writers)
			start = make(chan struct{})
		)
		for w := range writers {
			lats[w] = newLatencies(n)
			wg.Go(func() {
				<-start
				for i := range n {
					if err := ctx.Err(); err != nil {
						errs[w] = err
						return
					}
					rec := p.rec(w*n + i)
					t0 := time.Now()
					if err := a.Append(rec); err != nil {
						errs[w] = fmt.Errorf("writer %d append %d: %w", w, i, err)
						return
					}
					lats[w].record(time.Since(t0))
				}
			})
		}
		close(start)
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return nil, err
			}
		}
		all := newLatencies(writers * n)
		all.merge(lats...)
		return all, nil
	}
}

// driveBulk returns the driver of workload 3: n batches of size records,
// one commit per batch. The blocking unit is one AppendBatch.
func driveBulk(size int) func(context.Context, batchAppender, int, *payloads) (*latencies, error) {
	return func(ctx context.Context, b batchAppender, n int, p *payloads) (*latencies, error) {
		lat := newLatencies(n)
		recs := make([][]byte, size)
		for i := range n {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			for j := range recs {
				recs[j] = p.rec(i*size + j)
			}
			t0 := time.Now()
			if err := b.AppendBatch(recs); err != nil {
				return nil, fmt.Errorf("batch %d: %w", i, err)
			}
			lat.record(time.Since(t0))
		}
		return lat, nil
	}
}
