package eventlog_test

import (
	"testing"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/stretchr/testify/require"
)

// mustOffset returns the consumer's offset on stream and whether it is
// registered, failing the test on error.
func mustOffset(t *testing.T, l *eventlog.Log, stream, consumer string) (uint64, bool) {
	t.Helper()
	seq, ok, err := l.Offset(stream, consumer)
	require.NoError(t, err)
	return seq, ok
}

func TestCommitOffset(t *testing.T) {
	// Each step runs against the state the previous steps left.
	steps := []struct {
		name    string
		op      func(l *eventlog.Log) error
		want    error
		wantOff uint64 // the offset of "s"/"c" afterwards
	}{
		{"register", func(l *eventlog.Log) error { return l.CommitOffset("s", "c", 3) }, nil, 3},
		{"forward", func(l *eventlog.Log) error { return l.CommitOffset("s", "c", 5) }, nil, 5},
		{"same value is a no-op", func(l *eventlog.Log) error { return l.CommitOffset("s", "c", 5) }, nil, 5},
		{"backward", func(l *eventlog.Log) error { return l.CommitOffset("s", "c", 4) }, eventlog.ErrOffsetBackward, 5},
		{"to zero", func(l *eventlog.Log) error { return l.CommitOffset("s", "c", 0) }, eventlog.ErrOffsetBackward, 5},
		{"to head", func(l *eventlog.Log) error { return l.CommitOffset("s", "c", 10) }, nil, 10},
		{"beyond head", func(l *eventlog.Log) error { return l.CommitOffset("s", "c", 11) }, eventlog.ErrOffsetBeyondHead, 10},
		{"reset backward", func(l *eventlog.Log) error { return l.ResetOffset("s", "c", 2) }, nil, 2},
		{"reset to zero", func(l *eventlog.Log) error { return l.ResetOffset("s", "c", 0) }, nil, 0},
		{"reset forward", func(l *eventlog.Log) error { return l.ResetOffset("s", "c", 7) }, nil, 7},
		{"reset beyond head", func(l *eventlog.Log) error { return l.ResetOffset("s", "c", 11) }, eventlog.ErrOffsetBeyondHead, 7},
		{"invalid consumer", func(l *eventlog.Log) error { return l.CommitOffset("s", "bad name", 1) }, eventlog.ErrInvalidName, 7},
		{"invalid stream", func(l *eventlog.Log) error { return l.CommitOffset("", "c", 1) }, eventlog.ErrInvalidName, 7},
		{"missing stream", func(l *eventlog.Log) error { return l.CommitOffset("nope", "c", 1) }, eventlog.ErrOffsetBeyondHead, 7},
	}
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, "s", flowtest.Events(10, "t")...)
	_, ok := mustOffset(t, l, "s", "c")
	require.False(t, ok, "not registered yet")
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			err := st.op(l)
			if st.want == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, st.want)
			}
			seq, ok := mustOffset(t, l, "s", "c")
			require.True(t, ok)
			require.Equal(t, st.wantOff, seq)
		})
	}
	_, ok = mustOffset(t, l, "nope", "c")
	require.False(t, ok, "a refused offset registers nothing")
}

func TestOffsetSameValueKeepsUpdatedTime(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, "s", flowtest.Events(3, "t")...)
	require.NoError(t, l.CommitOffset("s", "c", 2))
	before, err := l.Consumers("s")
	require.NoError(t, err)
	require.NoError(t, l.CommitOffset("s", "c", 2))
	after, err := l.Consumers("s")
	require.NoError(t, err)
	require.Equal(t, before, after, "a no-op commit changes nothing, not even the time")
}

func TestOffsetOnEmptyStream(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	// A consumer may register at 0 before its stream exists.
	require.NoError(t, l.CommitOffset("later", "c", 0))
	seq, ok := mustOffset(t, l, "later", "c")
	require.True(t, ok)
	require.Zero(t, seq)
	flowtest.MustAppend(t, l, "later", flowtest.Event("t", ""))
	require.NoError(t, l.CommitOffset("later", "c", 1))
}

func TestConsumers(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	before := time.Now().Add(-time.Second)
	flowtest.MustAppend(t, l, "a", flowtest.Events(10, "t")...)
	flowtest.MustAppend(t, l, "a.b", flowtest.Events(4, "t")...)
	flowtest.MustAppend(t, l, "b", flowtest.Events(2, "t")...)
	for _, c := range []struct {
		stream, name string
		seq          uint64
	}{
		{"b", "z", 2}, {"a", "m", 3}, {"a.b", "x", 1}, {"a", "b", 10}, {"a", "a-1", 0},
	} {
		require.NoError(t, l.CommitOffset(c.stream, c.name, c.seq))
	}

	all, err := l.Consumers("")
	require.NoError(t, err)
	type row struct {
		Stream, Name string
		Offset, Lag  uint64
	}
	var got []row
	for _, c := range all {
		got = append(got, row{c.Stream, c.Name, c.Offset, c.Lag})
		require.WithinRange(t, c.Updated, before, time.Now().Add(time.Second))
		require.Equal(t, time.UTC, c.Updated.Location())
	}
	require.Equal(t, []row{
		{"a", "a-1", 0, 10},
		{"a", "b", 10, 0},
		{"a", "m", 3, 7},
		{"a.b", "x", 1, 3},
		{"b", "z", 2, 0},
	}, got, "ordered by stream then name, with lag")

	a, err := l.Consumers("a")
	require.NoError(t, err)
	require.Equal(t, all[:3], a, `"a" does not list "a.b"`)
	none, err := l.Consumers("nope")
	require.NoError(t, err)
	require.Empty(t, none)

	// Lag follows appends.
	flowtest.MustAppend(t, l, "a", flowtest.Events(5, "t")...)
	a, err = l.Consumers("a")
	require.NoError(t, err)
	require.Equal(t, uint64(5), a[1].Lag)
}

func TestDeleteOffset(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, "s", flowtest.Events(3, "t")...)
	require.NoError(t, l.CommitOffset("s", "c", 3))
	require.NoError(t, l.CommitOffset("s", "d", 1))

	require.NoError(t, l.Update(func(tx *eventlog.Tx) error { return tx.DeleteOffset("s", "c") }))
	_, ok := mustOffset(t, l, "s", "c")
	require.False(t, ok)
	cs, err := l.Consumers("s")
	require.NoError(t, err)
	require.Len(t, cs, 1)
	require.Equal(t, "d", cs[0].Name)

	require.NoError(t, l.Update(func(tx *eventlog.Tx) error { return tx.DeleteOffset("s", "never-registered") }), "deleting a missing consumer is not an error")

	// A deleted consumer may register again anywhere.
	require.NoError(t, l.CommitOffset("s", "c", 1))
	seq, ok := mustOffset(t, l, "s", "c")
	require.True(t, ok)
	require.Equal(t, uint64(1), seq)
}

func TestOffsetsSurviveReopen(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, "s", flowtest.Events(3, "t")...)
	require.NoError(t, l.CommitOffset("s", "c", 2))
	l = flowtest.MustReopen(t, l, nil)
	seq, ok := mustOffset(t, l, "s", "c")
	require.True(t, ok)
	require.Equal(t, uint64(2), seq)
	require.ErrorIs(t, l.CommitOffset("s", "c", 1), eventlog.ErrOffsetBackward)
}
