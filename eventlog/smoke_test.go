package eventlog_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/stretchr/testify/require"
)

func TestSmoke(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	l, err := eventlog.Open(path, nil)
	require.NoError(t, err)
	res, err := l.Append("events", eventlog.Event{Type: "a.b", Data: []byte(`{"x":1}`)}, eventlog.Event{Type: "a.c", Key: "k"})
	require.NoError(t, err)
	require.Equal(t, uint64(1), res[0].Seq)
	require.Equal(t, uint64(2), res[1].Seq)
	dup, err := l.Append("events", eventlog.Event{ID: res[0].ID, Type: "a.b"})
	require.NoError(t, err)
	require.True(t, dup[0].Duplicate)
	e, err := l.Get("events", 1)
	require.NoError(t, err)
	require.Equal(t, "a.b", e.Type)
	rep, err := l.Check(context.Background())
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Problems)
	require.NoError(t, l.Close())
	_, err = eventlog.Compact(path, nil)
	require.NoError(t, err)
	l, err = eventlog.Open(path, &eventlog.Options{ReadOnly: true})
	require.NoError(t, err)
	si, err := l.Info("events")
	require.NoError(t, err)
	require.Equal(t, uint64(2), si.Count)
	require.NoError(t, l.Close())
}
