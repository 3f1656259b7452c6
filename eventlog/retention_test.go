package eventlog_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/stretchr/testify/require"
)

func TestTruncate(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	caller := eventlog.DeriveID("caller")
	res := flowtest.MustAppend(t, l, "s", flowtest.Events(5, "t")...)
	res = append(res, flowtest.MustAppend(t, l, "s", eventlog.Event{ID: caller, Type: "t"})...) // seq 6
	res = append(res, flowtest.MustAppend(t, l, "s", flowtest.Events(4, "t")...)...)            // 7..10
	flowtest.MustAppend(t, l, "other", flowtest.Events(3, "t")...)

	steps := []struct {
		name        string
		below       uint64
		removed     uint64
		first, last uint64
	}{
		{"below first removes nothing", 1, 0, 1, 10},
		{"below zero removes nothing", 0, 0, 1, 10},
		{"some", 4, 3, 4, 10},
		{"again removes nothing", 4, 0, 4, 10},
		{"lower removes nothing", 2, 0, 4, 10},
		{"past the caller ID", 7, 3, 7, 10},
		{"everything", 100, 4, 11, 10},
		{"empty stream", 100, 0, 11, 10},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			n, err := l.Truncate("s", st.below, eventlog.KeepUnacked)
			require.NoError(t, err)
			require.Equal(t, st.removed, n)
			si := mustInfo(t, l, "s")
			require.Equal(t, st.first, si.First)
			require.Equal(t, st.last, si.Last, "Last is kept: seqs are never reused")
			require.Equal(t, st.last+1-st.first, si.Count)
			require.Equal(t, seqRange(st.first, st.last), seqsOf(readStream(t, l, "s")))
			for _, r := range res {
				_, err := l.GetByID("s", r.ID)
				_, gerr := l.Get("s", r.Seq)
				if r.Seq < st.first {
					require.ErrorIs(t, err, eventlog.ErrNotFound, "GetByID of removed seq %d", r.Seq)
					require.ErrorIs(t, gerr, eventlog.ErrNotFound, "Get of removed seq %d", r.Seq)
				} else {
					require.NoError(t, err)
					require.NoError(t, gerr)
				}
			}
		})
	}
	si := mustInfo(t, l, "s")
	require.Zero(t, si.Bytes, "no bytes retained")
	require.Equal(t, uint64(3), mustInfo(t, l, "other").Count, "other streams are untouched")

	// Appends continue the sequence.
	again := flowtest.MustAppend(t, l, "s", flowtest.Event("t", "after"), eventlog.Event{ID: caller, Type: "t"})
	require.Equal(t, uint64(11), again[0].Seq)
	require.Equal(t, eventlog.AppendResult{Seq: 12, ID: caller}, again[1], "a removed ID is no longer a duplicate")
	l = flowtest.MustReopen(t, l, nil)
	require.Equal(t, eventlog.StreamInfo{Name: "s", First: 11, Last: 12, Count: 2, Bytes: mustInfo(t, l, "s").Bytes, LastTime: mustInfo(t, l, "s").LastTime}, mustInfo(t, l, "s"))
	res = flowtest.MustAppend(t, l, "s", flowtest.Event("t", ""))
	require.Equal(t, uint64(13), res[0].Seq)

	_, err := l.Truncate("nope", 5, eventlog.Force)
	require.ErrorIs(t, err, eventlog.ErrNotFound)
}

func TestTruncateManyEvents(t *testing.T) {
	// More than one truncation transaction's worth (4096 events).
	l := flowtest.MustOpenLog(t, nil)
	for range 5 {
		flowtest.MustAppend(t, l, "s", flowtest.Events(2000, "t")...)
	}
	n, err := l.Truncate("s", 9001, eventlog.KeepUnacked)
	require.NoError(t, err)
	require.Equal(t, uint64(9000), n)
	require.Equal(t, uint64(9001), mustInfo(t, l, "s").First)
	require.Equal(t, seqRange(9001, 10000), seqsOf(readStream(t, l, "s")))
}

func TestTruncateRespectsConsumers(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, "s", flowtest.Events(10, "t")...)
	flowtest.MustAppend(t, l, "other", flowtest.Events(10, "t")...)
	require.NoError(t, l.CommitOffset("s", "slow", 3))
	require.NoError(t, l.CommitOffset("s", "fast", 9))
	require.NoError(t, l.CommitOffset("other", "slowest", 0)) // another stream's consumer does not count

	t.Run("refused", func(t *testing.T) {
		before := mustInfo(t, l, "s")
		n, err := l.Truncate("s", 6, eventlog.KeepUnacked)
		require.ErrorIs(t, err, eventlog.ErrConsumerBehind)
		require.Contains(t, err.Error(), `"slow"`)
		require.Zero(t, n)
		require.Equal(t, before, mustInfo(t, l, "s"), "nothing removed")
	})
	t.Run("up to the slowest consumer", func(t *testing.T) {
		n, err := l.Truncate("s", 4, eventlog.KeepUnacked)
		require.NoError(t, err)
		require.Equal(t, uint64(3), n)
	})
	t.Run("force", func(t *testing.T) {
		n, err := l.Truncate("s", 8, eventlog.Force)
		require.NoError(t, err)
		require.Equal(t, uint64(4), n)
		require.Equal(t, uint64(8), mustInfo(t, l, "s").First)

		// The consumer's offset stays and it resumes at the next retained event.
		seq, _ := mustOffset(t, l, "s", "slow")
		require.Equal(t, uint64(3), seq)
		sub, err := l.Subscribe("s", eventlog.AtSeq(seq+1))
		require.NoError(t, err)
		require.Equal(t, uint64(8), mustNext(t, sub).Seq)
		require.NoError(t, l.CommitOffset("s", "slow", 8))
	})
	t.Run("registered after a refusal", func(t *testing.T) {
		require.NoError(t, l.ResetOffset("s", "fast", 8))
		n, err := l.Truncate("s", 10, eventlog.KeepUnacked)
		require.ErrorIs(t, err, eventlog.ErrConsumerBehind)
		require.Zero(t, n)
		n, err = l.Truncate("s", 9, eventlog.KeepUnacked)
		require.NoError(t, err)
		require.Equal(t, uint64(1), n)
	})
}

func TestTruncatePolicyString(t *testing.T) {
	require.Equal(t, "keep-unacked", eventlog.KeepUnacked.String())
	require.Equal(t, "force", eventlog.Force.String())
}

func TestApplyRetention(t *testing.T) {
	// Ten events of equal size; one event's size is measured.
	setup := func(t *testing.T) (*eventlog.Log, uint64) {
		l := flowtest.MustOpenLog(t, nil)
		flowtest.MustAppend(t, l, "s", flowtest.Events(10, "t")...)
		return l, mustInfo(t, l, "s").Bytes / 10
	}
	cases := []struct {
		name     string
		r        func(one uint64) eventlog.Retention
		consumer uint64 // offset of a registered consumer; 0 for none
		first    uint64 // the first retained seq afterwards
	}{
		{"no limits", func(uint64) eventlog.Retention { return eventlog.Retention{} }, 0, 1},
		{"max events", func(uint64) eventlog.Retention { return eventlog.Retention{MaxEvents: 4} }, 0, 7},
		{"max events above count", func(uint64) eventlog.Retention { return eventlog.Retention{MaxEvents: 11} }, 0, 1},
		{"max events equal to count", func(uint64) eventlog.Retention { return eventlog.Retention{MaxEvents: 10} }, 0, 1},
		{"max bytes exact", func(one uint64) eventlog.Retention { return eventlog.Retention{MaxBytes: 3 * one} }, 0, 8},
		{"max bytes a byte over", func(one uint64) eventlog.Retention { return eventlog.Retention{MaxBytes: 3*one + 1} }, 0, 8},
		{"max bytes a byte under", func(one uint64) eventlog.Retention { return eventlog.Retention{MaxBytes: 3*one - 1} }, 0, 9},
		{"max bytes below one event", func(one uint64) eventlog.Retention { return eventlog.Retention{MaxBytes: 1} }, 0, 11},
		{"max age keeps young events", func(uint64) eventlog.Retention { return eventlog.Retention{MaxAge: time.Hour} }, 0, 1},
		{"strictest wins", func(one uint64) eventlog.Retention { return eventlog.Retention{MaxEvents: 5, MaxBytes: 3 * one} }, 0, 8},
		{"clamped at the consumer", func(uint64) eventlog.Retention { return eventlog.Retention{MaxEvents: 2} }, 5, 6},
		{"consumer ahead of the limit", func(uint64) eventlog.Retention { return eventlog.Retention{MaxEvents: 2} }, 10, 9},
		{"max events without consumers", func(uint64) eventlog.Retention { return eventlog.Retention{MaxEvents: 2} }, 0, 9},
		{"force ignores the consumer", func(uint64) eventlog.Retention { return eventlog.Retention{MaxEvents: 2, Policy: eventlog.Force} }, 5, 9},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, one := setup(t)
			if tc.consumer > 0 {
				require.NoError(t, l.CommitOffset("s", "c", tc.consumer))
			}
			n, err := l.ApplyRetention("s", tc.r(one))
			require.NoError(t, err)
			require.Equal(t, tc.first-1, n, "removed")
			si := mustInfo(t, l, "s")
			require.Equal(t, tc.first, si.First)
			require.Equal(t, uint64(10), si.Last)
			require.Equal(t, (11-tc.first)*one, si.Bytes)
		})
	}
	t.Run("consumer registered at zero", func(t *testing.T) {
		l, _ := setup(t)
		require.NoError(t, l.CommitOffset("s", "c", 0))
		n, err := l.ApplyRetention("s", eventlog.Retention{MaxEvents: 2})
		require.NoError(t, err)
		require.Zero(t, n, "a consumer that acked nothing holds everything")
	})
	t.Run("max age of a nanosecond removes everything", func(t *testing.T) {
		l, _ := setup(t)
		waitForClockPast(t, mustInfo(t, l, "s").LastTime.Add(time.Nanosecond))
		n, err := l.ApplyRetention("s", eventlog.Retention{MaxAge: time.Nanosecond})
		require.NoError(t, err)
		require.Equal(t, uint64(10), n)
	})
	t.Run("invalid", func(t *testing.T) {
		l, _ := setup(t)
		_, err := l.ApplyRetention("s", eventlog.Retention{MaxAge: -time.Second})
		require.ErrorIs(t, err, eventlog.ErrInvalidOptions)
		_, err = l.ApplyRetention("s", eventlog.Retention{Policy: eventlog.Force + 1})
		require.ErrorIs(t, err, eventlog.ErrInvalidOptions)
		require.Equal(t, uint64(10), mustInfo(t, l, "s").Count)
	})
	t.Run("missing stream", func(t *testing.T) {
		l, _ := setup(t)
		_, err := l.ApplyRetention("nope", eventlog.Retention{MaxEvents: 1})
		require.ErrorIs(t, err, eventlog.ErrNotFound)
	})
}

// TestApplyRetentionMaxAge appends an old and a young group of events at
// least gap apart, then applies a MaxAge that puts the cutoff gap/2 before
// the young group however long the appends took: the old group goes, the
// young one stays. Only the scheduling delay between computing MaxAge and
// the call (no disk I/O) must stay under gap/2.
func TestApplyRetentionMaxAge(t *testing.T) {
	const gap = 300 * time.Millisecond
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, "s", flowtest.Events(3, "old")...)
	waitForClockPast(t, mustInfo(t, l, "s").LastTime.Add(gap))
	young := flowtest.MustAppend(t, l, "s", flowtest.Events(2, "young")...)
	e, err := l.Get("s", young[0].Seq)
	require.NoError(t, err)

	n, err := l.ApplyRetention("s", eventlog.Retention{MaxAge: time.Since(e.Time) + gap/2})
	require.NoError(t, err)
	require.Equal(t, uint64(3), n)
	for _, e := range readStream(t, l, "s") {
		require.Equal(t, "young", e.Type)
	}
}

// waitForClockPast waits until the wall clock is after t, polling with a
// deadline.
func waitForClockPast(tb testing.TB, t time.Time) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !time.Now().After(t) {
		require.True(tb, time.Now().Before(deadline), "the clock did not pass %v", t)
		<-tick.C
	}
}

// syncBuffer is a bytes.Buffer safe for the journal's goroutines to log to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestBackgroundRetention(t *testing.T) {
	var logs syncBuffer
	l := flowtest.MustOpenLog(t, &eventlog.Options{
		Retention: map[string]eventlog.Retention{
			"trimmed":   {MaxEvents: 3},
			"consumed":  {MaxEvents: 1},
			"not-there": {MaxEvents: 1},
		},
		RetentionInterval: 5 * time.Millisecond,
		Logger:            slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	flowtest.MustAppend(t, l, "trimmed", flowtest.Events(10, "t")...)
	// The consumer registers in the same transaction as the events, so the
	// retention loop never sees them without it.
	require.NoError(t, l.Update(func(tx *eventlog.Tx) error {
		if _, err := tx.Append("consumed", flowtest.Events(10, "t")...); err != nil {
			return err
		}
		return tx.SetOffset("consumed", "c", 6)
	}))
	flowtest.MustAppend(t, l, "kept", flowtest.Events(10, "t")...)

	waitForFirst := func(stream string, first uint64) {
		t.Helper()
		deadline := time.Now().Add(waitLimit)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for mustInfo(t, l, stream).First != first {
			require.True(t, time.Now().Before(deadline), "retention did not trim %s to first %d: %+v", stream, first, mustInfo(t, l, stream))
			<-tick.C
		}
	}
	waitForFirst("trimmed", 8)
	flowtest.MustAppend(t, l, "trimmed", flowtest.Events(5, "t")...)
	waitForFirst("trimmed", 13)
	waitForFirst("consumed", 7) // clamped at the consumer
	require.NoError(t, l.CommitOffset("consumed", "c", 10))
	waitForFirst("consumed", 10)

	require.Equal(t, uint64(1), mustInfo(t, l, "kept").First, "a stream without a policy keeps everything")
	require.Contains(t, logs.String(), "retention removed events")
	require.NotContains(t, logs.String(), "retention failed", "a missing stream is not an error")
}

// TestBackgroundRetentionStopsQuietlyOnClose closes the journal while the
// retention loop is part-way through a long policy map: Close is not a
// retention failure and must not be logged as one.
func TestBackgroundRetentionStopsQuietlyOnClose(t *testing.T) {
	for round := range 3 {
		var logs syncBuffer
		policies := map[string]eventlog.Retention{"s": {MaxEvents: 1}}
		for i := range 2000 { // streams that do not exist: each is a quick no-op
			policies[fmt.Sprintf("missing-%d", i)] = eventlog.Retention{MaxEvents: 1}
		}
		l := flowtest.MustOpenLog(t, &eventlog.Options{
			Retention:         policies,
			RetentionInterval: time.Millisecond,
			Logger:            slog.New(slog.NewTextHandler(&logs, nil)),
		})
		flowtest.MustAppend(t, l, "s", flowtest.Events(5, "t")...)
		deadline := time.Now().Add(waitLimit)
		tick := time.NewTicker(time.Millisecond)
		for !strings.Contains(logs.String(), "retention removed events") {
			require.True(t, time.Now().Before(deadline), "retention never ran")
			<-tick.C
		}
		tick.Stop()
		require.NoError(t, l.Close())
		require.NotContains(t, logs.String(), "retention failed", "round %d", round)
	}
}
