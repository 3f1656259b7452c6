package consumer_test

import (
	"context"
	"testing"
	"time"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/stretchr/testify/require"
)

// TestDeliverOnce: in the happy path every event reaches the handler once,
// and a Reader reopened after a clean Shutdown delivers only what is new.
func TestDeliverOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts consumer.Options
		keys []string // cycled over the events
	}{
		{name: "one worker", opts: consumer.Options{}, keys: []string{""}},
		{name: "four workers, keys", opts: consumer.Options{Workers: 4}, keys: []string{"a", "b", "c", ""}},
		{name: "tiny window", opts: consumer.Options{Workers: 2, MaxInFlight: 3}, keys: []string{"a", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := openLog(t)
			keys := func(n int) []string {
				out := make([]string, n)
				for i := range out {
					out[i] = tc.keys[i%len(tc.keys)]
				}
				return out
			}
			appendKeys(t, l, keys(300)...)

			rec := newRecorder()
			r := openReader(t, l, "c", &tc.opts)
			errc := start(r, rec.handle)
			waitFloor(t, r, 300)
			shutdown(t, r, errc)
			require.Equal(t, seqRange(1, 300), rec.acked())
			for s := uint64(1); s <= 300; s++ {
				require.Equal(t, 1, rec.callCount(s), "deliveries of %d", s)
			}
			require.Equal(t, uint64(300), committed(t, l, "c"))

			// Resume: nothing done is delivered again; the new events are.
			appendKeys(t, l, keys(50)...)
			rec2 := newRecorder()
			r2 := openReader(t, l, "c", &tc.opts)
			errc = start(r2, rec2.handle)
			waitFloor(t, r2, 350)
			shutdown(t, r2, errc)
			require.Equal(t, seqRange(301, 350), rec2.acked(), "after a clean Shutdown only new events are delivered")
			for s := uint64(301); s <= 350; s++ {
				require.Equal(t, 1, rec2.callCount(s), "deliveries of %d", s)
			}
			require.Equal(t, uint64(350), committed(t, l, "c"))
		})
	}
}

// TestStartPositions: a new consumer begins where Options.Start says.
func TestStartPositions(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(l *eventlog.Log, mid time.Time) eventlog.Position
		want  []uint64 // of 1..5, with 4 and 5 appended after Open
	}{
		{name: "default is earliest", start: nil, want: seqRange(1, 5)},
		{name: "earliest", start: func(*eventlog.Log, time.Time) eventlog.Position { return eventlog.Earliest() }, want: seqRange(1, 5)},
		{name: "latest", start: func(*eventlog.Log, time.Time) eventlog.Position { return eventlog.Latest() }, want: seqRange(4, 5)},
		{name: "at seq", start: func(*eventlog.Log, time.Time) eventlog.Position { return eventlog.AtSeq(2) }, want: seqRange(2, 5)},
		{name: "at seq beyond the end starts at the end", start: func(*eventlog.Log, time.Time) eventlog.Position { return eventlog.AtSeq(100) }, want: seqRange(4, 5)},
		{name: "at time", start: func(_ *eventlog.Log, mid time.Time) eventlog.Position { return eventlog.AtTime(mid) }, want: seqRange(3, 5)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := openLog(t)
			appendN(t, l, 2)
			// mid lies after event 2's append time and before event 3's.
			e2, err := l.Get(stream, 2)
			require.NoError(t, err)
			for !time.Now().After(e2.Time) {
			}
			mid := time.Now()
			appendN(t, l, 1)

			opts := &consumer.Options{}
			if tc.start != nil {
				p := tc.start(l, mid)
				opts.Start = &p
			}
			rec := newRecorder()
			r := openReader(t, l, "c", opts)
			appendN(t, l, 2)
			errc := start(r, rec.handle)
			waitFloor(t, r, 5)
			shutdown(t, r, errc)
			require.Equal(t, tc.want, rec.acked())
			require.Equal(t, uint64(5), committed(t, l, "c"))
		})
	}
}

// TestExistingConsumerIgnoresStart: a consumer with a committed offset
// resumes after it, whatever Start says.
func TestExistingConsumerIgnoresStart(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start eventlog.Position
	}{
		{name: "earliest", start: eventlog.Earliest()},
		{name: "latest", start: eventlog.Latest()},
		{name: "at seq", start: eventlog.AtSeq(1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := openLog(t)
			appendN(t, l, 5)
			r := openReader(t, l, "c", nil)
			errc := start(r, newRecorder().handle)
			waitFloor(t, r, 5)
			shutdown(t, r, errc)

			appendN(t, l, 3)
			rec := newRecorder()
			r2 := openReader(t, l, "c", &consumer.Options{Start: &tc.start})
			errc = start(r2, rec.handle)
			waitFloor(t, r2, 8)
			shutdown(t, r2, errc)
			require.Equal(t, seqRange(6, 8), rec.acked())
		})
	}
}

// TestOpenInUse: one live Reader per consumer name and stream.
func TestOpenInUse(t *testing.T) {
	for _, tc := range []struct {
		name, stream, consumer string
		wantErr                error
	}{
		{name: "same name and stream", stream: stream, consumer: "c", wantErr: consumer.ErrInUse},
		{name: "other name", stream: stream, consumer: "d"},
		{name: "other stream", stream: "other", consumer: "c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := openLog(t)
			appendN(t, l, 1)
			first := openReader(t, l, "c", nil)
			r, err := consumer.Open(l, tc.stream, tc.consumer, nil)
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				// Closing the first Reader frees the name.
				require.NoError(t, first.Close())
				r, err = consumer.Open(l, tc.stream, tc.consumer, nil)
			}
			require.NoError(t, err)
			require.NoError(t, r.Close())
		})
	}
	t.Run("freed when Run returns", func(t *testing.T) {
		l := openLog(t)
		appendN(t, l, 1)
		r := openReader(t, l, "c", nil)
		errc := start(r, newRecorder().handle)
		_, err := consumer.Open(l, stream, "c", nil)
		require.ErrorIs(t, err, consumer.ErrInUse)
		shutdown(t, r, errc)
		r2 := openReader(t, l, "c", nil)
		require.NoError(t, r2.Close())
	})
}

// TestRunStates: Run refuses a second run and a closed Reader.
func TestRunStates(t *testing.T) {
	noop := func(context.Context, eventlog.Event) error { return nil }
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, r *consumer.Reader) // leaves r in the state under test
		wantErr error
	}{
		{
			name: "while running",
			prepare: func(t *testing.T, r *consumer.Reader) {
				errc := start(r, noop)
				waitFloor(t, r, 1)
				t.Cleanup(func() { shutdown(t, r, errc) })
			},
			wantErr: consumer.ErrRunning,
		},
		{
			name:    "after Close of an idle Reader",
			prepare: func(t *testing.T, r *consumer.Reader) { require.NoError(t, r.Close()) },
			wantErr: consumer.ErrClosed,
		},
		{
			name: "after Shutdown of an idle Reader",
			prepare: func(t *testing.T, r *consumer.Reader) {
				require.NoError(t, r.Shutdown(context.Background()))
			},
			wantErr: consumer.ErrClosed,
		},
		{
			name: "after Close of a running Reader",
			prepare: func(t *testing.T, r *consumer.Reader) {
				errc := start(r, noop)
				waitFloor(t, r, 1)
				require.NoError(t, r.Close())
				require.ErrorIs(t, runResult(t, errc), consumer.ErrClosed)
				require.NoError(t, r.Close(), "Close is idempotent")
			},
			wantErr: consumer.ErrClosed,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := openLog(t)
			appendN(t, l, 1)
			r := openReader(t, l, "c", nil)
			tc.prepare(t, r)
			require.ErrorIs(t, r.Run(context.Background(), noop), tc.wantErr)
		})
	}
}

// TestStats: the counters agree with what the handler saw.
func TestStats(t *testing.T) {
	l := openLog(t)
	appendKeys(t, l, "a", "b", "c", "d", "e", "f", "g", "h", "i", "j")
	// 3 fails twice then succeeds; 5 fails permanently; 7 exhausts 3 attempts.
	rec := newRecorder()
	rec.fail = func(e eventlog.Event, attempt int) error {
		switch {
		case e.Seq == 3 && attempt <= 2, e.Seq == 7:
			return errTransient
		case e.Seq == 5:
			return consumer.Permanent(errTransient)
		}
		return nil
	}
	r := openReader(t, l, "c", &consumer.Options{Workers: 3, Retry: consumer.Retry{MaxAttempts: 3, Base: time.Millisecond, Max: time.Millisecond}})
	st := r.Stats()
	require.Equal(t, consumer.Stats{Consumer: "c", Stream: stream, Last: 10, Lag: 10, Latency: st.Latency}, st, "before Run")

	errc := start(r, rec.handle)
	waitFloor(t, r, 10)
	shutdown(t, r, errc)
	st = r.Stats()
	require.Equal(t, "c", st.Consumer)
	require.Equal(t, stream, st.Stream)
	require.Equal(t, uint64(10+2+2), st.Delivered, "10 events, 3 retried twice, 7 tried three times")
	require.Equal(t, uint64(8), st.Acked)
	require.Equal(t, uint64(4), st.Retried)
	require.Equal(t, uint64(2), st.DeadLettered)
	require.Equal(t, int64(0), st.InFlight)
	require.Equal(t, uint64(10), st.Floor)
	require.Equal(t, uint64(10), st.Committed)
	require.Equal(t, uint64(10), st.Last)
	require.Equal(t, uint64(0), st.Lag)
	require.Equal(t, st.Delivered, st.Latency.Count)
	require.Len(t, st.Latency.Counts, len(consumer.LatencyBuckets))
	require.LessOrEqual(t, st.Latency.Counts[len(st.Latency.Counts)-1], st.Latency.Count, "cumulative buckets")
	require.Equal(t, uint64(10), r.Offset())

	appendN(t, l, 4)
	require.Equal(t, uint64(4), r.Stats().Lag, "lag counts events appended after the floor")
}
