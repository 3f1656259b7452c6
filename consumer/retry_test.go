package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/stretchr/testify/require"
)

// TestRetryBackoff: a failing event is tried again after its backoff, and
// acked once it succeeds.
func TestRetryBackoff(t *testing.T) {
	l := openLog(t)
	appendKeys(t, l, "a", "b")
	policy := consumer.Retry{MaxAttempts: 5, Base: 20 * time.Millisecond, Max: time.Second, Multiplier: 2, Jitter: 0.2}
	var mu sync.Mutex
	var starts []time.Time
	rec := newRecorder()
	rec.fail = func(e eventlog.Event, attempt int) error {
		if e.Seq != 1 {
			return nil
		}
		mu.Lock()
		starts = append(starts, time.Now())
		mu.Unlock()
		if attempt <= 3 {
			return errTransient
		}
		return nil
	}
	r := openReader(t, l, "c", &consumer.Options{Retry: policy})
	errc := start(r, rec.handle)
	waitFloor(t, r, 2)
	shutdown(t, r, errc)

	require.Len(t, starts, 4)
	for i := 1; i < len(starts); i++ {
		least := policy.Backoff(i, 0) // the shortest jittered delay after i failures
		require.GreaterOrEqual(t, starts[i].Sub(starts[i-1]), least, "delay before attempt %d", i+1)
	}
	require.Equal(t, 64*time.Millisecond, policy.Backoff(3, 0), "80ms less 20 %")
	st := r.Stats()
	require.Equal(t, uint64(3), st.Retried)
	require.Equal(t, uint64(2), st.Acked)
	require.Equal(t, uint64(0), st.DeadLettered)
	dls, err := consumer.DeadLetters(l, stream, "c", consumer.Range{})
	require.NoError(t, err)
	require.Empty(t, dls)
}

// TestFailureKinds: each way a handler can fail counts as a failed attempt
// and ends in the dead letters, while the Reader goes on with other events.
func TestFailureKinds(t *testing.T) {
	for _, tc := range []struct {
		name         string
		maxAttempts  int
		timeout      time.Duration
		handler      func(ctx context.Context) error // for the failing event
		wantAttempts int
		wantErr      string // in DeadLetter.LastError
	}{
		{
			name:         "error until attempts are spent",
			maxAttempts:  3,
			handler:      func(context.Context) error { return errTransient },
			wantAttempts: 3,
			wantErr:      errTransient.Error(),
		},
		{
			name:         "permanent error",
			maxAttempts:  5,
			handler:      func(context.Context) error { return fmt.Errorf("bad input: %w", consumer.Permanent(errTransient)) },
			wantAttempts: 1,
			wantErr:      "bad input: " + errTransient.Error(),
		},
		{
			name:         "panic",
			maxAttempts:  2,
			handler:      func(context.Context) error { panic("boom") },
			wantAttempts: 2,
			wantErr:      "boom",
		},
		{
			name:        "timeout",
			maxAttempts: 2,
			timeout:     20 * time.Millisecond,
			handler: func(ctx context.Context) error {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(waitTimeout):
					return errors.New("handler context not cancelled at the timeout")
				}
			},
			wantAttempts: 2,
			wantErr:      context.DeadlineExceeded.Error(),
		},
		{
			name:        "timeout ignored by the handler",
			maxAttempts: 1,
			timeout:     time.Millisecond,
			handler: func(ctx context.Context) error {
				<-ctx.Done() // returns nil, too late: still a failure
				return nil
			},
			wantAttempts: 1,
			wantErr:      "timeout",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := openLog(t)
			appendKeys(t, l, "a", "b", "a", "")
			var mu sync.Mutex
			attempts := 0
			rec := newRecorder()
			h := func(ctx context.Context, e eventlog.Event) error {
				if e.Seq == 1 {
					mu.Lock()
					attempts++
					mu.Unlock()
					return tc.handler(ctx)
				}
				return rec.handle(ctx, e)
			}
			opts := &consumer.Options{Workers: 2, HandlerTimeout: tc.timeout, Retry: consumer.Retry{MaxAttempts: tc.maxAttempts, Base: time.Millisecond, Max: time.Millisecond}}
			r := openReader(t, l, "c", opts)
			errc := start(r, h)
			waitFloor(t, r, 4)
			shutdown(t, r, errc)

			require.Equal(t, tc.wantAttempts, attempts, "handler calls for the failing event")
			require.Equal(t, []uint64{2, 3, 4}, rec.acked(), "the other events, its key's included, go on")
			st := r.Stats()
			require.Equal(t, uint64(tc.wantAttempts-1), st.Retried)
			require.Equal(t, uint64(1), st.DeadLettered)
			require.Equal(t, uint64(3), st.Acked)
			require.Equal(t, uint64(4), committed(t, l, "c"), "a dead letter is done: the floor passes it")

			dls, err := consumer.DeadLetters(l, stream, "c", consumer.Range{})
			require.NoError(t, err)
			require.Len(t, dls, 1)
			dl := dls[0]
			ev, err := l.Get(stream, 1)
			require.NoError(t, err)
			require.Equal(t, uint64(1), dl.Seq)
			require.Equal(t, ev.ID, dl.ID)
			require.Equal(t, ev.Type, dl.Type)
			require.Equal(t, "a", dl.Key)
			require.Equal(t, tc.wantAttempts, dl.Attempts)
			require.False(t, dl.FirstFailure.IsZero())
			require.False(t, dl.LastFailure.Before(dl.FirstFailure), "first %v, last %v", dl.FirstFailure, dl.LastFailure)
			require.Contains(t, dl.LastError, tc.wantErr)
			require.False(t, dl.Redeliver)

			// Done means done: a new Reader delivers none of it again.
			rec2 := newRecorder()
			r2 := openReader(t, l, "c", opts)
			errc = start(r2, rec2.handle)
			appendN(t, l, 1)
			waitFloor(t, r2, 5)
			shutdown(t, r2, errc)
			require.Equal(t, []uint64{5}, rec2.acked())
		})
	}
}

// TestOtherKeysFlow: an event waiting for its retry holds back only the
// later events of its own key (HoldKey), or nothing at all (SkipAhead).
func TestOtherKeysFlow(t *testing.T) {
	for _, tc := range []struct {
		policy consumer.KeyFailure
	}{
		{policy: consumer.HoldKey},
		{policy: consumer.SkipAhead},
	} {
		t.Run(tc.policy.String(), func(t *testing.T) {
			l := openLog(t)
			appendKeys(t, l, "a", "a", "b", "c", "", "a")
			healed := make(chan struct{})
			var mu sync.Mutex
			var order []uint64 // successes of key "a"
			failures := 0
			rec := newRecorder()
			h := func(ctx context.Context, e eventlog.Event) error {
				if e.Seq == 1 {
					select {
					case <-healed:
					default:
						mu.Lock()
						failures++
						mu.Unlock()
						return errTransient
					}
				}
				if e.Key == "a" {
					mu.Lock()
					order = append(order, e.Seq)
					mu.Unlock()
				}
				return rec.handle(ctx, e)
			}
			retry := consumer.Retry{MaxAttempts: 1000, Base: 2 * time.Millisecond, Max: 2 * time.Millisecond}
			r := openReader(t, l, "c", &consumer.Options{Workers: 4, KeyFailure: tc.policy, Retry: retry})
			errc := start(r, h)
			failedTwice := func() bool { mu.Lock(); defer mu.Unlock(); return failures >= 2 }
			waitFor(t, "the other keys to complete while event 1 retries", func() bool {
				return rec.ackCount(3) == 1 && rec.ackCount(4) == 1 && rec.ackCount(5) == 1 && failedTwice()
			})
			switch tc.policy {
			case consumer.HoldKey:
				require.Zero(t, rec.callCount(2), "event 2 waits for event 1 of its key")
				require.Zero(t, rec.callCount(6), "event 6 waits for event 1 of its key")
			case consumer.SkipAhead:
				waitFor(t, "the later events of the key to go ahead", func() bool {
					return rec.ackCount(2) == 1 && rec.ackCount(6) == 1
				})
				require.Zero(t, rec.ackCount(1))
			}
			require.Zero(t, committed(t, l, "c"), "the floor waits for event 1")

			close(healed)
			waitFloor(t, r, 6)
			shutdown(t, r, errc)
			require.Equal(t, seqRange(1, 6), rec.acked())
			for s := uint64(1); s <= 6; s++ {
				require.Equal(t, 1, rec.ackCount(s), "acks of %d", s)
			}
			if tc.policy == consumer.HoldKey {
				require.Equal(t, []uint64{1, 2, 6}, order)
			} else {
				require.Equal(t, []uint64{2, 6, 1}, order)
			}
		})
	}
}

// TestHoldKeyAcrossRestart: a retry carried over from an earlier run keeps
// holding its key, so the key's later events still wait for it.
func TestHoldKeyAcrossRestart(t *testing.T) {
	l := openLog(t)
	appendKeys(t, l, "a", "a", "b")
	retry := consumer.Retry{MaxAttempts: 5, Base: 300 * time.Millisecond, Max: 300 * time.Millisecond}

	failed := make(chan struct{}, 1)
	r1 := openReader(t, l, "c", &consumer.Options{Retry: retry})
	errc := start(r1, func(_ context.Context, e eventlog.Event) error {
		if e.Seq == 1 {
			select {
			case failed <- struct{}{}:
			default:
			}
			return errTransient
		}
		return nil
	})
	waitClosed(t, "event 1 to fail", failed)
	waitFor(t, "the failure to be recorded", func() bool { return r1.Stats().Retried == 1 })
	require.NoError(t, r1.Close())
	require.ErrorIs(t, runResult(t, errc), consumer.ErrClosed)

	var mu sync.Mutex
	var order []uint64
	rec := newRecorder()
	r2 := openReader(t, l, "c", &consumer.Options{Workers: 4, Retry: retry})
	errc = start(r2, func(ctx context.Context, e eventlog.Event) error {
		mu.Lock()
		order = append(order, e.Seq)
		mu.Unlock()
		return rec.handle(ctx, e)
	})
	waitFloor(t, r2, 3)
	shutdown(t, r2, errc)
	mu.Lock()
	defer mu.Unlock()
	require.Less(t, slices.Index(order, 1), slices.Index(order, 2), "event 2 of key a waited for the retry of event 1: %v", order)
}

// TestTwoRetriesOfOneKeyAcrossRestart: an earlier run may leave retry
// records for two events of one key (say it ran with SkipAhead); a HoldKey
// run must still deliver both, in order, not wait forever.
func TestTwoRetriesOfOneKeyAcrossRestart(t *testing.T) {
	l := openLog(t)
	appendKeys(t, l, "a", "a", "b")
	retry := consumer.Retry{MaxAttempts: 5, Base: time.Millisecond, Max: time.Millisecond}

	r1 := openReader(t, l, "c", &consumer.Options{KeyFailure: consumer.SkipAhead, Retry: consumer.Retry{MaxAttempts: 5, Base: 300 * time.Millisecond, Max: 300 * time.Millisecond}})
	errc := start(r1, func(_ context.Context, e eventlog.Event) error {
		if e.Key == "a" {
			return errTransient
		}
		return nil
	})
	waitFor(t, "both events of key a to fail", func() bool { return r1.Stats().Retried == 2 })
	require.NoError(t, r1.Close())
	require.ErrorIs(t, runResult(t, errc), consumer.ErrClosed)

	var mu sync.Mutex
	var order []uint64
	r2 := openReader(t, l, "c", &consumer.Options{Retry: retry})
	errc = start(r2, func(_ context.Context, e eventlog.Event) error {
		mu.Lock()
		order = append(order, e.Seq)
		mu.Unlock()
		return nil
	})
	waitFloor(t, r2, 3)
	shutdown(t, r2, errc)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []uint64{1, 2}, order, "both retries of key a run, in order")
}
