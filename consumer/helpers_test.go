package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/stretchr/testify/require"
)

// stream is the stream every test consumes.
const stream = "events"

// waitTimeout bounds every wait for something that should happen soon. It
// is generous because the machine is shared; a passing test never waits
// it out.
const waitTimeout = 10 * time.Second

// errTransient is what failing handlers return.
var errTransient = errors.New("transient failure")

// fastRetry retries almost at once.
var fastRetry = consumer.Retry{MaxAttempts: 5, Base: time.Millisecond, Max: 2 * time.Millisecond}

// openLog opens a fresh journal that is closed and checked when the test
// ends.
func openLog(t *testing.T) *eventlog.Log {
	t.Helper()
	return flowtest.MustOpenLog(t, nil)
}

// appendKeys appends one event per key (an empty key makes a keyless
// event) and returns their sequences.
func appendKeys(t *testing.T, l *eventlog.Log, keys ...string) []uint64 {
	t.Helper()
	evs := make([]eventlog.Event, len(keys))
	for i, k := range keys {
		evs[i] = eventlog.Event{Type: "test.event", Key: k, Data: []byte(fmt.Sprint(i))}
	}
	res := flowtest.MustAppend(t, l, stream, evs...)
	seqs := make([]uint64, len(res))
	for i, r := range res {
		seqs[i] = r.Seq
	}
	return seqs
}

// appendN appends n keyless events.
func appendN(t *testing.T, l *eventlog.Log, n int) []uint64 {
	t.Helper()
	return appendKeys(t, l, make([]string, n)...)
}

// openReader opens a Reader that is closed when the test ends.
func openReader(t *testing.T, j consumer.Journal, name string, opts *consumer.Options) *consumer.Reader {
	t.Helper()
	r, err := consumer.Open(j, stream, name, opts)
	require.NoError(t, err, "open consumer %q", name)
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// start runs r with h on its own goroutine; Run's error arrives on the
// returned channel.
func start(r *consumer.Reader, h consumer.Handler) <-chan error {
	return startCtx(context.Background(), r, h)
}

func startCtx(ctx context.Context, r *consumer.Reader, h consumer.Handler) <-chan error {
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx, h) }()
	return errc
}

// runResult waits for Run to return and gives its error.
func runResult(t *testing.T, errc <-chan error) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(waitTimeout):
		t.Fatalf("Run did not return within %v", waitTimeout)
		return nil
	}
}

// shutdown stops r cleanly and checks that Run returned ErrClosed.
func shutdown(t *testing.T, r *consumer.Reader, errc <-chan error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	require.NoError(t, r.Shutdown(ctx), "Shutdown")
	require.ErrorIs(t, runResult(t, errc), consumer.ErrClosed, "Run after Shutdown")
}

// waitFor polls cond until it holds, failing the test after waitTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		}
	}
}

// holds polls cond for d and fails the test the first time it is false:
// for properties that must stay true while nothing else happens.
func holds(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.NewTimer(d)
	defer end.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		require.True(t, cond(), what)
		select {
		case <-tick.C:
		case <-end.C:
			return
		}
	}
}

// waitFloor waits until the Reader's floor reaches seq.
func waitFloor(t *testing.T, r *consumer.Reader, seq uint64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("floor %d", seq), func() bool { return r.Stats().Floor >= seq })
}

// committed returns the consumer's durable ack offset as the journal has it.
func committed(t *testing.T, l *eventlog.Log, name string) uint64 {
	t.Helper()
	off, ok, err := l.Offset(stream, name)
	require.NoError(t, err)
	require.True(t, ok, "consumer %q registered", name)
	return off
}

// waitClosed receives from a channel the test closes or sends on,
// failing after waitTimeout.
func waitClosed[T any](t *testing.T, what string, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		var zero T
		return zero
	}
}

// waitDraining waits until Shutdown or Close has begun on r: from then on
// Run refuses with ErrClosed instead of ErrRunning.
func waitDraining(t *testing.T, r *consumer.Reader) {
	t.Helper()
	noop := func(context.Context, eventlog.Event) error { return nil }
	waitFor(t, "the Reader to stop its intake", func() bool {
		err := r.Run(context.Background(), noop)
		require.True(t, errors.Is(err, consumer.ErrRunning) || errors.Is(err, consumer.ErrClosed), "second Run: %v", err)
		return errors.Is(err, consumer.ErrClosed)
	})
}

// recorder counts handler outcomes per sequence. Its handler acks every
// event unless fail says otherwise.
type recorder struct {
	mu       sync.Mutex
	calls    map[uint64]int // handler invocations
	acks     map[uint64]int // invocations that returned nil
	ackOrder []uint64
	fail     func(e eventlog.Event, attempt int) error
}

func newRecorder() *recorder {
	return &recorder{calls: map[uint64]int{}, acks: map[uint64]int{}}
}

func (rec *recorder) handle(_ context.Context, e eventlog.Event) error {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.calls[e.Seq]++
	if rec.fail != nil {
		if err := rec.fail(e, rec.calls[e.Seq]); err != nil {
			return err
		}
	}
	rec.acks[e.Seq]++
	rec.ackOrder = append(rec.ackOrder, e.Seq)
	return nil
}

// acked returns the sequences acked at least once, in order.
func (rec *recorder) acked() []uint64 {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	out := make([]uint64, 0, len(rec.acks))
	for s := range rec.acks {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func (rec *recorder) ackCount(seq uint64) int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.acks[seq]
}

func (rec *recorder) callCount(seq uint64) int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.calls[seq]
}

// seqRange returns from, from+1, ..., to.
func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}
