package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/oklog/ulid/v2"
)

// Child is something the supervisor runs and restarts: a flow, for
// example. Run blocks until ctx is cancelled or the child fails; a nil
// return while the runtime runs means the child finished its work. Run is
// called from one goroutine per child, again after each restart, never
// twice at once.
type Child interface {
	Run(ctx context.Context) error
}

// Drainer is a Child that can stop gracefully: Shutdown stops its intake
// and waits for in-flight work until ctx expires. Children that are not
// Drainers are stopped by cancelling Run's context. Shutdown is called from
// another goroutine than Run, possibly before Run has started or after it
// returned: it must be safe then too.
type Drainer interface {
	Shutdown(ctx context.Context) error
}

// Idler is a Child that can tell whether it has caught up with its input,
// for RunUntilIdle. Idle is called concurrently with Run.
type Idler interface {
	Idle() bool
}

// Detailer is a Child that reports details worth recording with the
// runtime's draining and stopped transitions, such as its in-flight count.
// Details is called concurrently with Run.
type Detailer interface {
	Details() map[string]string
}

// Journal is what the supervisor needs of a journal: transactions to
// record its lifecycle and read it back, and truncation for retention.
type Journal interface {
	Update(fn func(*eventlog.Tx) error) error
	View(fn func(*eventlog.Tx) error) error
	Truncate(stream string, below uint64, policy eventlog.TruncatePolicy) (uint64, error)
}

// Supervisor runs children under one persisted lifecycle. Every transition
// of the runtime and of each child is appended to the journal's $system
// stream, and fsynced, before it takes effect; a start that finds the
// previous run did not end records one recovery event first. Its methods
// are safe for concurrent use.
type Supervisor struct {
	j    Journal
	opts Options
	run  string

	mu       sync.Mutex
	state    State
	reason   string
	children []*child
	byName   map[string]*child
	changed  chan struct{} // closed and replaced on every state change
	timedOut bool
	abort    bool // the run was aborted
	started  bool // Start was called: Add and another Start are refused

	hard     context.Context // cancelled to cancel every child at once
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	done     chan struct{} // closed when the run is terminal
	startEnd chan struct{} // closed when Start returns
	stopOnce sync.Once
}

// New returns a supervisor for the journal, in state Created.
func New(j Journal, opts *Options) (*Supervisor, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	s := &Supervisor{
		j:        j,
		opts:     opts.withDefaults(),
		run:      ulid.Make().String(),
		byName:   map[string]*child{},
		changed:  make(chan struct{}),
		done:     make(chan struct{}),
		startEnd: make(chan struct{}),
	}
	s.hard, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// RunID returns this run's ID, recorded with each of its events.
func (s *Supervisor) RunID() string { return s.run }

// Add registers a child before Start. policy nil means Options.Restart.
func (s *Supervisor) Add(name string, c Child, policy *RestartPolicy) error {
	if err := eventlog.ValidateName(name); err != nil {
		return err
	}
	p := s.opts.Restart
	if policy != nil {
		if errs := policy.validate(nil, "RestartPolicy."); len(errs) > 0 {
			return fmt.Errorf("%w: %w", ErrInvalidOptions, errors.Join(errs...))
		}
		p = policy.withDefaults()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != Created || s.started {
		return ErrStarted
	}
	if _, dup := s.byName[name]; dup {
		return fmt.Errorf("%w: %q", ErrDuplicateChild, name)
	}
	ch := &child{name: name, c: c, policy: p, stopc: make(chan struct{})}
	s.children = append(s.children, ch)
	s.byName[name] = ch
	return nil
}

// Start records the run, checks how the previous run ended and records a
// recovery if it crashed, starts every child, and returns once the runtime
// is Running. It does not wait for the children to finish: see Wait.
func (s *Supervisor) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.state != Created || s.started {
		s.mu.Unlock()
		return ErrStarted
	}
	s.started = true
	s.mu.Unlock()
	defer close(s.startEnd)
	prev, err := inspectPrevious(s.j)
	if err != nil {
		return s.failStart(fmt.Errorf("flowrt/supervisor: reading the previous run: %w", err))
	}
	details := map[string]string{"pid": strconv.Itoa(os.Getpid()), "children": strconv.Itoa(len(s.children))}
	if host, err := os.Hostname(); err == nil {
		details["host"] = host
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		details["version"] = bi.Main.Version
	}
	for k, v := range s.opts.Details {
		details[k] = v
	}
	if !prev.crashed() {
		if err := s.transition(Starting, "", details); err != nil {
			return s.failStart(err)
		}
	} else {
		// Starting, recovering and the recovery in one transaction: a run
		// killed between them would leave a crash whose recovery nobody
		// records, since the next start looks at this run only.
		steps := []step{
			{to: Starting, details: details},
			{to: Recovering, reason: "previous run " + prev.run + " crashed in state " + prev.last.String()},
		}
		if err := s.transitions(steps, func(tx *eventlog.Tx) error { return s.appendRecovery(tx, prev) }); err != nil {
			return s.failStart(err)
		}
	}
	if err := ctx.Err(); err != nil {
		return s.failStart(err)
	}
	s.applyRetention()
	// Running is recorded before the children start, so $system reads in
	// the order things happened: the runtime runs, then each child does.
	if err := s.transition(Running, "", nil); err != nil {
		return s.failStart(err)
	}
	for _, ch := range s.children {
		s.wg.Add(1)
		go s.supervise(ch)
	}
	return nil
}

func (s *Supervisor) failStart(err error) error {
	_ = s.transition(Failed, err.Error(), nil) // best effort: the journal may be what failed
	s.finish()
	return err
}

// start is Start for Run and RunUntilIdle: a start that failed is a run
// that ended failed.
func (s *Supervisor) start(ctx context.Context) error {
	err := s.Start(ctx)
	if err != nil && !errors.Is(err, ErrStarted) && !errors.Is(err, ErrFailed) {
		return fmt.Errorf("%w: %w", ErrFailed, err)
	}
	return err
}

// Wait blocks until the run ends. It returns nil after a clean stop, and an
// error wrapping ErrFailed or ErrAborted otherwise.
func (s *Supervisor) Wait() error {
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == Stopped {
		return nil
	}
	if s.abort {
		return fmt.Errorf("%w: %s", ErrAborted, strings.TrimPrefix(s.reason, "aborted: "))
	}
	return fmt.Errorf("%w: %s", ErrFailed, s.reason)
}

// Run starts the runtime and blocks until it ends; cancelling ctx stops it
// gracefully, bounded by stopTimeout. It returns nil after a clean stop and
// an error when the runtime ended failed or aborted.
func (s *Supervisor) Run(ctx context.Context, stopTimeout time.Duration) error {
	if err := s.start(ctx); err != nil {
		return err
	}
	select {
	case <-s.done:
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		_ = s.Stop(sctx)
		cancel()
	}
	return s.Wait()
}

// RunUntilIdle is Run for finite work: it stops cleanly once every child
// that is an Idler reports idle twice in a row, IdlePoll apart.
func (s *Supervisor) RunUntilIdle(ctx context.Context, stopTimeout time.Duration) error {
	if err := s.start(ctx); err != nil {
		return err
	}
	idleRounds := 0
	for idleRounds < 2 {
		select {
		case <-s.done:
			return s.Wait()
		case <-ctx.Done():
			idleRounds = 2
		case <-s.opts.Clock.After(s.opts.IdlePoll):
			if s.allIdle() {
				idleRounds++
			} else {
				idleRounds = 0
			}
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	_ = s.Stop(sctx)
	return s.Wait()
}

func (s *Supervisor) allIdle() bool {
	for _, ch := range s.children {
		if st := ch.stateNow(); st == ChildFailed || st == ChildStopped {
			continue
		}
		if id, ok := ch.c.(Idler); ok && !id.Idle() {
			return false
		}
	}
	return true
}

// Stop stops the runtime gracefully: it records draining, asks every child
// to drain (Drainer.Shutdown, else cancels its context), waits, and records
// stopped. If ctx expires first it cancels the children's contexts,
// records that the stop timed out, waits for them, and returns ctx.Err().
// Stop is idempotent: stopping a stopped runtime returns nil.
func (s *Supervisor) Stop(ctx context.Context) error {
	s.mu.Lock()
	started := s.started
	s.mu.Unlock()
	if started {
		// A Stop during Start waits for Start to finish: the run is then
		// running (and is drained) or has already failed.
		select {
		case <-s.startEnd:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	st := s.state
	s.mu.Unlock()
	switch {
	case st == Created:
		_ = s.transition(Stopped, "stopped before start", nil)
		s.finish()
		return nil
	case st.Terminal():
		return nil
	}
	var stopErr error
	s.stopOnce.Do(func() { stopErr = s.drain(ctx) })
	<-s.done
	return stopErr
}

func (s *Supervisor) drain(ctx context.Context) error {
	if err := s.transition(Draining, "stop requested", s.progress()); err != nil {
		// Already failed or aborted, which ends the run; or the journal
		// refused the record: fail the run (applied even unrecorded) so
		// that it still ends.
		if s.transition(Failed, err.Error(), nil) == nil {
			s.cancel()
			for _, ch := range s.children {
				ch.cancelRun()
			}
			s.wg.Wait()
			s.finish()
		}
		return err
	}
	for _, ch := range s.children {
		ch.stop(ctx, &s.wg, s.opts.Logger)
	}
	drained := make(chan struct{})
	go func() { s.wg.Wait(); close(drained) }()
	var err error
	select {
	case <-drained:
	case <-ctx.Done():
		err = ctx.Err()
		s.mu.Lock()
		s.timedOut = true
		s.mu.Unlock()
		s.cancel() // escalate: cancel every child's in-flight work
		<-drained
	}
	reason := ""
	if err != nil {
		reason = "stop timed out: in-flight work was cancelled"
	}
	if terr := s.transition(Stopped, reason, s.progress()); terr != nil {
		// Not recorded: the run ends failed instead, unless an Abort
		// ended it meanwhile.
		_ = s.transition(Failed, terr.Error(), nil)
		if err == nil {
			err = terr
		}
	}
	s.finish()
	return err
}

// Abort fails the runtime at once, recording reason, and cancels every
// child. Run and Wait then return an error wrapping ErrAborted.
func (s *Supervisor) Abort(reason string) {
	// Set before the transition, so Wait never sees the run end failed
	// without knowing it was aborted; undone if the run had already ended.
	s.mu.Lock()
	was := s.abort
	s.abort = true
	s.mu.Unlock()
	if err := s.transition(Failed, "aborted: "+reason, nil); err != nil {
		s.mu.Lock()
		s.abort = was
		s.mu.Unlock()
		return // already terminal
	}
	s.cancel()
	for _, ch := range s.children {
		ch.cancelRun()
	}
	go func() { s.wg.Wait(); s.finish() }()
}

// progress collects what the draining and stopped transitions record: each
// consumer's committed offset ("offset <stream>/<consumer>") and the
// details of every child that is a Detailer ("<child> <key>").
func (s *Supervisor) progress() map[string]string {
	d := map[string]string{}
	_ = s.j.View(func(tx *eventlog.Tx) error {
		cs, err := tx.Consumers("")
		for _, c := range cs {
			if !eventlog.IsReserved(c.Stream) {
				d["offset "+c.Stream+"/"+c.Name] = strconv.FormatUint(c.Offset, 10)
			}
		}
		return err
	})
	for _, ch := range s.children {
		if dt, ok := ch.c.(Detailer); ok {
			for k, v := range dt.Details() {
				d[ch.name+" "+k] = v
			}
		}
	}
	return d
}

// finish marks the run over once, after its last record.
func (s *Supervisor) finish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.done:
	default:
		s.cancel()
		close(s.done)
	}
}

// Done is closed when the run has ended.
func (s *Supervisor) Done() <-chan struct{} { return s.done }

// transition checks, records and applies a runtime state change, in that
// order: the record is durable before the change takes effect.
func (s *Supervisor) transition(to State, reason string, details map[string]string) error {
	return s.transitions([]step{{to: to, reason: reason, details: details}}, nil)
}

// step is one runtime transition of a transitions call.
type step struct {
	to      State
	reason  string
	details map[string]string
}

// transitions checks, records and applies runtime state changes in one
// journal transaction, together with what also appends, if not nil.
func (s *Supervisor) transitions(steps []step, also func(*eventlog.Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	from := s.state
	records := make([]Transition, len(steps))
	for i, st := range steps {
		if !CanTransition(from, st.to) {
			err := fmt.Errorf("%w: runtime %s -> %s", ErrIllegalTransition, from, st.to)
			if !from.Terminal() {
				s.opts.Logger.Error("illegal transition refused", "err", err)
			}
			return err
		}
		records[i] = Transition{Run: s.run, From: from.String(), To: st.to.String(), Reason: st.reason, Time: s.opts.Clock.Now().UTC(), Details: st.details}
		from = st.to
	}
	last := steps[len(steps)-1]
	err := s.j.Update(func(tx *eventlog.Tx) error {
		for _, t := range records {
			if err := appendSystem(tx, s.run, TypeTransition, t); err != nil {
				return err
			}
		}
		if also != nil {
			return also(tx)
		}
		return nil
	})
	if err != nil && last.to != Failed {
		return fmt.Errorf("flowrt/supervisor: record %s -> %s: %w", records[0].From, last.to, err)
	}
	// A failure is applied even if it could not be recorded.
	for _, t := range records {
		s.opts.Logger.Info("runtime state", "run", s.run, "from", t.From, "to", t.To, "reason", t.Reason)
	}
	s.state, s.reason = last.to, last.reason
	s.notifyLocked()
	return nil
}

// appendRecovery appends, within tx, the recovery record of the crashed
// previous run, with every consumer's committed offset.
func (s *Supervisor) appendRecovery(tx *eventlog.Tx, prev previous) error {
	rec := Recovery{Run: s.run, CrashedRun: prev.run, LastState: prev.last.String(), LastTime: prev.lastTime, Children: prev.children, Time: s.opts.Clock.Now().UTC()}
	cs, err := tx.Consumers("")
	if err != nil {
		return err
	}
	for _, c := range cs {
		if eventlog.IsReserved(c.Stream) {
			continue
		}
		rec.Consumers = append(rec.Consumers, Resume{Stream: c.Stream, Consumer: c.Name, Offset: c.Offset, Pending: c.Lag})
	}
	return appendSystem(tx, s.run, TypeRecovery, rec)
}

func (s *Supervisor) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}
