package consumer_test

import (
	"context"
	"testing"
	"time"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/stretchr/testify/require"
)

// slowHandler blocks on event slow until release is closed or its context
// is done, and reports the context's error at that moment on ctxErr. The
// other events go to rec. Use it for one Reader.
type slowHandler struct {
	slow    uint64
	started chan struct{}
	release chan struct{}
	ctxErr  chan error
	rec     *recorder
}

func newSlowHandler(slow uint64) *slowHandler {
	return &slowHandler{slow: slow, started: make(chan struct{}), release: make(chan struct{}), ctxErr: make(chan error, 1), rec: newRecorder()}
}

func (s *slowHandler) handle(ctx context.Context, e eventlog.Event) error {
	if e.Seq != s.slow {
		return s.rec.handle(ctx, e)
	}
	close(s.started) // a second delivery would panic: there must be none
	select {
	case <-s.release:
	case <-ctx.Done():
	}
	s.ctxErr <- ctx.Err()
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.rec.handle(ctx, e)
}

// TestShutdownDrains: Shutdown with time to spare lets the running handler
// finish with its context intact, delivers nothing new, and commits the
// floor: the next Reader delivers nothing twice.
func TestShutdownDrains(t *testing.T) {
	for _, tc := range []struct {
		name        string
		workers     int
		keys        []string
		waitOthers  bool     // wait for the other events to complete before Shutdown
		wantAcked   []uint64 // by the first Reader
		wantOffset  uint64
		wantResumed []uint64 // by the next Reader; 9 is appended after the restart
	}{
		{
			name: "others done", workers: 4, keys: []string{"a", "b", "c", "d", "e", "", "", ""}, waitOthers: true,
			wantAcked: seqRange(1, 8), wantOffset: 8, wantResumed: []uint64{9},
		},
		{
			name: "one worker: fetched events are not started", workers: 1, keys: make([]string, 8),
			wantAcked: []uint64{1}, wantOffset: 1, wantResumed: seqRange(2, 9),
		},
		{
			name: "same key waits: not started", workers: 4, keys: []string{"a", "a", "a", "a", "a", "a", "a", "a"},
			wantAcked: []uint64{1}, wantOffset: 1, wantResumed: seqRange(2, 9),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := openLog(t)
			appendKeys(t, l, tc.keys...)
			s := newSlowHandler(1)
			r := openReader(t, l, "c", &consumer.Options{Workers: tc.workers, Retry: consumer.Retry{MaxAttempts: 1}})
			errc := start(r, s.handle)
			waitClosed(t, "the slow handler to start", s.started)
			if tc.waitOthers {
				waitFor(t, "the other events to complete", func() bool { return len(s.rec.acked()) == 7 })
			}

			stopped := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
				defer cancel()
				stopped <- r.Shutdown(ctx)
			}()
			waitDraining(t, r)
			select {
			case err := <-stopped:
				t.Fatalf("Shutdown returned %v while a handler was running", err)
			default:
			}
			close(s.release)
			require.NoError(t, waitClosed(t, "the slow handler to finish", s.ctxErr), "Shutdown leaves the handler's context intact")
			require.NoError(t, waitClosed(t, "Shutdown", stopped))
			require.ErrorIs(t, runResult(t, errc), consumer.ErrClosed)

			require.Equal(t, tc.wantAcked, s.rec.acked())
			require.Equal(t, tc.wantOffset, committed(t, l, "c"))
			st := r.Stats()
			require.Equal(t, uint64(len(tc.wantAcked)), st.Delivered)
			require.Zero(t, st.Retried)
			require.Zero(t, st.DeadLettered)

			rec := newRecorder()
			r2 := openReader(t, l, "c", nil)
			errc = start(r2, rec.handle)
			appendN(t, l, 1)
			waitFloor(t, r2, 9)
			shutdown(t, r2, errc)
			require.Equal(t, tc.wantResumed, rec.acked())
			for _, s := range tc.wantResumed {
				require.Equal(t, 1, rec.callCount(s), "deliveries of %d", s)
			}
		})
	}
}

// TestStopInterrupts: an expired Shutdown, Close and a cancelled Run
// context cancel the running handler's context. The interrupted event is
// neither retried nor dead-lettered (MaxAttempts is 1), and the next
// Reader delivers it again.
func TestStopInterrupts(t *testing.T) {
	for _, tc := range []struct {
		name    string
		stop    func(t *testing.T, r *consumer.Reader, cancelRun context.CancelFunc)
		wantRun error
	}{
		{
			name: "expired Shutdown",
			stop: func(t *testing.T, r *consumer.Reader, _ context.CancelFunc) {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
				defer cancel()
				require.ErrorIs(t, r.Shutdown(ctx), context.DeadlineExceeded)
			},
			wantRun: consumer.ErrClosed,
		},
		{
			name: "Close",
			stop: func(t *testing.T, r *consumer.Reader, _ context.CancelFunc) {
				t0 := time.Now()
				require.NoError(t, r.Close())
				require.Less(t, time.Since(t0), 2*time.Second, "Close returns promptly")
			},
			wantRun: consumer.ErrClosed,
		},
		{
			name:    "cancelled Run context",
			stop:    func(_ *testing.T, _ *consumer.Reader, cancelRun context.CancelFunc) { cancelRun() },
			wantRun: context.Canceled,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := openLog(t)
			appendKeys(t, l, "a", "b", "c", "a")
			s := newSlowHandler(2)
			r := openReader(t, l, "c", &consumer.Options{Workers: 2, Retry: consumer.Retry{MaxAttempts: 1}})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			errc := startCtx(ctx, r, s.handle)
			waitClosed(t, "the slow handler to start", s.started)
			waitFor(t, "the other events to complete", func() bool { return len(s.rec.acked()) == 3 })

			tc.stop(t, r, cancel)
			require.Error(t, waitClosed(t, "the slow handler to see its context cancelled", s.ctxErr))
			require.ErrorIs(t, runResult(t, errc), tc.wantRun)

			st := r.Stats()
			require.Zero(t, st.Retried, "an interrupted attempt is not a failure")
			require.Zero(t, st.DeadLettered)
			require.Empty(t, deadLetterSeqs(t, l, "c", consumer.Range{}))
			require.Equal(t, uint64(1), committed(t, l, "c"), "the floor of what is done is committed on the way out")

			rec := newRecorder()
			r2 := openReader(t, l, "c", nil)
			errc = start(r2, rec.handle)
			waitFloor(t, r2, 4)
			shutdown(t, r2, errc)
			// The events done above the floor were recorded on the way out:
			// only the interrupted one is delivered again.
			require.Equal(t, []uint64{2}, rec.acked(), "only the interrupted event, again")
		})
	}
}
