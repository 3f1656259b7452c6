package consumer_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/stretchr/testify/require"
)

// TestPoisonAcrossRestart: a poison event's attempts survive a restart. The
// new Reader neither starts the count over nor retries before the persisted
// due time, and dead-letters the event after exactly MaxAttempts failures
// in total, while the other keys flow.
func TestPoisonAcrossRestart(t *testing.T) {
	const poison = 3
	l := openLog(t)
	appendKeys(t, l, "a", "b", "p", "a", "b", "", "a", "b", "", "a")
	// Every delay is 300ms ±20 %: long enough to see an early retry.
	opts := &consumer.Options{Workers: 2, Retry: consumer.Retry{MaxAttempts: 4, Base: 300 * time.Millisecond, Max: 300 * time.Millisecond, Multiplier: 2, Jitter: 0.2}}

	var mu sync.Mutex
	var failures []time.Time // starts of the poison's failed attempts, both runs
	var lateness []time.Duration
	var due time.Time // the persisted due time, once run 1 is over

	// Run 1: two failures, then Close. A third attempt that starts before
	// Close (it is not due for 240ms) is held until Close interrupts it,
	// which must not count.
	rec1 := newRecorder()
	h1 := func(ctx context.Context, e eventlog.Event) error {
		if e.Seq != poison {
			return rec1.handle(ctx, e)
		}
		mu.Lock()
		if len(failures) == 2 {
			mu.Unlock()
			<-ctx.Done()
			return ctx.Err()
		}
		failures = append(failures, time.Now())
		mu.Unlock()
		return errTransient
	}
	r1 := openReader(t, l, "c", opts)
	errc := start(r1, h1)
	waitFor(t, "two failed attempts and the other keys done", func() bool {
		return r1.Stats().Retried == 2 && len(rec1.acked()) == 9
	})
	require.NoError(t, r1.Close())
	require.ErrorIs(t, runResult(t, errc), consumer.ErrClosed)
	require.Zero(t, r1.Stats().DeadLettered)
	require.Equal(t, uint64(poison-1), committed(t, l, "c"), "the floor waits below the poison")

	attempts, due, ok, err := consumer.PersistedRetry(l, stream, "c", poison)
	require.NoError(t, err)
	require.True(t, ok, "retry record of the poison")
	require.Equal(t, 2, attempts)
	require.Len(t, failures, 2)
	require.GreaterOrEqual(t, due.Sub(failures[1]), opts.Retry.Backoff(2, 0), "persisted due after the second failure")

	// Run 2: the count goes on from 2.
	rec2 := newRecorder()
	h2 := func(ctx context.Context, e eventlog.Event) error {
		if e.Seq != poison {
			return rec2.handle(ctx, e)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(failures) == 2 {
			lateness = append(lateness, time.Since(due))
		}
		failures = append(failures, time.Now())
		return errTransient
	}
	r2 := openReader(t, l, "c", opts)
	errc = start(r2, h2)
	waitFloor(t, r2, 10)
	shutdown(t, r2, errc)

	require.Len(t, failures, 4, "handler failures in total")
	require.Len(t, lateness, 1)
	require.GreaterOrEqual(t, lateness[0], time.Duration(0), "the first retry after the restart ran %v before its persisted due time", -lateness[0])
	st := r2.Stats()
	require.Equal(t, uint64(1), st.DeadLettered)
	require.Equal(t, uint64(1), st.Retried, "one retry in run 2, then the dead letter")
	require.Equal(t, uint64(10), committed(t, l, "c"))

	dls, err := consumer.DeadLetters(l, stream, "c", consumer.Range{})
	require.NoError(t, err)
	require.Len(t, dls, 1)
	require.Equal(t, uint64(poison), dls[0].Seq)
	require.Equal(t, 4, dls[0].Attempts)
	require.WithinDuration(t, failures[0], dls[0].FirstFailure, time.Second, "the first failure is remembered across the restart")
	require.True(t, dls[0].FirstFailure.Before(failures[1]), "first failure %v is from run 1 (second attempt at %v)", dls[0].FirstFailure, failures[1])
	require.False(t, dls[0].LastFailure.Before(failures[3]))

	// The other keys flowed in run 1, which recorded them done above its
	// floor when it closed: run 2 delivers none of them again.
	require.Equal(t, []uint64{1, 2, 4, 5, 6, 7, 8, 9, 10}, rec1.acked())
	require.Empty(t, rec2.acked())
}
