package consumer

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/flowrt/flowrt/eventlog"
)

// KeyFailure says what a failing event does to the later events of its key.
type KeyFailure uint8

const (
	// HoldKey (the default) keeps per-key order: later events with the same
	// key wait until the failing one succeeds or is dead-lettered.
	HoldKey KeyFailure = iota
	// SkipAhead lets later events of the key go on while the failing one
	// waits for its retry, for keys whose order does not matter.
	SkipAhead
)

// String returns the policy's name.
func (k KeyFailure) String() string {
	if k == SkipAhead {
		return "skip-ahead"
	}
	return "hold-key"
}

// Retry is the retry policy for failed events: exponential backoff with
// jitter, then the dead letters.
type Retry struct {
	// MaxAttempts is how many times an event is tried before it is
	// dead-lettered. Default 5; 1 means never retry.
	MaxAttempts int
	// Base is the delay before the first retry. Default 200ms.
	Base time.Duration
	// Max caps the delay. Default 1m.
	Max time.Duration
	// Multiplier grows the delay after each failure. Default 2.
	Multiplier float64
	// Jitter spreads each delay by up to ±Jitter of itself, in [0, 1].
	// Default 0.2.
	Jitter float64
}

// Backoff returns the delay before attempt+1 after attempt failures
// (attempt ≥ 1), jittered with r in [0, 1). Zero fields take their
// defaults.
func (p Retry) Backoff(attempt int, r float64) time.Duration {
	p = p.withDefaults()
	d := float64(p.Base)
	for i := 1; i < attempt && d < float64(p.Max); i++ {
		d *= p.Multiplier
	}
	d = min(d, float64(p.Max))
	d *= 1 + p.Jitter*(2*r-1)
	return time.Duration(max(d, 0))
}

func (p Retry) delay(attempt int) time.Duration { return p.Backoff(attempt, rand.Float64()) }

func (p Retry) withDefaults() Retry {
	if p.MaxAttempts == 0 {
		p.MaxAttempts = 5
	}
	if p.Base == 0 {
		p.Base = 200 * time.Millisecond
	}
	if p.Max == 0 {
		p.Max = time.Minute
	}
	if p.Multiplier == 0 {
		p.Multiplier = 2
	}
	if p.Jitter == 0 {
		p.Jitter = 0.2
	}
	return p
}

// Options configures a Reader. A nil *Options, and every zero field, means
// the default in the field's comment.
type Options struct {
	// Start is where a consumer that has no committed offset begins.
	// A consumer that has one resumes after it, whatever Start says.
	// Default eventlog.Earliest().
	Start *eventlog.Position

	// Workers is how many handlers run at once. Events with the same key
	// never run concurrently and always run in sequence order. Default 1.
	Workers int

	// MaxInFlight bounds the events between the ack floor and the newest
	// fetched event (JetStream's MaxAckPending). It is the backpressure:
	// memory does not grow with the backlog. A stuck event lets at most
	// this many later events complete before fetching pauses. Default 1000.
	MaxInFlight int

	// HandlerTimeout cancels a handler's context after this long; the
	// attempt counts as failed. Default 30s.
	HandlerTimeout time.Duration

	// Retry is the retry policy.
	Retry Retry

	// KeyFailure says whether a failing event holds its key. Default HoldKey.
	KeyFailure KeyFailure

	// CommitInterval is the longest the committed ack floor lags behind the
	// work done while events flow. Default 100ms.
	CommitInterval time.Duration

	// CommitEvery commits the floor early once it has advanced this many
	// events. Default 100000.
	CommitEvery int

	// Logger receives handler panics and persistence failures. Default:
	// discard.
	Logger *slog.Logger

	// Commit, when set, takes part in every commit of the ack floor: what
	// it writes commits atomically with the floor (flow state, for
	// example). Default: none.
	Commit CommitHook
}

// CommitHook takes part in a Reader's commits, so that the effects of the
// events a commit covers are durable exactly when the floor that covers
// them is. Its methods are called from the Reader's commit goroutine and,
// for a redelivered dead letter that succeeds (its effects commit in the
// transaction that clears it, with floor the committed one and done that
// event), from a worker: it must be safe for concurrent use.
type CommitHook interface {
	// Commit writes, inside the transaction that commits floor, the
	// effects of every event at or below floor, and of the events in done:
	// those above the floor that are done, listed only by the last commit
	// of a run. It may run more than once for one commit (the journal can
	// re-run a transaction), and an error fails the commit.
	Commit(tx *eventlog.Tx, floor uint64, done []uint64) error
	// Committed reports that the transaction of the last Commit call
	// committed.
	Committed(floor uint64, done []uint64)
}

// OutcomeHook is a CommitHook that also learns the outcome of every
// attempt, before the floor can pass its event: acked is false for an
// attempt that failed, including one whose handler returned nil after its
// timeout. A hook that keeps an attempt's effects aside can then apply
// exactly those of acked attempts. Outcome is called from the worker
// goroutines, concurrently for events of different keys.
type OutcomeHook interface {
	CommitHook
	Outcome(seq uint64, acked bool)
}

func (o *Options) withDefaults() Options {
	var c Options
	if o != nil {
		c = *o
	}
	if c.Start == nil {
		p := eventlog.Earliest()
		c.Start = &p
	}
	if c.Workers == 0 {
		c.Workers = 1
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 1000
	}
	if c.HandlerTimeout == 0 {
		c.HandlerTimeout = 30 * time.Second
	}
	c.Retry = c.Retry.withDefaults()
	if c.CommitInterval == 0 {
		c.CommitInterval = 100 * time.Millisecond
	}
	if c.CommitEvery == 0 {
		c.CommitEvery = 100000
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every problem with o at once. Zero fields are valid.
func (o *Options) Validate() error {
	if o == nil {
		return nil
	}
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(o.Workers >= 0, "Workers must not be negative (got %d)", o.Workers)
	check(o.MaxInFlight >= 0, "MaxInFlight must not be negative (got %d)", o.MaxInFlight)
	check(o.Workers <= o.MaxInFlight || o.MaxInFlight == 0, "Workers (%d) must not exceed MaxInFlight (%d)", o.Workers, o.MaxInFlight)
	check(o.HandlerTimeout >= 0, "HandlerTimeout must not be negative (got %v)", o.HandlerTimeout)
	check(o.Retry.MaxAttempts >= 0, "Retry.MaxAttempts must not be negative (got %d)", o.Retry.MaxAttempts)
	check(o.Retry.Base >= 0, "Retry.Base must not be negative (got %v)", o.Retry.Base)
	check(o.Retry.Max >= 0, "Retry.Max must not be negative (got %v)", o.Retry.Max)
	check(o.Retry.Max == 0 || o.Retry.Base <= o.Retry.Max, "Retry.Base (%v) must not exceed Retry.Max (%v)", o.Retry.Base, o.Retry.Max)
	check(o.Retry.Multiplier == 0 || o.Retry.Multiplier >= 1, "Retry.Multiplier must be at least 1 (got %v)", o.Retry.Multiplier)
	check(o.Retry.Jitter >= 0 && o.Retry.Jitter <= 1, "Retry.Jitter must be in [0, 1] (got %v)", o.Retry.Jitter)
	check(o.KeyFailure <= SkipAhead, "unknown KeyFailure %d", o.KeyFailure)
	check(o.CommitInterval >= 0, "CommitInterval must not be negative (got %v)", o.CommitInterval)
	check(o.CommitEvery >= 0, "CommitEvery must not be negative (got %d)", o.CommitEvery)
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidOptions, errors.Join(errs...))
}
