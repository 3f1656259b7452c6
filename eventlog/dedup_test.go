package eventlog_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/oklog/ulid/v2"
	"github.com/stretchr/testify/require"
)

func TestAppendDuplicateIDs(t *testing.T) {
	x, y := eventlog.DeriveID("x"), eventlog.DeriveID("y")
	ev := func(id ulid.ULID, data string) eventlog.Event {
		return eventlog.Event{ID: id, Type: "t", Data: []byte(data)}
	}
	t.Run("later call", func(t *testing.T) {
		l := flowtest.MustOpenLog(t, nil)
		first := flowtest.MustAppend(t, l, "s", ev(x, "first"), ev(y, "y"))
		before := mustInfo(t, l, "s")

		res := flowtest.MustAppend(t, l, "s", ev(x, "retry"))
		require.Equal(t, eventlog.AppendResult{Seq: first[0].Seq, ID: x, Duplicate: true}, res[0])
		require.Equal(t, before, mustInfo(t, l, "s"), "nothing was written")
		e, err := l.GetByID("s", x)
		require.NoError(t, err)
		require.Equal(t, "first", string(e.Data), "the original is kept")
	})
	t.Run("mixed with new events", func(t *testing.T) {
		l := flowtest.MustOpenLog(t, nil)
		flowtest.MustAppend(t, l, "s", ev(x, "x"), ev(y, "y"))
		res := flowtest.MustAppend(t, l, "s", flowtest.Event("t", "new1"), ev(y, "y again"), flowtest.Event("t", "new2"))
		require.Equal(t, uint64(3), res[0].Seq)
		require.Equal(t, eventlog.AppendResult{Seq: 2, ID: y, Duplicate: true}, res[1])
		require.Equal(t, uint64(4), res[2].Seq, "a duplicate takes no seq")
		require.Equal(t, []uint64{1, 2, 3, 4}, seqsOf(readStream(t, l, "s")))
	})
	t.Run("within one call", func(t *testing.T) {
		l := flowtest.MustOpenLog(t, nil)
		res := flowtest.MustAppend(t, l, "s", ev(x, "1"), ev(y, "2"), ev(x, "3"), ev(x, "4"))
		require.Equal(t, []eventlog.AppendResult{
			{Seq: 1, ID: x}, {Seq: 2, ID: y}, {Seq: 1, ID: x, Duplicate: true}, {Seq: 1, ID: x, Duplicate: true},
		}, res)
		require.Equal(t, uint64(2), mustInfo(t, l, "s").Count)
	})
	t.Run("generated ID sent back", func(t *testing.T) {
		l := flowtest.MustOpenLog(t, nil)
		first := flowtest.MustAppend(t, l, "s", flowtest.Event("t", "a"), flowtest.Event("t", "b"))
		res := flowtest.MustAppend(t, l, "s", eventlog.Event{ID: first[1].ID, Type: "t"})
		require.Equal(t, eventlog.AppendResult{Seq: 2, ID: first[1].ID, Duplicate: true}, res[0])
		require.Equal(t, uint64(2), mustInfo(t, l, "s").Count)
	})
	t.Run("other stream is not a duplicate", func(t *testing.T) {
		l := flowtest.MustOpenLog(t, nil)
		flowtest.MustAppend(t, l, "a", ev(x, "a"))
		res := flowtest.MustAppend(t, l, "b", flowtest.Event("t", "b1"), ev(x, "b"))
		require.Equal(t, eventlog.AppendResult{Seq: 2, ID: x}, res[1])
		e, err := l.GetByID("b", x)
		require.NoError(t, err)
		require.Equal(t, "b", string(e.Data))
	})
	t.Run("survives reopen", func(t *testing.T) {
		l := flowtest.MustOpenLog(t, nil)
		flowtest.MustAppend(t, l, "s", ev(x, "x"))
		l = flowtest.MustReopen(t, l, nil)
		res := flowtest.MustAppend(t, l, "s", ev(x, "x"))
		require.True(t, res[0].Duplicate)
	})
	t.Run("within the dedup window", func(t *testing.T) {
		l := flowtest.MustOpenLog(t, &eventlog.Options{DedupWindow: time.Hour})
		flowtest.MustAppend(t, l, "s", ev(x, "x"))
		res := flowtest.MustAppend(t, l, "s", ev(x, "x"))
		require.Equal(t, eventlog.AppendResult{Seq: 1, ID: x, Duplicate: true}, res[0])
	})
}

// TestAppendDedupWindowExpires uses the shortest window there is, one
// nanosecond, so that no waiting is needed: any later append time is
// outside it. Times never decrease but may repeat, so the test first makes
// sure the stream's clock has moved past the original event.
func TestAppendDedupWindowExpires(t *testing.T) {
	for _, tc := range []struct {
		name string
		id   ulid.ULID // zero: the journal generates it
	}{
		{"caller ID", eventlog.DeriveID("x")},
		{"generated ID", ulid.ULID{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := flowtest.MustOpenLog(t, &eventlog.Options{DedupWindow: time.Nanosecond})
			flowtest.MustAppend(t, l, "s", flowtest.Event("t", "before"))
			first := flowtest.MustAppend(t, l, "s", eventlog.Event{ID: tc.id, Type: "t", Data: []byte("original")})[0]
			id := first.ID
			origEvent, err := l.Get("s", first.Seq)
			require.NoError(t, err)
			waitForStreamTimeAfter(t, l, "s", origEvent.Time)

			res := flowtest.MustAppend(t, l, "s", eventlog.Event{ID: id, Type: "t", Data: []byte("again")})
			last := mustInfo(t, l, "s").Last
			require.Equal(t, eventlog.AppendResult{Seq: last, ID: id}, res[0], "appended again as a new event")

			e, err := l.GetByID("s", id)
			require.NoError(t, err)
			require.Equal(t, last, e.Seq, "GetByID returns the later event")
			require.Equal(t, "again", string(e.Data))
			e, err = l.Get("s", first.Seq)
			require.NoError(t, err)
			require.Equal(t, "original", string(e.Data), "the original stays")

			// Removing the original keeps the ID pointing at the later one.
			n, err := l.Truncate("s", first.Seq+1, eventlog.KeepUnacked)
			require.NoError(t, err)
			require.Equal(t, first.Seq, n)
			e, err = l.GetByID("s", id)
			require.NoError(t, err)
			require.Equal(t, last, e.Seq)
		})
	}
}

// waitForStreamTimeAfter appends filler events to stream until one is
// stored with a time after t. On any real clock the first one is.
func waitForStreamTimeAfter(t *testing.T, l *eventlog.Log, stream string, after time.Time) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for mustInfo(t, l, stream).LastTime.Equal(after) {
		require.True(t, time.Now().Before(deadline), "the clock did not move past %v", after)
		flowtest.MustAppend(t, l, stream, flowtest.Event("filler", ""))
	}
}

func TestDeriveID(t *testing.T) {
	require.Equal(t, eventlog.DeriveID("order", "42"), eventlog.DeriveID("order", "42"), "deterministic")
	require.Equal(t, "2CH79NFP5VH447RZV3DKMM5K6C", eventlog.DeriveID("order", "42").String(), "stable across builds: derived IDs are stored (value computed independently: SHA-256 of the uvarint-prefixed parts)")

	distinct := [][]string{
		{"a", "bc"},
		{"ab", "c"},
		{"abc"},
		{"a", "b", "c"},
		{"", "abc"},
		{"abc", ""},
		{},
		{""},
		{"", ""},
	}
	seen := map[ulid.ULID][]string{}
	for _, parts := range distinct {
		id := eventlog.DeriveID(parts...)
		require.NotContains(t, seen, id, "DeriveID(%q) equals DeriveID(%q)", parts, seen[id])
		seen[id] = parts
	}
}

// TestAppendConcurrentDuplicates sends the same caller ID from many
// goroutines at once, so that copies meet inside one group commit: exactly
// one is written and every caller learns its seq.
func TestAppendConcurrentDuplicates(t *testing.T) {
	const rounds, senders = 20, 16
	l := flowtest.MustOpenLog(t, nil)
	for round := range rounds {
		id := eventlog.DeriveID("round", fmt.Sprint(round))
		results := make(chan eventlog.AppendResult, senders)
		errs := make(chan error, senders)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				res, err := l.Append("s", eventlog.Event{ID: id, Type: "t"})
				if err != nil {
					errs <- err
					return
				}
				results <- res[0]
			}()
		}
		close(start)
		wg.Wait()
		close(results)
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		written := 0
		want := uint64(round + 1)
		for r := range results {
			require.Equal(t, want, r.Seq, "round %d", round)
			require.Equal(t, id, r.ID)
			if !r.Duplicate {
				written++
			}
		}
		require.Equal(t, 1, written, "round %d: exactly one copy is written", round)
	}
	require.Equal(t, uint64(rounds), mustInfo(t, l, "s").Count)
}
