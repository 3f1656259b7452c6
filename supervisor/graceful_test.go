package supervisor_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/flowrt/flowrt/supervisor"
	"github.com/stretchr/testify/require"
)

// tally records what a handler did with each event.
type tally struct {
	mu          sync.Mutex
	done        map[uint64]int // handler returned nil
	interrupted map[uint64]bool
}

func newTally() *tally { return &tally{done: map[uint64]int{}, interrupted: map[uint64]bool{}} }

// slowHandler works work on each event, reporting its start on started.
// An event whose context is cancelled first is interrupted, not done.
func (ty *tally) slowHandler(work time.Duration, started chan<- uint64) consumer.Handler {
	return func(ctx context.Context, e eventlog.Event) error {
		started <- e.Seq
		t := time.NewTimer(work)
		defer t.Stop()
		select {
		case <-t.C:
			ty.mu.Lock()
			ty.done[e.Seq]++
			ty.mu.Unlock()
			return nil
		case <-ctx.Done():
			ty.mu.Lock()
			ty.interrupted[e.Seq] = true
			ty.mu.Unlock()
			return ctx.Err()
		}
	}
}

func (ty *tally) fastHandler() consumer.Handler {
	return func(_ context.Context, e eventlog.Event) error {
		ty.mu.Lock()
		ty.done[e.Seq]++
		ty.mu.Unlock()
		return nil
	}
}

// TestGracefulStopSlowHandler stops a runtime whose consumer's handler
// takes 100ms per event, with a timeout that allows the in-flight event to
// finish and with one that does not. Either way, after reopening the
// journal, every event is at or below the committed offset and was
// processed, or above it and is delivered by the next run: none is lost.
func TestGracefulStopSlowHandler(t *testing.T) {
	const (
		events = 6
		work   = 100 * time.Millisecond
	)
	cases := []struct {
		name    string
		timeout time.Duration
		// timedOut: the stop escalated, interrupting the in-flight event.
		timedOut bool
	}{
		{"timeout allows draining", waitTimeout, false},
		{"timeout too short", time.Millisecond, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := openLog(t)
			flowtest.MustAppend(t, l, "orders", flowtest.Events(events, "order.created")...)
			first := newTally()
			started := make(chan uint64, events)
			rc := &flowtest.ReaderChild{Log: l, Stream: "orders", Name: "billing", Options: &consumer.Options{Workers: 1}, Handler: first.slowHandler(work, started)}
			s := newSupervisor(t, l, nil, child("billing", rc))
			require.NoError(t, s.Start(context.Background()))
			require.Equal(t, uint64(1), recv(t, started, "the first event"))
			inFlight := recv(t, started, "the second event")
			require.Equal(t, uint64(2), inFlight)

			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			err := s.Stop(ctx)
			st := s.Status()
			require.Equal(t, supervisor.Stopped, st.State)
			require.Equal(t, tc.timedOut, st.TimedOut)
			rt := transitions(mustRuns(t, l)[0], "")
			last := rt[len(rt)-1]
			require.Equal(t, "stopped", last.To)
			first.mu.Lock()
			done, interrupted := first.done, first.interrupted
			first.mu.Unlock()
			if tc.timedOut {
				require.ErrorIs(t, err, context.DeadlineExceeded)
				require.Contains(t, last.Reason, "timed out")
				// One worker: one handler was in flight when the deadline
				// passed (the second event, unless recording draining took
				// longer than its work).
				require.Len(t, interrupted, 1, "escalation cancelled the in-flight handler")
			} else {
				require.NoError(t, err)
				require.Empty(t, last.Reason)
				require.Empty(t, interrupted, "no handler was cancelled")
				require.Equal(t, 1, done[inFlight], "the in-flight event finished")
			}

			l = flowtest.MustReopen(t, l, nil)
			offset, ok, err := l.Offset("orders", "billing")
			require.NoError(t, err)
			require.True(t, ok)
			for seq := range done {
				require.LessOrEqual(t, seq, offset, "processed but not covered by the committed offset")
			}
			for seq := range interrupted {
				require.Greater(t, seq, offset, "an interrupted event is not acknowledged")
			}

			// The next run delivers the rest, and nothing it need not.
			second := newTally()
			rc2 := &flowtest.ReaderChild{Log: l, Stream: "orders", Name: "billing", Options: &consumer.Options{Workers: 1, CommitInterval: 5 * time.Millisecond}, Handler: second.fastHandler()}
			s2 := newSupervisor(t, l, &supervisor.Options{IdlePoll: 5 * time.Millisecond}, child("billing", rc2))
			require.NoError(t, s2.RunUntilIdle(context.Background(), waitTimeout))
			require.Nil(t, mustRuns(t, l)[1].Recovery, "the first run stopped: no recovery")
			final, _, err := l.Offset("orders", "billing")
			require.NoError(t, err)
			require.Equal(t, uint64(events), final)
			for seq := uint64(1); seq <= events; seq++ {
				if seq <= offset {
					require.Equal(t, 1, done[seq], "seq %d at or below offset %d: processed by the first run", seq, offset)
					require.Zero(t, second.done[seq], "seq %d at or below offset %d: delivered again", seq, offset)
				} else {
					require.Zero(t, done[seq], "seq %d above offset %d was processed by the first run", seq, offset)
					require.Equal(t, 1, second.done[seq], "seq %d above offset %d: delivered by the next run", seq, offset)
				}
			}
		})
	}
}
