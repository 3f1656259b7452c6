package supervisor_test

import (
	"context"
	"testing"
	"time"

	"github.com/flowrt/flowrt/supervisor"
	"github.com/stretchr/testify/require"
)

// TestRetentionKeepRuns starts runs one after another with KeepRuns 3:
// each start truncates $system to the newest three runs, the starting one
// included.
func TestRetentionKeepRuns(t *testing.T) {
	l := openLog(t)
	var ids []string
	for i := range 6 {
		s := newSupervisor(t, l, &supervisor.Options{KeepRuns: 3}, child("worker", untilCancelled(nil)))
		require.NoError(t, s.Start(context.Background()))
		ids = append(ids, s.RunID())

		runs := mustRuns(t, l)
		want := ids[max(0, len(ids)-3):]
		var got []string
		for _, r := range runs {
			got = append(got, r.ID)
		}
		require.Equal(t, want, got, "after start %d", i+1)
		require.Equal(t, s.RunID(), runs[len(runs)-1].ID, "the current run is kept")
		si, err := l.Info(supervisor.SystemStream)
		require.NoError(t, err)
		require.Equal(t, runs[0].FirstSeq, si.First, "$system truncated below the oldest kept run")
		require.NoError(t, s.Stop(stopCtx(t)))
		for _, r := range mustRuns(t, l) {
			require.Equal(t, supervisor.Stopped, r.End, "a kept run is whole: %s", r.ID)
			require.Equal(t, step{"created", "starting"}, runtimeSteps(r)[0], "a kept run is whole: %s", r.ID)
		}
	}
}

// TestRetentionKeepFor drops runs that ended longer ago than KeepFor,
// whatever KeepRuns allows. Run ages are the journal's append times
// measured against Options.Clock.
func TestRetentionKeepFor(t *testing.T) {
	l := openLog(t)
	for range 3 {
		s := newSupervisor(t, l, nil)
		require.NoError(t, s.Start(context.Background()))
		require.NoError(t, s.Stop(stopCtx(t)))
	}
	clk := newFakeClock()
	clk.Advance(29 * 24 * time.Hour)
	s := newSupervisor(t, l, &supervisor.Options{Clock: clk, KeepFor: 30 * 24 * time.Hour})
	require.NoError(t, s.Start(context.Background()))
	require.Len(t, mustRuns(t, l), 4, "29 days later every run is kept")
	require.NoError(t, s.Stop(stopCtx(t)))

	clk.Advance(2 * 24 * time.Hour)
	s = newSupervisor(t, l, &supervisor.Options{Clock: clk, KeepFor: 30 * 24 * time.Hour})
	require.NoError(t, s.Start(context.Background()))
	runs := mustRuns(t, l)
	require.Len(t, runs, 1, "31 days later only the current run is kept")
	require.Equal(t, s.RunID(), runs[0].ID)
	require.Len(t, transitions(runs[0], ""), 2, "created->starting, starting->running")
}
