package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
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

func orders(t *testing.T, l *eventlog.Log, n int) {
	t.Helper()
	var events []eventlog.Event
	for i := range n {
		events = append(events, event("order.created", fmt.Sprintf("c%d", i%3), fmt.Sprintf(`{"total": %d}`, i+1)))
	}
	flowtest.MustAppend(t, l, eventlog.DefaultStream, events...)
}

func TestReducers(t *testing.T) {
	tests := []struct {
		name string
		spec runtime.ReduceSpec
		want map[string]string
	}{
		{"count", runtime.ReduceSpec{Func: "count"}, map[string]string{"c0": "4", "c1": "3", "c2": "3"}},
		{"sum", runtime.ReduceSpec{Func: "sum", Value: "data.total"}, map[string]string{"c0": "22", "c1": "15", "c2": "18"}},
		{"min", runtime.ReduceSpec{Func: "min", Value: "data.total"}, map[string]string{"c0": "1", "c1": "2", "c2": "3"}},
		{"max", runtime.ReduceSpec{Func: "max", Value: "data.total"}, map[string]string{"c0": "10", "c1": "8", "c2": "9"}},
		{"last", runtime.ReduceSpec{Func: "last", Value: "data.total"}, map[string]string{"c0": "10", "c1": "8", "c2": "9"}},
		{"recent", runtime.ReduceSpec{Func: "recent", Value: "data.total", Limit: 2}, map[string]string{"c0": "[7,10]", "c1": "[5,8]", "c2": "[6,9]"}},
		{"go reducer", runtime.ReduceSpec{Reducer: func(state any, r runtime.Record) (any, error) {
			s, _ := state.(string)
			return s + r.Event.Type[:1], nil
		}}, map[string]string{"c0": `"oooo"`, "c1": `"ooo"`, "c2": `"ooo"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := flowtest.MustOpenLog(t, nil)
			orders(t, l, 10)
			runIdle(t, l, nil, runtime.Flow{
				Name:  "totals",
				On:    runtime.On("order.*"),
				Steps: []runtime.Step{runtime.Reduce(tt.spec)},
				Sinks: []runtime.Sink{runtime.SinkFunc(func(context.Context, runtime.Delivery) error { return nil })},
			})
			assert.Equal(t, tt.want, flowtest.CommittedState(t, l, "totals"))
		})
	}
}

func TestStateIsReadableWhileRunningAndRetriesDoNotDoubleCount(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	failures := 2
	sink := newCollector()
	sink.fail = func(d runtime.Delivery) error {
		if failures > 0 {
			failures--
			return errors.New("not yet")
		}
		return nil
	}
	rt := start(t, l, nil, runtime.Flow{
		Name:     "counts",
		On:       runtime.On("order.*"),
		Steps:    []runtime.Step{runtime.Reduce(runtime.ReduceSpec{Func: "count", As: "n"}), runtime.Map(`{"key": key, "n": n}`)},
		Sinks:    []runtime.Sink{sink},
		Consumer: &consumer.Options{Retry: consumer.Retry{Base: time.Millisecond, Max: time.Millisecond}},
	})
	orders(t, l, 6)
	got := sink.await(t, 6)
	ns := make([]any, 6)
	for _, d := range got {
		ns[d.Event.Seq-1] = d.Payload.(map[string]any)["n"]
	}
	assert.Equal(t, []any{1.0, 1.0, 1.0, 2.0, 2.0, 2.0}, ns, "failed attempts left no state behind")

	st, err := rt.State("counts")
	require.NoError(t, err)
	// The changes are staged once the consumer acks, just after the sink.
	deadline := time.Now().Add(10 * time.Second)
	for {
		items, err := st.Items("c")
		require.NoError(t, err)
		all := len(items) == 3
		for _, it := range items {
			all = all && it.Value == 2.0
		}
		if all || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	v, ok, err := st.Get("c0")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, 2.0, v)
	items, err := st.Items("c")
	require.NoError(t, err)
	assert.Equal(t, []runtime.StateEntry{{Key: "c0", Value: 2.0}, {Key: "c1", Value: 2.0}, {Key: "c2", Value: 2.0}}, items)
	_, err = rt.State("nope")
	require.Error(t, err)
}

func TestRebuildMatchesTheLiveRun(t *testing.T) {
	flow := func(version int) runtime.Flow {
		return runtime.Flow{
			Name:         "sums",
			On:           runtime.On("order.*"),
			Steps:        []runtime.Step{runtime.Filter(`data.total != 4`), runtime.Reduce(runtime.ReduceSpec{Func: "sum", Value: "data.total"})},
			Sinks:        []runtime.Sink{runtime.SinkFunc(func(context.Context, runtime.Delivery) error { return nil })},
			StateVersion: version,
		}
	}
	tests := []struct {
		name     string
		snapshot bool
	}{
		{"from the start", false},
		{"from a snapshot", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := flowtest.MustOpenLog(t, nil)
			orders(t, l, 30)
			runIdle(t, l, nil, flow(1))
			orders(t, l, 30)
			runIdle(t, l, nil, flow(1))
			live := flowtest.CommittedState(t, l, "sums")

			// Version 2 rebuilds from scratch and must agree.
			rt2 := runIdle(t, l, nil, flow(2))
			assert.Equal(t, live, flowtest.CommittedState(t, l, "sums"))
			if tt.snapshot {
				st, err := rt2.State("sums")
				require.NoError(t, err)
				snap, err := st.Snapshot()
				require.NoError(t, err)
				assert.Equal(t, uint64(60), snap.Floor)
				assert.Equal(t, 2, snap.Version)
			}
			orders(t, l, 30)
			runIdle(t, l, nil, flow(2))
			live = flowtest.CommittedState(t, l, "sums")

			// Version 3 rebuilds again; a version-2 snapshot is not used.
			runIdle(t, l, nil, flow(3))
			assert.Equal(t, live, flowtest.CommittedState(t, l, "sums"))
			meta, ok, err := snapshot.ReadMeta(l, "sums")
			require.NoError(t, err)
			require.True(t, ok)
			assert.Equal(t, 3, meta.Version)
			if !tt.snapshot {
				return
			}
			// Retention may remove what the snapshot covers, and no more.
			_, err = l.Truncate(eventlog.DefaultStream, 62, eventlog.KeepUnacked)
			require.ErrorIs(t, err, eventlog.ErrConsumerBehind)
			_, err = l.Truncate(eventlog.DefaultStream, 61, eventlog.KeepUnacked)
			require.NoError(t, err)
			// Back to version 2: rebuilt from its snapshot at 60, since the
			// events below it are gone.
			runIdle(t, l, nil, flow(2))
			assert.Equal(t, live, flowtest.CommittedState(t, l, "sums"))
		})
	}
}

func TestStatefulFlowValidation(t *testing.T) {
	count := runtime.Reduce(runtime.ReduceSpec{Func: "count"})
	sink := []runtime.Sink{newCollector()}
	tests := []struct {
		name string
		flow runtime.Flow
		want string
	}{
		{"two reduce steps", runtime.Flow{Steps: []runtime.Step{count, count}}, "at most one reduce step"},
		{"skip ahead", runtime.Flow{Steps: []runtime.Step{count}, Consumer: &consumer.Options{KeyFailure: consumer.SkipAhead}}, "key order"},
		{"unknown reducer", runtime.Flow{Steps: []runtime.Step{runtime.Reduce(runtime.ReduceSpec{Func: "avg"})}}, `unknown reducer "avg"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := flowtest.MustOpenLog(t, nil)
			rt, err := runtime.New(l, nil)
			require.NoError(t, err)
			tt.flow.Name, tt.flow.Sinks = "f", sink
			require.ErrorContains(t, rt.Add(tt.flow), tt.want)
		})
	}
}

func TestLateAttemptAppliesNothing(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, eventlog.DefaultStream, event("order.created", "c", `{}`))
	first := true
	runIdle(t, l, nil, runtime.Flow{
		Name:  "counts",
		On:    runtime.On("order.*"),
		Steps: []runtime.Step{runtime.Reduce(runtime.ReduceSpec{Func: "count"})},
		Sinks: []runtime.Sink{runtime.SinkFunc(func(ctx context.Context, _ runtime.Delivery) error {
			if first {
				first = false
				<-ctx.Done() // past the timeout, then "success": the consumer fails it
			}
			return nil
		})},
		Consumer: &consumer.Options{HandlerTimeout: 20 * time.Millisecond, Retry: consumer.Retry{Base: time.Millisecond, Max: time.Millisecond}},
	})
	assert.Equal(t, map[string]string{"c": "1"}, flowtest.CommittedState(t, l, "counts"), "the late attempt was not counted")
}

func TestRedeliveredDeadLetterCommitsItsState(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, eventlog.DefaultStream, event("order.created", "c", `{"ok": false}`), event("order.created", "c", `{"ok": true}`))
	reject := true
	flow := runtime.Flow{
		Name:  "counts",
		On:    runtime.On("order.*"),
		Steps: []runtime.Step{runtime.Reduce(runtime.ReduceSpec{Func: "count"})},
		Sinks: []runtime.Sink{runtime.SinkFunc(func(_ context.Context, d runtime.Delivery) error {
			if reject && d.Event.Seq == 1 {
				return consumer.Permanent(errors.New("rejected"))
			}
			return nil
		})},
	}
	runIdle(t, l, nil, flow)
	assert.Equal(t, map[string]string{"c": "1"}, flowtest.CommittedState(t, l, "counts"), "the dead letter applied nothing")

	reject = false
	n, err := consumer.Redeliver(l, eventlog.DefaultStream, "counts", consumer.Range{})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	rt, err := runtime.New(l, nil)
	require.NoError(t, err)
	require.NoError(t, rt.Add(flow))
	require.NoError(t, rt.Start(context.Background()))
	deadline := time.Now().Add(10 * time.Second)
	for flowtest.CommittedState(t, l, "counts")["c"] != "2" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, rt.Stop(ctx))
	assert.Equal(t, map[string]string{"c": "2"}, flowtest.CommittedState(t, l, "counts"), "committed with the redelivery")
}

func TestRebuildRefusesTruncatedHistory(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	orders(t, l, 10)
	flow := func(v int) runtime.Flow {
		return runtime.Flow{
			Name: "counts", On: runtime.On("order.*"), StateVersion: v,
			Steps: []runtime.Step{runtime.Reduce(runtime.ReduceSpec{Func: "count"})},
			Sinks: []runtime.Sink{runtime.SinkFunc(func(context.Context, runtime.Delivery) error { return nil })},
		}
	}
	rt := runIdle(t, l, nil, flow(1))
	st, err := rt.State("counts")
	require.NoError(t, err)
	_, err = st.Snapshot()
	require.NoError(t, err)
	_, err = l.Truncate(eventlog.DefaultStream, 6, eventlog.KeepUnacked)
	require.NoError(t, err)
	before := flowtest.CommittedState(t, l, "counts")

	rt2, err := runtime.New(l, &runtime.Options{Supervisor: &supervisor.Options{Restart: supervisor.RestartPolicy{Base: time.Millisecond, Max: time.Millisecond, MaxRestarts: 1}}})
	require.NoError(t, err)
	require.NoError(t, rt2.Add(flow(2)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = rt2.RunUntilIdle(ctx)
	require.ErrorContains(t, err, "retention removed")
	assert.Equal(t, before, flowtest.CommittedState(t, l, "counts"), "the state stays as it was")
}

func TestOperatorRefusesBuiltinKinds(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	rt, err := runtime.New(l, nil)
	require.NoError(t, err)
	err = rt.Add(runtime.Flow{Name: "f", Sinks: []runtime.Sink{newCollector()}, Steps: []runtime.Step{
		runtime.Operator("reduce", func(_ context.Context, r runtime.Record) ([]runtime.Record, error) { return []runtime.Record{r}, nil }),
	}})
	require.ErrorIs(t, err, runtime.ErrReservedKind)
}

// A reduce step either applies its reducer on the worker (As, a Go
// reducer, a rebuild) or leaves built-in numeric reductions to the commit
// that covers them (folded). Both must read and commit the same state.
func TestFoldedAndAppliedStateAgree(t *testing.T) {
	tests := []struct {
		name string
		spec runtime.ReduceSpec
	}{
		{"folded", runtime.ReduceSpec{Func: "sum", Value: "data.total"}},
		{"applied", runtime.ReduceSpec{Func: "sum", Value: "data.total", As: "total"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := flowtest.MustOpenLog(t, nil)
			var failures atomic.Int32
			sink := newCollector()
			sink.fail = func(d runtime.Delivery) error {
				if failures.Add(1) <= 3 {
					return errors.New("not yet")
				}
				return nil
			}
			rt := start(t, l, nil, runtime.Flow{
				Name:  "totals",
				On:    runtime.On("order.*"),
				Steps: []runtime.Step{runtime.Reduce(tt.spec)},
				Sinks: []runtime.Sink{sink},
				Consumer: &consumer.Options{Workers: 2,
					Retry: consumer.Retry{Base: time.Millisecond, Max: time.Millisecond}},
			})
			orders(t, l, 10)
			sink.await(t, 10)
			st, err := rt.State("totals")
			require.NoError(t, err)
			want := []runtime.StateEntry{{Key: "c0", Value: 22.0}, {Key: "c1", Value: 15.0}, {Key: "c2", Value: 18.0}}
			require.Eventually(t, func() bool {
				items, err := st.Items("")
				return err == nil && assert.ObjectsAreEqual(want, items)
			}, 10*time.Second, time.Millisecond, "reads see every acked event, committed or not")
			v, ok, err := st.Get("c1")
			require.NoError(t, err)
			require.True(t, ok)
			assert.Equal(t, 15.0, v)

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			require.NoError(t, rt.Stop(ctx))
			assert.Equal(t, map[string]string{"c0": "22", "c1": "15", "c2": "18"}, flowtest.CommittedState(t, l, "totals"), "the stop commits it")
		})
	}
}

// A state that is not the reducer's (it changed without a new
// StateVersion), or a sum that overflows, stops a folded flow: nothing is
// committed past it.
func TestFoldedStateThatCannotFoldFailsTheFlow(t *testing.T) {
	tests := []struct {
		name    string
		spec    runtime.ReduceSpec
		stored  string // c0's committed state
		wantErr []string
	}{
		{"a state of another reducer", runtime.ReduceSpec{Func: "count"}, `"a string"`,
			[]string{`key "c0": reduce count: state is string, not a number`, "StateVersion"}},
		{"a sum that overflows", runtime.ReduceSpec{Func: "sum", Value: "data.total * 1e307"}, "1.7e308",
			[]string{`reduce: encode state "c0"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := flowtest.MustOpenLog(t, nil)
			require.NoError(t, l.Update(func(tx *eventlog.Tx) error {
				return snapshot.Put(tx, "counts", snapshot.Change{Key: "c0", Value: []byte(tt.stored)})
			}))
			orders(t, l, 3)
			rt, err := runtime.New(l, &runtime.Options{Supervisor: &supervisor.Options{Restart: supervisor.RestartPolicy{Base: time.Millisecond, MaxRestarts: 1}}})
			require.NoError(t, err)
			require.NoError(t, rt.Add(runtime.Flow{
				Name:  "counts",
				On:    runtime.On("order.*"),
				Steps: []runtime.Step{runtime.Reduce(tt.spec)},
				Sinks: []runtime.Sink{runtime.SinkFunc(func(context.Context, runtime.Delivery) error { return nil })},
			}))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err = rt.RunUntilIdle(ctx)
			require.Error(t, err)
			for _, want := range tt.wantErr {
				assert.Contains(t, err.Error(), want)
			}
			require.NoError(t, l.View(func(tx *eventlog.Tx) error {
				offset, _, err := tx.Offset(eventlog.DefaultStream, "counts")
				assert.Zero(t, offset, "the floor did not pass the events")
				return err
			}))
			assert.Equal(t, map[string]string{"c0": tt.stored}, flowtest.CommittedState(t, l, "counts"))
		})
	}
}

func TestStateOfAFlowWithoutState(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	rt, err := runtime.New(l, nil)
	require.NoError(t, err)
	require.NoError(t, rt.Add(runtime.Flow{Name: "plain", On: runtime.On("order.*"), Sinks: []runtime.Sink{newCollector()}}))
	tests := []struct {
		flow string
		want error
	}{
		{"plain", runtime.ErrNoState},
		{"nope", runtime.ErrUnknownFlow},
	}
	for _, tt := range tests {
		t.Run(tt.flow, func(t *testing.T) {
			_, err := rt.State(tt.flow)
			require.ErrorIs(t, err, tt.want)
			require.ErrorContains(t, err, `"`+tt.flow+`"`)
		})
	}
	require.ErrorIs(t, rt.Wait(), runtime.ErrNotStarted)
}
