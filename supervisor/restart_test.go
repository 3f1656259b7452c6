package supervisor_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/flowrt/flowrt/supervisor"
	"github.com/stretchr/testify/require"
)

func TestRestartPolicyDelay(t *testing.T) {
	def := supervisor.RestartPolicy{Base: 100 * time.Millisecond, Max: 30 * time.Second, Multiplier: 2}
	cases := []struct {
		name   string
		policy supervisor.RestartPolicy
		n      int
		want   time.Duration
	}{
		{"first restart is Base", def, 1, 100 * time.Millisecond},
		{"second doubles", def, 2, 200 * time.Millisecond},
		{"third doubles again", def, 3, 400 * time.Millisecond},
		{"ninth below Max", def, 9, 25600 * time.Millisecond},
		{"tenth capped at Max", def, 10, 30 * time.Second},
		{"far beyond stays at Max", def, 1 << 20, 30 * time.Second},
		{"multiplier 1 is constant", supervisor.RestartPolicy{Base: time.Second, Max: time.Minute, Multiplier: 1}, 50, time.Second},
		{"fractional multiplier", supervisor.RestartPolicy{Base: 100 * time.Millisecond, Max: time.Minute, Multiplier: 1.5}, 3, 225 * time.Millisecond},
		{"Base equal to Max", supervisor.RestartPolicy{Base: time.Second, Max: time.Second, Multiplier: 2}, 1, time.Second},
		{"cap falls between steps", supervisor.RestartPolicy{Base: time.Second, Max: 5 * time.Second, Multiplier: 2}, 4, 5 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, tc.policy.Delay(tc.n))
		})
	}
}

// TestRestartBackoff fails a child every time it runs and checks, with a
// fake clock, each delay the supervisor waits before restarting it: Base,
// doubling, capped at Max, until MaxRestarts restarts within Window have
// been spent; the next failure gives up on the child. The runtime keeps
// running, ready but unhealthy, and a healthy sibling is never disturbed.
func TestRestartBackoff(t *testing.T) {
	l := openLog(t)
	clk := newFakeClock()
	bad := &failing{}
	policy := &supervisor.RestartPolicy{Base: time.Second, Max: 5 * time.Second, Multiplier: 2, MaxRestarts: 5, Window: time.Hour}
	goodStarts := make(chan context.Context, 10)
	s := newSupervisor(t, l, &supervisor.Options{Clock: clk},
		child("good", untilCancelled(goodStarts)),
		namedChild{name: "bad", c: bad, policy: policy})
	require.NoError(t, s.Start(context.Background()))
	goodCtx := recv(t, goodStarts, "the good child to start")

	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	for i, d := range want {
		got := clk.nextAfter(t)
		require.Equal(t, d, got, "delay before restart %d", i+1)
		st := s.Status()
		bs := childStatus(st, "bad")
		require.Equal(t, supervisor.ChildBackingOff, bs.State, "restart %d", i+1)
		require.Equal(t, i+1, bs.Restarts)
		require.Equal(t, errBoom.Error(), bs.LastError)
		require.Equal(t, int32(i+1), bad.runs.Load(), "not restarted before its delay")
		// A nanosecond short of the delay, the restart still waits.
		clk.Advance(d - time.Nanosecond)
		require.Equal(t, 1, clk.Pending(), "restart %d fired early", i+1)
		require.Equal(t, supervisor.ChildBackingOff, childState(s.Status(), "bad"))
		clk.Advance(time.Nanosecond)

		require.NoError(t, goodCtx.Err(), "a failing sibling cancelled the good child")
		require.Equal(t, supervisor.ChildRunning, childState(st, "good"))
	}
	st := waitStatus(t, s, "the bad child to be given up", childIs("bad", supervisor.ChildFailed))
	require.Equal(t, int32(len(want)+1), bad.runs.Load(), "ran once, then once per restart")
	require.Equal(t, supervisor.Running, st.State, "the runtime keeps running")
	require.True(t, st.Ready())
	require.False(t, st.Healthy())
	require.Equal(t, supervisor.ChildRunning, childState(st, "good"))
	require.NoError(t, goodCtx.Err())
	require.Equal(t, 0, clk.Pending(), "a failed child waits for nothing")
	select {
	case d := <-clk.asked:
		t.Fatalf("a failed child asked for a delay of %v", d)
	default:
	}

	require.NoError(t, s.Stop(stopCtx(t)))
	require.ErrorIs(t, goodCtx.Err(), context.Canceled, "stopped with the runtime")
	require.Equal(t, supervisor.Stopped, s.Status().State)
	require.False(t, s.Status().Healthy(), "a given-up child keeps the run unhealthy")

	// Every restart and the give-up are recorded.
	r := mustRuns(t, l)[0]
	wantSteps := []step{{"idle", "running"}}
	for range want {
		wantSteps = append(wantSteps, step{"running", "backing_off"}, step{"backing_off", "running"})
	}
	wantSteps = append(wantSteps, step{"running", "failed"})
	require.Equal(t, wantSteps, childSteps(r, "bad"))
	trs := transitions(r, "bad")
	for i, d := range want {
		backoff, rerun := trs[1+2*i], trs[2+2*i]
		require.Equal(t, map[string]string{"restart": strconv.Itoa(i + 1), "delay": d.String()}, backoff.Details)
		require.Equal(t, errBoom.Error(), backoff.Reason)
		require.Equal(t, map[string]string{"attempt": strconv.Itoa(i + 2)}, rerun.Details)
	}
	require.Equal(t, "gave up after 5 restarts within 1h0m0s: boom", trs[len(trs)-1].Reason)
	require.Equal(t, []step{{"idle", "running"}, {"running", "stopped"}}, childSteps(r, "good"), "one start, no restart")
}

// TestRestartWindow spaces a child's failures further apart than Window:
// old restarts stop counting, so it is never given up and every delay is
// Base again.
func TestRestartWindow(t *testing.T) {
	l := openLog(t)
	clk := newFakeClock()
	bad := &failing{}
	policy := &supervisor.RestartPolicy{Base: time.Second, Max: time.Minute, MaxRestarts: 2, Window: time.Minute}
	s := newSupervisor(t, l, &supervisor.Options{Clock: clk}, namedChild{name: "bad", c: bad, policy: policy})
	require.NoError(t, s.Start(context.Background()))
	const rounds = 6 // three times MaxRestarts
	for i := range rounds {
		require.Equal(t, time.Second, clk.nextAfter(t), "round %d: the count was reset", i)
		require.Equal(t, i+1, childStatus(s.Status(), "bad").Restarts)
		clk.Advance(time.Minute + time.Second) // the next failure is beyond Window
	}
	require.Equal(t, time.Second, clk.nextAfter(t))
	require.Equal(t, supervisor.ChildBackingOff, childState(s.Status(), "bad"))
	require.True(t, s.Status().Healthy())

	// Within Window, the same policy gives up after MaxRestarts restarts.
	clk.Advance(time.Second)
	require.Equal(t, 2*time.Second, clk.nextAfter(t), "two restarts within Window")
	clk.Advance(2 * time.Second)
	waitStatus(t, s, "the bad child to be given up", childIs("bad", supervisor.ChildFailed))
	require.Equal(t, int32(rounds+3), bad.runs.Load())
}

// TestRestartPanic restarts a child that panics, as it would one that
// failed.
func TestRestartPanic(t *testing.T) {
	l := openLog(t)
	clk := newFakeClock()
	s := newSupervisor(t, l, &supervisor.Options{Clock: clk, Restart: supervisor.RestartPolicy{Base: time.Second}},
		child("panics", childFunc(func(context.Context) error { panic("kaboom") })))
	require.NoError(t, s.Start(context.Background()))
	require.Equal(t, time.Second, clk.nextAfter(t))
	cs := childStatus(s.Status(), "panics")
	require.Equal(t, supervisor.ChildBackingOff, cs.State)
	require.Contains(t, cs.LastError, `child "panics" panicked: kaboom`)
	require.Equal(t, supervisor.Running, s.Status().State)
}

// TestStopWhileBackingOff stops a runtime whose child waits out its
// backoff: the child stops at once, without the delay passing.
func TestStopWhileBackingOff(t *testing.T) {
	l := openLog(t)
	clk := newFakeClock()
	bad := &failing{}
	s := newSupervisor(t, l, &supervisor.Options{Clock: clk, Restart: supervisor.RestartPolicy{Base: time.Hour, Max: time.Hour}},
		namedChild{name: "bad", c: bad})
	require.NoError(t, s.Start(context.Background()))
	require.Equal(t, time.Hour, clk.nextAfter(t))
	require.NoError(t, s.Stop(stopCtx(t)))
	st := s.Status()
	require.Equal(t, supervisor.Stopped, st.State)
	require.Equal(t, supervisor.ChildStopped, childState(st, "bad"))
	require.Equal(t, int32(1), bad.runs.Load(), "not restarted while stopping")
	require.Equal(t, []step{{"idle", "running"}, {"running", "backing_off"}, {"backing_off", "stopped"}}, childSteps(mustRuns(t, l)[0], "bad"))
}

// TestChildFinishes lets a child return nil while the runtime runs: it
// finished its work, and is not restarted.
func TestChildFinishes(t *testing.T) {
	l := openLog(t)
	clk := newFakeClock()
	s := newSupervisor(t, l, &supervisor.Options{Clock: clk},
		child("once", childFunc(func(context.Context) error { return nil })),
		child("stays", untilCancelled(nil)))
	require.NoError(t, s.Start(context.Background()))
	st := waitStatus(t, s, "the finite child to stop", childIs("once", supervisor.ChildStopped))
	require.Equal(t, supervisor.Running, st.State)
	require.True(t, st.Healthy())
	require.Equal(t, 0, clk.Pending())
	require.NoError(t, s.Stop(stopCtx(t)))
	trs := transitions(mustRuns(t, l)[0], "once")
	require.Equal(t, "finished", trs[len(trs)-1].Reason)
}
