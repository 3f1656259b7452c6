package supervisor

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Clock is the supervisor's source of time, so tests can drive restart
// backoff without sleeping.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// RestartPolicy says how a failing child is restarted, one-for-one: the
// other children keep running.
type RestartPolicy struct {
	// Base is the delay before the first restart. Default 100ms.
	Base time.Duration
	// Max caps the delay. Default 30s.
	Max time.Duration
	// Multiplier grows the delay after each restart. Default 2.
	Multiplier float64
	// MaxRestarts within Window put the child in ChildFailed: the runtime
	// keeps running and reports itself unhealthy. Default 5.
	MaxRestarts int
	// Window is the span MaxRestarts counts over. Default 1m.
	Window time.Duration
}

// Delay returns the backoff before restart number n (n ≥ 1).
func (p RestartPolicy) Delay(n int) time.Duration {
	d := float64(p.Base)
	for i := 1; i < n && d < float64(p.Max); i++ {
		d *= p.Multiplier
	}
	return time.Duration(min(d, float64(p.Max)))
}

// Options configures a Supervisor. A nil *Options, and every zero field,
// means the default in the field's comment.
type Options struct {
	// Restart is the default restart policy of children.
	Restart RestartPolicy

	// KeepRuns is how many runs' lifecycles $system keeps. Default 100.
	KeepRuns int
	// KeepFor drops runs that ended longer ago than this. Default 30 days.
	KeepFor time.Duration

	// IdlePoll is how often RunUntilIdle asks the children whether they
	// have caught up. Default 50ms.
	IdlePoll time.Duration

	// Details are recorded with the starting transition of every run (for
	// example the version and the config file).
	Details map[string]string

	// Clock is the time source. Default: the system clock.
	Clock Clock

	// Logger receives lifecycle messages. Default: discard.
	Logger *slog.Logger
}

func (o *Options) withDefaults() Options {
	var c Options
	if o != nil {
		c = *o
	}
	c.Restart = c.Restart.withDefaults()
	if c.KeepRuns == 0 {
		c.KeepRuns = 100
	}
	if c.KeepFor == 0 {
		c.KeepFor = 30 * 24 * time.Hour
	}
	if c.IdlePoll == 0 {
		c.IdlePoll = 50 * time.Millisecond
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (p RestartPolicy) withDefaults() RestartPolicy {
	if p.Base == 0 {
		p.Base = 100 * time.Millisecond
	}
	if p.Max == 0 {
		p.Max = 30 * time.Second
	}
	if p.Multiplier == 0 {
		p.Multiplier = 2
	}
	if p.MaxRestarts == 0 {
		p.MaxRestarts = 5
	}
	if p.Window == 0 {
		p.Window = time.Minute
	}
	return p
}

func (p RestartPolicy) validate(errs []error, prefix string) []error {
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(prefix+format, args...))
		}
	}
	check(p.Base >= 0, "Base must not be negative (got %v)", p.Base)
	check(p.Max >= 0, "Max must not be negative (got %v)", p.Max)
	check(p.Max == 0 || p.Base <= p.Max, "Base (%v) must not exceed Max (%v)", p.Base, p.Max)
	check(p.Multiplier == 0 || p.Multiplier >= 1, "Multiplier must be at least 1 (got %v)", p.Multiplier)
	check(p.MaxRestarts >= 0, "MaxRestarts must not be negative (got %d)", p.MaxRestarts)
	check(p.Window >= 0, "Window must not be negative (got %v)", p.Window)
	return errs
}

// Validate reports every problem with o at once. Zero fields are valid.
func (o *Options) Validate() error {
	if o == nil {
		return nil
	}
	errs := o.Restart.validate(nil, "Restart.")
	if o.KeepRuns < 0 {
		errs = append(errs, fmt.Errorf("KeepRuns must not be negative (got %d)", o.KeepRuns))
	}
	if o.KeepFor < 0 {
		errs = append(errs, fmt.Errorf("KeepFor must not be negative (got %v)", o.KeepFor))
	}
	if o.IdlePoll < 0 {
		errs = append(errs, fmt.Errorf("IdlePoll must not be negative (got %v)", o.IdlePoll))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidOptions, errors.Join(errs...))
}
