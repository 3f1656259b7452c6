package runtime_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/flowrt/flowrt/runtime"
)

// countingSink counts its deliveries and answers each with result (nil
// when result is unset).
type countingSink struct {
	calls  atomic.Int64
	result atomic.Pointer[error]
}

func (c *countingSink) Deliver(context.Context, runtime.Delivery) error {
	c.calls.Add(1)
	if p := c.result.Load(); p != nil {
		return *p
	}
	return nil
}

func (c *countingSink) answer(err error) { c.result.Store(&err) }

// waitCtx blocks until ctx ends, or fails the test after a deadline.
func waitCtx(t *testing.T, ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(10 * time.Second):
		t.Error("the context was not cancelled")
		return errors.New("not cancelled")
	}
}

func TestSinkTimeout(t *testing.T) {
	t.Run("cancels a slow delivery", func(t *testing.T) {
		s := runtime.SinkTimeout(20 * time.Millisecond)(runtime.SinkFunc(func(ctx context.Context, _ runtime.Delivery) error {
			return waitCtx(t, ctx)
		}))
		require.ErrorIs(t, s.Deliver(context.Background(), sinkDelivery(1, nil)), context.DeadlineExceeded)
	})
	t.Run("zero adds no deadline", func(t *testing.T) {
		s := runtime.SinkTimeout(0)(runtime.SinkFunc(func(ctx context.Context, _ runtime.Delivery) error {
			if _, ok := ctx.Deadline(); ok {
				return errors.New("has a deadline")
			}
			return nil
		}))
		require.NoError(t, s.Deliver(context.Background(), sinkDelivery(1, nil)))
	})
}

func TestTimeoutCancelsHandler(t *testing.T) {
	h := runtime.Timeout(20 * time.Millisecond)(func(ctx context.Context, _ eventlog.Event) error {
		return waitCtx(t, ctx)
	})
	require.ErrorIs(t, h(context.Background(), eventlog.Event{}), context.DeadlineExceeded)
}

func TestRateLimit(t *testing.T) {
	t.Run("spaces calls at the rate", func(t *testing.T) {
		inner := &countingSink{}
		const perSecond, n = 1000.0, 21
		s := runtime.RateLimit(perSecond, 1)(inner)
		start := time.Now()
		for i := range n {
			require.NoError(t, s.Deliver(context.Background(), sinkDelivery(uint64(i+1), nil)))
		}
		// The burst of 1 goes at once, each other call waits 1/perSecond.
		minimum := time.Duration(float64(n-1) / perSecond * float64(time.Second))
		assert.GreaterOrEqual(t, time.Since(start), minimum-time.Millisecond)
		assert.Equal(t, int64(n), inner.calls.Load())
	})
	t.Run("burst then refuses what the context cannot wait for", func(t *testing.T) {
		inner := &countingSink{}
		s := runtime.RateLimit(0.001, 3)(inner) // one call per 1000 s after the burst
		for i := range 3 {
			require.NoError(t, s.Deliver(context.Background(), sinkDelivery(uint64(i+1), nil)))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := s.Deliver(ctx, sinkDelivery(4, nil))
		require.Error(t, err, "the wait would outlast the context: fail now rather than wait")
		assert.False(t, consumer.IsPermanent(err))
		assert.Equal(t, int64(3), inner.calls.Load(), "not delivered")
	})
	t.Run("a cancelled context stops the wait", func(t *testing.T) {
		inner := &countingSink{}
		s := runtime.RateLimit(0.001, 1)(inner)
		require.NoError(t, s.Deliver(context.Background(), sinkDelivery(1, nil)))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		require.ErrorIs(t, s.Deliver(ctx, sinkDelivery(2, nil)), context.Canceled)
		assert.Equal(t, int64(1), inner.calls.Load())
	})
	t.Run("zero rate means no limit", func(t *testing.T) {
		inner := &countingSink{}
		s := runtime.RateLimit(0, 0)(inner)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		for i := range 100 {
			require.NoError(t, s.Deliver(ctx, sinkDelivery(uint64(i+1), nil)), "never waits")
		}
		assert.Equal(t, int64(100), inner.calls.Load())
	})
}

func TestCircuitBreakerOpensAndHalfOpens(t *testing.T) {
	const failures, cooldown = 3, 50 * time.Millisecond
	inner := &countingSink{}
	inner.answer(errors.New("downstream down"))
	s := runtime.CircuitBreaker(runtime.BreakerOptions{Name: "hook", Failures: failures, Cooldown: cooldown})(inner)
	ctx := context.Background()

	var opened time.Time // at or before the breaker opened
	for i := range failures {
		opened = time.Now()
		err := s.Deliver(ctx, sinkDelivery(uint64(i+1), nil))
		require.ErrorContains(t, err, "downstream down", "failure %d goes through", i+1)
		require.NotErrorIs(t, err, runtime.ErrCircuitOpen)
	}
	err := s.Deliver(ctx, sinkDelivery(9, nil))
	require.ErrorIs(t, err, runtime.ErrCircuitOpen, "open: fails fast")
	assert.Contains(t, err.Error(), `"hook"`)
	assert.False(t, consumer.IsPermanent(err), "retryable: the event is retried later")
	assert.Equal(t, int64(failures), inner.calls.Load(), "the sink was not called")

	// After the cooldown a trial goes through; it fails, so the breaker
	// opens again.
	err = awaitTrial(s)
	assert.GreaterOrEqual(t, time.Since(opened), cooldown)
	require.ErrorContains(t, err, "downstream down")
	require.ErrorIs(t, s.Deliver(ctx, sinkDelivery(9, nil)), runtime.ErrCircuitOpen, "the failed trial reopened it")

	// The next trial succeeds and closes it.
	inner.answer(nil)
	require.NoError(t, awaitTrial(s))
	calls := inner.calls.Load()
	for i := range 2 * failures {
		require.NoError(t, s.Deliver(ctx, sinkDelivery(uint64(i+1), nil)))
	}
	assert.Equal(t, calls+2*failures, inner.calls.Load(), "closed: every call goes through")
}

// awaitTrial delivers until the breaker lets a call through, and returns
// that call's result; after a deadline, an error saying so.
func awaitTrial(s runtime.Sink) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		err := s.Deliver(context.Background(), sinkDelivery(1, nil))
		if !errors.Is(err, runtime.ErrCircuitOpen) {
			return err
		}
		select {
		case <-tick.C:
		case <-deadline:
			return errors.New("the breaker never half-opened")
		}
	}
}

func TestCircuitBreakerHalfOpenLetsOneTrialThrough(t *testing.T) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) }) // frees the trial if the test fails
	var fail atomic.Bool
	fail.Store(true)
	inner := runtime.SinkFunc(func(context.Context, runtime.Delivery) error {
		if fail.Load() {
			return errors.New("down")
		}
		entered <- struct{}{}
		<-release
		return nil
	})
	s := runtime.CircuitBreaker(runtime.BreakerOptions{Failures: 1, Cooldown: 20 * time.Millisecond})(inner)
	require.Error(t, s.Deliver(context.Background(), sinkDelivery(1, nil)))
	fail.Store(false)

	trial := make(chan error, 1)
	go func() { trial <- awaitTrial(s) }()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no trial")
	}
	err := s.Deliver(context.Background(), sinkDelivery(2, nil))
	require.ErrorIs(t, err, runtime.ErrCircuitOpen, "a second call while the trial is in flight fails fast")
	assert.Contains(t, err.Error(), "half-open")
	once.Do(func() { close(release) })
	require.NoError(t, <-trial)
}

func TestCircuitBreakerIgnores(t *testing.T) {
	tests := []struct {
		name string
		err  error
		ctx  func() context.Context
	}{
		{
			name: "permanent errors",
			err:  consumer.Permanent(errors.New("404")),
			ctx:  context.Background,
		},
		{
			name: "the caller's cancellation",
			err:  context.Canceled,
			ctx: func() context.Context {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return ctx
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inner := &countingSink{}
			inner.answer(tt.err)
			s := runtime.CircuitBreaker(runtime.BreakerOptions{Failures: 2, Cooldown: time.Hour})(inner)
			for range 10 {
				err := s.Deliver(tt.ctx(), sinkDelivery(1, nil))
				require.ErrorIs(t, err, tt.err, "the sink's own error, never ErrCircuitOpen")
			}
			assert.Equal(t, int64(10), inner.calls.Load())

			// They do not reset the count either: two real failures open it.
			inner.answer(errors.New("down"))
			require.Error(t, s.Deliver(context.Background(), sinkDelivery(1, nil)))
			inner.answer(tt.err)
			require.ErrorIs(t, s.Deliver(tt.ctx(), sinkDelivery(1, nil)), tt.err)
			inner.answer(errors.New("down"))
			require.Error(t, s.Deliver(context.Background(), sinkDelivery(1, nil)))
			require.ErrorIs(t, s.Deliver(context.Background(), sinkDelivery(1, nil)), runtime.ErrCircuitOpen)
		})
	}
}

func TestCircuitBreakerSinkTimeoutCounts(t *testing.T) {
	// A timeout inside the breaker is the sink being slow: a failure.
	slow := runtime.SinkFunc(func(ctx context.Context, _ runtime.Delivery) error { return waitCtx(t, ctx) })
	s := runtime.WithMiddleware(slow,
		runtime.CircuitBreaker(runtime.BreakerOptions{Failures: 1, Cooldown: time.Hour}),
		runtime.SinkTimeout(time.Millisecond),
	)
	require.ErrorIs(t, s.Deliver(context.Background(), sinkDelivery(1, nil)), context.DeadlineExceeded)
	require.ErrorIs(t, s.Deliver(context.Background(), sinkDelivery(1, nil)), runtime.ErrCircuitOpen)
}

func TestRecover(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	tests := []struct {
		name   string
		log    *slog.Logger
		panic  any
		expect string
	}{
		{name: "string", log: logger, panic: "boom", expect: "boom"},
		{name: "error", log: logger, panic: consumer.Permanent(errors.New("bad")), expect: "bad"},
		{name: "nil logger", panic: 42, expect: "42"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs.Reset()
			h := runtime.Recover(tt.log)(func(context.Context, eventlog.Event) error { panic(tt.panic) })
			err := h(context.Background(), eventlog.Event{Stream: "events", Seq: 7})
			require.ErrorContains(t, err, tt.expect)
			assert.Contains(t, err.Error(), "events/7")
			assert.False(t, consumer.IsPermanent(err), "retried, whatever the panic")
			if tt.log != nil {
				assert.Contains(t, logs.String(), "handler panicked")
				assert.Contains(t, logs.String(), "middleware_test.go", "the stack is logged")
			}
		})
	}
	t.Run("no panic", func(t *testing.T) {
		want := errors.New("plain")
		h := runtime.Recover(nil)(func(context.Context, eventlog.Event) error { return want })
		require.ErrorIs(t, h(context.Background(), eventlog.Event{}), want)
	})
}

// A flow whose handler panics once: Recover keeps the process alive and
// the event is retried.
func TestRecoverInAFlow(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, eventlog.DefaultStream, event("order.created", "", `{}`))
	var attempts atomic.Int64
	sink := newCollector()
	sink.fail = func(runtime.Delivery) error {
		if attempts.Add(1) == 1 {
			panic("first attempt")
		}
		return nil
	}
	runIdle(t, l, &runtime.Options{Middleware: []runtime.Middleware{runtime.Recover(nil)}}, runtime.Flow{
		Name:     "orders",
		On:       runtime.On("order.*"),
		Sinks:    []runtime.Sink{sink},
		Consumer: &consumer.Options{Retry: consumer.Retry{MaxAttempts: 5, Base: 1, Max: 1}},
	})
	assert.Equal(t, int64(2), attempts.Load())
	assert.Len(t, sink.deliveries(), 1)
}

func TestWithMiddleware(t *testing.T) {
	t.Run("outermost first", func(t *testing.T) {
		var mu sync.Mutex
		var order []string
		note := func(name string) runtime.SinkMiddleware {
			return func(next runtime.Sink) runtime.Sink {
				return runtime.SinkFunc(func(ctx context.Context, d runtime.Delivery) error {
					mu.Lock()
					order = append(order, name)
					mu.Unlock()
					return next.Deliver(ctx, d)
				})
			}
		}
		sink := note("sink")(runtime.SinkFunc(func(context.Context, runtime.Delivery) error { return nil }))
		s := runtime.WithMiddleware(sink, note("a"), note("b"))
		require.NoError(t, s.Deliver(context.Background(), sinkDelivery(1, nil)))
		assert.Equal(t, []string{"a", "b", "sink"}, order)
	})
	t.Run("closes a closer", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "out.jsonl")
		s := runtime.WithMiddleware(runtime.FileSink(path), runtime.SinkTimeout(time.Second), runtime.RateLimit(1000, 10))
		require.NoError(t, s.Deliver(context.Background(), sinkDelivery(1, nil)))
		c, ok := s.(io.Closer)
		require.True(t, ok)
		require.NoError(t, c.Close())
		require.NoError(t, c.Close(), "idempotent")
		require.Error(t, s.Deliver(context.Background(), sinkDelivery(2, nil)), "the file sink is closed")
		assert.Len(t, readLines(t, path), 1)
	})
	t.Run("a sink that is no closer", func(t *testing.T) {
		s := runtime.WithMiddleware(&countingSink{})
		closeSink(t, s)
	})
}

// A breaker in front of a failing sink: after two failures it fails fast,
// and the consumer's backoff retries the event later.
func ExampleCircuitBreaker() {
	down := runtime.SinkFunc(func(context.Context, runtime.Delivery) error {
		return errors.New("connection refused")
	})
	sink := runtime.WithMiddleware(down,
		runtime.CircuitBreaker(runtime.BreakerOptions{Name: "warehouse", Failures: 2, Cooldown: time.Minute}),
		runtime.SinkTimeout(5*time.Second),
	)
	for range 3 {
		err := sink.Deliver(context.Background(), runtime.Delivery{ID: "01JAZ5V3K2Q9X0M7N4B8C6D2EF"})
		fmt.Printf("%v (open: %t)\n", err, errors.Is(err, runtime.ErrCircuitOpen))
	}
	// Output:
	// connection refused (open: false)
	// connection refused (open: false)
	// flowrt/runtime: circuit breaker open (breaker "warehouse") (open: true)
}
