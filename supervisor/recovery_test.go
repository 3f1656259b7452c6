package supervisor_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/flowrt/flowrt/supervisor"
	"github.com/oklog/ulid/v2"
	"github.com/stretchr/testify/require"
)

// TestCrashDetection leaves behind runs that ended in different ways and
// checks what the next Start records: exactly one recovery event after a
// crash, naming the crashed run and its last state, and none after a run
// that ended.
func TestCrashDetection(t *testing.T) {
	cases := []struct {
		name string
		// before leaves the journal as the previous runs did. It returns the
		// run the next Start must find crashed and its last state, or "" if
		// none crashed.
		before    func(t *testing.T, l *eventlog.Log) (crashed, last string)
		children  map[string]string // the crashed run's children's last states
		recovered int               // recovery events before the new run's
	}{
		{
			name:   "empty journal",
			before: func(*testing.T, *eventlog.Log) (string, string) { return "", "" },
		},
		{
			name: "clean stop",
			before: func(t *testing.T, l *eventlog.Log) (string, string) {
				s := newSupervisor(t, l, nil, child("worker", untilCancelled(nil)))
				require.NoError(t, s.Start(context.Background()))
				require.NoError(t, s.Stop(stopCtx(t)))
				return "", ""
			},
		},
		{
			name: "aborted",
			before: func(t *testing.T, l *eventlog.Log) (string, string) {
				s := newSupervisor(t, l, nil, child("worker", untilCancelled(nil)))
				require.NoError(t, s.Start(context.Background()))
				s.Abort("operator")
				waitDone(t, s)
				return "", ""
			},
		},
		{
			name: "abandoned while running",
			before: func(t *testing.T, l *eventlog.Log) (string, string) {
				s := abandon(t, l, child("a", untilCancelled(nil)), child("b", newDrainer(false)))
				return s.RunID(), "running"
			},
			children: map[string]string{"a": "running", "b": "running"},
		},
		{
			name: "crashed while starting",
			before: func(t *testing.T, l *eventlog.Log) (string, string) {
				run := ulid.Make().String()
				writeRun(t, l, run, supervisor.Created, supervisor.Starting)
				return run, "starting"
			},
		},
		{
			name: "crashed while draining",
			before: func(t *testing.T, l *eventlog.Log) (string, string) {
				run := ulid.Make().String()
				writeRun(t, l, run, supervisor.Created, supervisor.Starting, supervisor.Running, supervisor.Draining)
				return run, "draining"
			},
		},
		{
			name: "crashed after a clean run",
			before: func(t *testing.T, l *eventlog.Log) (string, string) {
				writeRun(t, l, ulid.Make().String(), supervisor.Created, supervisor.Starting, supervisor.Running, supervisor.Draining, supervisor.Stopped)
				run := ulid.Make().String()
				writeRun(t, l, run, supervisor.Created, supervisor.Starting, supervisor.Running)
				return run, "running"
			},
		},
		{
			// The run that recovered crashed too: the next one names it,
			// and the first crash is not recovered twice.
			name: "crashed while recovering from a crash",
			before: func(t *testing.T, l *eventlog.Log) (string, string) {
				abandon(t, l, child("a", untilCancelled(nil)))
				s := abandon(t, l, child("a", untilCancelled(nil)))
				return s.RunID(), "running"
			},
			children:  map[string]string{"a": "running"},
			recovered: 1,
		},
		{
			// A long crashed run: reading back its last state takes more
			// than one chunk of $system.
			name: "crashed run longer than a read chunk",
			before: func(t *testing.T, l *eventlog.Log) (string, string) {
				run := ulid.Make().String()
				writeRun(t, l, run, supervisor.Created, supervisor.Starting, supervisor.Running)
				require.NoError(t, l.Update(func(tx *eventlog.Tx) error {
					from, to := "idle", "running"
					for range 2500 {
						if err := appendTransition(tx, supervisor.Transition{Run: run, Child: "flapping", From: from, To: to}); err != nil {
							return err
						}
						from, to = to, map[string]string{"running": "backing_off", "backing_off": "running"}[to]
					}
					return appendTransition(tx, supervisor.Transition{Run: run, Child: "steady", From: "idle", To: "running"})
				}))
				return run, "running"
			},
			children: map[string]string{"flapping": "backing_off", "steady": "running"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := openLog(t)
			crashed, last := tc.before(t, l)
			before := len(mustRuns(t, l))

			s := newSupervisor(t, l, nil, child("worker", untilCancelled(nil)))
			require.NoError(t, s.Start(context.Background()))
			require.NoError(t, s.Stop(stopCtx(t)))

			runs := mustRuns(t, l)
			require.Len(t, runs, before+1)
			r := runs[len(runs)-1]
			require.Equal(t, s.RunID(), r.ID)
			require.Equal(t, supervisor.Stopped, r.End)
			if crashed == "" {
				require.Nil(t, r.Recovery)
				require.Equal(t, tc.recovered, countType(t, l, supervisor.TypeRecovery))
				require.Equal(t, []step{{"created", "starting"}, {"starting", "running"}, {"running", "draining"}, {"draining", "stopped"}}, runtimeSteps(r))
				for _, prev := range runs[:len(runs)-1] {
					require.False(t, prev.Crashed, "run %s", prev.ID)
				}
				return
			}
			require.Equal(t, tc.recovered+1, countType(t, l, supervisor.TypeRecovery), "exactly one recovery event for the crash")
			rec := r.Recovery
			require.NotNil(t, rec)
			require.Equal(t, s.RunID(), rec.Run)
			require.Equal(t, crashed, rec.CrashedRun)
			require.Equal(t, last, rec.LastState)
			require.Equal(t, tc.children, rec.Children)
			require.False(t, rec.Time.IsZero())
			require.Empty(t, rec.Consumers)

			prev := runs[len(runs)-2]
			require.Equal(t, crashed, prev.ID)
			require.True(t, prev.Crashed)
			require.False(t, prev.Ended())
			require.Equal(t, last, prev.End.String())
			require.True(t, prev.Last.Equal(rec.LastTime), "the crashed run's last record: %v, recovery says %v", prev.Last, rec.LastTime)

			// The recovery is recorded while recovering, before anything
			// runs: after the recovering transition, before running and
			// before any child starts.
			rt := transitions(r, "")
			require.Equal(t, []step{{"created", "starting"}, {"starting", "recovering"}, {"recovering", "running"}, {"running", "draining"}, {"draining", "stopped"}}, runtimeSteps(r))
			require.Equal(t, "previous run "+crashed+" crashed in state "+last, rt[1].Reason)
			require.Greater(t, rec.Seq, rt[1].Seq)
			require.Less(t, rec.Seq, rt[2].Seq)
			require.Less(t, rec.Seq, transitions(r, "worker")[0].Seq)
		})
	}
}

// TestRecoveryConsumers checks the recovery's resume points: one per
// registered consumer of a user stream, at its committed offset, with the
// events above it pending.
func TestRecoveryConsumers(t *testing.T) {
	l := openLog(t)
	flowtest.MustAppend(t, l, "orders", flowtest.Events(10, "order.created")...)
	flowtest.MustAppend(t, l, "audit", flowtest.Events(3, "audit.entry")...)
	require.NoError(t, l.CommitOffset("orders", "billing", 4))
	require.NoError(t, l.CommitOffset("orders", "shipping", 0))
	require.NoError(t, l.CommitOffset("audit", "archiver", 3))

	crashed := abandon(t, l, child("worker", untilCancelled(nil)))
	// A consumer of $system itself is not the runtime's to resume.
	require.NoError(t, l.CommitOffset(supervisor.SystemStream, "tail", 1))
	// The crashed run's consumers moved on before it died; the offsets the
	// recovery reports are those of the journal at the crash.
	require.NoError(t, l.CommitOffset("orders", "billing", 7))
	flowtest.MustAppend(t, l, "orders", flowtest.Events(2, "order.created")...)

	s := newSupervisor(t, l, nil)
	require.NoError(t, s.Start(context.Background()))
	rec := mustRuns(t, l)[1].Recovery
	require.NotNil(t, rec)
	require.Equal(t, crashed.RunID(), rec.CrashedRun)
	require.Equal(t, []supervisor.Resume{
		{Stream: "audit", Consumer: "archiver", Offset: 3, Pending: 0},
		{Stream: "orders", Consumer: "billing", Offset: 7, Pending: 12 - 7},
		{Stream: "orders", Consumer: "shipping", Offset: 0, Pending: 12},
	}, rec.Consumers)
	for _, c := range rec.Consumers {
		off, ok, err := l.Offset(c.Stream, c.Consumer)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, off, c.Offset, "%s/%s", c.Stream, c.Consumer)
		si, err := l.Info(c.Stream)
		require.NoError(t, err)
		require.Equal(t, si.Last-off, c.Pending, "%s/%s", c.Stream, c.Consumer)
	}
	require.NoError(t, s.Stop(stopCtx(t)))

	// The next clean start records nothing more.
	s2 := newSupervisor(t, l, nil)
	require.NoError(t, s2.Start(context.Background()))
	require.NoError(t, s2.Stop(stopCtx(t)))
	require.Equal(t, 1, countType(t, l, supervisor.TypeRecovery))
	require.Nil(t, mustRuns(t, l)[2].Recovery)
}

// refuseAfter is a crashable journal that crashes by itself after n
// writes: a process killed between two of its commits.
type refuseAfter struct {
	crashable
	n atomic.Int32
}

func (j *refuseAfter) Update(fn func(*eventlog.Tx) error) error {
	if j.n.Add(-1) < 0 {
		j.crash()
	}
	return j.crashable.Update(fn)
}

// TestKilledWhileRecordingARecovery: a run that finds its predecessor
// crashed records starting, recovering and the recovery in its first
// commit, so one killed right after that commit leaves no crash
// unrecorded: the next run records a recovery for each.
func TestKilledWhileRecordingARecovery(t *testing.T) {
	l := openLog(t)
	first := abandon(t, l, child("worker", untilCancelled(nil))).RunID()

	j := &refuseAfter{crashable: crashable{Log: l}}
	j.n.Store(1) // the start's first commit, and nothing after it
	second, err := supervisor.New(j, nil)
	require.NoError(t, err)
	require.NoError(t, second.Add("worker", untilCancelled(nil), nil))
	require.Error(t, second.Start(context.Background()), "killed after its first commit")

	third := newSupervisor(t, l, nil, child("worker", untilCancelled(nil)))
	require.NoError(t, third.Start(context.Background()))
	crashed := map[string]string{} // crashed run → the run that recorded its recovery
	for _, e := range systemEvents(t, l) {
		if e.Type != supervisor.TypeRecovery {
			continue
		}
		var r supervisor.Recovery
		require.NoError(t, json.Unmarshal(e.Data, &r))
		crashed[r.CrashedRun] = r.Run
	}
	require.Equal(t, map[string]string{first: second.RunID(), second.RunID(): third.RunID()}, crashed)
}
