package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/supervisor"
)

// Journal is what the runtime needs of a journal: what its consumers and
// its supervisor need, and Append for emit. *eventlog.Log implements it.
type Journal interface {
	consumer.Journal
	supervisor.Journal
	Append(stream string, events ...eventlog.Event) ([]eventlog.AppendResult, error)
}

// Middleware wraps a flow's event handler, for example to time it out,
// rate-limit it or recover its panics. The handler it wraps returns nil
// to ack, an error to retry, and a consumer.Permanent error to
// dead-letter.
type Middleware func(consumer.Handler) consumer.Handler

// Options configures a Runtime. A nil *Options, and every zero field,
// means the default in the field's comment.
type Options struct {
	// Lookups are the functions enrich steps call, by name.
	Lookups map[string]Lookup

	// Sinks are the sinks flows refer to by name (Named, or a config
	// file's `sink: NAME`). They may be shared between runtimes: the
	// runtime does not close them.
	Sinks map[string]Sink

	// Middleware wraps every flow's handler, outermost first.
	Middleware []Middleware

	// Supervisor configures the supervisor the flows run under: restart
	// policy, lifecycle retention, details recorded with each run.
	Supervisor *supervisor.Options

	// StopTimeout is how long Run and RunUntilIdle let the flows drain
	// before cancelling them. Default 30s.
	StopTimeout time.Duration

	// Logger receives the flows' failures and the lifecycle. Default:
	// discard.
	Logger *slog.Logger
}

// Runtime runs flows over a journal, each as its own durable consumer,
// under a supervisor that persists the lifecycle in the journal's $system
// stream. Add flows, then Run (or Start, Stop and Wait). A Runtime runs
// once. Its methods are safe for concurrent use.
type Runtime struct {
	j    Journal
	opts Options

	mu     sync.Mutex
	flows  []*flow
	defs   []Flow
	byName map[string]bool
	sup    *supervisor.Supervisor

	closeSinks sync.Once
	sinkErr    error
}

// New returns a runtime for the journal.
func New(j Journal, opts *Options) (*Runtime, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.StopTimeout < 0 {
		return nil, fmt.Errorf("%w: StopTimeout must not be negative (got %v)", ErrInvalidFlow, o.StopTimeout)
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := o.Supervisor.Validate(); err != nil {
		return nil, err
	}
	return &Runtime{j: j, opts: o, byName: map[string]bool{}}, nil
}

// Add compiles and registers flows before Start. It validates all of them
// first and adds none if any is invalid: the error is a *FlowError per
// invalid flow (joined), listing every problem, or wraps ErrDuplicateFlow.
func (rt *Runtime) Add(flows ...Flow) error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.sup != nil {
		return ErrStarted
	}
	var errs []error
	var compiled []*flow
	seen := map[string]bool{}
	for _, def := range flows {
		if rt.byName[def.Name] || seen[def.Name] {
			errs = append(errs, fmt.Errorf("%w: %q", ErrDuplicateFlow, def.Name))
			continue
		}
		seen[def.Name] = true
		f, err := rt.compile(def)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		compiled = append(compiled, f)
	}
	if len(errs) > 0 {
		return joinErrors(errs)
	}
	for i, f := range compiled {
		rt.flows = append(rt.flows, f)
		rt.defs = append(rt.defs, flows[i])
		rt.byName[f.name] = true
	}
	return nil
}

// Handle registers a plain handler function as a flow: it receives every
// event the trigger selects, and its result acks, retries or
// dead-letters the event as a consumer.Handler's does.
func (rt *Runtime) Handle(name string, on Trigger, h consumer.Handler, opts *consumer.Options) error {
	if h == nil {
		return &FlowError{Flow: name, Errs: []error{errors.New("handler is nil")}}
	}
	return rt.Add(Flow{Name: name, On: on, Consumer: opts, handler: h})
}

// Flows returns the definitions of the flows added, in order.
func (rt *Runtime) Flows() []Flow {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return append([]Flow(nil), rt.defs...)
}

func (rt *Runtime) compile(def Flow) (*flow, error) {
	var errs []error
	fail := func(err error) { errs = append(errs, err) }
	if err := eventlog.ValidateName(def.Name); err != nil {
		fail(fmt.Errorf("name: %w", err))
	}
	for _, err := range def.On.validate() {
		fail(err)
	}
	if err := def.Consumer.Validate(); err != nil {
		fail(err)
	}
	f := &flow{rt: rt, name: def.Name, trigger: def.On, stream: def.On.stream()}
	if def.Consumer != nil {
		f.copts = *def.Consumer
	}
	if f.copts.Logger == nil {
		f.copts.Logger = rt.opts.Logger.With("flow", def.Name)
	}
	h := consumer.Handler(f.handle)
	if def.handler != nil {
		if len(def.Steps) > 0 || len(def.Sinks) > 0 {
			fail(errors.New("a handler flow has no steps or sinks"))
		}
		user := def.handler
		h = func(ctx context.Context, e eventlog.Event) error {
			if !f.trigger.Match(e) {
				return nil
			}
			f.counters.matched.Add(1)
			err := user(ctx, e)
			if err != nil {
				f.counters.failed.Add(1)
			} else {
				f.counters.processed.Add(1)
			}
			return err
		}
	} else if len(def.Sinks) == 0 {
		fail(errors.New("sinks: a flow needs at least one sink"))
	}
	c := &compiler{rt: rt, flow: def.Name, flowRef: f}
	fail(rt.compileState(def, f))
	for i, s := range def.Steps {
		name := "step " + strconv.Itoa(i) + " (" + s.kind + ")"
		c.site = "step " + strconv.Itoa(i)
		op, one, err := c.compile(s)
		if err != nil {
			fail(fmt.Errorf("%s: %w", name, err))
			continue
		}
		if s.kind == "emit" {
			fail(rt.checkLoop(def, s.emit, name))
		}
		f.steps = append(f.steps, stage{name: name, kind: s.kind, op: op, one: one})
	}
	for i, s := range def.Sinks {
		name := "sink " + strconv.Itoa(i)
		c.site = name
		sink, err := rt.resolveSink(c, s)
		if err != nil {
			fail(fmt.Errorf("%s: %w", name, err))
			continue
		}
		if e, ok := s.(emitSink); ok {
			fail(rt.checkLoop(def, e.spec, name))
		}
		f.sinks = append(f.sinks, stage{name: name, sink: sink})
	}
	f.decode = hasEmitSink(def.Sinks) || slices.ContainsFunc(def.Steps, Step.readsPayload)
	errs = slices.DeleteFunc(errs, func(err error) bool { return err == nil })
	if len(errs) > 0 {
		return nil, &FlowError{Flow: def.Name, Errs: errs}
	}
	for i := len(def.Middleware) - 1; i >= 0; i-- {
		h = def.Middleware[i](h)
	}
	for i := len(rt.opts.Middleware) - 1; i >= 0; i-- {
		h = rt.opts.Middleware[i](h)
	}
	f.handler = h
	return f, nil
}

func (rt *Runtime) resolveSink(c *compiler, s Sink) (Sink, error) {
	switch s := s.(type) {
	case nil:
		return nil, errors.New("sink is nil")
	case namedSink:
		named, ok := rt.opts.Sinks[string(s)]
		if !ok {
			return nil, fmt.Errorf("%w %q", ErrUnknownSink, string(s))
		}
		return named, nil
	case emitSink:
		return c.compileEmit(s.spec)
	}
	return s, nil
}

// checkLoop refuses a flow that emits into its own trigger: each derived
// event would trigger the flow again, forever.
func (rt *Runtime) checkLoop(def Flow, spec EmitSpec, where string) error {
	if spec.Stream != def.On.stream() {
		return nil
	}
	if def.On.matchesType(spec.Type) {
		return fmt.Errorf("%s: emits %s to %s, which the flow's own trigger selects: it would loop", where, spec.Type, spec.Stream)
	}
	return nil
}

func hasEmitSink(sinks []Sink) bool {
	for _, s := range sinks {
		if _, ok := s.(emitSink); ok {
			return true
		}
	}
	return false
}

// prepare creates the supervisor and adds every flow to it.
func (rt *Runtime) prepare() (*supervisor.Supervisor, error) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.sup != nil {
		return nil, ErrStarted
	}
	so := rt.opts.Supervisor
	if so == nil {
		so = &supervisor.Options{Logger: rt.opts.Logger}
	}
	sup, err := supervisor.New(rt.j, so)
	if err != nil {
		return nil, err
	}
	for i, f := range rt.flows {
		if err := sup.Add(f.name, f, rt.defs[i].Restart); err != nil {
			return nil, err
		}
	}
	rt.sup = sup
	return sup, nil
}

// Start starts the supervisor and every flow under it, and returns once
// the runtime is running (see supervisor.Supervisor.Start).
func (rt *Runtime) Start(ctx context.Context) error {
	sup, err := rt.prepare()
	if err != nil {
		return err
	}
	return sup.Start(ctx)
}

func (rt *Runtime) supervisor() *supervisor.Supervisor {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.sup
}

// Stop drains every flow (each commits its floor) and stops the runtime;
// if ctx expires first, it cancels the flows and returns ctx.Err(). Sinks
// that are io.Closers are closed once the flows have stopped.
func (rt *Runtime) Stop(ctx context.Context) error {
	sup := rt.supervisor()
	if sup == nil {
		return rt.closeAllSinks()
	}
	err := sup.Stop(ctx)
	return errors.Join(err, rt.closeAllSinks())
}

// Wait blocks until the runtime has stopped, closes the sinks, and
// returns nil after a clean stop (see supervisor.Supervisor.Wait).
func (rt *Runtime) Wait() error {
	sup := rt.supervisor()
	if sup == nil {
		return ErrNotStarted
	}
	err := sup.Wait()
	return errors.Join(err, rt.closeAllSinks())
}

// Run starts the runtime and blocks until it ends; cancelling ctx stops it
// gracefully within Options.StopTimeout. It returns nil after a clean
// stop.
func (rt *Runtime) Run(ctx context.Context) error {
	sup, err := rt.prepare()
	if err != nil {
		return err
	}
	err = sup.Run(ctx, rt.opts.StopTimeout)
	return errors.Join(err, rt.closeAllSinks())
}

// RunUntilIdle is Run for finite work: it stops gracefully once every
// flow has committed its stream's last event (or ctx is cancelled). For
// batch jobs and tests.
func (rt *Runtime) RunUntilIdle(ctx context.Context) error {
	sup, err := rt.prepare()
	if err != nil {
		return err
	}
	err = sup.RunUntilIdle(ctx, rt.opts.StopTimeout)
	return errors.Join(err, failedFlows(sup.Status()), rt.closeAllSinks())
}

// failedFlows reports the flows the supervisor gave up on: a run that
// stopped cleanly did not do their work.
func failedFlows(st supervisor.Status) error {
	var errs []error
	for _, c := range st.Children {
		if c.State == supervisor.ChildFailed {
			errs = append(errs, fmt.Errorf("flowrt/runtime: flow %s failed: %s", c.Name, c.LastError))
		}
	}
	return errors.Join(errs...)
}

// Done returns a channel closed when the runtime has ended, by a stop or
// a failure (then Wait says which). Before Start it returns nil.
func (rt *Runtime) Done() <-chan struct{} {
	if sup := rt.supervisor(); sup != nil {
		return sup.Done()
	}
	return nil
}

// Status returns the supervisor's status: the runtime's state and each
// flow's. Before Start it is the zero Status.
func (rt *Runtime) Status() supervisor.Status {
	if sup := rt.supervisor(); sup != nil {
		return sup.Status()
	}
	return supervisor.Status{}
}

// Stats returns every flow's counters, in the order the flows were added.
func (rt *Runtime) Stats() []FlowStats {
	rt.mu.Lock()
	flows := append([]*flow(nil), rt.flows...)
	rt.mu.Unlock()
	out := make([]FlowStats, len(flows))
	for i, f := range flows {
		out[i] = f.stats()
	}
	return out
}

func (rt *Runtime) closeAllSinks() error {
	rt.closeSinks.Do(func() {
		rt.mu.Lock()
		flows := append([]*flow(nil), rt.flows...)
		rt.mu.Unlock()
		seen := map[io.Closer]bool{}
		for _, s := range rt.opts.Sinks {
			if c, ok := s.(io.Closer); ok {
				seen[c] = true // registered sinks are their owner's to close
			}
		}
		var errs []error
		for _, f := range flows {
			for _, s := range f.sinks {
				c, ok := s.sink.(io.Closer)
				if !ok || seen[c] {
					continue
				}
				seen[c] = true
				if err := c.Close(); err != nil {
					errs = append(errs, fmt.Errorf("close sink %s of flow %s: %w", s.name, f.name, err))
				}
			}
		}
		rt.sinkErr = errors.Join(errs...)
	})
	return rt.sinkErr
}
