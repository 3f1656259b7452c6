package flowtest_test

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"testing"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// recorder is a testing.TB that keeps the cleanups and failures of the
// helper under test instead of acting on them.
type recorder struct {
	testing.TB // the real test: TempDir, Helper, Name
	cleanups   []func()
	failures   []string
}

func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }

func (r *recorder) Errorf(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	r.FailNow()
}

func (r *recorder) FailNow() { runtime.Goexit() }

// runCleanups runs the cleanups, last first, on a goroutine of their own
// so that FailNow can stop them.
func (r *recorder) runCleanups() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := len(r.cleanups) - 1; i >= 0; i-- {
			r.cleanups[i]()
		}
	}()
	<-done
}

// damage edits the closed journal at path with bbolt directly, bypassing
// eventlog, in the raw layout of docs/FORMAT.md.
func damage(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o644, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(fn))
	require.NoError(t, db.Close())
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func TestMustOpenLogChecksOnCleanup(t *testing.T) {
	cases := []struct {
		name   string
		damage func(tx *bolt.Tx) error // nil: leave the journal healthy
	}{
		{name: "healthy"},
		{name: "record CRC", damage: func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte("e/s"))
			v := append([]byte(nil), b.Get(seqKey(2))...)
			v[len(v)-1] ^= 0xff
			return b.Put(seqKey(2), v)
		}},
		{name: "sequence gap", damage: func(tx *bolt.Tx) error {
			return tx.Bucket([]byte("e/s")).Delete(seqKey(2))
		}},
		{name: "offset beyond head", damage: func(tx *bolt.Tx) error {
			v := binary.BigEndian.AppendUint64(nil, 99)
			v = binary.BigEndian.AppendUint64(v, 0)
			return tx.Bucket([]byte("offsets")).Put([]byte("s\x00c"), v)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{TB: t}
			l := flowtest.MustOpenLog(r, nil)
			// One event per call: each is a plain record under its own
			// key, which the damage functions edit.
			for i, ev := range flowtest.Events(3, "t") {
				res := flowtest.MustAppend(r, l, "s", ev)
				require.Equal(t, uint64(i+1), res[0].Seq)
			}
			require.NoError(t, l.CommitOffset("s", "c", 1))
			require.Empty(t, r.failures)
			require.Len(t, r.cleanups, 1)
			if tc.damage != nil {
				require.NoError(t, l.Close()) // the cleanup's Close is then a no-op
				damage(t, l.Path(), tc.damage)
			}

			r.runCleanups()
			if tc.damage == nil {
				require.Empty(t, r.failures)
				_, err := l.Info("s")
				require.ErrorIs(t, err, eventlog.ErrClosed, "the cleanup closed the journal")
				return
			}
			require.NotEmpty(t, r.failures, "the cleanup's check missed the damage")
			require.Contains(t, r.failures[0], "found problems")
		})
	}
}

func TestMustReopen(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, "s", flowtest.Event("t", "kept"))
	l2 := flowtest.MustReopen(t, l, nil)
	require.Equal(t, l.Path(), l2.Path())
	_, err := l.Info("s")
	require.ErrorIs(t, err, eventlog.ErrClosed, "the old handle is closed")
	e, err := l2.Get("s", 1)
	require.NoError(t, err)
	require.Equal(t, "kept", string(e.Data))
}

func TestEvents(t *testing.T) {
	events := flowtest.Events(3, "a.b")
	require.Len(t, events, 3)
	for i, e := range events {
		require.Equal(t, "a.b", e.Type)
		require.Equal(t, fmt.Sprint(i), string(e.Data))
	}
	require.Empty(t, flowtest.Events(0, "t"))
	require.Equal(t, eventlog.Event{Type: "t", Data: []byte("d")}, flowtest.Event("t", "d"))
}
