package flowtest

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/stretchr/testify/require"
)

// JournalName is the file name MustOpenLog gives a journal in t.TempDir().
const JournalName = "journal.db"

// MustOpenLog opens a new journal in t.TempDir() with opts (nil means the
// defaults) and registers a t.Cleanup that closes it and then checks the
// file with MustCheck. The test may close the Log itself: Close is
// idempotent.
func MustOpenLog(t testing.TB, opts *eventlog.Options) *eventlog.Log {
	t.Helper()
	return MustOpenLogAt(t, filepath.Join(t.TempDir(), JournalName), opts)
}

// MustOpenLogAt is MustOpenLog for a given path, for tests that reopen a
// journal. Cleanups run last-registered first, so a journal reopened with
// it is closed before an earlier handle's cleanup checks the file. A
// journal opened with opts.ReadOnly is closed but not checked: it cannot
// have changed.
func MustOpenLogAt(t testing.TB, path string, opts *eventlog.Options) *eventlog.Log {
	t.Helper()
	l, err := eventlog.Open(path, opts)
	require.NoError(t, err, "open journal %s", path)
	t.Cleanup(func() {
		require.NoError(t, l.Close(), "close journal %s", path)
		if opts == nil || !opts.ReadOnly {
			MustCheck(t, path)
		}
	})
	return l
}

// MustReopen closes l and opens its file again with opts, registering the
// same cleanup as MustOpenLog.
func MustReopen(t testing.TB, l *eventlog.Log, opts *eventlog.Options) *eventlog.Log {
	t.Helper()
	require.NoError(t, l.Close(), "close journal %s", l.Path())
	return MustOpenLogAt(t, l.Path(), opts)
}

// MustCheck opens the journal at path read-only, runs Log.Check and fails
// the test unless the report is OK. The journal must not be open for
// writing elsewhere.
func MustCheck(t testing.TB, path string) eventlog.CheckReport {
	t.Helper()
	l, err := eventlog.Open(path, &eventlog.Options{ReadOnly: true, LockTimeout: 5 * time.Second})
	require.NoError(t, err, "reopen %s read-only for check", path)
	defer l.Close()
	r, err := l.Check(context.Background())
	require.NoError(t, err, "check %s", path)
	require.True(t, r.OK(), "check %s found problems: %v", path, r.Problems)
	return r
}

// MustAppend appends events to stream and fails the test on error. It
// returns one result per event.
func MustAppend(t testing.TB, l *eventlog.Log, stream string, events ...eventlog.Event) []eventlog.AppendResult {
	t.Helper()
	res, err := l.Append(stream, events...)
	require.NoError(t, err, "append %d events to %q", len(events), stream)
	require.Len(t, res, len(events), "append to %q", stream)
	return res
}

// Event returns an event of type typ whose Data is data.
func Event(typ, data string) eventlog.Event {
	return eventlog.Event{Type: typ, Data: []byte(data)}
}

// Events returns n events of type typ whose Data are "0", "1", ...,
// for tests that need volume rather than content.
func Events(n int, typ string) []eventlog.Event {
	out := make([]eventlog.Event, n)
	for i := range out {
		out[i] = Event(typ, fmt.Sprint(i))
	}
	return out
}
