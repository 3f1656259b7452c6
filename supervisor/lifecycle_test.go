package supervisor_test

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"sync"
	"testing"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/supervisor"
	"github.com/stretchr/testify/require"
)

// TestPersistedLifecycle runs a supervisor cleanly and reads its lifecycle
// back from $system.
func TestPersistedLifecycle(t *testing.T) {
	l := openLog(t)
	clk := newFakeClock()
	d := newDrainer(false)
	s := newSupervisor(t, l, &supervisor.Options{Clock: clk, Details: map[string]string{"version": "v1.2.3", "config": "flowrt.yaml"}},
		child("plain", untilCancelled(nil)), child("drains", d))
	require.Equal(t, supervisor.Created, s.Status().State)
	require.NoError(t, s.Start(context.Background()))
	st := waitStatus(t, s, "both children running", allChildren(supervisor.ChildRunning))
	require.Equal(t, supervisor.Running, st.State)
	require.True(t, st.Ready())
	require.True(t, st.Healthy())
	require.Equal(t, s.RunID(), st.Run)
	require.NoError(t, s.Stop(stopCtx(t)))
	require.NoError(t, s.Wait())

	st = s.Status()
	require.Equal(t, supervisor.Stopped, st.State)
	require.False(t, st.Ready())
	require.True(t, st.Healthy())
	require.False(t, st.TimedOut)
	require.Equal(t, supervisor.ChildStopped, childState(st, "plain"))
	require.Equal(t, supervisor.ChildStopped, childState(st, "drains"))

	runs := mustRuns(t, l)
	require.Len(t, runs, 1)
	r := runs[0]
	require.Equal(t, s.RunID(), r.ID)
	require.Equal(t, supervisor.Stopped, r.End)
	require.True(t, r.Ended())
	require.False(t, r.Crashed)
	require.Nil(t, r.Recovery)
	require.Empty(t, r.Reason)
	require.Equal(t, uint64(1), r.FirstSeq)
	require.False(t, r.Started.IsZero())
	require.False(t, r.Last.Before(r.Started))

	require.Equal(t, []step{
		{"created", "starting"},
		{"starting", "running"},
		{"running", "draining"},
		{"draining", "stopped"},
	}, runtimeSteps(r))
	for _, name := range []string{"plain", "drains"} {
		trs := transitions(r, name)
		require.Equal(t, []step{{"idle", "running"}, {"running", "stopped"}}, childSteps(r, name), name)
		require.Equal(t, map[string]string{"attempt": "1"}, trs[0].Details, name)
		require.Equal(t, "runtime stopping", trs[1].Reason, name)
	}

	rt := transitions(r, "")
	host, err := os.Hostname()
	require.NoError(t, err)
	require.Equal(t, map[string]string{
		"pid":      strconv.Itoa(os.Getpid()),
		"host":     host,
		"children": "2",
		"version":  "v1.2.3",
		"config":   "flowrt.yaml",
	}, rt[0].Details, "the starting transition's details")
	require.Equal(t, "stop requested", rt[2].Reason)
	require.Empty(t, rt[3].Reason, "a stop in time gives no reason")

	var lastSeq uint64
	for _, tr := range r.Transitions {
		require.Equal(t, s.RunID(), tr.Run, "%+v", tr)
		require.True(t, clk.Now().Equal(tr.Time), "times come from Options.Clock: %+v", tr)
		require.Greater(t, tr.Seq, lastSeq, "transitions in $system order")
		lastSeq = tr.Seq
	}

	// Every $system event is a transition keyed by the run's ID, with the
	// JSON fields docs/LIFECYCLE.md lists.
	evs := systemEvents(t, l)
	require.Len(t, evs, len(r.Transitions))
	for _, e := range evs {
		require.Equal(t, supervisor.TypeTransition, e.Type)
		require.Equal(t, s.RunID(), e.Key)
		var fields map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(e.Data, &fields))
		for _, f := range []string{"run", "from", "to", "time"} {
			require.Contains(t, fields, f, "seq %d: %s", e.Seq, e.Data)
		}
		for f := range fields {
			require.Contains(t, []string{"run", "child", "from", "to", "reason", "time", "details"}, f, "seq %d: %s", e.Seq, e.Data)
		}
	}
}

// TestRunsEmpty reads the lifecycle of a journal no supervisor has used.
func TestRunsEmpty(t *testing.T) {
	l := openLog(t)
	runs, err := supervisor.Runs(l)
	require.NoError(t, err)
	require.Empty(t, runs)
}

// TestRefusedCalls checks that calls the lifecycle does not allow are
// refused with their error and change nothing, in memory or in $system.
func TestRefusedCalls(t *testing.T) {
	type setup func(t *testing.T, s *supervisor.Supervisor)
	start := func(t *testing.T, s *supervisor.Supervisor) {
		require.NoError(t, s.Start(context.Background()))
		// The child records its start after Start returns: wait for it,
		// so that what the refused call must not record is all there.
		waitStatus(t, s, "the child running", allChildren(supervisor.ChildRunning))
	}
	stop := func(t *testing.T, s *supervisor.Supervisor) {
		start(t, s)
		require.NoError(t, s.Stop(stopCtx(t)))
	}
	abort := func(t *testing.T, s *supervisor.Supervisor) {
		start(t, s)
		s.Abort("test")
		waitDone(t, s)
	}
	cases := []struct {
		name  string
		setup setup
		call  func(s *supervisor.Supervisor) error
		want  error
	}{
		{"start twice", start, func(s *supervisor.Supervisor) error { return s.Start(context.Background()) }, supervisor.ErrStarted},
		{"start after stop", stop, func(s *supervisor.Supervisor) error { return s.Start(context.Background()) }, supervisor.ErrStarted},
		{"start after abort", abort, func(s *supervisor.Supervisor) error { return s.Start(context.Background()) }, supervisor.ErrStarted},
		{"add after start", start, func(s *supervisor.Supervisor) error { return s.Add("late", untilCancelled(nil), nil) }, supervisor.ErrStarted},
		{"add after stop", stop, func(s *supervisor.Supervisor) error { return s.Add("late", untilCancelled(nil), nil) }, supervisor.ErrStarted},
		{"duplicate child", func(*testing.T, *supervisor.Supervisor) {}, func(s *supervisor.Supervisor) error { return s.Add("worker", untilCancelled(nil), nil) }, supervisor.ErrDuplicateChild},
		{"invalid child name", func(*testing.T, *supervisor.Supervisor) {}, func(s *supervisor.Supervisor) error { return s.Add("", untilCancelled(nil), nil) }, eventlog.ErrInvalidName},
		{"invalid restart policy", func(*testing.T, *supervisor.Supervisor) {}, func(s *supervisor.Supervisor) error {
			return s.Add("other", untilCancelled(nil), &supervisor.RestartPolicy{Base: -1})
		}, supervisor.ErrInvalidOptions},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := openLog(t)
			s := newSupervisor(t, l, nil, child("worker", untilCancelled(nil)))
			tc.setup(t, s)
			before, nEvents := s.Status(), len(systemEvents(t, l))
			require.ErrorIs(t, tc.call(s), tc.want)
			after := s.Status()
			require.Equal(t, before.State, after.State, "state unchanged")
			require.Len(t, after.Children, 1, "no child added")
			require.Len(t, systemEvents(t, l), nEvents, "nothing recorded")
		})
	}
}

// TestConcurrentStart starts one supervisor from several goroutines: one
// Start wins, the others get ErrStarted, and the run is not disturbed.
func TestConcurrentStart(t *testing.T) {
	for i := range 20 {
		l := openLog(t)
		s := newSupervisor(t, l, nil, child("worker", untilCancelled(nil)))
		const n = 4
		errs := make(chan error, n)
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() { errs <- s.Start(context.Background()) })
		}
		wg.Wait()
		close(errs)
		won := 0
		for err := range errs {
			if err == nil {
				won++
				continue
			}
			require.ErrorIs(t, err, supervisor.ErrStarted, "round %d", i)
		}
		require.Equal(t, 1, won, "round %d", i)
		require.Equal(t, supervisor.Running, s.Status().State, "round %d: %s", i, s.Status().Reason)
		require.NoError(t, s.Stop(stopCtx(t)))
		require.Equal(t, []step{{"created", "starting"}, {"starting", "running"}, {"running", "draining"}, {"draining", "stopped"}},
			runtimeSteps(mustRuns(t, l)[0]), "round %d", i)
	}
}

// TestOptionsValidate checks that every problem is reported at once and
// that New and Add refuse invalid options.
func TestOptionsValidate(t *testing.T) {
	cases := []struct {
		name string
		opts *supervisor.Options
		want []string // substrings of the error; none means valid
	}{
		{"nil", nil, nil},
		{"zero", &supervisor.Options{}, nil},
		{"negative everything", &supervisor.Options{
			Restart:  supervisor.RestartPolicy{Base: -1, Max: -1, Multiplier: 0.5, MaxRestarts: -1, Window: -1},
			KeepRuns: -1, KeepFor: -1, IdlePoll: -1,
		}, []string{"Restart.Base", "Restart.Max", "Restart.Multiplier", "Restart.MaxRestarts", "Restart.Window", "KeepRuns", "KeepFor", "IdlePoll"}},
		{"base above max", &supervisor.Options{Restart: supervisor.RestartPolicy{Base: 2, Max: 1}}, []string{"Base (2ns) must not exceed Max (1ns)"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.Validate()
			_, newErr := supervisor.New(openLog(t), tc.opts)
			if tc.want == nil {
				require.NoError(t, err)
				require.NoError(t, newErr)
				return
			}
			require.ErrorIs(t, err, supervisor.ErrInvalidOptions)
			require.ErrorIs(t, newErr, supervisor.ErrInvalidOptions)
			for _, w := range tc.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
}
