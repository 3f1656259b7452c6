package consumer_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/stretchr/testify/require"
)

// TestKeyOrderProperty delivers a few thousand events over many keys with
// eight workers, random handler delays and random transient failures, and
// checks the ordering promises: the handler never runs twice at once for
// one key; with HoldKey a key's events succeed in sequence order; every
// event is acked exactly once.
func TestKeyOrderProperty(t *testing.T) {
	const (
		events   = 2000
		keys     = 50
		failRate = 0.05
		maxDelay = 200 * time.Microsecond
	)
	seed := time.Now().UnixNano()
	fmt.Fprintln(os.Stderr, "seed:", seed)

	for _, tc := range []struct {
		name    string
		policy  consumer.KeyFailure
		workers int
		vary    bool // random delays and transient failures
	}{
		{name: "hold-key", policy: consumer.HoldKey, workers: 8, vary: true},
		{name: "skip-ahead", policy: consumer.SkipAhead, workers: 8, vary: true},
		{name: "one worker", policy: consumer.HoldKey, workers: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), 1))
			l := openLog(t)
			evs := make([]eventlog.Event, events)
			keyOf := make([]int, events+1) // by seq; -1 for keyless
			for i := range evs {
				k := rng.IntN(keys + 5) // about one in eleven keyless
				evs[i] = eventlog.Event{Type: "test.event"}
				keyOf[i+1] = -1
				if k < keys {
					evs[i].Key = fmt.Sprint("key-", k)
					keyOf[i+1] = k
				}
			}
			flowtest.MustAppend(t, l, stream, evs...)

			var (
				busy      [keys]atomic.Int32 // handlers running per key
				attempts  [events + 1]atomic.Int32
				acks      [events + 1]atomic.Int32
				overlaps  atomic.Int32
				mu        sync.Mutex
				successes [keys][]uint64 // per key, in completion order
				global    []uint64       // every success
			)
			h := func(_ context.Context, e eventlog.Event) error {
				k := keyOf[e.Seq]
				if k >= 0 {
					if busy[k].Add(1) != 1 {
						overlaps.Add(1)
					}
					defer busy[k].Add(-1)
				}
				// Delay and failure are drawn from (seed, seq, attempt), so a
				// seed replays the same failures.
				a := attempts[e.Seq].Add(1)
				r := rand.New(rand.NewPCG(uint64(seed), e.Seq<<16|uint64(a)))
				if d := time.Duration(r.Int64N(int64(maxDelay))); tc.vary && d > 0 {
					time.Sleep(d) // simulated work, not synchronisation
				}
				if tc.vary && r.Float64() < failRate {
					return errTransient
				}
				acks[e.Seq].Add(1)
				mu.Lock()
				if k >= 0 {
					successes[k] = append(successes[k], e.Seq)
				}
				global = append(global, e.Seq)
				mu.Unlock()
				return nil
			}
			opts := &consumer.Options{
				Workers:    tc.workers,
				KeyFailure: tc.policy,
				Retry:      consumer.Retry{MaxAttempts: 1000, Base: 100 * time.Microsecond, Max: time.Millisecond},
			}
			r := openReader(t, l, "c", opts)
			errc := start(r, h)
			waitFloor(t, r, events)
			shutdown(t, r, errc)

			require.Zero(t, overlaps.Load(), "seed %d: handlers of one key ran concurrently", seed)
			for s := 1; s <= events; s++ {
				require.Equal(t, int32(1), acks[s].Load(), "seed %d: acks of event %d", seed, s)
			}
			if tc.policy == consumer.HoldKey {
				for k := range keys {
					require.True(t, slices.IsSorted(successes[k]), "seed %d: key-%d succeeded out of order: %v", seed, k, successes[k])
				}
			}
			if tc.workers == 1 {
				require.Len(t, global, events)
				require.True(t, slices.IsSorted(global), "seed %d: one worker without failures runs in sequence order", seed)
			}
			st := r.Stats()
			require.Equal(t, uint64(events), st.Acked)
			require.Zero(t, st.DeadLettered)
			require.Equal(t, st.Acked+st.Retried, st.Delivered)
			require.Equal(t, uint64(events), committed(t, l, "c"))
			t.Logf("seed %d: %d deliveries, %d retries", seed, st.Delivered, st.Retried)
		})
	}
}

// TestOneWorkerSequenceOrder: "With one worker, events run in sequence
// order" (docs/GUARANTEES.md).
func TestOneWorkerSequenceOrder(t *testing.T) {
	l := openLog(t)
	appendKeys(t, l, "a", "a", "b", "c", "b", "", "a")
	rec := newRecorder()
	r := openReader(t, l, "c", nil)
	errc := start(r, rec.handle)
	waitFloor(t, r, 7)
	shutdown(t, r, errc)
	require.Equal(t, seqRange(1, 7), rec.ackOrder)
}
