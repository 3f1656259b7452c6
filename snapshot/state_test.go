package snapshot_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/flowrt/flowrt/snapshot"
)

func set(key, v string) snapshot.Change { return snapshot.Change{Key: key, Value: []byte(v)} }

// commit runs the state's commit hook as a consumer's commit would.
func commit(t *testing.T, l *eventlog.Log, s *snapshot.State, floor uint64, done ...uint64) {
	t.Helper()
	require.NoError(t, l.Update(func(tx *eventlog.Tx) error { return s.Commit(tx, floor, done) }))
	s.Committed(floor, done)
}

func TestStateCommitsOnlyWhatTheFloorCovers(t *testing.T) {
	tests := []struct {
		name          string
		floor         uint64
		done          []uint64
		wantCommitted map[string]string
	}{
		{"nothing covered", 0, nil, map[string]string{}},
		{"floor covers the first events", 2, nil, map[string]string{"a": "2", "b": "1"}},
		{"floor covers all", 5, nil, map[string]string{"a": "3", "b": "1", "c": "1"}},
		{"done above the floor on a clean stop", 1, []uint64{2, 4}, map[string]string{"a": "2", "b": "1", "c": "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := flowtest.MustOpenLog(t, nil)
			s, err := snapshot.Open(l, "counts")
			require.NoError(t, err)
			s.Stage(1, []snapshot.Change{set("a", "1")})
			s.Stage(2, []snapshot.Change{set("a", "2"), set("b", "1")})
			s.Stage(3, []snapshot.Change{set("a", "3")})
			s.Stage(4, []snapshot.Change{set("c", "1")})
			commit(t, l, s, tt.floor, tt.done...)
			assert.Equal(t, tt.wantCommitted, flowtest.CommittedState(t, l, "counts"))

			// Reads see every staged change, committed or not.
			for key, want := range map[string]string{"a": "3", "b": "1", "c": "1"} {
				v, ok, err := s.Get(key)
				require.NoError(t, err)
				require.True(t, ok, key)
				assert.Equal(t, want, string(v), key)
			}
			items, err := s.Items("")
			require.NoError(t, err)
			assert.Len(t, items, 3)
		})
	}
}

func TestStateDeleteAndPrefix(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	s, err := snapshot.Open(l, "st")
	require.NoError(t, err)
	s.Stage(1, []snapshot.Change{set("user/1", "x"), set("user/2", "y"), set("order/1", "z")})
	commit(t, l, s, 1)
	s.Stage(2, []snapshot.Change{{Key: "user/1", Deleted: true}, set("user/3", "w")})

	items, err := s.Items("user/")
	require.NoError(t, err)
	assert.Equal(t, []snapshot.Entry{{Key: "user/2", Value: []byte("y")}, {Key: "user/3", Value: []byte("w")}}, items)
	_, ok, err := s.Get("user/1")
	require.NoError(t, err)
	assert.False(t, ok, "a staged delete hides the committed value")

	commit(t, l, s, 2)
	assert.Equal(t, map[string]string{"user/2": "y", "user/3": "w", "order/1": "z"}, flowtest.CommittedState(t, l, "st"))
}

func TestSnapshotAndReset(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	s, err := snapshot.Open(l, "st")
	require.NoError(t, err)
	require.NoError(t, l.Update(func(tx *eventlog.Tx) error { return snapshot.WriteMeta(tx, "st", snapshot.Meta{Version: 3}) }))
	flowtest.MustAppend(t, l, "events", flowtest.Events(3, "t")...)
	s.Stage(1, []snapshot.Change{set("a", "1")})
	s.Stage(2, []snapshot.Change{set("b", "1")})
	require.NoError(t, l.Update(func(tx *eventlog.Tx) error {
		if err := snapshot.Guard(tx, "st", "events"); err != nil {
			return err
		}
		if err := tx.SetOffset("events", "flow", 2); err != nil {
			return err
		}
		return s.Commit(tx, 2, nil)
	}))
	s.Committed(2, nil)
	_, err = l.Truncate("events", 2, eventlog.KeepUnacked)
	require.ErrorIs(t, err, eventlog.ErrConsumerBehind, "the guard keeps what a rebuild needs")

	snap, err := snapshot.Take(l, "st", "events", "flow", nil)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), snap.Floor)
	assert.Equal(t, 3, snap.Version)
	assert.Equal(t, 2, snap.Entries)
	_, err = l.Truncate("events", 3, eventlog.KeepUnacked)
	require.NoError(t, err, "events at or below the snapshot may go")

	s.Stage(3, []snapshot.Change{set("a", "2"), set("c", "1")})
	commit(t, l, s, 3)

	list, err := snapshot.Snapshots(l, "st")
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, snap.Floor, list[0].Floor)

	require.NoError(t, l.Update(func(tx *eventlog.Tx) error { return snapshot.Reset(tx, "st", 2) }))
	assert.Equal(t, map[string]string{"a": "1", "b": "1"}, flowtest.CommittedState(t, l, "st"), "reset to the snapshot")
	require.NoError(t, l.Update(func(tx *eventlog.Tx) error { return snapshot.Reset(tx, "st", 0) }))
	assert.Empty(t, flowtest.CommittedState(t, l, "st"))

	n, err := snapshot.DropSnapshots(l, "st", 0)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
}

func TestReadMissingState(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	entries, err := snapshot.Read(l, "never", "")
	require.NoError(t, err)
	assert.Empty(t, entries)
	_, ok, err := snapshot.ReadMeta(l, "never")
	require.NoError(t, err)
	assert.False(t, ok)
}

func TestStateReadsWhatIsCommitted(t *testing.T) {
	put := func(t *testing.T, l *eventlog.Log, key, v string) {
		t.Helper()
		require.NoError(t, l.Update(func(tx *eventlog.Tx) error { return snapshot.Put(tx, "st", set(key, v)) }))
	}
	tests := []struct {
		name string
		// run acts on a State opened over a journal whose committed state
		// is a=1, b=2, and returns what it expects Get to read.
		run func(t *testing.T, l *eventlog.Log, s *snapshot.State) map[string]string
	}{
		{"a new State reads every committed value", func(t *testing.T, l *eventlog.Log, s *snapshot.State) map[string]string {
			return map[string]string{"a": "1", "b": "2", "c": ""}
		}},
		{"a value committed with the floor is read back", func(t *testing.T, l *eventlog.Log, s *snapshot.State) map[string]string {
			_, _, err := s.Get("a") // loads the committed values
			require.NoError(t, err)
			s.Stage(1, []snapshot.Change{set("c", "3"), {Key: "a", Deleted: true}})
			commit(t, l, s, 1)
			return map[string]string{"a": "", "b": "2", "c": "3"}
		}},
		{"Discard forgets the values read, for a rebuild that rewrote them", func(t *testing.T, l *eventlog.Log, s *snapshot.State) map[string]string {
			_, _, err := s.Get("c")
			require.NoError(t, err)
			s.Discard()
			put(t, l, "c", "9")
			put(t, l, "a", "8")
			return map[string]string{"a": "8", "b": "2", "c": "9"}
		}},
		{"a staged change hides the committed value", func(t *testing.T, l *eventlog.Log, s *snapshot.State) map[string]string {
			s.Stage(5, []snapshot.Change{set("b", "7")})
			return map[string]string{"a": "1", "b": "7"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := flowtest.MustOpenLog(t, nil)
			put(t, l, "a", "1")
			put(t, l, "b", "2")
			s, err := snapshot.Open(l, "st")
			require.NoError(t, err)
			for key, want := range tt.run(t, l, s) {
				v, ok, err := s.Get(key)
				require.NoError(t, err)
				assert.Equal(t, want != "", ok, key)
				assert.Equal(t, want, string(v), key)
			}
		})
	}
}

func TestStateGetTxReadsInsideTheCommit(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	require.NoError(t, l.Update(func(tx *eventlog.Tx) error { return snapshot.Put(tx, "st", set("a", "1")) }))
	s, err := snapshot.Open(l, "st")
	require.NoError(t, err)
	s.Stage(1, []snapshot.Change{set("b", "2")})
	require.NoError(t, l.Update(func(tx *eventlog.Tx) error {
		for key, want := range map[string]string{"a": "1", "b": "2", "c": ""} {
			v, ok, err := s.GetTx(tx, key)
			require.NoError(t, err)
			assert.Equal(t, want != "", ok, key)
			assert.Equal(t, want, string(v), key)
		}
		return s.Commit(tx, 1, nil)
	}))
	s.Committed(1, nil)
	assert.Equal(t, map[string]string{"a": "1", "b": "2"}, flowtest.CommittedState(t, l, "st"))
}
