package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	goruntime "runtime"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
)

// ErrCircuitOpen is returned, wrapped, by a sink under CircuitBreaker
// while its breaker is open (or half-open with its trial in flight). It is
// retryable: the consumer's backoff tries the event again later.
var ErrCircuitOpen = errors.New("flowrt/runtime: circuit breaker open")

// SinkMiddleware wraps a sink, for example to time it out, rate-limit it
// or stop calling it while it fails. The sink it returns follows the Sink
// rules: it is called concurrently, and its error retries the event or,
// when consumer.Permanent, dead-letters it.
type SinkMiddleware func(Sink) Sink

// WithMiddleware wraps s, outermost first: WithMiddleware(s, a, b)
// delivers through a, then b, then s. The result is an io.Closer that
// closes s when s is one (once, however often it is called), so the
// runtime still closes s when it stops.
func WithMiddleware(s Sink, mw ...SinkMiddleware) Sink {
	wrapped := s
	for i := len(mw) - 1; i >= 0; i-- {
		wrapped = mw[i](wrapped)
	}
	return &middlewareSink{Sink: wrapped, inner: s}
}

type middlewareSink struct {
	Sink
	inner Sink

	once sync.Once
	err  error
}

// Close closes the wrapped sink if it is an io.Closer.
func (m *middlewareSink) Close() error {
	m.once.Do(func() {
		if c, ok := m.inner.(io.Closer); ok {
			m.err = c.Close()
		}
	})
	return m.err
}

// SinkTimeout gives each Deliver a context deadline d from now. The sink
// must honour its context for the deadline to take effect. A d of 0 or
// less adds no deadline.
func SinkTimeout(d time.Duration) SinkMiddleware {
	return func(next Sink) Sink {
		if d <= 0 {
			return next
		}
		return SinkFunc(func(ctx context.Context, del Delivery) error {
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			return next.Deliver(ctx, del)
		})
	}
}

// RateLimit lets at most perSecond deliveries a second through, with
// bursts of up to burst (golang.org/x/time/rate). A Deliver over the rate
// waits for its turn rather than failing; if its context ends first, or
// would end before its turn, it returns an error (retryable) without
// delivering. Each sink the middleware wraps gets its own limiter. A
// perSecond of 0 or less, or +Inf, means no limit; a burst below 1 means 1.
func RateLimit(perSecond float64, burst int) SinkMiddleware {
	return func(next Sink) Sink {
		if perSecond <= 0 || math.IsInf(perSecond, 1) || math.IsNaN(perSecond) {
			return next
		}
		lim := rate.NewLimiter(rate.Limit(perSecond), max(burst, 1))
		return SinkFunc(func(ctx context.Context, d Delivery) error {
			if err := lim.Wait(ctx); err != nil {
				return fmt.Errorf("flowrt/runtime: rate limit: %w", err)
			}
			return next.Deliver(ctx, d)
		})
	}
}

// BreakerOptions configures CircuitBreaker. A zero field means the
// default in its comment.
type BreakerOptions struct {
	// Name names the breaker in its errors and logs.
	Name string

	// Failures is how many consecutive failed deliveries open the
	// breaker. Default 5.
	Failures int

	// Cooldown is how long the breaker stays open before it lets one
	// trial delivery through (half-open): the trial's success closes it,
	// its failure opens it again. Default 30s.
	Cooldown time.Duration
}

// CircuitBreaker stops calling a failing sink (github.com/sony/gobreaker/v2).
// After Failures consecutive failures the breaker opens: each Deliver
// fails at once with an error wrapping ErrCircuitOpen, which is retryable,
// so the consumer's backoff retries the event later. After Cooldown one
// trial goes through. Permanent errors (consumer.IsPermanent) and
// deliveries whose caller's context was cancelled count neither as
// failures nor as successes. Each sink the middleware wraps gets its own
// breaker.
func CircuitBreaker(o BreakerOptions) SinkMiddleware {
	if o.Failures <= 0 {
		o.Failures = 5
	}
	if o.Cooldown <= 0 {
		o.Cooldown = 30 * time.Second
	}
	return func(next Sink) Sink {
		cb := gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
			Name:    o.Name,
			Timeout: o.Cooldown,
			ReadyToTrip: func(c gobreaker.Counts) bool {
				return c.ConsecutiveFailures >= uint32(o.Failures)
			},
			IsExcluded: func(err error) bool { return errors.Is(err, errNotCounted) },
		})
		return &breakerSink{next: next, cb: cb, name: o.Name}
	}
}

// errNotCounted tells the breaker to leave a result out of its counts.
var errNotCounted = errors.New("not counted")

type breakerSink struct {
	next Sink
	cb   *gobreaker.TwoStepCircuitBreaker[struct{}]
	name string
}

func (b *breakerSink) Deliver(ctx context.Context, d Delivery) (err error) {
	done, err := b.cb.Allow()
	if err != nil {
		// Open, or half-open with its trial in flight.
		if errors.Is(err, gobreaker.ErrTooManyRequests) {
			return fmt.Errorf("%w (breaker %q, half-open: a trial delivery is in flight)", ErrCircuitOpen, b.name)
		}
		return fmt.Errorf("%w (breaker %q)", ErrCircuitOpen, b.name)
	}
	defer func() {
		if p := recover(); p != nil {
			done(fmt.Errorf("panic: %v", p))
			panic(p)
		}
	}()
	err = b.next.Deliver(ctx, d)
	switch {
	case err == nil:
		done(nil)
	case consumer.IsPermanent(err), ctx.Err() != nil:
		done(errNotCounted)
	default:
		done(err)
	}
	return err
}

// Timeout cancels the handler's context d after the handler starts. The
// handler must honour its context for the timeout to take effect. A d of
// 0 or less adds no timeout.
func Timeout(d time.Duration) Middleware {
	return func(next consumer.Handler) consumer.Handler {
		if d <= 0 {
			return next
		}
		return func(ctx context.Context, e eventlog.Event) error {
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			return next(ctx, e)
		}
	}
}

// Recover turns a panic in the handler into an error, logging the panic
// and its stack to log (nil: discard), so the event is retried and the
// process lives. The error is always retryable, whatever the panic value.
func Recover(log *slog.Logger) Middleware {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return func(next consumer.Handler) consumer.Handler {
		return func(ctx context.Context, e eventlog.Event) (err error) {
			defer func() {
				p := recover()
				if p == nil {
					return
				}
				buf := make([]byte, 64<<10)
				buf = buf[:goruntime.Stack(buf, false)]
				log.ErrorContext(ctx, "flowrt/runtime: handler panicked",
					"stream", e.Stream, "seq", e.Seq, "id", e.ID.String(), "panic", fmt.Sprint(p), "stack", string(buf))
				err = fmt.Errorf("flowrt/runtime: handler panicked on event %s/%d: %v", e.Stream, e.Seq, p)
			}()
			return next(ctx, e)
		}
	}
}
