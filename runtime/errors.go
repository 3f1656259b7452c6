package runtime

import (
	"errors"
	"fmt"
)

var (
	// ErrStarted is returned by Add, Handle and Start once the runtime
	// has started: a Runtime runs once.
	ErrStarted = errors.New("flowrt/runtime: already started")

	// ErrInvalidFlow is returned by Add, wrapped in a *FlowError, when a
	// flow does not validate.
	ErrInvalidFlow = errors.New("flowrt/runtime: invalid flow")

	// ErrDuplicateFlow is returned by Add when a flow of the same name
	// was already added.
	ErrDuplicateFlow = errors.New("flowrt/runtime: duplicate flow name")

	// ErrUnknownLookup is returned by Add, wrapped, when an enrich step
	// names a lookup that Options.Lookups does not have.
	ErrUnknownLookup = errors.New("flowrt/runtime: unknown lookup")

	// ErrHistoryTruncated is returned, wrapped, by a flow whose state must
	// be rebuilt from events that retention has removed: the flow fails,
	// and its state and version stay as they were.
	ErrHistoryTruncated = errors.New("flowrt/runtime: events a state rebuild needs were removed")

	// ErrReservedKind is returned, wrapped, by Add for a custom Operator
	// named like a built-in step.
	ErrReservedKind = errors.New("flowrt/runtime: reserved step kind")

	// ErrUnknownSink is returned, wrapped, when a flow names a sink that
	// Options.Sinks does not have.
	ErrUnknownSink = errors.New("flowrt/runtime: unknown sink")

	// ErrNotStarted is returned by Wait before Start.
	ErrNotStarted = errors.New("flowrt/runtime: not started")

	// ErrUnknownFlow is returned, wrapped, by State for a flow the runtime
	// does not have.
	ErrUnknownFlow = errors.New("flowrt/runtime: no such flow")

	// ErrNoState is returned, wrapped, by State for a flow without a
	// Reduce step.
	ErrNoState = errors.New("flowrt/runtime: flow has no state")
)

// errFoldUnfinished fails the commits of a stateful flow whose fold of
// reductions was cut short, by a panic, until the flow restarts.
var errFoldUnfinished = errors.New("flowrt/runtime: folding reductions into the state did not finish")

// FlowError lists every problem Add found in one flow.
type FlowError struct {
	Flow string
	Errs []error
}

// Error lists the problems, one per line.
func (e *FlowError) Error() string {
	msg := fmt.Sprintf("flowrt/runtime: flow %q is invalid:", e.Flow)
	for _, err := range e.Errs {
		msg += "\n\t" + err.Error()
	}
	return msg
}

// Unwrap returns ErrInvalidFlow and every problem, for errors.Is and As.
func (e *FlowError) Unwrap() []error { return append([]error{ErrInvalidFlow}, e.Errs...) }

// ExprError is a bad expression: one that does not compile, or that
// failed on an event.
type ExprError struct {
	Expr string
	Err  error
}

// Error quotes the expression and says what is wrong with it.
func (e *ExprError) Error() string { return fmt.Sprintf("expression %q: %v", e.Expr, e.Err) }

// Unwrap returns the compiler's or the evaluator's error.
func (e *ExprError) Unwrap() error { return e.Err }

// PartError says where the processing of one record of an event failed:
// at which step or sink, and for which fan-out part.
type PartError struct {
	Part  string // "" for the whole event
	Stage string // such as "step 2 (map)" or "sink 0"
	Err   error
}

// Error names the part and the stage that failed.
func (e *PartError) Error() string {
	if e.Part == "" {
		return fmt.Sprintf("%s: %v", e.Stage, e.Err)
	}
	return fmt.Sprintf("part %s: %s: %v", e.Part, e.Stage, e.Err)
}

// Unwrap returns the step's or the sink's error.
func (e *PartError) Unwrap() error { return e.Err }

func joinErrors(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}
