package supervisor_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/supervisor"
	"github.com/stretchr/testify/require"
)

func TestStop(t *testing.T) {
	t.Run("created", func(t *testing.T) {
		l := openLog(t)
		ran := make(chan context.Context, 1)
		s := newSupervisor(t, l, nil, child("worker", untilCancelled(ran)))
		require.NoError(t, s.Stop(stopCtx(t)))
		waitDone(t, s)
		st := s.Status()
		require.True(t, st.State.Terminal(), "state %s", st.State)
		require.False(t, st.Ready())
		require.ErrorIs(t, s.Start(context.Background()), supervisor.ErrStarted, "a stopped supervisor does not start")
		require.NoError(t, s.Stop(stopCtx(t)), "idempotent")
		require.Empty(t, ran, "no child ran")
		require.Equal(t, supervisor.ChildIdle, childState(st, "worker"))
		runs := mustRuns(t, l)
		require.Len(t, runs, 1)
		require.True(t, runs[0].Ended(), "the next start must not take it for a crash")
	})

	t.Run("idempotent", func(t *testing.T) {
		l := openLog(t)
		s := newSupervisor(t, l, nil, child("worker", untilCancelled(nil)))
		require.NoError(t, s.Start(context.Background()))
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Go(func() { errs[i] = s.Stop(stopCtx(t)) })
		}
		wg.Wait()
		for i, err := range errs {
			require.NoError(t, err, "concurrent Stop %d", i)
		}
		require.NoError(t, s.Stop(stopCtx(t)), "Stop of a stopped runtime")
		require.NoError(t, s.Wait())
		require.Equal(t, supervisor.Stopped, s.Status().State)
		require.Equal(t, []step{{"created", "starting"}, {"starting", "running"}, {"running", "draining"}, {"draining", "stopped"}},
			runtimeSteps(mustRuns(t, l)[0]), "one stop recorded once")
	})

	t.Run("drainer finishes in time", func(t *testing.T) {
		l := openLog(t)
		d := newDrainer(false)
		s := newSupervisor(t, l, nil, child("drains", d))
		require.NoError(t, s.Start(context.Background()))
		recv(t, d.started, "the drainer to start")
		require.NoError(t, s.Stop(stopCtx(t)))
		require.NoError(t, recv(t, d.runErr, "the drainer to return"), "it drained, its context intact")
		st := s.Status()
		require.Equal(t, supervisor.Stopped, st.State)
		require.False(t, st.TimedOut)
		rt := transitions(mustRuns(t, l)[0], "")
		require.Equal(t, "stopped", rt[len(rt)-1].To)
		require.Empty(t, rt[len(rt)-1].Reason)
	})

	t.Run("escalates when the timeout expires", func(t *testing.T) {
		l := openLog(t)
		stubborn := newDrainer(true)
		s := newSupervisor(t, l, nil, child("stubborn", stubborn), child("polite", newDrainer(false)))
		require.NoError(t, s.Start(context.Background()))
		recv(t, stubborn.started, "the stubborn child to start")
		ctx, cancel := context.WithCancel(context.Background())
		stopped := make(chan error, 1)
		go func() { stopped <- s.Stop(ctx) }()
		recv(t, stubborn.shutdown, "Stop to ask the stubborn child to drain")
		waitStatus(t, s, "the polite child to drain", childIs("polite", supervisor.ChildStopped))
		require.Equal(t, supervisor.Draining, s.Status().State, "still waiting for the stubborn child")
		require.Empty(t, stubborn.runErr, "its context is intact until the timeout")
		cancel() // the stop's deadline passes
		require.ErrorIs(t, recv(t, stopped, "Stop to return"), context.Canceled, "Stop returns ctx.Err()")
		require.ErrorIs(t, recv(t, stubborn.runErr, "the stubborn child to return"), context.Canceled, "escalated: its context was cancelled")
		st := s.Status()
		require.Equal(t, supervisor.Stopped, st.State)
		require.True(t, st.TimedOut)
		require.NoError(t, s.Wait(), "a stop that timed out still stops")
		r := mustRuns(t, l)[0]
		require.Equal(t, supervisor.Stopped, r.End)
		rt := transitions(r, "")
		require.Equal(t, "stopped", rt[len(rt)-1].To)
		require.Contains(t, rt[len(rt)-1].Reason, "timed out")
	})

	t.Run("cancels children that are not drainers", func(t *testing.T) {
		l := openLog(t)
		started := make(chan context.Context, 1)
		s := newSupervisor(t, l, nil, child("worker", untilCancelled(started)))
		require.NoError(t, s.Start(context.Background()))
		ctx := recv(t, started, "the child to start")
		require.NoError(t, s.Stop(stopCtx(t)))
		require.ErrorIs(t, ctx.Err(), context.Canceled)
		require.False(t, s.Status().TimedOut)
	})
}

// TestStopJournalFails stops a runtime whose journal refuses writes, as a
// full disk makes it: Stop must not hang, and the run must end in a
// terminal state with its children stopped.
func TestStopJournalFails(t *testing.T) {
	cases := []struct {
		name string
		// beforeStop makes the journal refuse writes before Stop is
		// called; otherwise it starts refusing once the children drain.
		beforeStop bool
	}{
		{"before draining is recorded", true},
		{"before stopped is recorded", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			j := &crashable{Log: openLog(t)}
			started := make(chan context.Context, 1)
			d := &crashingDrainer{drainer: newDrainer(false), j: j}
			s := newSupervisor(t, j, nil, child("worker", untilCancelled(started)), child("drains", d))
			require.NoError(t, s.Start(context.Background()))
			ctx := recv(t, started, "the child to start")
			recv(t, d.started, "the drainer to start")
			if tc.beforeStop {
				j.crash()
			}
			stopped := make(chan error, 1)
			go func() { stopped <- s.Stop(stopCtx(t)) }()
			require.Error(t, recv(t, stopped, "Stop to return"))
			waitDone(t, s)
			st := s.Status()
			require.Equal(t, supervisor.Failed, st.State, "a stop that could not be recorded fails the run")
			require.NotEmpty(t, st.Reason)
			require.ErrorIs(t, s.Wait(), supervisor.ErrFailed)
			require.ErrorIs(t, ctx.Err(), context.Canceled, "children stopped")
			require.NoError(t, s.Stop(stopCtx(t)), "Stop of the ended run")
		})
	}
}

// crashingDrainer crashes the journal when it is asked to drain.
type crashingDrainer struct {
	*drainer
	j *crashable
}

func (d *crashingDrainer) Shutdown(ctx context.Context) error {
	d.j.crash()
	return d.drainer.Shutdown(ctx)
}

// TestAbort fails the runtime at once: the children are cancelled, Wait
// and Run return ErrAborted with the reason, and the failure is recorded.
func TestAbort(t *testing.T) {
	t.Run("Wait", func(t *testing.T) {
		l := openLog(t)
		started := make(chan context.Context, 2)
		var returned atomic.Int32
		c := func(ctx context.Context) error {
			started <- ctx
			<-ctx.Done()
			returned.Add(1)
			return ctx.Err()
		}
		d := newDrainer(true)
		s := newSupervisor(t, l, nil, child("a", childFunc(c)), child("b", childFunc(c)), child("drains", d))
		require.NoError(t, s.Start(context.Background()))
		recv(t, started, "a child to start")
		recv(t, started, "a child to start")
		recv(t, d.started, "the drainer to start")

		s.Abort("operator pulled the plug")
		st := s.Status()
		require.Equal(t, supervisor.Failed, st.State, "failed at once")
		require.False(t, st.Healthy())
		require.False(t, st.Ready())
		err := s.Wait()
		require.ErrorIs(t, err, supervisor.ErrAborted)
		require.ErrorContains(t, err, "operator pulled the plug")
		require.Equal(t, int32(2), returned.Load(), "every child returned before Wait")
		require.ErrorIs(t, recv(t, d.runErr, "the drainer to return"), context.Canceled, "cancelled, not drained")

		s.Abort("again")
		require.NoError(t, s.Stop(stopCtx(t)), "Stop after Abort")
		require.ErrorIs(t, s.Wait(), supervisor.ErrAborted)
		r := mustRuns(t, l)[0]
		require.Equal(t, supervisor.Failed, r.End)
		require.True(t, r.Ended())
		require.Contains(t, r.Reason, "operator pulled the plug")
		require.Equal(t, []step{{"created", "starting"}, {"starting", "running"}, {"running", "failed"}}, runtimeSteps(r), "recorded once")
	})

	t.Run("Run", func(t *testing.T) {
		l := openLog(t)
		started := make(chan context.Context, 1)
		s := newSupervisor(t, l, nil, child("worker", untilCancelled(started)))
		ran := make(chan error, 1)
		go func() { ran <- s.Run(context.Background(), waitTimeout) }()
		ctx := recv(t, started, "the child to start")
		s.Abort("bad config")
		err := recv(t, ran, "Run to return")
		require.ErrorIs(t, err, supervisor.ErrAborted)
		require.ErrorContains(t, err, "bad config")
		require.ErrorIs(t, ctx.Err(), context.Canceled)
	})

	t.Run("after stop", func(t *testing.T) {
		l := openLog(t)
		s := newSupervisor(t, l, nil)
		require.NoError(t, s.Start(context.Background()))
		require.NoError(t, s.Stop(stopCtx(t)))
		s.Abort("too late")
		require.Equal(t, supervisor.Stopped, s.Status().State)
		require.NoError(t, s.Wait())
		require.Equal(t, supervisor.Stopped, mustRuns(t, l)[0].End)
	})
}

// TestRun runs the runtime until its context is cancelled: it stops
// gracefully and returns nil.
func TestRun(t *testing.T) {
	l := openLog(t)
	d := newDrainer(false)
	s := newSupervisor(t, l, nil, child("drains", d))
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx, waitTimeout) }()
	recv(t, d.started, "the child to start")
	require.Equal(t, supervisor.Running, s.Status().State)
	cancel()
	require.NoError(t, recv(t, ran, "Run to return"))
	require.NoError(t, recv(t, d.runErr, "the child to return"), "drained, not cancelled")
	require.Equal(t, supervisor.Stopped, s.Status().State)
	require.Equal(t, supervisor.Stopped, mustRuns(t, l)[0].End)
}

// idler is an Idler child whose idleness the test sets.
type idler struct {
	idle    atomic.Bool
	started chan context.Context
}

func (c *idler) Run(ctx context.Context) error {
	c.started <- ctx
	<-ctx.Done()
	return nil
}

func (c *idler) Idle() bool { return c.idle.Load() }

// TestRunUntilIdle drives RunUntilIdle's polls with a fake clock: it stops
// cleanly after the Idler children report idle at two polls in a row, and
// returns nil.
func TestRunUntilIdle(t *testing.T) {
	l := openLog(t)
	clk := newFakeClock()
	c := &idler{started: make(chan context.Context, 1)}
	s := newSupervisor(t, l, &supervisor.Options{Clock: clk, IdlePoll: 10 * time.Millisecond},
		child("finite", c), child("other", untilCancelled(nil)))
	ran := make(chan error, 1)
	go func() { ran <- s.RunUntilIdle(context.Background(), waitTimeout) }()
	ctx := recv(t, c.started, "the child to start")
	// Each poll reads Idle after its delay passes: set the answer first.
	// One idle poll alone is not enough.
	for i, idle := range []bool{false, false, true, false, true} {
		require.Equal(t, 10*time.Millisecond, clk.nextAfter(t), "poll %d", i)
		require.Equal(t, supervisor.Running, s.Status().State, "poll %d", i)
		c.idle.Store(idle)
		clk.Advance(10 * time.Millisecond)
	}
	require.Equal(t, 10*time.Millisecond, clk.nextAfter(t))
	clk.Advance(10 * time.Millisecond) // still idle: the second in a row
	require.NoError(t, recv(t, ran, "RunUntilIdle to return"))
	require.ErrorIs(t, ctx.Err(), context.Canceled)
	st := s.Status()
	require.Equal(t, supervisor.Stopped, st.State)
	require.False(t, st.TimedOut)
	require.Equal(t, supervisor.Stopped, mustRuns(t, l)[0].End)
	select {
	case d := <-clk.asked:
		t.Fatalf("polled again (%v) after stopping", d)
	default:
	}
}

// TestRunUntilIdleCancelled stops RunUntilIdle through its context.
func TestRunUntilIdleCancelled(t *testing.T) {
	l := openLog(t)
	clk := newFakeClock()
	c := &idler{started: make(chan context.Context, 1)}
	s := newSupervisor(t, l, &supervisor.Options{Clock: clk}, child("busy", c))
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- s.RunUntilIdle(ctx, waitTimeout) }()
	recv(t, c.started, "the child to start")
	clk.nextAfter(t)
	cancel()
	require.NoError(t, recv(t, ran, "RunUntilIdle to return"))
	require.Equal(t, supervisor.Stopped, s.Status().State)
}

// gatedJournal blocks its first View until gate is closed.
type gatedJournal struct {
	*eventlog.Log
	once    sync.Once
	entered chan struct{}
	gate    chan struct{}
}

func (j *gatedJournal) View(fn func(*eventlog.Tx) error) error {
	j.once.Do(func() { close(j.entered); <-j.gate })
	return j.Log.View(fn)
}

// TestStopDuringStart: a Stop that arrives while Start is still reading
// the previous run waits for Start, then drains: the run ends stopped, with
// no illegal transition on the way.
func TestStopDuringStart(t *testing.T) {
	l := openLog(t)
	j := &gatedJournal{Log: l, entered: make(chan struct{}), gate: make(chan struct{})}
	s := newSupervisor(t, j, nil, child("a", untilCancelled(nil)))
	started := make(chan error, 1)
	go func() { started <- s.Start(context.Background()) }()
	recv(t, j.entered, "Start to read the previous run")
	stopped := make(chan error, 1)
	go func() { stopped <- s.Stop(stopCtx(t)) }()
	close(j.gate)
	require.NoError(t, recv(t, started, "Start to return"))
	require.NoError(t, recv(t, stopped, "Stop to return"))
	require.NoError(t, s.Wait())
	r := mustRuns(t, l)[0]
	require.Equal(t, supervisor.Stopped, r.End)
	require.Equal(t, []step{{"created", "starting"}, {"starting", "running"}, {"running", "draining"}, {"draining", "stopped"}}, runtimeSteps(r))
}

// TestRefusedChildRecordFailsTheChild: when the journal refuses a child's
// backing_off or running record, the child does not go on as if it were
// recorded: it ends failed, and the runtime says it is unhealthy.
func TestRefusedChildRecordFailsTheChild(t *testing.T) {
	tests := []struct {
		name string
		// duringBackoff makes the journal refuse writes during the
		// child's backoff (the running record of its restart), rather
		// than when it first fails (its backing_off record).
		duringBackoff bool
	}{
		{"backing off", false},
		{"running again", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := &crashable{Log: openLog(t)}
			clk := newFakeClock()
			var runs atomic.Int32
			c := childFunc(func(context.Context) error {
				if runs.Add(1) == 1 && !tt.duringBackoff {
					j.crash()
				}
				return errBoom
			})
			s := newSupervisor(t, j, &supervisor.Options{Clock: clk}, child("bad", c))
			require.NoError(t, s.Start(context.Background()))
			if tt.duringBackoff {
				d := clk.nextAfter(t)
				j.crash()
				clk.Advance(d)
			}
			st := waitStatus(t, s, "the child to fail", childIs("bad", supervisor.ChildFailed))
			require.False(t, st.Healthy(), "a failed child makes the runtime unhealthy")
			require.Contains(t, childStatus(st, "bad").LastError, errBoom.Error())
			require.Equal(t, int32(1), runs.Load(), "the child did not run again unrecorded")
		})
	}
}
