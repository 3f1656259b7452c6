package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/stretchr/testify/require"
)

// deadLetterSeqs lists the sequences of the consumer's dead letters in r.
func deadLetterSeqs(t *testing.T, l *eventlog.Log, name string, r consumer.Range) []uint64 {
	t.Helper()
	dls, err := consumer.DeadLetters(l, stream, name, r)
	require.NoError(t, err)
	var out []uint64
	for _, dl := range dls {
		out = append(out, dl.Seq)
	}
	return out
}

// makeDeadLetters runs a consumer over n events that dead-letters the
// events in dead at once, and stops it cleanly.
func makeDeadLetters(t *testing.T, l *eventlog.Log, name string, n int, dead ...uint64) {
	t.Helper()
	appendN(t, l, n)
	rec := newRecorder()
	rec.fail = func(e eventlog.Event, _ int) error {
		for _, s := range dead {
			if e.Seq == s {
				return consumer.Permanent(errTransient)
			}
		}
		return nil
	}
	r := openReader(t, l, name, nil)
	errc := start(r, rec.handle)
	waitFloor(t, r, uint64(n))
	shutdown(t, r, errc)
	require.Equal(t, dead, deadLetterSeqs(t, l, name, consumer.Range{}))
}

// TestDeadLettersRange: DeadLetters lists the dead letters in a range.
func TestDeadLettersRange(t *testing.T) {
	l := openLog(t)
	makeDeadLetters(t, l, "c", 8, 2, 4, 6)
	for _, tc := range []struct {
		name string
		r    consumer.Range
		want []uint64
	}{
		{name: "all", r: consumer.Range{}, want: []uint64{2, 4, 6}},
		{name: "from", r: consumer.Range{From: 3}, want: []uint64{4, 6}},
		{name: "to", r: consumer.Range{To: 4}, want: []uint64{2, 4}},
		{name: "inclusive", r: consumer.Range{From: 4, To: 6}, want: []uint64{4, 6}},
		{name: "none inside", r: consumer.Range{From: 7, To: 8}, want: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, deadLetterSeqs(t, l, "c", tc.r))
		})
	}
	got, err := consumer.DeadLetters(l, stream, "unknown", consumer.Range{})
	require.NoError(t, err)
	require.Empty(t, got, "a consumer without records has no dead letters")
}

// TestPurge: Purge removes the dead letters in a range; the events stay.
func TestPurge(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    consumer.Range
		n    int
		left []uint64
	}{
		{name: "all", r: consumer.Range{}, n: 3, left: nil},
		{name: "one", r: consumer.Range{From: 3, To: 4}, n: 1, left: []uint64{2, 6}},
		{name: "open end", r: consumer.Range{From: 4}, n: 2, left: []uint64{2}},
		{name: "none", r: consumer.Range{From: 7}, n: 0, left: []uint64{2, 4, 6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := openLog(t)
			makeDeadLetters(t, l, "c", 8, 2, 4, 6)
			n, err := consumer.Purge(l, stream, "c", tc.r)
			require.NoError(t, err)
			require.Equal(t, tc.n, n)
			require.Equal(t, tc.left, deadLetterSeqs(t, l, "c", consumer.Range{}))
			for _, s := range []uint64{2, 4, 6} {
				_, err := l.Get(stream, s)
				require.NoError(t, err, "event %d stays in the stream", s)
			}
			require.Equal(t, uint64(8), committed(t, l, "c"))
		})
	}
}

// TestRedeliver: a running Reader picks up dead letters queued for
// redelivery. Success removes them from the dead letters; failure keeps
// them with an updated record; the floor does not move back.
func TestRedeliver(t *testing.T) {
	l := openLog(t)
	appendKeys(t, l, "a", "b", "a", "b", "a", "b")
	var healed atomic.Bool // from then on, events succeed
	hold := make(chan struct{})
	var mu sync.Mutex
	calls := map[uint64]int{}
	h := func(ctx context.Context, e eventlog.Event) error {
		mu.Lock()
		calls[e.Seq]++
		mu.Unlock()
		switch {
		case e.Seq == 2 && healed.Load():
			select {
			case <-hold:
			case <-ctx.Done():
				return ctx.Err()
			}
			return nil
		case e.Seq == 2, e.Seq == 4:
			return consumer.Permanent(errTransient)
		}
		return nil
	}
	callsOf := func(s uint64) int { mu.Lock(); defer mu.Unlock(); return calls[s] }
	r := openReader(t, l, "c", &consumer.Options{Workers: 2, CommitInterval: 5 * time.Millisecond, Retry: consumer.Retry{MaxAttempts: 1}})
	errc := start(r, h)
	waitFor(t, "the floor committed past the dead letters", func() bool { return committed(t, l, "c") == 6 })
	before, err := consumer.DeadLetters(l, stream, "c", consumer.Range{})
	require.NoError(t, err)
	require.Len(t, before, 2)

	// Event 2, healed: succeeds and leaves the dead letters.
	healed.Store(true)
	n, err := consumer.Redeliver(l, stream, "c", consumer.Range{From: 2, To: 3})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	queued, err := consumer.DeadLetters(l, stream, "c", consumer.Range{To: 2})
	require.NoError(t, err)
	require.Len(t, queued, 1)
	require.True(t, queued[0].Redeliver, "queued for redelivery")
	asked := time.Now()
	waitFor(t, "event 2 redelivered", func() bool { return callsOf(2) == 2 })
	require.Less(t, time.Since(asked), 3*time.Second, "a running Reader picks redeliveries up within about a second")
	close(hold)
	waitFor(t, "event 2 to leave the dead letters", func() bool {
		return len(deadLetterSeqs(t, l, "c", consumer.Range{})) == 1
	})
	require.Equal(t, []uint64{4}, deadLetterSeqs(t, l, "c", consumer.Range{}))

	// Event 4, still broken: fails again and stays, with a new record.
	n, err = consumer.Redeliver(l, stream, "c", consumer.Range{From: 4})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	waitFor(t, "event 4 redelivered and dead again", func() bool {
		dls, err := consumer.DeadLetters(l, stream, "c", consumer.Range{})
		require.NoError(t, err)
		return callsOf(4) == 2 && len(dls) == 1 && !dls[0].Redeliver
	})
	after, err := consumer.DeadLetters(l, stream, "c", consumer.Range{})
	require.NoError(t, err)
	require.Equal(t, uint64(4), after[0].Seq)
	require.True(t, after[0].LastFailure.After(before[1].LastFailure), "the record is updated")

	require.Equal(t, uint64(6), committed(t, l, "c"), "redeliveries leave the floor alone")
	require.Equal(t, uint64(6), r.Stats().Floor)
	shutdown(t, r, errc)
	for _, s := range []uint64{1, 3, 5, 6} {
		require.Equal(t, 1, callsOf(s), "deliveries of %d", s)
	}
	st := r.Stats()
	require.Equal(t, uint64(3), st.DeadLettered, "2 and 4, then 4 again")
	require.Equal(t, int64(0), st.InFlight)

	// Nothing is queued any more: a new Reader delivers nothing.
	rec := newRecorder()
	r2 := openReader(t, l, "c", nil)
	errc = start(r2, rec.handle)
	appendN(t, l, 1)
	waitFloor(t, r2, 7)
	shutdown(t, r2, errc)
	require.Equal(t, []uint64{7}, rec.acked())
}

// TestRedeliverQueuedWhileStopped: a redelivery asked for while the
// consumer is stopped runs when it next runs.
func TestRedeliverQueuedWhileStopped(t *testing.T) {
	l := openLog(t)
	makeDeadLetters(t, l, "c", 3, 2)
	n, err := consumer.Redeliver(l, stream, "c", consumer.Range{})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	rec := newRecorder()
	r := openReader(t, l, "c", nil)
	errc := start(r, rec.handle)
	waitFor(t, "event 2 redelivered", func() bool { return rec.ackCount(2) == 1 })
	waitFor(t, "the dead letters to empty", func() bool { return len(deadLetterSeqs(t, l, "c", consumer.Range{})) == 0 })
	shutdown(t, r, errc)
	require.Equal(t, []uint64{2}, rec.acked())
}

// TestReset: Reset replays from a position, dead letters included, and
// refuses while the consumer runs.
func TestReset(t *testing.T) {
	for _, tc := range []struct {
		name string
		pos  eventlog.Position
		want []uint64 // delivered after the reset
	}{
		{name: "earliest", pos: eventlog.Earliest(), want: seqRange(1, 6)},
		{name: "at seq", pos: eventlog.AtSeq(4), want: seqRange(4, 6)},
		{name: "latest", pos: eventlog.Latest(), want: nil},
		{name: "beyond the end", pos: eventlog.AtSeq(99), want: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := openLog(t)
			makeDeadLetters(t, l, "c", 6, 2, 5)
			require.NoError(t, consumer.Reset(l, stream, "c", tc.pos))
			first := uint64(7)
			if len(tc.want) > 0 {
				first = tc.want[0]
			}
			require.Equal(t, first-1, committed(t, l, "c"))
			require.Equal(t, []uint64{2, 5}, deadLetterSeqs(t, l, "c", consumer.Range{}), "dead letters stay listed")

			rec := newRecorder()
			r := openReader(t, l, "c", nil)
			errc := start(r, rec.handle)
			appendN(t, l, 1)
			waitFloor(t, r, 7)
			shutdown(t, r, errc)
			require.Equal(t, append(tc.want, 7), rec.acked())
		})
	}
	t.Run("while running", func(t *testing.T) {
		l := openLog(t)
		appendN(t, l, 2)
		r := openReader(t, l, "c", nil)
		errc := start(r, newRecorder().handle)
		waitFloor(t, r, 2)
		require.ErrorIs(t, consumer.Reset(l, stream, "c", eventlog.Earliest()), consumer.ErrInUse)
		shutdown(t, r, errc)
		require.NoError(t, consumer.Reset(l, stream, "c", eventlog.Earliest()))
		require.Zero(t, committed(t, l, "c"))
	})
	t.Run("forgets pending retries", func(t *testing.T) {
		l := openLog(t)
		appendN(t, l, 3)
		r := openReader(t, l, "c", &consumer.Options{Retry: consumer.Retry{MaxAttempts: 5, Base: time.Hour, Max: time.Hour}})
		rec := newRecorder()
		rec.fail = func(e eventlog.Event, _ int) error {
			if e.Seq == 2 {
				return errTransient
			}
			return nil
		}
		errc := start(r, rec.handle)
		waitFor(t, "event 2 to fail once", func() bool { return r.Stats().Retried == 1 })
		shutdown(t, r, errc)
		_, _, pending, err := consumer.PersistedRetry(l, stream, "c", 2)
		require.NoError(t, err)
		require.True(t, pending)

		require.NoError(t, consumer.Reset(l, stream, "c", eventlog.AtSeq(2)))
		_, _, pending, err = consumer.PersistedRetry(l, stream, "c", 2)
		require.NoError(t, err)
		require.False(t, pending, "the reset forgets the retry record")
		rec2 := newRecorder()
		r2 := openReader(t, l, "c", nil)
		errc = start(r2, rec2.handle)
		waitFloor(t, r2, 3)
		shutdown(t, r2, errc)
		require.Equal(t, []uint64{2, 3}, rec2.acked(), "delivered at once, not an hour later")
	})
}

// failingJournal makes the journal's next write transaction fail, once
// armed, without the stickiness of a real disk error.
type failingJournal struct {
	*eventlog.Log
	armed atomic.Bool
}

var errInjected = errors.New("injected write failure")

func (j *failingJournal) Update(fn func(*eventlog.Tx) error) error {
	if j.armed.CompareAndSwap(true, false) {
		return j.Log.Update(func(tx *eventlog.Tx) error {
			if err := fn(tx); err != nil {
				return err
			}
			return errInjected // roll back what fn wrote
		})
	}
	return j.Log.Update(fn)
}

// TestPersistFailure: when the dead letter cannot be written, Run fails
// with the error, and the committed floor does not pass the event: it is
// not done.
func TestPersistFailure(t *testing.T) {
	l := openLog(t)
	appendN(t, l, 5)
	j := &failingJournal{Log: l}
	h := func(_ context.Context, e eventlog.Event) error {
		if e.Seq == 3 {
			j.armed.Store(true) // the next write is this event's dead letter
			return consumer.Permanent(errTransient)
		}
		return nil
	}
	// No commit before Run ends: the armed write can only be the dead letter.
	r := openReader(t, j, "c", &consumer.Options{CommitInterval: time.Hour})
	errc := start(r, h)
	err := runResult(t, errc)
	require.ErrorIs(t, err, errInjected)
	require.Empty(t, deadLetterSeqs(t, l, "c", consumer.Range{}))
	require.Equal(t, uint64(2), committed(t, l, "c"), "the floor stops below the event whose dead letter was lost")
	require.Zero(t, r.Stats().DeadLettered)

	// The event is delivered again by the next Reader; the events acked
	// above it were recorded done on the way out, so they are not.
	rec := newRecorder()
	r2 := openReader(t, l, "c", nil)
	errc = start(r2, rec.handle)
	waitFloor(t, r2, 5)
	shutdown(t, r2, errc)
	require.Equal(t, []uint64{3}, rec.acked())
}

// TestCommitFailureStopsRun: when the journal refuses a periodic commit of
// the floor, Run stops with the error instead of delivering work whose
// progress it cannot save.
func TestCommitFailureStopsRun(t *testing.T) {
	l := openLog(t)
	appendN(t, l, 5)
	j := &failingJournal{Log: l}
	r := openReader(t, j, "c", &consumer.Options{CommitInterval: time.Millisecond})
	h := func(_ context.Context, e eventlog.Event) error {
		if e.Seq == 5 {
			j.armed.Store(true) // the next write is a commit of the floor
		}
		return nil
	}
	errc := start(r, h)
	require.ErrorIs(t, runResult(t, errc), errInjected)
}

// TestRetentionGapCostsNothing: a consumer far behind a stream whose start
// retention removed jumps the gap: it delivers what is retained and its
// floor reaches the end.
func TestRetentionGapCostsNothing(t *testing.T) {
	l := openLog(t)
	r := openReader(t, l, "c", nil) // registered at 0
	require.NoError(t, r.Close())
	appendN(t, l, 3000)
	_, err := l.Truncate(stream, 2990, eventlog.Force)
	require.NoError(t, err)
	rec := newRecorder()
	r2 := openReader(t, l, "c", nil)
	errc := start(r2, rec.handle)
	waitFloor(t, r2, 3000)
	shutdown(t, r2, errc)
	require.Equal(t, seqRange(2990, 3000), rec.acked())
}

// commitFloors is a CommitHook that remembers the last floor committed.
type commitFloors struct{ floor atomic.Uint64 }

func (c *commitFloors) Commit(*eventlog.Tx, uint64, []uint64) error { return nil }
func (c *commitFloors) Committed(floor uint64, _ []uint64) {
	for {
		cur := c.floor.Load()
		if floor <= cur || c.floor.CompareAndSwap(cur, floor) {
			return
		}
	}
}

// TestRedeliveryWithACommitHookRunsAlone: for a Reader whose commits carry
// effects (flow state), a redelivered dead letter runs only once nothing
// else is in flight and every event done is committed, so that the
// transaction clearing it commits exactly its own effect.
func TestRedeliveryWithACommitHookRunsAlone(t *testing.T) {
	l := openLog(t)
	appendKeys(t, l, "k")
	hook := &commitFloors{}
	var running, maxDone atomic.Int64
	var redelivered atomic.Bool
	type seen struct{ alone, covered bool }
	at := make(chan seen, 1)
	h := func(_ context.Context, e eventlog.Event) error {
		n := running.Add(1)
		defer running.Add(-1)
		if e.Seq == 1 {
			if !redelivered.Load() {
				return consumer.Permanent(errTransient)
			}
			at <- seen{alone: n == 1, covered: hook.floor.Load() >= uint64(maxDone.Load())}
			return nil
		}
		time.Sleep(time.Millisecond) // keeps events in flight
		for {
			cur := maxDone.Load()
			if int64(e.Seq) <= cur || maxDone.CompareAndSwap(cur, int64(e.Seq)) {
				break
			}
		}
		return nil
	}
	r := openReader(t, l, "c", &consumer.Options{Workers: 4, CommitInterval: 20 * time.Millisecond, Commit: hook,
		Retry: consumer.Retry{MaxAttempts: 1}})
	errc := start(r, h)
	waitFor(t, "event 1 dead-lettered", func() bool { return len(deadLetterSeqs(t, l, "c", consumer.Range{})) == 1 })

	stop := make(chan struct{})
	appended := make(chan struct{})
	go func() { // later events of its key and others keep coming
		defer close(appended)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			evs := []eventlog.Event{{Type: "test.event", Key: "k"}, {Type: "test.event", Key: fmt.Sprint("o", i%7)}, {Type: "test.event", Key: "k"}}
			if _, err := l.Append(stream, evs...); err != nil {
				return // the test fails on what it then misses
			}
		}
	}()
	waitFor(t, "events in flight", func() bool { return running.Load() > 0 })
	redelivered.Store(true)
	_, err := consumer.Redeliver(l, stream, "c", consumer.Range{From: 1, To: 2})
	require.NoError(t, err)
	got := waitClosed(t, "the redelivery", at)
	close(stop)
	<-appended
	require.True(t, got.alone, "no other event in flight")
	require.True(t, got.covered, "every event done is committed")
	waitFor(t, "the dead letter cleared", func() bool { return len(deadLetterSeqs(t, l, "c", consumer.Range{})) == 0 })
	shutdown(t, r, errc)
}

// TestParkedRedeliveryLetsEventsFlowWhileARetryWaits: a redelivery waits
// for the window to drain, but an event waiting for a long retry would
// keep it from draining for as long: events then flow on meanwhile.
func TestParkedRedeliveryLetsEventsFlowWhileARetryWaits(t *testing.T) {
	l := openLog(t)
	appendKeys(t, l, "dead", "slow")
	handled := make(chan uint64, 100)
	h := func(_ context.Context, e eventlog.Event) error {
		switch e.Key {
		case "dead":
			return consumer.Permanent(errTransient)
		case "slow":
			return errTransient // retried in an hour
		}
		handled <- e.Seq
		return nil
	}
	r := openReader(t, l, "c", &consumer.Options{Workers: 2, CommitInterval: 10 * time.Millisecond, Commit: &commitFloors{},
		Retry: consumer.Retry{MaxAttempts: 3, Base: time.Hour, Max: time.Hour}})
	errc := start(r, h)
	waitFor(t, "event 1 dead-lettered", func() bool { return len(deadLetterSeqs(t, l, "c", consumer.Range{})) == 1 })
	_, err := consumer.Redeliver(l, stream, "c", consumer.Range{From: 1, To: 2})
	require.NoError(t, err)
	waitFor(t, "the redelivery picked up", func() bool { return r.Stats().Redelivering == 1 })
	seqs := appendKeys(t, l, "a", "b")
	for range seqs {
		waitClosed(t, "a later event handled", (<-chan uint64)(handled))
	}
	shutdown(t, r, errc)
}
