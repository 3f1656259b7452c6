package eventlog_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/oklog/ulid/v2"
	"github.com/stretchr/testify/require"
)

// journalState is everything a compaction must preserve, as the public
// API shows it.
type journalState struct {
	ID        ulid.ULID
	Streams   []eventlog.StreamInfo
	Events    map[string][]eventlog.Event
	Consumers []eventlog.ConsumerInfo
	Namespace map[string]string // "ns/key" -> value, nested buckets included
	NextSeq   uint64            // what NextSequence gives next in namespace "app"
}

func captureState(t *testing.T, l *eventlog.Log) journalState {
	t.Helper()
	s := journalState{ID: l.ID(), Events: map[string][]eventlog.Event{}, Namespace: map[string]string{}}
	var err error
	s.Streams, err = l.Streams()
	require.NoError(t, err)
	for _, si := range s.Streams {
		s.Events[si.Name] = readStream(t, l, si.Name)
	}
	s.Consumers, err = l.Consumers("")
	require.NoError(t, err)
	// Peek at NextSequence in a transaction that is rolled back.
	err = l.Update(func(tx *eventlog.Tx) error {
		for _, name := range []string{"app", "other"} {
			ns, err := tx.Namespace(name)
			require.NoError(t, err)
			for k, v := range ns.Items(nil) {
				if v == nil {
					nested, err := ns.Bucket(k)
					require.NoError(t, err)
					for nk, nv := range nested.Items(nil) {
						s.Namespace[name+"/"+string(k)+"/"+string(nk)] = string(nv)
					}
					continue
				}
				s.Namespace[name+"/"+string(k)] = string(v)
			}
		}
		ns, err := tx.Namespace("app")
		require.NoError(t, err)
		s.NextSeq, err = ns.NextSequence()
		require.NoError(t, err)
		return errBoom
	})
	require.ErrorIs(t, err, errBoom)
	return s
}

func TestCompactShrinksAndPreserves(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	path := l.Path()
	payload := make([]byte, 1024)
	var keep []eventlog.AppendResult
	for i := range 30 {
		events := make([]eventlog.Event, 100)
		for j := range events {
			events[j] = eventlog.Event{Type: "t", Key: "k", Headers: map[string]string{"i": "x"}, Data: payload}
			if j%10 == 0 {
				events[j].ID = eventlog.DeriveID("compact", string(rune('a'+i)), string(rune('a'+j)))
			}
		}
		keep = append(keep, flowtest.MustAppend(t, l, "big", events...)...)
	}
	flowtest.MustAppend(t, l, "small", flowtest.Events(5, "t")...)
	require.NoError(t, l.Update(func(tx *eventlog.Tx) error {
		if _, err := tx.Append("$system", flowtest.Event("sys", "x")); err != nil {
			return err
		}
		app, err := tx.Namespace("app")
		if err != nil {
			return err
		}
		for range 7 {
			if _, err := app.NextSequence(); err != nil {
				return err
			}
		}
		if err := app.Put([]byte("k1"), []byte("v1")); err != nil {
			return err
		}
		nested, err := app.Bucket([]byte("nested"))
		if err != nil {
			return err
		}
		if err := nested.Put([]byte("n1"), []byte("deep")); err != nil {
			return err
		}
		other, err := tx.Namespace("other")
		if err != nil {
			return err
		}
		return other.Put([]byte("k"), []byte("v"))
	}))
	require.NoError(t, l.CommitOffset("big", "reader", 2950))
	require.NoError(t, l.CommitOffset("small", "reader", 2))
	n, err := l.Truncate("big", 2901, eventlog.KeepUnacked)
	require.NoError(t, err)
	require.Equal(t, uint64(2900), n)

	before := captureState(t, l)
	require.Len(t, before.Events["big"], 100)
	require.Equal(t, uint64(8), before.NextSeq)
	require.NoError(t, l.Close())
	st, err := os.Stat(path)
	require.NoError(t, err)

	res, err := eventlog.Compact(path, nil)
	require.NoError(t, err)
	require.Equal(t, st.Size(), res.Before)
	require.Less(t, res.After, res.Before/4, "the file shrank: %+v", res)
	st, err = os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, st.Size(), res.After)
	_, err = os.Stat(path + ".compact")
	require.ErrorIs(t, err, fs.ErrNotExist, "no temporary file is left")

	l = flowtest.MustOpenLogAt(t, path, nil)
	require.Equal(t, before, captureState(t, l), "everything retained survives")
	for _, r := range keep[2900:] {
		e, err := l.GetByID("big", r.ID)
		require.NoError(t, err)
		require.Equal(t, r.Seq, e.Seq)
	}
	res2 := flowtest.MustAppend(t, l, "big", flowtest.Event("t", "after"))
	require.Equal(t, uint64(3001), res2[0].Seq)
	require.Equal(t, []eventlog.AppendResult{{Seq: 2991, ID: keep[2990].ID, Duplicate: true}},
		flowtest.MustAppend(t, l, "big", eventlog.Event{ID: keep[2990].ID, Type: "t"}), "the ID index survives")
}

func TestCompactOfOpenJournalFails(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts *eventlog.Options
	}{
		{"open for writing", nil},
		{"open read-only", &eventlog.Options{ReadOnly: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "j.db")
			l := flowtest.MustOpenLogAt(t, path, nil)
			flowtest.MustAppend(t, l, "s", flowtest.Events(100, "t")...)
			_, err := l.Truncate("s", 90, eventlog.Force)
			require.NoError(t, err)
			if tc.opts != nil {
				l = flowtest.MustReopen(t, l, tc.opts)
			}
			contents, err := os.ReadFile(path)
			require.NoError(t, err)

			start := time.Now()
			_, err = eventlog.Compact(path, &eventlog.Options{LockTimeout: 50 * time.Millisecond})
			require.ErrorIs(t, err, eventlog.ErrLocked)
			require.Less(t, time.Since(start), 5*time.Second)

			after, err := os.ReadFile(path)
			require.NoError(t, err)
			require.Equal(t, contents, after, "the journal is unchanged")
			_, err = os.Stat(path + ".compact")
			require.ErrorIs(t, err, fs.ErrNotExist)
			require.Equal(t, seqRange(90, 100), seqsOf(readStream(t, l, "s")), "the open journal still works")
		})
	}
}

func TestCompactRefuses(t *testing.T) {
	dir := t.TempDir()
	foreign := filepath.Join(dir, "foreign.db")
	require.NoError(t, os.WriteFile(foreign, []byte(`{"not": "a journal"}`), 0o644))
	journal := filepath.Join(dir, "journal.db")
	l := flowtest.MustOpenLogAt(t, journal, nil)
	flowtest.MustAppend(t, l, "s", flowtest.Event("t", ""))
	require.NoError(t, l.Close())

	cases := []struct {
		name string
		path string
		opts *eventlog.Options
		want error
	}{
		{"foreign file", foreign, nil, eventlog.ErrNotJournal},
		{"read-only options", journal, &eventlog.Options{ReadOnly: true}, eventlog.ErrReadOnly},
		{"invalid options", journal, &eventlog.Options{LockTimeout: -1}, eventlog.ErrInvalidOptions},
		{"missing file", filepath.Join(dir, "missing.db"), nil, fs.ErrNotExist},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var contents []byte
			if _, err := os.Stat(tc.path); err == nil {
				contents, err = os.ReadFile(tc.path)
				require.NoError(t, err)
			}
			_, err := eventlog.Compact(tc.path, tc.opts)
			require.ErrorIs(t, err, tc.want)
			if contents == nil {
				_, err := os.Stat(tc.path)
				require.ErrorIs(t, err, fs.ErrNotExist, "Compact created the file")
				return
			}
			after, err := os.ReadFile(tc.path)
			require.NoError(t, err)
			require.Equal(t, contents, after, "unchanged")
		})
	}
}

func TestCompactReplacesLeftoverTemporaryFile(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	path := l.Path()
	flowtest.MustAppend(t, l, "s", flowtest.Events(3, "t")...)
	require.NoError(t, l.Close())
	require.NoError(t, os.WriteFile(path+".compact", []byte("left by a crash"), 0o644))

	_, err := eventlog.Compact(path, nil)
	require.NoError(t, err)
	_, err = os.Stat(path + ".compact")
	require.ErrorIs(t, err, fs.ErrNotExist)
	l = flowtest.MustOpenLogAt(t, path, nil)
	require.Equal(t, uint64(3), mustInfo(t, l, "s").Count)
}

// TestOpenDuringCompact: an Open that waits for the lock while Compact
// swaps its copy in must end up on the new file, not the unlinked old one:
// an event appended through it must be there when the journal is reopened.
func TestOpenDuringCompact(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	l, err := eventlog.Open(path, nil)
	require.NoError(t, err)
	batch := make([]eventlog.Event, 1000)
	for i := range batch {
		batch[i] = eventlog.Event{Type: "t", Data: make([]byte, 256)}
	}
	for range 30 {
		_, err := l.Append("s", batch...)
		require.NoError(t, err)
	}
	require.NoError(t, l.Close())

	compacted := make(chan error, 1)
	go func() { _, err := eventlog.Compact(path, nil); compacted <- err }()
	deadline := time.Now().Add(10 * time.Second)
	for { // the copy exists only while Compact holds the lock
		if _, err := os.Stat(path + ".compact"); err == nil {
			break
		}
		select {
		case err := <-compacted:
			t.Skipf("compaction finished before the open could start (err %v): machine too fast for this race", err)
		default:
		}
		require.True(t, time.Now().Before(deadline), "compaction never started")
		runtime.Gosched()
	}
	l2, err := eventlog.Open(path, &eventlog.Options{LockTimeout: 10 * time.Second})
	require.NoError(t, err)
	require.NoError(t, <-compacted)
	res, err := l2.Append("s", eventlog.Event{Type: "after.compact"})
	require.NoError(t, err)
	require.NoError(t, l2.Close())

	l3, err := eventlog.Open(path, nil)
	require.NoError(t, err)
	defer l3.Close()
	e, err := l3.Get("s", res[0].Seq)
	require.NoError(t, err, "the event appended after the compaction is in the journal's file")
	require.Equal(t, "after.compact", e.Type)
}
