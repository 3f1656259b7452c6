package supervisor_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/flowrt/flowrt/supervisor"
	"github.com/stretchr/testify/require"
)

// waitTimeout bounds every wait on the supervisor. Nothing in the suite
// sleeps: tests wait on Changed, on channels their children close, or on
// the fake clock's requests, and fail at this deadline instead of hanging.
const waitTimeout = 10 * time.Second

// openLog opens a fresh journal whose cleanup checks its invariants.
func openLog(t *testing.T) *eventlog.Log {
	t.Helper()
	return flowtest.MustOpenLog(t, nil)
}

// newSupervisor returns a supervisor on j with the named children added,
// and registers a cleanup that stops it (registered after the journal's,
// so it runs first).
func newSupervisor(t *testing.T, j supervisor.Journal, opts *supervisor.Options, children ...namedChild) *supervisor.Supervisor {
	t.Helper()
	s, err := supervisor.New(j, opts)
	require.NoError(t, err)
	for _, c := range children {
		require.NoError(t, s.Add(c.name, c.c, c.policy), "add %q", c.name)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		stopped := make(chan struct{})
		go func() { _ = s.Stop(ctx); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(2 * waitTimeout):
			t.Errorf("cleanup: Stop hangs; status: %+v", s.Status())
		}
	})
	return s
}

type namedChild struct {
	name   string
	c      supervisor.Child
	policy *supervisor.RestartPolicy
}

func child(name string, c supervisor.Child) namedChild { return namedChild{name: name, c: c} }

// waitStatus waits until cond holds for the supervisor's status and
// returns that status. It takes Changed before reading Status, so no
// change is missed.
func waitStatus(t *testing.T, s *supervisor.Supervisor, what string, cond func(supervisor.Status) bool) supervisor.Status {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		changed := s.Changed()
		st := s.Status()
		if cond(st) {
			return st
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s; status: %+v", waitTimeout, what, st)
		}
	}
}

// childIs is a waitStatus condition: the named child is in state cs.
func childIs(name string, cs supervisor.ChildState) func(supervisor.Status) bool {
	return func(st supervisor.Status) bool { return childState(st, name) == cs }
}

// allChildren is a waitStatus condition: every child is in state cs.
func allChildren(cs supervisor.ChildState) func(supervisor.Status) bool {
	return func(st supervisor.Status) bool {
		for _, c := range st.Children {
			if c.State != cs {
				return false
			}
		}
		return true
	}
}

func childState(st supervisor.Status, name string) supervisor.ChildState {
	return childStatus(st, name).State
}

func childStatus(st supervisor.Status, name string) supervisor.ChildStatus {
	for _, c := range st.Children {
		if c.Name == name {
			return c
		}
	}
	panic("no child " + name)
}

// recv receives from c or fails the test at waitTimeout.
func recv[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		panic("unreachable")
	}
}

func waitDone(t *testing.T, s *supervisor.Supervisor) {
	t.Helper()
	select {
	case <-s.Done():
	case <-time.After(waitTimeout):
		t.Fatalf("run did not end within %v; status: %+v", waitTimeout, s.Status())
	}
}

func stopCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// childFunc is a Child made of a function.
type childFunc func(ctx context.Context) error

func (f childFunc) Run(ctx context.Context) error { return f(ctx) }

// untilCancelled is a Child that runs until its context is cancelled,
// reporting each start on started (if not nil) and returning nil.
func untilCancelled(started chan<- context.Context) childFunc {
	return func(ctx context.Context) error {
		if started != nil {
			started <- ctx
		}
		<-ctx.Done()
		return nil
	}
}

var errBoom = errors.New("boom")

// failing is a Child that fails at once, counting its runs.
type failing struct{ runs atomic.Int32 }

func (f *failing) Run(context.Context) error {
	f.runs.Add(1)
	return errBoom
}

// drainer is a Drainer: Run works until Shutdown asks it to stop (then it
// returns nil) or its context is cancelled (then it returns ctx.Err()).
// With ignoreShutdown set, Shutdown only reports that it was called.
type drainer struct {
	ignoreShutdown bool
	started        chan struct{} // closed when Run starts
	shutdown       chan struct{} // closed by the first Shutdown
	once           sync.Once
	runErr         chan error // Run's return value, once
}

func newDrainer(ignoreShutdown bool) *drainer {
	return &drainer{ignoreShutdown: ignoreShutdown, started: make(chan struct{}), shutdown: make(chan struct{}), runErr: make(chan error, 1)}
}

func (d *drainer) Run(ctx context.Context) error {
	close(d.started)
	var err error
	if d.ignoreShutdown {
		<-ctx.Done()
		err = ctx.Err()
	} else {
		select {
		case <-d.shutdown:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	d.runErr <- err
	return err
}

func (d *drainer) Shutdown(context.Context) error {
	d.once.Do(func() { close(d.shutdown) })
	return nil
}

// fakeClock is a supervisor.Clock whose time moves only when the test
// advances it. Every After call is reported on asked, so a test can see
// which delay the supervisor asked for before it lets that time pass.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
	asked   chan time.Duration
}

type fakeWaiter struct {
	at time.Time
	c  chan time.Time
}

// newFakeClock starts at the wall clock's time: retention compares the
// journal's append times with the supervisor's Clock, so a fake clock far
// from them would make every earlier run look expired (or brand new).
func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Now().UTC().Truncate(time.Second), asked: make(chan time.Duration, 4096)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.mu.Lock()
	if d <= 0 {
		ch <- c.now
	} else {
		c.waiters = append(c.waiters, fakeWaiter{at: c.now.Add(d), c: ch})
	}
	c.mu.Unlock()
	select {
	case c.asked <- d:
	default:
		panic("fakeClock: too many unread After requests")
	}
	return ch
}

// Advance moves the time forward by d and fires the timers due by then.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
			continue
		}
		w.c <- c.now
	}
	c.waiters = kept
}

// Pending returns how many timers have not fired.
func (c *fakeClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// nextAfter returns the delay of the next After call.
func (c *fakeClock) nextAfter(t *testing.T) time.Duration {
	t.Helper()
	return recv(t, c.asked, "the supervisor to ask the clock for a delay")
}

// crashable is a Journal that passes through to a Log until crash is
// called, and from then on refuses every write, as a process that was
// killed makes none. Reads keep working.
type crashable struct {
	*eventlog.Log
	crashed atomic.Bool
}

var errCrashed = errors.New("test: the process crashed")

func (j *crashable) crash() { j.crashed.Store(true) }

func (j *crashable) Update(fn func(*eventlog.Tx) error) error {
	if j.crashed.Load() {
		return errCrashed
	}
	return j.Log.Update(fn)
}

func (j *crashable) Truncate(stream string, below uint64, p eventlog.TruncatePolicy) (uint64, error) {
	if j.crashed.Load() {
		return 0, errCrashed
	}
	return j.Log.Truncate(stream, below, p)
}

// abandon starts a supervisor on a crashable view of l and crashes it once
// every child runs: its run never ends in $system. The cleanup aborts it,
// which the crashed journal does not record, so its goroutines end.
func abandon(t *testing.T, l *eventlog.Log, children ...namedChild) *supervisor.Supervisor {
	t.Helper()
	j := &crashable{Log: l}
	s, err := supervisor.New(j, nil)
	require.NoError(t, err)
	for _, c := range children {
		require.NoError(t, s.Add(c.name, c.c, c.policy))
	}
	require.NoError(t, s.Start(context.Background()))
	waitStatus(t, s, "every child running", allChildren(supervisor.ChildRunning))
	j.crash()
	t.Cleanup(func() {
		s.Abort("test cleanup")
		<-s.Done()
	})
	return s
}

// writeRun appends to $system the runtime transitions of a made-up run
// passing through states, in the supervisor's event format: how a test
// leaves behind a run that crashed at a chosen point.
func writeRun(t *testing.T, l *eventlog.Log, run string, states ...supervisor.State) {
	t.Helper()
	require.NoError(t, l.Update(func(tx *eventlog.Tx) error {
		for i := 1; i < len(states); i++ {
			if err := appendTransition(tx, supervisor.Transition{Run: run, From: states[i-1].String(), To: states[i].String(), Time: time.Now().UTC()}); err != nil {
				return err
			}
		}
		return nil
	}))
}

func appendTransition(tx *eventlog.Tx, tr supervisor.Transition) error {
	data, err := json.Marshal(tr)
	if err != nil {
		return err
	}
	_, err = tx.Append(supervisor.SystemStream, eventlog.Event{Type: supervisor.TypeTransition, Key: tr.Run, Data: data})
	return err
}

// systemEvents returns every event of $system.
func systemEvents(t *testing.T, l *eventlog.Log) []eventlog.Event {
	t.Helper()
	evs, err := l.Read(supervisor.SystemStream, 1, 1<<20)
	if errors.Is(err, eventlog.ErrNotFound) {
		return nil
	}
	require.NoError(t, err)
	return evs
}

// countType counts the $system events of type typ.
func countType(t *testing.T, l *eventlog.Log, typ string) int {
	t.Helper()
	n := 0
	for _, e := range systemEvents(t, l) {
		if e.Type == typ {
			n++
		}
	}
	return n
}

func mustRuns(t *testing.T, j supervisor.Reader) []supervisor.Run {
	t.Helper()
	runs, err := supervisor.Runs(j)
	require.NoError(t, err)
	return runs
}

// step is a transition reduced to what the tables compare.
type step struct{ From, To string }

// runtimeSteps returns the runtime's transitions of r.
func runtimeSteps(r supervisor.Run) []step {
	return childSteps(r, "")
}

// childSteps returns the transitions of one child of r ("" for the
// runtime).
func childSteps(r supervisor.Run, name string) []step {
	var out []step
	for _, tr := range r.Transitions {
		if tr.Child == name {
			out = append(out, step{tr.From, tr.To})
		}
	}
	return out
}

// transitions returns the transitions of one child of r ("" for the
// runtime) in full.
func transitions(r supervisor.Run, name string) []supervisor.Transition {
	var out []supervisor.Transition
	for _, tr := range r.Transitions {
		if tr.Child == name {
			out = append(out, tr)
		}
	}
	return out
}
