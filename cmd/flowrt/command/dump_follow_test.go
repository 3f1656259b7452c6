package command

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/stretchr/testify/require"
)

// appendAtRest appends events to a journal no process holds: it opens
// the journal, waiting for a follower's short look to end, appends and
// closes.
func appendAtRest(t *testing.T, db, stream string, types ...string) {
	t.Helper()
	l, err := eventlog.Open(db, &eventlog.Options{LockTimeout: dumpWait})
	require.NoError(t, err)
	for _, typ := range types {
		_, err := l.Append(stream, eventlog.Event{Type: typ})
		require.NoError(t, err)
	}
	require.NoError(t, l.Close())
}

// seqsOf returns the sequences of dump --json's lines.
func seqsOf(t *testing.T, out string) []uint64 {
	t.Helper()
	var seqs []uint64
	for _, je := range decodeLines[jsonEvent](t, out) {
		seqs = append(seqs, je.Seq)
	}
	return seqs
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// hasLines returns a condition: at least n complete lines.
func hasLines(n int) func(string) bool {
	return func(s string) bool { return countLines(s) >= n }
}

// TestDumpFollowAtRest follows a journal no process holds while another
// process appends to it now and then: every event is printed once, in
// order, and cancelling ends the command with exit status 0.
func TestDumpFollowAtRest(t *testing.T) {
	t.Parallel()
	db := goldenDB(t) // 8 events
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout, _, done := runBackground(t, ctx, "dump", "--db", db, "--follow", "--json", "--type", "order.*")
	stdout.waitFor(t, "the existing order events", hasLines(6))

	appendAtRest(t, db, "events", "order.created", "user.created")
	stdout.waitFor(t, "event 9", hasLines(7))
	appendAtRest(t, db, "events", "order.paid", "order.shipped")
	stdout.waitFor(t, "events 11 and 12", hasLines(9))

	cancel()
	r := awaitResult(t, done)
	require.NoError(t, r.err)
	require.Equal(t, ExitOK, r.code)
	require.Equal(t, []uint64{1, 2, 3, 5, 6, 8, 9, 11, 12}, seqsOf(t, r.stdout))
	require.Empty(t, r.stderr)
}

// TestDumpFollowTable checks that --follow's table prints its header once.
func TestDumpFollowTable(t *testing.T) {
	t.Parallel()
	db := goldenDB(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout, _, done := runBackground(t, ctx, "dump", "--db", db, "-f", "--from", "8")
	stdout.waitFor(t, "the header and event 8", hasLines(2))
	appendAtRest(t, db, "events", "order.late")
	stdout.waitFor(t, "event 9", func(s string) bool { return strings.Contains(s, "order.late") })
	cancel()
	r := awaitResult(t, done)
	require.Equal(t, ExitOK, r.code)
	rows := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	require.Len(t, rows, 3)
	require.True(t, strings.HasPrefix(rows[0], "SEQ "), rows[0])
	require.True(t, strings.HasPrefix(rows[1], "8 "), rows[1])
	require.True(t, strings.HasPrefix(rows[2], "9 "), rows[2])
}

// TestDumpFollowLimit: --follow stops by itself once --limit events are
// printed.
func TestDumpFollowLimit(t *testing.T) {
	t.Parallel()
	db := goldenDB(t)
	stdout, _, done := runBackground(t, context.Background(), "dump", "--db", db, "--follow", "--json", "--limit", "10")
	stdout.waitFor(t, "the 8 events", hasLines(8))
	appendAtRest(t, db, "events", "a.b", "a.b", "a.b")
	r := awaitResult(t, done)
	require.Equal(t, ExitOK, r.code)
	require.Equal(t, seqRange(1, 10), seqsOf(t, r.stdout))
}

// TestDumpFollowWaitsForStream follows a stream that does not exist yet:
// a note says so, once, and its events are printed when they come.
func TestDumpFollowWaitsForStream(t *testing.T) {
	t.Parallel()
	db := goldenDB(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout, stderr, done := runBackground(t, ctx, "dump", "--db", db, "--follow", "--json", "--stream", "later")
	stderr.waitFor(t, "the note", hasLines(1))
	appendAtRest(t, db, "later", "x.y")
	stdout.waitFor(t, "the new stream's event", hasLines(1))
	cancel()
	r := awaitResult(t, done)
	require.Equal(t, ExitOK, r.code)
	require.Equal(t, []uint64{1}, seqsOf(t, r.stdout))
	require.Equal(t, fmt.Sprintf("flowrt: note: %s has no stream \"later\" (streams: \"events\")\n", db), r.stderr)
}

// TestDumpFollowLockedNote: while a process without --http holds the
// journal, --follow waits and says so once.
func TestDumpFollowLockedNote(t *testing.T) {
	t.Parallel()
	db := goldenDB(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout, stderr, done := runBackground(t, ctx, "dump", "--db", db, "--follow", "--json")
	stdout.waitFor(t, "the 8 events", hasLines(8))
	l := openLog(t, db, &eventlog.Options{LockTimeout: dumpWait}) // held until cleanup
	_, err := l.Append("events", eventlog.Event{Type: "while.held"})
	require.NoError(t, err)
	stderr.waitFor(t, "the note", hasLines(1))
	cancel()
	r := awaitResult(t, done)
	require.Equal(t, ExitOK, r.code)
	require.Equal(t, seqRange(1, 8), seqsOf(t, r.stdout))
	require.Equal(t, fmt.Sprintf("flowrt: note: %s is in use by another process; waiting for it to be released (a daemon started with --http can be followed while it runs)\n", db), r.stderr)
}

// TestDumpFollowLive follows a journal a daemon holds, through its
// follow stream; when the daemon stops, it goes on at rest.
func TestDumpFollowLive(t *testing.T) {
	t.Parallel()
	db := goldenDB(t)
	d := startDaemon(t, db, daemonOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout, _, done := runBackground(t, ctx, "dump", "--db", db, "--follow", "--json")
	stdout.waitFor(t, "the 8 events", hasLines(8))

	_, err := d.l.Append("events", eventlog.Event{Type: "live.one"}, eventlog.Event{Type: "live.two"})
	require.NoError(t, err)
	stdout.waitFor(t, "the appended events", hasLines(10))

	// The daemon stops and releases the journal: the follower reads it at
	// rest from where it was.
	require.NoError(t, d.close())
	appendAtRest(t, db, "events", "rest.one")
	stdout.waitFor(t, "the event appended at rest", hasLines(11))

	cancel()
	r := awaitResult(t, done)
	require.Equal(t, ExitOK, r.code)
	require.Equal(t, seqRange(1, 11), seqsOf(t, r.stdout))
}

// TestDumpFollowDaemonStarts: a daemon that starts while --follow looks at
// the journal at rest is followed through its HTTP read side.
func TestDumpFollowDaemonStarts(t *testing.T) {
	t.Parallel()
	db := goldenDB(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout, _, done := runBackground(t, ctx, "dump", "--db", db, "--follow", "--json", "--lock-timeout", "5s")
	stdout.waitFor(t, "the 8 events", hasLines(8))
	d := startDaemon(t, db, daemonOptions{})
	_, err := d.l.Append("events", eventlog.Event{Type: "live.one"})
	require.NoError(t, err)
	stdout.waitFor(t, "the event appended live", hasLines(9))
	cancel()
	r := awaitResult(t, done)
	require.Equal(t, ExitOK, r.code)
	require.Equal(t, seqRange(1, 9), seqsOf(t, r.stdout))
	require.Empty(t, r.stderr)
}
