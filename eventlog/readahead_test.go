package eventlog

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestReadaheadPacing: a reader far behind advises once per window of
// stream bytes; one close to the head does not advise, and looks again
// only readaheadMinLag events later.
func TestReadaheadPacing(t *testing.T) {
	l, err := Open(filepath.Join(t.TempDir(), "j.db"), nil)
	require.NoError(t, err)
	defer l.Close()
	batch := make([]Event, 1000)
	for i := range batch {
		batch[i] = Event{Type: "t", Data: make([]byte, 200)}
	}
	for range 40 {
		_, err := l.Append("s", batch...)
		require.NoError(t, err)
	}
	si, err := l.Info("s")
	require.NoError(t, err)
	perEvent := si.Bytes / si.Count

	var ra readahead
	ra.advise(l, "s", 1) // 40000 behind: advises
	require.Equal(t, 1+readaheadWindow/2/perEvent, ra.nextAt)
	ra.advise(l, "s", 2) // within the window already advised: nothing
	require.Equal(t, 1+readaheadWindow/2/perEvent, ra.nextAt)

	var near readahead
	near.advise(l, "s", si.Last-10) // close to the head: no advice
	require.Equal(t, si.Last-10+readaheadMinLag, near.nextAt)

	var missing readahead
	missing.advise(l, "nope", 1) // no such stream: nothing, no panic
	require.Zero(t, missing.nextAt)
}
