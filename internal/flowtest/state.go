package flowtest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/snapshot"
)

// CommittedState returns the committed state of the named flow (or
// snapshot.State) in the journal: each key's value as a string.
func CommittedState(t testing.TB, l *eventlog.Log, name string) map[string]string {
	t.Helper()
	entries, err := snapshot.Read(l, name, "")
	require.NoError(t, err)
	out := map[string]string{}
	for _, e := range entries {
		out[e.Key] = string(e.Value)
	}
	return out
}
