package eventlog_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/stretchr/testify/require"
)

func TestOptionsValidate(t *testing.T) {
	cases := []struct {
		name string
		opts *eventlog.Options
		want []string // each must appear in the error; none means valid
	}{
		{name: "nil", opts: nil},
		{name: "zero", opts: &eventlog.Options{}},
		{name: "defaults", opts: eventlog.DefaultOptions()},
		{name: "largest event", opts: &eventlog.Options{MaxEventBytes: 256 << 20}},
		{name: "system stream retention", opts: &eventlog.Options{Retention: map[string]eventlog.Retention{"$system": {MaxEvents: 1}}}},
		{name: "negative lock timeout", opts: &eventlog.Options{LockTimeout: -1}, want: []string{"LockTimeout"}},
		{name: "event too large", opts: &eventlog.Options{MaxEventBytes: 256<<20 + 1}, want: []string{"MaxEventBytes"}},
		{name: "bad retention stream", opts: &eventlog.Options{Retention: map[string]eventlog.Retention{"bad name": {}}}, want: []string{`Retention["bad name"]`}},
		{name: "bad retention policy", opts: &eventlog.Options{Retention: map[string]eventlog.Retention{"s": {Policy: 7}}}, want: []string{`Retention["s"]`, "Policy"}},
		{
			name: "every problem at once",
			opts: &eventlog.Options{
				LockTimeout:       -time.Second,
				MaxEventBytes:     -1,
				MaxBatchEvents:    -1,
				MaxBatchBytes:     -1,
				SyncInterval:      -time.Second,
				DedupWindow:       -time.Second,
				RetentionInterval: -time.Second,
				Retention: map[string]eventlog.Retention{
					"":  {},
					"s": {MaxAge: -time.Hour, Policy: 9},
				},
			},
			want: []string{"LockTimeout", "MaxEventBytes", "MaxBatchEvents", "MaxBatchBytes", "SyncInterval", "DedupWindow", "RetentionInterval", `Retention[""]`, "MaxAge", "Policy"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.Validate()
			if len(tc.want) == 0 {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, eventlog.ErrInvalidOptions)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}

			// Open refuses them too, creating nothing.
			path := filepath.Join(t.TempDir(), "j.db")
			_, err = eventlog.Open(path, tc.opts)
			require.ErrorIs(t, err, eventlog.ErrInvalidOptions)
			_, err = os.Stat(path)
			require.ErrorIs(t, err, fs.ErrNotExist)
		})
	}
}

func TestDefaultOptionsAreFresh(t *testing.T) {
	a := eventlog.DefaultOptions()
	a.MaxEventBytes = 7
	a.Retention = map[string]eventlog.Retention{"s": {}}
	b := eventlog.DefaultOptions()
	require.Equal(t, 1<<20, b.MaxEventBytes)
	require.Nil(t, b.Retention)
	require.Equal(t, time.Second, b.LockTimeout)
	require.NotNil(t, b.Logger)
}

func TestOpenNilOptions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	l, err := eventlog.Open(path, nil)
	require.NoError(t, err)
	require.Equal(t, path, l.Path())
	require.NotZero(t, l.ID())
	id := l.ID()
	_, err = l.Append("s", flowtest.Event("t", ""))
	require.NoError(t, err)
	require.NoError(t, l.Close())

	l = flowtest.MustOpenLogAt(t, path, nil)
	require.Equal(t, id, l.ID(), "the journal's ID is fixed at creation")
	require.Equal(t, uint64(1), mustInfo(t, l, "s").Count)
}

func TestOpenReadOnly(t *testing.T) {
	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "missing.db")
		_, err := eventlog.Open(path, &eventlog.Options{ReadOnly: true})
		require.ErrorIs(t, err, fs.ErrNotExist)
		_, err = os.Stat(path)
		require.ErrorIs(t, err, fs.ErrNotExist, "a read-only open created the file")
	})

	l := flowtest.MustOpenLog(t, nil)
	path := l.Path()
	flowtest.MustAppend(t, l, "s", flowtest.Events(3, "t")...)
	require.NoError(t, l.CommitOffset("s", "c", 1))
	require.NoError(t, l.Update(func(tx *eventlog.Tx) error {
		ns, err := tx.Namespace("app")
		if err != nil {
			return err
		}
		return ns.Put([]byte("k"), []byte("v"))
	}))
	require.NoError(t, l.Close())
	contents, err := os.ReadFile(path)
	require.NoError(t, err)

	ro := flowtest.MustOpenLogAt(t, path, &eventlog.Options{ReadOnly: true})
	ro2 := flowtest.MustOpenLogAt(t, path, &eventlog.Options{ReadOnly: true}) // readers share the file

	writes := []struct {
		name string
		op   func() error
	}{
		{"Append", func() error { _, err := ro.Append("s", flowtest.Event("t", "")); return err }},
		{"Update", func() error { return ro.Update(func(*eventlog.Tx) error { return nil }) }},
		{"CommitOffset", func() error { return ro.CommitOffset("s", "c", 2) }},
		{"ResetOffset", func() error { return ro.ResetOffset("s", "c", 0) }},
		{"Truncate", func() error { _, err := ro.Truncate("s", 2, eventlog.Force); return err }},
		{"ApplyRetention", func() error { _, err := ro.ApplyRetention("s", eventlog.Retention{MaxEvents: 1}); return err }},
		{"Namespace Put", func() error {
			var err error
			require.NoError(t, ro.View(func(tx *eventlog.Tx) error {
				ns, nerr := tx.Namespace("app")
				require.NoError(t, nerr)
				err = ns.Put([]byte("k"), []byte("changed"))
				return nil
			}))
			return err
		}},
	}
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			require.ErrorIs(t, w.op(), eventlog.ErrReadOnly)
		})
	}
	t.Run("reads work", func(t *testing.T) {
		for _, l := range []*eventlog.Log{ro, ro2} {
			require.Equal(t, seqRange(1, 3), seqsOf(readStream(t, l, "s")))
			seq, ok, err := l.Offset("s", "c")
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, uint64(1), seq)
			sub, err := l.Subscribe("s", eventlog.AtSeq(3))
			require.NoError(t, err)
			require.Equal(t, uint64(3), mustNext(t, sub).Seq)
			r, err := l.Check(context.Background())
			require.NoError(t, err)
			require.True(t, r.OK(), "%v", r.Problems)
			require.Equal(t, uint64(3), r.Events)
		}
	})
	require.NoError(t, ro.Close())
	require.NoError(t, ro2.Close())
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, contents, after, "a read-only session changes nothing on disk")
}

func TestClosedLog(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, "s", flowtest.Events(3, "t")...)
	require.NoError(t, l.Close())
	require.NoError(t, l.Close(), "Close is idempotent")

	ops := []struct {
		name string
		op   func() error
	}{
		{"Append", func() error { _, err := l.Append("s", flowtest.Event("t", "")); return err }},
		{"Update", func() error { return l.Update(func(*eventlog.Tx) error { return nil }) }},
		{"View", func() error { return l.View(func(*eventlog.Tx) error { return nil }) }},
		{"Get", func() error { _, err := l.Get("s", 1); return err }},
		{"GetByID", func() error { _, err := l.GetByID("s", eventlog.DeriveID("x")); return err }},
		{"Read", func() error { _, err := l.Read("s", 1, 10); return err }},
		{"Scan", func() error {
			for _, err := range l.Scan("s", 0, 0) {
				return err
			}
			return nil
		}},
		{"Info", func() error { _, err := l.Info("s"); return err }},
		{"Streams", func() error { _, err := l.Streams(); return err }},
		{"SeqAtTime", func() error { _, err := l.SeqAtTime("s", time.Now()); return err }},
		{"Subscribe", func() error { _, err := l.Subscribe("s", eventlog.Earliest()); return err }},
		{"Offset", func() error { _, _, err := l.Offset("s", "c"); return err }},
		{"CommitOffset", func() error { return l.CommitOffset("s", "c", 1) }},
		{"ResetOffset", func() error { return l.ResetOffset("s", "c", 1) }},
		{"Consumers", func() error { _, err := l.Consumers(""); return err }},
		{"Truncate", func() error { _, err := l.Truncate("s", 2, eventlog.Force); return err }},
		{"ApplyRetention", func() error { _, err := l.ApplyRetention("s", eventlog.Retention{MaxEvents: 1}); return err }},
		{"Check", func() error { _, err := l.Check(context.Background()); return err }},
	}
	for _, o := range ops {
		t.Run(o.name, func(t *testing.T) {
			require.ErrorIs(t, o.op(), eventlog.ErrClosed)
		})
	}
}

func TestSubscriptionAfterClose(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, "s", flowtest.Events(2, "t")...)
	sub, err := l.Subscribe("s", eventlog.Earliest())
	require.NoError(t, err)
	require.NoError(t, l.Close())
	_, err = sub.Next(context.Background())
	require.ErrorIs(t, err, eventlog.ErrClosed)
}

func TestOpenLocked(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	for _, tc := range []struct {
		name string
		opts *eventlog.Options
	}{
		{"writer", &eventlog.Options{LockTimeout: 100 * time.Millisecond}},
		{"reader", &eventlog.Options{LockTimeout: 100 * time.Millisecond, ReadOnly: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			l2, err := eventlog.Open(l.Path(), tc.opts)
			elapsed := time.Since(start)
			if err == nil {
				l2.Close()
			}
			require.ErrorIs(t, err, eventlog.ErrLocked)
			require.GreaterOrEqual(t, elapsed, 50*time.Millisecond, "Open waited for the lock")
			require.Less(t, elapsed, 5*time.Second, "Open gave up after LockTimeout")
		})
	}
	// The first journal is unaffected.
	flowtest.MustAppend(t, l, "s", flowtest.Event("t", ""))
}

func TestOpenAfterRelease(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	path := l.Path()
	flowtest.MustAppend(t, l, "s", flowtest.Event("t", ""))

	// An Open waiting for the lock succeeds once the holder closes.
	opened := make(chan error, 1)
	go func() {
		l2, err := eventlog.Open(path, &eventlog.Options{LockTimeout: waitLimit})
		if err == nil {
			err = l2.Close()
		}
		opened <- err
	}()
	require.NoError(t, l.Close())
	select {
	case err := <-opened:
		require.NoError(t, err)
	case <-time.After(2 * waitLimit):
		t.Fatal("Open did not return")
	}
}

func TestSyncIntervalMode(t *testing.T) {
	l := flowtest.MustOpenLog(t, &eventlog.Options{SyncInterval: 5 * time.Millisecond})
	for range 20 {
		flowtest.MustAppend(t, l, "s", flowtest.Events(5, "t")...)
	}
	l = flowtest.MustReopen(t, l, nil)
	require.Equal(t, uint64(100), mustInfo(t, l, "s").Count, "Close syncs what the interval had not")
}

func TestSmallBatchLimits(t *testing.T) {
	// Batches bounded to one event still commit every append, including
	// calls larger than the bound.
	l := flowtest.MustOpenLog(t, &eventlog.Options{MaxBatchEvents: 1, MaxBatchBytes: 1})
	done := make(chan error, 8)
	for range 8 {
		go func() {
			_, err := l.Append("s", flowtest.Events(10, "t")...)
			done <- err
		}()
	}
	for range 8 {
		require.NoError(t, <-done)
	}
	require.Equal(t, seqRange(1, 80), seqsOf(readStream(t, l, "s")))
}
