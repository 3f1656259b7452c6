package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/flowrt/flowrt/runtime"
)

// The scenarios of the reference runtime's tests.

func TestMatchingEventIsDelivered(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	sink := newCollector()
	flowtest.MustAppend(t, l, eventlog.DefaultStream, event("link.created", "follows", `{"source_id":"u1"}`))
	runIdle(t, l, nil, runtime.Flow{
		Name:  "follow_notif",
		On:    runtime.Trigger{Types: []string{"link.created"}, Key: "follows"},
		Steps: []runtime.Step{runtime.Map(`{"title": "New follower!"}`)},
		Sinks: []runtime.Sink{sink},
	})
	got := sink.deliveries()
	require.Len(t, got, 1)
	assert.Equal(t, map[string]any{"title": "New follower!"}, got[0].Payload)
	assert.Equal(t, "follow_notif", got[0].Flow)
	assert.Equal(t, uint64(1), got[0].Event.Seq)
	assert.Equal(t, got[0].Event.ID.String(), got[0].ID)
}

func TestNonMatchingEventIsNotDelivered(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	sink := newCollector()
	flowtest.MustAppend(t, l, eventlog.DefaultStream, event("link.created", "likes", `{}`), event("entity.created", "follows", `{}`))
	rt := runIdle(t, l, nil, runtime.Flow{
		Name:  "follow_notif",
		On:    runtime.Trigger{Types: []string{"link.created"}, Key: "follows"},
		Sinks: []runtime.Sink{sink},
	})
	assert.Empty(t, sink.deliveries())
	st := rt.Stats()[0]
	assert.Equal(t, uint64(0), st.Matched)
	assert.Equal(t, uint64(2), st.Committed, "non-matching events are acked")
}

func TestSeveralFlowsEachGetTheirEvents(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	follows, users := newCollector(), newCollector()
	flowtest.MustAppend(t, l, eventlog.DefaultStream,
		event("link.created", "follows", `{}`),
		event("entity.created", "user", `{}`),
		event("link.created", "likes", `{}`), // matches nothing
	)
	runIdle(t, l, nil,
		runtime.Flow{Name: "follow_flow", On: runtime.Trigger{Types: []string{"link.created"}, Key: "follows"}, Sinks: []runtime.Sink{follows}},
		runtime.Flow{Name: "entity_flow", On: runtime.Trigger{Types: []string{"entity.*"}, Key: "user"}, Sinks: []runtime.Sink{users}},
	)
	require.Len(t, follows.deliveries(), 1)
	assert.Equal(t, uint64(1), follows.deliveries()[0].Event.Seq)
	require.Len(t, users.deliveries(), 1)
	assert.Equal(t, uint64(2), users.deliveries()[0].Event.Seq)
}

func TestFilterDropsEvent(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	sink := newCollector()
	flowtest.MustAppend(t, l, eventlog.DefaultStream,
		event("entity.created", "", `{"entity_type":"user"}`),
		event("entity.created", "", `{"entity_type":"admin"}`),
	)
	rt := runIdle(t, l, nil, runtime.Flow{
		Name:  "filtered_flow",
		On:    runtime.On("entity.created"),
		Steps: []runtime.Step{runtime.Filter(`data.entity_type == "admin"`), runtime.Map(`{"title": "admin " + type}`)},
		Sinks: []runtime.Sink{sink},
	})
	got := sink.deliveries()
	require.Len(t, got, 1)
	assert.Equal(t, map[string]any{"title": "admin entity.created"}, got[0].Payload)
	st := rt.Stats()[0]
	assert.Equal(t, uint64(2), st.Matched)
	assert.Equal(t, uint64(1), st.Filtered)
	assert.Equal(t, uint64(1), st.Processed)
}

func TestLookupThenMapThenDeliver(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	sink := newCollector()
	flowtest.MustAppend(t, l, eventlog.DefaultStream, event("link.created", "follows", `{"source_id":"u1"}`))
	users := func(_ context.Context, id any) (any, error) {
		return map[string]any{"id": id, "name": "TestUser"}, nil
	}
	runIdle(t, l, &runtime.Options{Lookups: map[string]runtime.Lookup{"user": users}}, runtime.Flow{
		Name: "resolve_map_flow",
		On:   runtime.On("link.created"),
		Steps: []runtime.Step{
			runtime.Enrich(runtime.EnrichSpec{Lookup: "user", Key: "data.source_id", As: "source"}),
			runtime.Map(`{"title": source.name + " followed you", "source_id": data.source_id}`),
		},
		Sinks: []runtime.Sink{sink},
	})
	got := sink.deliveries()
	require.Len(t, got, 1)
	assert.Equal(t, map[string]any{"title": "TestUser followed you", "source_id": "u1"}, got[0].Payload)
}

func TestFanOutRunsTheRestPerElementAndContainsAFailingPart(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, eventlog.DefaultStream, event("order.created", "o1", `{"items":[{"sku":"a"},{"sku":"bad"},{"sku":"c"}]}`))
	var attempts = map[string]int{}
	sink := newCollector()
	sink.fail = func(d runtime.Delivery) error {
		attempts[d.ID]++
		if d.Payload.(map[string]any)["sku"] == "bad" && attempts[d.ID] < 3 {
			return errors.New("warehouse down")
		}
		return nil
	}
	opts := &consumer.Options{Retry: consumer.Retry{MaxAttempts: 5, Base: 1, Max: 1}}
	rt := runIdle(t, l, nil, runtime.Flow{
		Name:     "ship",
		On:       runtime.On("order.*"),
		Steps:    []runtime.Step{runtime.FanOut("data.items", "item"), runtime.Map(`{"sku": item.sku}`)},
		Sinks:    []runtime.Sink{sink},
		Consumer: opts,
	})
	got := sink.deliveries()
	require.Len(t, got, 3, "each part delivered once, the failing one after its retries")
	id := got[0].Event.ID.String()
	assert.Equal(t, []string{id + "/0", id + "/2", id + "/1"}, []string{got[0].ID, got[1].ID, got[2].ID})
	assert.Equal(t, 1, attempts[id+"/0"], "a part that succeeded is not delivered again on retry")
	assert.Equal(t, 3, attempts[id+"/1"])
	st := rt.Stats()[0]
	assert.Equal(t, uint64(2), st.Failed)
	assert.Equal(t, uint64(1), st.Processed)
}

func TestFanOutPermanentPartIsDeadLettered(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, eventlog.DefaultStream, event("order.created", "o1", `{"items":[1, 2, 3]}`))
	sink := newCollector()
	sink.fail = func(d runtime.Delivery) error {
		if d.Payload == 2.0 {
			return consumer.Permanent(errors.New("rejected"))
		}
		return nil
	}
	runIdle(t, l, nil, runtime.Flow{
		Name:  "parts",
		On:    runtime.On("order.*"),
		Steps: []runtime.Step{runtime.FanOut("data.items", "")},
		Sinks: []runtime.Sink{sink},
	})
	assert.Len(t, sink.deliveries(), 2, "the other parts are delivered")
	dead, err := consumer.DeadLetters(l, eventlog.DefaultStream, "parts", consumer.Range{})
	require.NoError(t, err)
	require.Len(t, dead, 1)
	assert.Contains(t, dead[0].LastError, "part 1: sink 0: rejected")
}

func TestHandlerFlow(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, eventlog.DefaultStream, event("a.b", "", `1`), event("c.d", "", `2`))
	rt, err := runtime.New(l, nil)
	require.NoError(t, err)
	var seen []uint64
	require.NoError(t, rt.Handle("plain", runtime.On("a.*"), func(_ context.Context, e eventlog.Event) error {
		seen = append(seen, e.Seq)
		return nil
	}, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 10e9)
	defer cancel()
	require.NoError(t, rt.RunUntilIdle(ctx))
	assert.Equal(t, []uint64{1}, seen)
}

func TestEmitChainsFlowsOnce(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, eventlog.DefaultStream, event("order.created", "o1", `{"total": 50}`))
	sink := newCollector()
	flows := []runtime.Flow{
		{
			Name:  "price",
			On:    runtime.On("order.created"),
			Steps: []runtime.Step{runtime.Map(`{"total": data.total * 2}`)},
			Sinks: []runtime.Sink{runtime.EmitSink(runtime.EmitSpec{Stream: "priced", Type: "order.priced"})},
		},
		{Name: "notify", On: runtime.Trigger{Stream: "priced"}, Sinks: []runtime.Sink{sink}},
	}
	runIdle(t, l, nil, flows...)
	// A second run that replays the source event emits nothing new.
	require.NoError(t, consumer.Reset(l, eventlog.DefaultStream, "price", eventlog.Earliest()))
	runIdle(t, l, nil, flows...)
	si, err := l.Info("priced")
	require.NoError(t, err)
	assert.Equal(t, uint64(1), si.Last, "the replayed emit was a duplicate")
	got := sink.deliveries()
	require.Len(t, got, 1)
	assert.JSONEq(t, `{"total":100}`, string(got[0].Payload.(json.RawMessage)))
	assert.Equal(t, "price", got[0].Event.Headers[runtime.HeaderFlow])
	assert.Equal(t, "events/1", got[0].Event.Headers[runtime.HeaderSource])
}

func TestAddReportsEveryProblem(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	rt, err := runtime.New(l, nil)
	require.NoError(t, err)
	err = rt.Add(runtime.Flow{
		Name: "bad name!",
		On:   runtime.Trigger{Types: []string{"[oops"}},
		Steps: []runtime.Step{
			runtime.Filter(`dta.x > 1`),
			runtime.Enrich(runtime.EnrichSpec{Lookup: "nope", As: "x"}),
			runtime.Emit(runtime.EmitSpec{Stream: "events", Type: "order.created"}),
		},
		Sinks: []runtime.Sink{runtime.Named("missing")},
	})
	var fe *runtime.FlowError
	require.ErrorAs(t, err, &fe)
	msg := err.Error()
	for _, want := range []string{"name:", "[oops", "unknown name dta", "unknown lookup \"nope\"", "unknown sink \"missing\""} {
		assert.Contains(t, msg, want)
	}
	assert.ErrorIs(t, err, runtime.ErrInvalidFlow)
	assert.ErrorIs(t, err, runtime.ErrUnknownSink)

	err = rt.Add(runtime.Flow{Name: "loop", On: runtime.On("order.*"), Steps: []runtime.Step{runtime.Emit(runtime.EmitSpec{Stream: "events", Type: "order.again"})}, Sinks: []runtime.Sink{newCollector()}})
	require.ErrorContains(t, err, "it would loop")

	ok := runtime.Flow{Name: "ok", Sinks: []runtime.Sink{newCollector()}}
	require.NoError(t, rt.Add(ok))
	require.ErrorIs(t, rt.Add(ok), runtime.ErrDuplicateFlow)
}
