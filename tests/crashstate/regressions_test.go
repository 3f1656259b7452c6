package crashstate_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/flowrt/flowrt/runtime"
	"github.com/flowrt/flowrt/snapshot"
	"github.com/flowrt/flowrt/supervisor"
)

// The tests in this file reproduce, deterministically and without a
// crash, bugs in the effectively-once state that TestCrashState found,
// now fixed: each states the behaviour docs/STATE.md promises.

// stateValues reads a flow's committed state.
func stateValues(t *testing.T, l *eventlog.Log, flow string) values {
	t.Helper()
	entries, err := snapshot.Read(l, flow, "")
	require.NoError(t, err)
	vs, err := decodeValues(entries)
	require.NoError(t, err)
	return vs
}

// runUntilIdle runs the flow until it is idle and returns its status.
func runUntilIdle(t *testing.T, l *eventlog.Log, f runtime.Flow) supervisor.ChildStatus {
	t.Helper()
	rt, err := runtime.New(l, nil)
	require.NoError(t, err)
	require.NoError(t, rt.Add(f))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = rt.RunUntilIdle(ctx)
	st := rt.Status().Children[0]
	if st.State != supervisor.ChildFailed {
		require.NoError(t, err)
	} else {
		require.ErrorContains(t, err, "failed", "a run whose flow failed says so")
	}
	return st
}

func nopSink() []runtime.Sink {
	return []runtime.Sink{runtime.SinkFunc(func(context.Context, runtime.Delivery) error { return nil })}
}

func keyed(typ, key string) eventlog.Event { return eventlog.Event{Type: typ, Key: key} }

// A rebuild empties the state (or loads a snapshot) in one transaction
// and writes the result and the new version in another. If it never
// finishes (a crash, or a reducer of the new version that fails) and the
// flow then runs with its old version again, the recorded version still
// matches: no rebuild, and the flow goes on from the emptied state. The
// crash test hits it when the version goes back after a kill in the
// middle of a rebuild.
func TestRegressionRollbackAfterUnfinishedRebuild(t *testing.T) {

	l := flowtest.MustOpenLog(t, nil)
	for i := range 6 {
		flowtest.MustAppend(t, l, streamName, keyed("tick.a", []string{"k0", "k1"}[i%2]))
	}
	flow := func(version int, red runtime.Reducer) runtime.Flow {
		return runtime.Flow{
			Name:         countsFlow,
			On:           runtime.Trigger{Stream: streamName, Types: []string{flowTypes}},
			Steps:        []runtime.Step{runtime.Reduce(runtime.ReduceSpec{Func: "count", Reducer: red})},
			Sinks:        nopSink(),
			StateVersion: version,
			Restart:      &supervisor.RestartPolicy{Base: time.Millisecond, Max: time.Millisecond, MaxRestarts: 1},
		}
	}
	runUntilIdle(t, l, flow(1, nil))
	want := values{"k0": 3, "k1": 3}
	require.Equal(t, want, stateValues(t, l, countsFlow))

	// Version 2's reducer fails: its rebuild never finishes.
	broken := func(any, runtime.Record) (any, error) { return nil, errors.New("a bug in version 2") }
	st := runUntilIdle(t, l, flow(2, broken))
	require.Equal(t, supervisor.ChildFailed, st.State, "the rebuild to version 2 fails")

	// Rolled back to version 1: the state must be version 1's again.
	runUntilIdle(t, l, flow(1, nil))
	assert.Equal(t, want, stateValues(t, l, countsFlow), "the state after rolling back to version 1")
}

// snapshot.Take copies the committed state with the committed offset as
// its floor. After a clean stop the committed state also holds the events
// done above that offset (their done markers are in the journal), so a
// snapshot taken before the floor passes them holds more than the events
// at or below its floor, and a rebuild from it applies those events twice.
func TestRegressionSnapshotWithDoneMarkers(t *testing.T) {

	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, streamName, keyed("tick.a", "a"), keyed("tick.a", "b"), keyed("tick.a", "c"))
	blocked := make(chan struct{}) // closed: event 2 may succeed
	delivered := make(chan uint64, 100)
	sink := runtime.SinkFunc(func(_ context.Context, d runtime.Delivery) error {
		if d.Event.Seq == 2 {
			select {
			case <-blocked:
			default:
				select {
				case delivered <- 0: // a failure
				default:
				}
				return errTransient
			}
		}
		delivered <- d.Event.Seq
		return nil
	})
	flow := func(version int) runtime.Flow {
		return runtime.Flow{
			Name:         countsFlow,
			On:           runtime.Trigger{Stream: streamName, Types: []string{flowTypes}},
			Steps:        []runtime.Step{runtime.Reduce(runtime.ReduceSpec{Func: "count"})},
			Sinks:        []runtime.Sink{sink},
			StateVersion: version,
			Consumer:     &consumer.Options{Retry: consumer.Retry{MaxAttempts: 1000, Base: 20 * time.Millisecond, Max: 20 * time.Millisecond}},
		}
	}
	await := func(want map[uint64]bool) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for len(want) > 0 {
			select {
			case s := <-delivered:
				delete(want, s)
			case <-deadline:
				t.Fatalf("still waiting for deliveries %v (0: a failure)", want)
			}
		}
	}
	start := func() *runtime.Runtime {
		rt, err := runtime.New(l, nil)
		require.NoError(t, err)
		require.NoError(t, rt.Add(flow(1)))
		require.NoError(t, rt.Start(context.Background()))
		return rt
	}
	stop := func(rt *runtime.Runtime) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, rt.Stop(ctx))
	}

	// Events 1 and 3 succeed, 2 fails; a clean stop records 3 done above
	// the floor 1, and commits its count.
	rt := start()
	await(map[uint64]bool{0: true, 1: true, 3: true})
	stop(rt)
	done, err := consumer.DoneAbove(l, streamName, countsFlow)
	require.NoError(t, err)
	require.Equal(t, []uint64{3}, done)

	// The next run snapshots at once, at the floor 1, while 2 still fails.
	rt = start()
	fs, err := rt.State(countsFlow)
	require.NoError(t, err)
	_, err = fs.Snapshot()
	require.ErrorIs(t, err, snapshot.ErrNotSettled, "the state holds event 3, above the floor 1")
	close(blocked)
	await(map[uint64]bool{2: true})
	stop(rt)
	want := values{"a": 1, "b": 1, "c": 1}
	require.Equal(t, want, stateValues(t, l, countsFlow))

	// Once the floor has passed event 3, a snapshot is the state.
	rt = start()
	fs, err = rt.State(countsFlow)
	require.NoError(t, err)
	snap, err := fs.Snapshot()
	require.NoError(t, err)
	require.Equal(t, uint64(3), snap.Floor)
	stop(rt)
	got, err := readSnapshot(l, countsFlow, 3)
	require.NoError(t, err)
	assert.Equal(t, want, got)

	// Version 2 rebuilds from the start; back to version 1 rebuilds from
	// the snapshot at 1, replaying 2 and 3.
	runUntilIdle(t, l, runtime.Flow{
		Name: countsFlow, On: flow(2).On, Steps: flow(2).Steps, Sinks: nopSink(), StateVersion: 2,
	})
	require.Equal(t, want, stateValues(t, l, countsFlow))
	runUntilIdle(t, l, runtime.Flow{
		Name: countsFlow, On: flow(1).On, Steps: flow(1).Steps, Sinks: nopSink(), StateVersion: 1,
	})
	assert.Equal(t, want, stateValues(t, l, countsFlow), "rebuilt from the snapshot at floor 3")
}

// The state key of a Reduce without a Key expression is the event key; a
// keyless event makes it "", which the journal refuses when the commit
// writes it ("key required"). Every commit of the flow then fails, the
// flow fails for good, and nothing it did is committed.
func TestRegressionKeylessEventInStatefulFlow(t *testing.T) {

	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, streamName, keyed("tick.a", ""), keyed("tick.a", "k"))
	st := runUntilIdle(t, l, runtime.Flow{
		Name:    countsFlow,
		On:      runtime.Trigger{Stream: streamName, Types: []string{flowTypes}},
		Steps:   []runtime.Step{runtime.Reduce(runtime.ReduceSpec{Func: "count"})},
		Sinks:   nopSink(),
		Restart: &supervisor.RestartPolicy{Base: time.Millisecond, Max: time.Millisecond, MaxRestarts: 1},
	})
	assert.Equal(t, supervisor.ChildStopped, st.State, "the flow ends cleanly (last error %q)", st.LastError)
	off, _, err := l.Offset(streamName, countsFlow)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), off, "both events are committed")
	assert.Equal(t, 1.0, stateValues(t, l, countsFlow)["k"])
}

// After a crash, the consumer must still run the events of a key in
// sequence order. Here the crash left event 2 (key k) done but above the
// committed floor, so it is delivered again, and event 3 (key k) with a
// retry record. On restart the dispatcher admits 2, then gives 3 its
// key's turn because no item of k is out yet (2 is only ready): 2 then
// waits for 3, and 3 runs first. For flow state this means a later event
// applied before an earlier one: a commit whose floor lies between them
// writes the later event's change too (counted twice after the next
// crash), or drops the earlier one's staged change, so that the next
// event of the key reads a stale count (counted once too few).
func TestRegressionKeyOrderAfterRestartWithRetries(t *testing.T) {

	dir := t.TempDir()
	l := flowtest.MustOpenLogAt(t, dir+"/journal.db", nil)
	flowtest.MustAppend(t, l, streamName, keyed("tick.a", "q"), keyed("tick.a", "k"), keyed("tick.a", "k"))
	retry := consumer.Retry{MaxAttempts: 1000, Base: 5 * time.Millisecond, Max: 5 * time.Millisecond}

	// The first run: 1 and 3 fail, 2 succeeds; the floor stays at 0.
	r, err := consumer.Open(l, streamName, "c", &consumer.Options{Retry: retry})
	require.NoError(t, err)
	again := make(chan struct{}) // closed on event 3's second attempt
	attempts := 0                // of event 3; one worker: no lock needed
	errc := make(chan error, 1)
	go func() {
		errc <- r.Run(context.Background(), func(_ context.Context, e eventlog.Event) error {
			switch e.Seq {
			case 2:
				return nil
			case 3:
				// A retry is scheduled only once the failure is recorded:
				// at the second attempt, event 3's retry record is in the
				// journal, and 2, delivered before it, is done.
				if attempts++; attempts == 2 {
					close(again)
				}
			}
			return errTransient
		})
	}()
	select {
	case <-again:
	case <-time.After(10 * time.Second):
		t.Fatalf("event 3 not retried: %+v", r.Stats())
	}
	// What a crash now leaves: a copy of the journal as committed.
	crashed := dir + "/crashed.db"
	f, err := os.Create(crashed)
	require.NoError(t, err)
	_, err = l.WriteTo(f)
	require.NoError(t, errors.Join(err, f.Close()))
	require.NoError(t, r.Close())
	require.ErrorIs(t, <-errc, consumer.ErrClosed)

	// The next run, on the crashed journal: every event succeeds.
	l2 := flowtest.MustOpenLogAt(t, crashed, nil)
	off, _, err := l2.Offset(streamName, "c")
	require.NoError(t, err)
	require.Equal(t, uint64(0), off, "the floor waits for event 1")
	r2, err := consumer.Open(l2, streamName, "c", &consumer.Options{Retry: retry})
	require.NoError(t, err)
	order := make(chan uint64, 3)
	go func() {
		errc <- r2.Run(context.Background(), func(_ context.Context, e eventlog.Event) error {
			order <- e.Seq
			return nil
		})
	}()
	var got []uint64
	for len(got) < 3 {
		select {
		case s := <-order:
			got = append(got, s)
		case <-time.After(10 * time.Second):
			t.Fatalf("delivered %v", got)
		}
	}
	require.NoError(t, r2.Close())
	require.ErrorIs(t, <-errc, consumer.ErrClosed)
	var ofK []uint64
	for _, s := range got {
		if s != 1 {
			ofK = append(ofK, s)
		}
	}
	assert.Equal(t, []uint64{2, 3}, ofK, "the events of key k, in the order delivered (all: %v)", got)
}

// A clean stop records the events done above the floor, so that the next
// run neither delivers nor applies them again; the commit that records
// them also writes their state changes. But the consumer skips the done
// marker of an event that has a retry record (consumer/reader.go, commit:
// "already swept, or recorded dead"), and an event that failed before it
// succeeded has one: it is delivered again after the stop, and its change,
// committed with the stop, is applied twice.
func TestRegressionCleanStopAfterRetry(t *testing.T) {

	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, streamName, keyed("tick.a", "a"), keyed("tick.a", "b"))
	unblock := make(chan struct{}) // closed: event 1 may succeed
	retried := make(chan struct{}) // closed when event 2 succeeded after a failure
	failed2 := false               // one worker: no lock needed
	sink := runtime.SinkFunc(func(_ context.Context, d runtime.Delivery) error {
		switch d.Event.Seq {
		case 1:
			select {
			case <-unblock:
				return nil
			default:
				return errTransient
			}
		case 2:
			if !failed2 {
				failed2 = true
				return errTransient
			}
			select {
			case <-retried:
			default:
				close(retried)
			}
		}
		return nil
	})
	flow := runtime.Flow{
		Name:     countsFlow,
		On:       runtime.Trigger{Stream: streamName, Types: []string{flowTypes}},
		Steps:    []runtime.Step{runtime.Reduce(runtime.ReduceSpec{Func: "count"})},
		Sinks:    []runtime.Sink{sink},
		Consumer: &consumer.Options{Retry: consumer.Retry{MaxAttempts: 1000, Base: time.Millisecond, Max: 5 * time.Millisecond}},
	}
	rt, err := runtime.New(l, nil)
	require.NoError(t, err)
	require.NoError(t, rt.Add(flow))
	require.NoError(t, rt.Start(context.Background()))
	select {
	case <-retried:
	case <-time.After(10 * time.Second):
		t.Fatal("event 2 did not succeed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, rt.Stop(ctx))
	require.Equal(t, values{"b": 1}, stateValues(t, l, countsFlow), "the clean stop commits event 2's change")
	done, err := consumer.DoneAbove(l, streamName, countsFlow)
	require.NoError(t, err)
	assert.Equal(t, []uint64{2}, done, "event 2 is recorded done above the floor")

	close(unblock)
	runUntilIdle(t, l, flow)
	assert.Equal(t, values{"a": 1, "b": 1}, stateValues(t, l, countsFlow))
}
