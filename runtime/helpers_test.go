package runtime_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/flowrt/flowrt/runtime"
)

// collector is a sink that records deliveries and signals each one.
type collector struct {
	mu   sync.Mutex
	got  []runtime.Delivery
	fail func(runtime.Delivery) error
	each chan runtime.Delivery
}

func newCollector() *collector { return &collector{each: make(chan runtime.Delivery, 1000)} }

func (c *collector) Deliver(_ context.Context, d runtime.Delivery) error {
	if c.fail != nil {
		if err := c.fail(d); err != nil {
			return err
		}
	}
	c.mu.Lock()
	c.got = append(c.got, d)
	c.mu.Unlock()
	c.each <- d
	return nil
}

func (c *collector) deliveries() []runtime.Delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]runtime.Delivery(nil), c.got...)
}

// await waits for n deliveries, failing the test after a deadline.
func (c *collector) await(t *testing.T, n int) []runtime.Delivery {
	t.Helper()
	deadline := time.After(10 * time.Second)
	var out []runtime.Delivery
	for len(out) < n {
		select {
		case d := <-c.each:
			out = append(out, d)
		case <-deadline:
			t.Fatalf("got %d deliveries, want %d", len(out), n)
		}
	}
	return out
}

// runIdle adds the flows and runs the runtime until every flow is idle.
func runIdle(t *testing.T, l *eventlog.Log, opts *runtime.Options, flows ...runtime.Flow) *runtime.Runtime {
	t.Helper()
	rt, err := runtime.New(l, opts)
	require.NoError(t, err)
	require.NoError(t, rt.Add(flows...))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, rt.RunUntilIdle(ctx))
	return rt
}

// start adds the flows, starts the runtime and stops it at cleanup.
func start(t *testing.T, l *eventlog.Log, opts *runtime.Options, flows ...runtime.Flow) *runtime.Runtime {
	t.Helper()
	rt, err := runtime.New(l, opts)
	require.NoError(t, err)
	require.NoError(t, rt.Add(flows...))
	require.NoError(t, rt.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, rt.Stop(ctx))
	})
	return rt
}

func event(typ, key, data string) eventlog.Event {
	e := flowtest.Event(typ, data)
	e.Key = key
	return e
}
