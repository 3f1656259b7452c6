package consumer_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/stretchr/testify/require"
)

// TestAckFloorWaitsForGap: with several workers and one slow event, the
// events after it complete, but the committed offset stays below the slow
// one until it is done; then it jumps over everything done.
func TestAckFloorWaitsForGap(t *testing.T) {
	const n, slow = 40, 5
	for _, tc := range []struct {
		name string
		key  func(i int) string
	}{
		{name: "keyless", key: func(int) string { return "" }},
		{name: "distinct keys", key: func(i int) string { return fmt.Sprint("k", i) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := openLog(t)
			keys := make([]string, n)
			for i := range keys {
				keys[i] = tc.key(i)
			}
			appendKeys(t, l, keys...)

			release := make(chan struct{})
			started := make(chan struct{})
			rec := newRecorder()
			var others atomic.Int64
			h := func(ctx context.Context, e eventlog.Event) error {
				if e.Seq == slow {
					close(started)
					select {
					case <-release:
					case <-ctx.Done(): // the test failed and is closing the Reader
						return ctx.Err()
					}
				} else {
					others.Add(1)
				}
				return rec.handle(ctx, e)
			}
			const interval = 5 * time.Millisecond
			r := openReader(t, l, "c", &consumer.Options{Workers: 4, CommitInterval: interval})
			errc := start(r, h)
			waitClosed(t, "the slow event to start", started)
			waitFor(t, "every other event to complete (none may wait behind the slow one)", func() bool { return others.Load() == n-1 && len(rec.acked()) == n-1 })
			waitFor(t, "the floor below the slow event to be committed", func() bool {
				return committed(t, l, "c") == slow-1 && r.Offset() == slow-1
			})
			require.Equal(t, uint64(slow-1), r.Stats().Floor)
			holds(t, 20*interval, "the committed offset stays below the slow event", func() bool {
				return committed(t, l, "c") < slow && r.Offset() < slow && r.Stats().Floor < slow
			})

			close(release)
			waitFor(t, "the floor to jump past the done events", func() bool {
				return committed(t, l, "c") == n && r.Offset() == n
			})
			shutdown(t, r, errc)
			require.Equal(t, seqRange(1, n), rec.acked())
		})
	}
}

// TestCommitCadence: while events flow, the floor is committed every
// CommitInterval, or once it has moved CommitEvery events.
func TestCommitCadence(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   consumer.Options
		batch  int           // events appended at once
		within time.Duration // from the append to the commit, generously
	}{
		{name: "interval", opts: consumer.Options{CommitInterval: 10 * time.Millisecond}, batch: 1, within: time.Second},
		{name: "every n events", opts: consumer.Options{CommitInterval: time.Hour, CommitEvery: 10}, batch: 10, within: time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := openLog(t)
			r := openReader(t, l, "c", &tc.opts)
			rec := newRecorder()
			errc := start(r, rec.handle)
			var last uint64
			for range 5 {
				t0 := time.Now()
				seqs := appendN(t, l, tc.batch)
				last = seqs[len(seqs)-1]
				// The Reader is running: a commit is due within the interval
				// (or at once after CommitEvery), not only at Shutdown.
				waitFor(t, fmt.Sprintf("offset %d committed while running", last), func() bool {
					return committed(t, l, "c") == last
				})
				require.Less(t, time.Since(t0), tc.within, "append to commit")
				waitFor(t, "Offset to agree", func() bool { return r.Offset() == last })
			}
			shutdown(t, r, errc)
			require.Equal(t, seqRange(1, last), rec.acked())
		})
	}
}

// A consumer that has caught up with the stream commits its floor soon
// (CommitInterval/10), not on the next CommitInterval tick (one working
// through a backlog does not: TestBacklogFloorWaitsForTheInterval).
func TestCaughtUpFloorIsCommittedSoon(t *testing.T) {
	l := openLog(t)
	appendN(t, l, 5)
	// The interval is longer than waitFor's deadline: only the early
	// commits (every CommitInterval/10 at most, 3 s here) can pass.
	r := openReader(t, l, "idle", &consumer.Options{CommitInterval: 30 * time.Second, CommitEvery: 1 << 30})
	errc := start(r, func(context.Context, eventlog.Event) error { return nil })
	defer shutdown(t, r, errc)
	waitFor(t, "the caught-up floor committed before the interval", func() bool {
		return committed(t, l, "idle") == 5
	})

	// More events while running: committed again once caught up.
	appendN(t, l, 3)
	waitFor(t, "the new floor committed", func() bool { return committed(t, l, "idle") == 8 })
}

// A consumer working through a backlog commits on CommitInterval, not
// early: only once it has caught up does it commit, once.
func TestBacklogFloorWaitsForTheInterval(t *testing.T) {
	l := openLog(t)
	const n = 20000
	for range n / 1000 {
		appendN(t, l, 1000)
	}
	var commits atomic.Int32
	hook := &countCommits{n: &commits}
	r := openReader(t, l, "busy", &consumer.Options{CommitInterval: 30 * time.Second, CommitEvery: 1 << 30, Commit: hook})
	errc := start(r, func(context.Context, eventlog.Event) error { return nil })
	defer shutdown(t, r, errc)
	waitFor(t, "the backlog committed once caught up", func() bool { return commits.Load() > 0 && committed(t, l, "busy") == n })
	require.Equal(t, int32(1), commits.Load(), "one commit for the whole backlog, after it")
}

// countCommits is a CommitHook that counts the commits.
type countCommits struct{ n *atomic.Int32 }

func (c *countCommits) Commit(*eventlog.Tx, uint64, []uint64) error { return nil }
func (c *countCommits) Committed(uint64, []uint64)                  { c.n.Add(1) }
