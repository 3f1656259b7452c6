package runtime

import (
	"fmt"
	"path"
	"time"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/supervisor"
)

// Flow declares what happens to the events of one stream: which events it
// takes (On), what the steps do with each, and where the results go
// (Sinks). A Flow is a value; Runtime.Add compiles it. Flows loaded from a
// config file compile to the same thing.
//
// Each flow is its own durable consumer, named after the flow: it acks,
// retries and dead-letters on its own, so one flow's failing sink or
// backlog never delays another.
type Flow struct {
	// Name names the flow and its consumer. Required; a valid journal name.
	Name string

	// Description is free text, shown by tools.
	Description string

	// On selects the events the flow takes.
	On Trigger

	// Steps run in order on every event On selects. Each step sees what
	// the previous one produced: a filter may drop it, a map replaces its
	// payload, a fan_out turns it into several parts.
	Steps []Step

	// Sinks receive every record that comes out of the last step, in
	// order. A flow needs at least one sink (or a Handler).
	Sinks []Sink

	// Consumer configures the flow's consumer (workers, retries, handler
	// timeout, start position). Nil means consumer defaults, except that
	// Start defaults to the stream's earliest event.
	Consumer *consumer.Options

	// Restart is the flow's restart policy under the supervisor if its
	// consumer fails (for example, the journal refused a commit). Nil
	// means the runtime's default.
	Restart *supervisor.RestartPolicy

	// Middleware wraps the flow's event handler, outermost first, after
	// the runtime's own Options.Middleware.
	Middleware []Middleware

	// StateVersion is the version of the flow's state definition (its
	// Reduce step). When it differs from the version the committed state
	// was computed with, the state is rebuilt before the flow runs: from
	// the newest snapshot of this version, or from the stream's start.
	// Bump it when the reducer changes meaning.
	StateVersion int

	// SnapshotEvery takes a snapshot of the flow's state this often while
	// it runs (0: only on demand, FlowState.Snapshot).
	SnapshotEvery time.Duration

	// handler, set by Runtime.Handle, replaces the steps and sinks.
	handler consumer.Handler
}

// Trigger selects a flow's events.
type Trigger struct {
	// Stream is the stream the flow consumes. Default eventlog.DefaultStream.
	Stream string

	// Types are glob patterns (Go's path.Match: * ? [a-z] \) over the
	// event type, such as "order.*". An event matches if any pattern does.
	// Empty matches every type.
	Types []string

	// Key is a glob pattern over the event key. Empty matches every key,
	// including none.
	Key string
}

// On returns a trigger on the default stream for the given type patterns.
func On(types ...string) Trigger { return Trigger{Types: types} }

func (t Trigger) stream() string {
	if t.Stream == "" {
		return eventlog.DefaultStream
	}
	return t.Stream
}

// validate reports every problem with the trigger.
func (t Trigger) validate() []error {
	var errs []error
	if t.Stream != "" {
		if err := eventlog.ValidateName(t.Stream); err != nil {
			errs = append(errs, fmt.Errorf("stream: %w", err))
		}
	}
	for _, p := range t.Types {
		if p == "" {
			errs = append(errs, fmt.Errorf("types: empty pattern"))
		} else if _, err := path.Match(p, ""); err != nil {
			errs = append(errs, fmt.Errorf("types: pattern %q: %w", p, err))
		}
	}
	if t.Key != "" {
		if _, err := path.Match(t.Key, ""); err != nil {
			errs = append(errs, fmt.Errorf("key: pattern %q: %w", t.Key, err))
		}
	}
	return errs
}

// Match reports whether the trigger selects e. It assumes the patterns
// are valid (Runtime.Add checks them) and e is from the trigger's stream.
func (t Trigger) Match(e eventlog.Event) bool {
	if t.Key != "" {
		if ok, _ := path.Match(t.Key, e.Key); !ok {
			return false
		}
	}
	return t.matchesType(e.Type)
}

// matchesType reports whether any type pattern (or none) selects typ.
func (t Trigger) matchesType(typ string) bool {
	if len(t.Types) == 0 {
		return true
	}
	for _, p := range t.Types {
		if ok, _ := path.Match(p, typ); ok {
			return true
		}
	}
	return false
}
