package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/runtime"
	"github.com/flowrt/flowrt/snapshot"
	"github.com/flowrt/flowrt/supervisor"
	"github.com/stretchr/testify/require"
)

// dumpWait bounds every wait of the dump tests.
const dumpWait = 10 * time.Second

// inspectJournal is the journal the dump subcommands are tested on, built
// once per test binary with the real packages (see buildInspectJournal)
// and copied for each test.
var inspectJournal struct {
	once  sync.Once
	bytes []byte
	err   error
}

// inspectDB returns a copy of the inspection journal in a new directory.
func inspectDB(t *testing.T) string {
	t.Helper()
	inspectJournal.once.Do(func() {
		dir, err := os.MkdirTemp("", "flowrt-dump-test")
		if err != nil {
			inspectJournal.err = err
			return
		}
		defer os.RemoveAll(dir)
		path := filepath.Join(dir, "j.db")
		if inspectJournal.err = buildInspectJournal(path); inspectJournal.err == nil {
			inspectJournal.bytes, inspectJournal.err = os.ReadFile(path)
		}
	})
	require.NoError(t, inspectJournal.err, "build the inspection journal")
	db := filepath.Join(t.TempDir(), "j.db")
	require.NoError(t, os.WriteFile(db, inspectJournal.bytes, 0o600))
	return db
}

// errDeclined is the billing consumer's failure in the inspection journal.
var errDeclined = errors.New("card declined: insufficient funds")

// buildInspectJournal writes, through the real packages, a journal with
// something for every dump subcommand:
//
//   - "events": 8 events; "audit": 2 events
//   - consumer "billing" on events (Retry.MaxAttempts 1) failed the two
//     order.paid events, seq 2 and 4: two dead letters, seq 4 queued for
//     redelivery; its offset is 6, lag 2
//   - consumer "auditor" on audit at offset 1
//   - $system: a clean supervisor run; a run that crashed while running
//     (its journal refused every write from some point); and the runtime
//     run of flow "totals", which recorded the recovery and ran cleanly
//   - flow "totals" (reduce: sum of data.total per key) with committed
//     state c-1 = 15, c-2 = 25 and a snapshot at floor 6
func buildInspectJournal(path string) (err error) {
	l, err := eventlog.Open(path, nil)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := l.Close(); err == nil {
			err = cerr
		}
	}()
	ev := func(i int, typ, key, data string) eventlog.Event {
		e := eventlog.Event{ID: eventlog.DeriveID("dump-test", fmt.Sprint(i)), Type: typ, Key: key}
		if data != "" {
			e.Data = []byte(data)
		}
		return e
	}
	if _, err := l.Append("events",
		ev(1, "order.created", "c-1", `{"total":10}`),
		ev(2, "order.paid", "c-1", `{"amount":10}`),
		ev(3, "order.created", "c-2", `{"total":25}`),
		ev(4, "order.paid", "c-2", `{"amount":25}`),
		ev(5, "order.created", "c-1", `{"total":5}`),
		ev(6, "order.shipped", "c-1", `"by post"`),
	); err != nil {
		return err
	}
	if _, err := l.Append("audit", ev(101, "audit.login", "u-1", ""), ev(102, "audit.logout", "u-1", "")); err != nil {
		return err
	}
	if err := l.CommitOffset("audit", "auditor", 1); err != nil {
		return err
	}
	if err := runBilling(l); err != nil {
		return fmt.Errorf("billing: %w", err)
	}
	if err := cleanRun(l); err != nil {
		return fmt.Errorf("clean run: %w", err)
	}
	if err := crashedRun(l); err != nil {
		return fmt.Errorf("crashed run: %w", err)
	}
	if err := runTotals(l); err != nil {
		return fmt.Errorf("totals: %w", err)
	}
	if _, err := snapshot.Take(l, "totals", "events", "totals", nil); err != nil {
		return err
	}
	if _, err := consumer.Redeliver(l, "events", "billing", consumer.Range{From: 4, To: 4}); err != nil {
		return err
	}
	_, err = l.Append("events", ev(7, "order.created", "c-3", `{"total":7}`), ev(8, "order.note", "c-3", ""))
	return err
}

// runBilling runs consumer "billing" over the events until it is done
// with all six, failing the order.paid ones.
func runBilling(l *eventlog.Log) error {
	r, err := consumer.Open(l, "events", "billing", &consumer.Options{Retry: consumer.Retry{MaxAttempts: 1}})
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		errc <- r.Run(context.Background(), func(_ context.Context, e eventlog.Event) error {
			if e.Type == "order.paid" {
				return errDeclined
			}
			return nil
		})
	}()
	if err := dumpPoll(func() bool { return r.Stats().Floor >= 6 }); err != nil {
		return errors.Join(err, r.Close(), <-errc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), dumpWait)
	defer cancel()
	if err := r.Shutdown(ctx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, consumer.ErrClosed) {
		return fmt.Errorf("Run returned %v, want ErrClosed", err)
	}
	return nil
}

// dumpWorker is a supervised child that runs until cancelled.
type dumpWorker struct{}

func (dumpWorker) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// cleanRun records a supervisor run that starts and stops cleanly.
func cleanRun(l *eventlog.Log) error {
	s, err := supervisor.New(l, nil)
	if err != nil {
		return err
	}
	if err := s.Add("worker", dumpWorker{}, nil); err != nil {
		return err
	}
	if err := s.Start(context.Background()); err != nil {
		return err
	}
	if err := waitChildRunning(s, "worker"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), dumpWait)
	defer cancel()
	return s.Stop(ctx)
}

// dumpCrashable is a journal that refuses every write once crashed, as if
// the process had died: the run it records never ends.
type dumpCrashable struct {
	*eventlog.Log
	crashed atomic.Bool
}

var errDumpCrashed = errors.New("test: the process crashed")

func (j *dumpCrashable) Update(fn func(*eventlog.Tx) error) error {
	if j.crashed.Load() {
		return errDumpCrashed
	}
	return j.Log.Update(fn)
}

func (j *dumpCrashable) Truncate(stream string, below uint64, p eventlog.TruncatePolicy) (uint64, error) {
	if j.crashed.Load() {
		return 0, errDumpCrashed
	}
	return j.Log.Truncate(stream, below, p)
}

// crashedRun records a run that crashes while running.
func crashedRun(l *eventlog.Log) error {
	j := &dumpCrashable{Log: l}
	s, err := supervisor.New(j, nil)
	if err != nil {
		return err
	}
	if err := s.Add("worker", dumpWorker{}, nil); err != nil {
		return err
	}
	if err := s.Start(context.Background()); err != nil {
		return err
	}
	if err := waitChildRunning(s, "worker"); err != nil {
		return err
	}
	j.crashed.Store(true)
	s.Abort("test: gone") // recorded nowhere: the journal refuses
	select {
	case <-s.Done():
		return nil
	case <-time.After(dumpWait):
		return errors.New("the crashed run did not end")
	}
}

// waitChildRunning waits until the supervisor reports the child running.
func waitChildRunning(s *supervisor.Supervisor, name string) error {
	deadline := time.NewTimer(dumpWait)
	defer deadline.Stop()
	for {
		changed := s.Changed()
		for _, c := range s.Status().Children {
			if c.Name == name && c.State == supervisor.ChildRunning {
				return nil
			}
		}
		select {
		case <-changed:
		case <-deadline.C:
			return fmt.Errorf("child %q not running after %v", name, dumpWait)
		}
	}
}

// runTotals runs flow "totals" until it has caught up.
func runTotals(l *eventlog.Log) error {
	rt, err := runtime.New(l, nil)
	if err != nil {
		return err
	}
	err = rt.Add(runtime.Flow{
		Name:  "totals",
		On:    runtime.On("order.created"),
		Steps: []runtime.Step{runtime.Reduce(runtime.ReduceSpec{Func: "sum", Value: "data.total"})},
		Sinks: []runtime.Sink{runtime.SinkFunc(func(context.Context, runtime.Delivery) error { return nil })},
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), dumpWait)
	defer cancel()
	return rt.RunUntilIdle(ctx)
}

// dumpPoll waits until cond holds, checking every millisecond, for at most
// dumpWait.
func dumpPoll(cond func() bool) error {
	deadline := time.NewTimer(dumpWait)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			return fmt.Errorf("condition not met after %v", dumpWait)
		}
	}
	return nil
}

var (
	// ulidRE matches the IDs of runs and events.
	ulidRE = regexp.MustCompile(`\b[0-9A-HJKMNP-TV-Z]{26}\b`)
	// hostRE matches the details the supervisor records about the process.
	hostRE = regexp.MustCompile(`\b(pid|host|version)(=|":")[^\s",}]+`)
)

// maskDump masks what varies from run to run in dump's output: times (see
// maskTimes), ULIDs, numbered by first appearance so that the output
// still shows which are the same, and the process details of runs.
func maskDump(s string) string {
	s = maskTimes(s)
	ids := map[string]string{}
	s = ulidRE.ReplaceAllStringFunc(s, func(id string) string {
		if m, ok := ids[id]; ok {
			return m
		}
		ids[id] = fmt.Sprintf("ID%024d", len(ids)+1)
		return ids[id]
	})
	return hostRE.ReplaceAllString(s, "${1}${2}X")
}

// outBuffer is an output buffer that a test can read while a command
// writes to it, and wait on.
type outBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{} // closed at the next write
}

func newOutBuffer() *outBuffer { return &outBuffer{changed: make(chan struct{})} }

func (s *outBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.changed)
	s.changed = make(chan struct{})
	return s.b.Write(p)
}

func (s *outBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor waits until cond holds for the buffer's contents, and returns
// them.
func (s *outBuffer) waitFor(t *testing.T, what string, cond func(string) bool) string {
	t.Helper()
	deadline := time.NewTimer(dumpWait)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		got, changed := s.b.String(), s.changed
		s.mu.Unlock()
		if cond(got) {
			return got
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s; output so far:\n%s", dumpWait, what, got)
		}
	}
}

// countLines counts the complete lines of s.
func countLines(s string) int { return strings.Count(s, "\n") }

// runBackground runs flowrt with args in-process under ctx, as run does, and
// returns its live outputs and a channel that yields its result.
func runBackground(t *testing.T, ctx context.Context, args ...string) (stdout, stderr *outBuffer, done <-chan result) {
	t.Helper()
	root := NewRoot()
	stdout, stderr = newOutBuffer(), newOutBuffer()
	root.SetArgs(append([]string{}, args...))
	root.SetIn(strings.NewReader(""))
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetContext(ctx)
	c := make(chan result, 1)
	go func() {
		err := Execute(root)
		c <- result{stdout: stdout.String(), stderr: stderr.String(), code: ExitCode(err), err: err}
	}()
	return stdout, stderr, c
}

// awaitResult returns the result of a background run, failing the test if it
// takes longer than dumpWait.
func awaitResult(t *testing.T, done <-chan result) result {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(dumpWait):
		t.Fatalf("the command did not end within %v", dumpWait)
		return result{}
	}
}
