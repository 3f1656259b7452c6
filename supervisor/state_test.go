package supervisor_test

import (
	"fmt"
	"testing"

	"github.com/flowrt/flowrt/supervisor"
	"github.com/stretchr/testify/require"
)

var allStates = []supervisor.State{
	supervisor.Created, supervisor.Starting, supervisor.Recovering, supervisor.Running,
	supervisor.Draining, supervisor.Stopped, supervisor.Failed,
}

var allChildStates = []supervisor.ChildState{
	supervisor.ChildIdle, supervisor.ChildRunning, supervisor.ChildBackingOff,
	supervisor.ChildFailed, supervisor.ChildStopped,
}

// TestCanTransition checks every State×State pair against the lifecycle
// of docs/LIFECYCLE.md, written out here independently of the package's
// own table.
func TestCanTransition(t *testing.T) {
	type pair struct{ from, to supervisor.State }
	legal := map[pair]bool{
		{supervisor.Created, supervisor.Starting}:    true,
		{supervisor.Created, supervisor.Stopped}:     true,
		{supervisor.Created, supervisor.Failed}:      true,
		{supervisor.Starting, supervisor.Recovering}: true,
		{supervisor.Starting, supervisor.Running}:    true,
		{supervisor.Starting, supervisor.Draining}:   true,
		{supervisor.Starting, supervisor.Failed}:     true,
		{supervisor.Recovering, supervisor.Running}:  true,
		{supervisor.Recovering, supervisor.Draining}: true,
		{supervisor.Recovering, supervisor.Failed}:   true,
		{supervisor.Running, supervisor.Draining}:    true,
		{supervisor.Running, supervisor.Failed}:      true,
		{supervisor.Draining, supervisor.Stopped}:    true,
		{supervisor.Draining, supervisor.Failed}:     true,
	}
	n := 0
	for _, from := range allStates {
		for _, to := range allStates {
			want := legal[pair{from, to}]
			if want {
				n++
			}
			name := fmt.Sprintf("%s->%s", from, to)
			t.Run(name, func(t *testing.T) {
				require.Equal(t, want, supervisor.CanTransition(from, to))
			})
		}
	}
	require.Equal(t, len(legal), n, "every legal pair is a pair of known states")
	// Nothing leaves a terminal state, and no state is outside the enum.
	for _, to := range allStates {
		require.False(t, supervisor.CanTransition(supervisor.Stopped, to))
		require.False(t, supervisor.CanTransition(supervisor.Failed, to))
		require.False(t, supervisor.CanTransition(supervisor.State(200), to))
		require.False(t, supervisor.CanTransition(to, supervisor.State(200)))
	}
}

// TestCanChildTransition checks every ChildState×ChildState pair.
func TestCanChildTransition(t *testing.T) {
	type pair struct{ from, to supervisor.ChildState }
	legal := map[pair]bool{
		{supervisor.ChildIdle, supervisor.ChildRunning}:       true,
		{supervisor.ChildIdle, supervisor.ChildStopped}:       true,
		{supervisor.ChildRunning, supervisor.ChildBackingOff}: true,
		{supervisor.ChildRunning, supervisor.ChildFailed}:     true,
		{supervisor.ChildRunning, supervisor.ChildStopped}:    true,
		{supervisor.ChildBackingOff, supervisor.ChildRunning}: true,
		{supervisor.ChildBackingOff, supervisor.ChildFailed}:  true,
		{supervisor.ChildBackingOff, supervisor.ChildStopped}: true,
	}
	for _, from := range allChildStates {
		for _, to := range allChildStates {
			want := legal[pair{from, to}]
			t.Run(fmt.Sprintf("%s->%s", from, to), func(t *testing.T) {
				require.Equal(t, want, supervisor.CanChildTransition(from, to))
			})
		}
	}
}

// TestStateNames checks the names, which are part of the $system format,
// and their text round trip.
func TestStateNames(t *testing.T) {
	names := []string{"created", "starting", "recovering", "running", "draining", "stopped", "failed"}
	for i, s := range allStates {
		t.Run(names[i], func(t *testing.T) {
			require.Equal(t, names[i], s.String())
			b, err := s.MarshalText()
			require.NoError(t, err)
			var back supervisor.State
			require.NoError(t, back.UnmarshalText(b))
			require.Equal(t, s, back)
			require.Equal(t, s == supervisor.Stopped || s == supervisor.Failed, s.Terminal())
		})
	}
	childNames := []string{"idle", "running", "backing_off", "failed", "stopped"}
	for i, s := range allChildStates {
		t.Run("child_"+childNames[i], func(t *testing.T) {
			require.Equal(t, childNames[i], s.String())
			b, err := s.MarshalText()
			require.NoError(t, err)
			var back supervisor.ChildState
			require.NoError(t, back.UnmarshalText(b))
			require.Equal(t, s, back)
		})
	}
	t.Run("unknown", func(t *testing.T) {
		require.Equal(t, "State(99)", supervisor.State(99).String())
		require.Equal(t, "ChildState(99)", supervisor.ChildState(99).String())
		var s supervisor.State
		require.Error(t, s.UnmarshalText([]byte("paused")))
		var cs supervisor.ChildState
		require.Error(t, cs.UnmarshalText([]byte("Running")))
	})
}
