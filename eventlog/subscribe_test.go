package eventlog_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/stretchr/testify/require"
)

// waitLimit bounds every wait in these tests: long enough for a CI machine
// whose disk is slow to fsync, short enough that a hang fails well before
// go test's own timeout. Passing tests never wait for it.
const waitLimit = 30 * time.Second

// mustNext returns the subscription's next event, failing the test if none
// comes within waitLimit.
func mustNext(t *testing.T, sub *eventlog.Subscription) eventlog.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	e, err := sub.Next(ctx)
	require.NoError(t, err)
	return e
}

// requireWaiting checks that the subscription has nothing to yield: Next
// waits until its deadline.
func requireWaiting(t *testing.T, sub *eventlog.Subscription) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	e, err := sub.Next(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded, "Next returned event %d instead of waiting", e.Seq)
}

type nextResult struct {
	event eventlog.Event
	err   error
}

// nextAsync calls Next in a goroutine; the result arrives on the channel.
// started is closed just before the call.
func nextAsync(ctx context.Context, sub *eventlog.Subscription) (started <-chan struct{}, result <-chan nextResult) {
	s, r := make(chan struct{}), make(chan nextResult, 1)
	go func() {
		close(s)
		e, err := sub.Next(ctx)
		r <- nextResult{e, err}
	}()
	return s, r
}

// receiveNext waits for a result of nextAsync, failing the test after
// waitLimit.
func receiveNext(t *testing.T, c <-chan nextResult) nextResult {
	t.Helper()
	select {
	case r := <-c:
		return r
	case <-time.After(waitLimit):
		t.Fatalf("Next did not return within %v", waitLimit)
		return nextResult{}
	}
}

func TestSubscribePositions(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	for range 5 { // separate calls: distinct times
		flowtest.MustAppend(t, l, "s", flowtest.Event("t", ""))
	}
	events := readStream(t, l, "s")
	_, err := l.Truncate("s", 2, eventlog.Force) // the first retained is 2
	require.NoError(t, err)

	cases := []struct {
		name  string
		pos   eventlog.Position
		first uint64 // the first seq yielded; 6 means only new events
	}{
		{"earliest", eventlog.Earliest(), 2},
		{"latest", eventlog.Latest(), 6},
		{"at seq", eventlog.AtSeq(4), 4},
		{"at seq zero", eventlog.AtSeq(0), 2},
		{"at a removed seq", eventlog.AtSeq(1), 2},
		{"at seq beyond last", eventlog.AtSeq(6), 6},
		{"at time of an event", eventlog.AtTime(events[2].Time), 3},
		{"at time before everything", eventlog.AtTime(events[0].Time.Add(-time.Hour)), 2},
		{"at time after everything", eventlog.AtTime(time.Now().Add(time.Hour)), 6},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sub, err := l.Subscribe("s", tc.pos)
			require.NoError(t, err)
			for seq := tc.first; seq <= 5; seq++ {
				require.Equal(t, seq, mustNext(t, sub).Seq)
			}
			requireWaiting(t, sub)
			require.Equal(t, uint64(6), sub.NextSeq())
		})
	}
	// Each subscription is resolved when created, so Latest is fixed then.
	latest, err := l.Subscribe("s", eventlog.Latest())
	require.NoError(t, err)
	flowtest.MustAppend(t, l, "s", flowtest.Event("t", "new"))
	require.Equal(t, uint64(6), mustNext(t, latest).Seq)
}

func TestSubscribePositionString(t *testing.T) {
	at := time.Date(2024, 5, 6, 7, 8, 9, 10, time.FixedZone("x", 3600))
	for _, tc := range []struct {
		pos  eventlog.Position
		want string
	}{
		{eventlog.Earliest(), "earliest"},
		{eventlog.Latest(), "latest"},
		{eventlog.AtSeq(7), "seq 7"},
		{eventlog.AtTime(at), "time 2024-05-06T06:08:09.00000001Z"},
		{eventlog.Position{}, "earliest"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			require.Equal(t, tc.want, tc.pos.String())
		})
	}
}

func TestSubscribeYieldsExistingThenWaits(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, "s", flowtest.Events(3, "t")...)
	sub, err := l.Subscribe("s", eventlog.Earliest())
	require.NoError(t, err)
	for seq := uint64(1); seq <= 3; seq++ {
		require.Equal(t, seq, mustNext(t, sub).Seq)
	}
	requireWaiting(t, sub)

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	started, result := nextAsync(ctx, sub)
	<-started
	flowtest.MustAppend(t, l, "s", flowtest.Event("t", "late"))
	r := receiveNext(t, result)
	require.NoError(t, r.err)
	require.Equal(t, uint64(4), r.event.Seq)
	require.Equal(t, "late", string(r.event.Data))
	require.Equal(t, uint64(5), sub.NextSeq())
}

func TestSubscribeBeforeTheStreamExists(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	for i, pos := range []eventlog.Position{eventlog.Earliest(), eventlog.Latest(), eventlog.AtSeq(0), eventlog.AtTime(time.Now())} {
		t.Run(pos.String(), func(t *testing.T) {
			stream := fmt.Sprintf("s%d", i)
			sub, err := l.Subscribe(stream, pos)
			require.NoError(t, err)
			require.Equal(t, uint64(1), sub.NextSeq())
			requireWaiting(t, sub)
			flowtest.MustAppend(t, l, "other", flowtest.Event("t", "")) // wakes it for nothing
			requireWaiting(t, sub)
			flowtest.MustAppend(t, l, stream, flowtest.Event("t", "first"))
			e := mustNext(t, sub)
			require.Equal(t, uint64(1), e.Seq)
			require.Equal(t, "first", string(e.Data))
		})
	}
}

func TestSubscribeContextCancellation(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	sub, err := l.Subscribe("s", eventlog.Earliest())
	require.NoError(t, err)

	t.Run("cancelled while waiting", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		started, result := nextAsync(ctx, sub)
		<-started
		cancel()
		r := receiveNext(t, result)
		require.ErrorIs(t, r.err, context.Canceled)
	})
	t.Run("already cancelled", func(t *testing.T) {
		flowtest.MustAppend(t, l, "s", flowtest.Event("t", ""))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := sub.Next(ctx)
		require.ErrorIs(t, err, context.Canceled)
		// The event was not consumed by the failed call.
		require.Equal(t, uint64(1), mustNext(t, sub).Seq)
	})
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		_, err := sub.Next(ctx)
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})
}

func TestSubscribeCloseWakesWaiters(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, "s", flowtest.Event("t", ""))
	var results []<-chan nextResult
	for range 3 {
		sub, err := l.Subscribe("s", eventlog.Latest())
		require.NoError(t, err)
		started, result := nextAsync(context.Background(), sub)
		<-started
		results = append(results, result)
	}
	require.NoError(t, l.Close())
	for _, c := range results {
		require.ErrorIs(t, receiveNext(t, c).err, eventlog.ErrClosed)
	}

	_, err := l.Subscribe("s", eventlog.Earliest())
	require.ErrorIs(t, err, eventlog.ErrClosed)
}

func TestSubscribeInvalidStream(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	_, err := l.Subscribe("bad name", eventlog.Earliest())
	require.ErrorIs(t, err, eventlog.ErrInvalidName)
}

// TestSubscribeManyWhileAppending runs subscribers from the start alongside
// concurrent appenders: each must see every event exactly once, in order.
func TestSubscribeManyWhileAppending(t *testing.T) {
	const subscribers, appenders, perAppender = 8, 4, 150
	const total = appenders * perAppender
	l := flowtest.MustOpenLog(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()

	errs := make(chan error, subscribers+appenders)
	var wg sync.WaitGroup
	for s := range subscribers {
		// Half start before anything exists, half at an explicit seq.
		pos := eventlog.Earliest()
		if s%2 == 1 {
			pos = eventlog.AtSeq(1)
		}
		sub, err := l.Subscribe("s", pos)
		require.NoError(t, err)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for want := uint64(1); want <= total; want++ {
				e, err := sub.Next(ctx)
				if err != nil {
					errs <- fmt.Errorf("subscriber %d waiting for %d: %w", s, want, err)
					return
				}
				if e.Seq != want {
					errs <- fmt.Errorf("subscriber %d got seq %d, want %d", s, e.Seq, want)
					return
				}
			}
		}()
	}
	for a := range appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perAppender; {
				n := 1 + i%4 // batches of varying size
				n = min(n, perAppender-i)
				if _, err := l.Append("s", flowtest.Events(n, fmt.Sprintf("a%d", a))...); err != nil {
					errs <- fmt.Errorf("appender %d: %w", a, err)
					return
				}
				i += n
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.False(t, errors.Is(ctx.Err(), context.DeadlineExceeded), "test ran out of time")
}

func TestSubscriptionNextBatch(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, "s", flowtest.Events(5, "t")...)
	sub, err := l.Subscribe("s", eventlog.Earliest())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()

	got, err := sub.NextBatch(ctx, nil, 3)
	require.NoError(t, err)
	require.Equal(t, []uint64{1, 2, 3}, seqsOf(got), "at most max")
	dst := []eventlog.Event{{Seq: 99}}
	got, err = sub.NextBatch(ctx, dst, 10)
	require.NoError(t, err)
	require.Equal(t, []uint64{99, 4, 5}, seqsOf(got), "appends to dst what is there without waiting")
	got, err = sub.NextBatch(ctx, nil, 0)
	require.NoError(t, err)
	require.Empty(t, got)
	require.Equal(t, uint64(6), sub.NextSeq())

	short, cancelShort := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancelShort()
	_, err = sub.NextBatch(short, nil, 10)
	require.ErrorIs(t, err, context.DeadlineExceeded, "waits when nothing is there")

	flowtest.MustAppend(t, l, "s", flowtest.Events(2, "t")...)
	got, err = sub.NextBatch(ctx, nil, 10)
	require.NoError(t, err)
	require.Equal(t, []uint64{6, 7}, seqsOf(got))

	// Next and NextBatch share one position.
	flowtest.MustAppend(t, l, "s", flowtest.Events(3, "t")...)
	require.Equal(t, uint64(8), mustNext(t, sub).Seq)
	got, err = sub.NextBatch(ctx, nil, 10)
	require.NoError(t, err)
	require.Equal(t, []uint64{9, 10}, seqsOf(got))
}
