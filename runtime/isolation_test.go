package runtime_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/flowrt/flowrt/runtime"
)

func TestFailingFlowDoesNotDelayAnother(t *testing.T) {
	release := make(chan struct{}) // lets the blocked sink go before the runtime stops
	tests := []struct {
		name string
		sink runtime.Sink
	}{
		{"sink fails forever", runtime.SinkFunc(func(context.Context, runtime.Delivery) error {
			return errors.New("downstream is down")
		})},
		{"sink blocks", runtime.SinkFunc(func(ctx context.Context, _ runtime.Delivery) error {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-release:
				return errors.New("released")
			}
		})},
		{"sink panics", runtime.SinkFunc(func(context.Context, runtime.Delivery) error {
			panic("boom")
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := flowtest.MustOpenLog(t, nil)
			healthy := newCollector()
			broken := &consumer.Options{
				Retry:          consumer.Retry{MaxAttempts: 1000, Base: time.Hour, Max: time.Hour},
				HandlerTimeout: time.Hour,
			}
			start(t, l, nil,
				runtime.Flow{Name: "broken", On: runtime.On("order.*"), Sinks: []runtime.Sink{tt.sink}, Consumer: broken},
				runtime.Flow{Name: "healthy", On: runtime.On("order.*"), Sinks: []runtime.Sink{healthy}},
			)
			t.Cleanup(func() {
				select {
				case <-release:
				default:
					close(release)
				}
			})
			const n = 50
			for i := range n {
				flowtest.MustAppend(t, l, eventlog.DefaultStream, event("order.created", "", `{}`))
				got := healthy.await(t, 1)
				assert.Equal(t, uint64(i+1), got[0].Event.Seq)
			}
		})
	}
}

func TestMiddlewareWrapsEveryFlow(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, eventlog.DefaultStream, event("a.b", "", `{}`), event("a.c", "", `{}`))
	var calls []string
	trace := func(name string) runtime.Middleware {
		return func(next consumer.Handler) consumer.Handler {
			return func(ctx context.Context, e eventlog.Event) error {
				calls = append(calls, name)
				return next(ctx, e)
			}
		}
	}
	sink := newCollector()
	runIdle(t, l, &runtime.Options{Middleware: []runtime.Middleware{trace("outer")}}, runtime.Flow{
		Name:       "traced",
		On:         runtime.On("a.b"),
		Sinks:      []runtime.Sink{sink},
		Middleware: []runtime.Middleware{trace("inner")},
	})
	require.Len(t, sink.deliveries(), 1)
	assert.Equal(t, []string{"outer", "inner", "outer", "inner"}, calls, "middleware sees every event, outermost first")
}

func TestRestartResumesAfterCommittedFloor(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, eventlog.DefaultStream, flowtest.Events(10, "order.created")...)
	first := newCollector()
	runIdle(t, l, nil, runtime.Flow{Name: "f", On: runtime.On("order.*"), Sinks: []runtime.Sink{first}})
	require.Len(t, first.deliveries(), 10)

	flowtest.MustAppend(t, l, eventlog.DefaultStream, flowtest.Events(5, "order.created")...)
	second := newCollector()
	runIdle(t, l, nil, runtime.Flow{Name: "f", On: runtime.On("order.*"), Sinks: []runtime.Sink{second}})
	got := second.deliveries()
	require.Len(t, got, 5, "a clean stop commits the floor: only new events are delivered")
	assert.Equal(t, uint64(11), got[0].Event.Seq)
}
