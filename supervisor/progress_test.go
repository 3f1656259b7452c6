package supervisor_test

import (
	"context"
	"testing"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/supervisor"
	"github.com/stretchr/testify/require"
)

// detailed is a child that reports its in-flight count.
type detailed struct{ childFunc }

func (detailed) Details() map[string]string { return map[string]string{"in_flight": "3"} }

// TestStopRecordsProgress: the draining and stopped transitions record every
// consumer's committed offset and the details of Detailer children; the
// starting transition records the version.
func TestStopRecordsProgress(t *testing.T) {
	l := openLog(t)
	_, err := l.Append("orders", eventlog.Event{Type: "order.created"}, eventlog.Event{Type: "order.paid"})
	require.NoError(t, err)
	require.NoError(t, l.CommitOffset("orders", "billing", 2))

	s := newSupervisor(t, l, nil, child("flow", detailed{untilCancelled(nil)}))
	require.NoError(t, s.Start(context.Background()))
	require.NoError(t, s.Stop(stopCtx(t)))

	runs, err := supervisor.Runs(l)
	require.NoError(t, err)
	require.Len(t, runs, 1)
	seen := map[string]bool{}
	for _, tr := range runs[0].Transitions {
		if tr.Child != "" {
			continue
		}
		switch tr.To {
		case "starting":
			require.Contains(t, tr.Details, "version")
		case "draining", "stopped":
			require.Equal(t, "2", tr.Details["offset orders/billing"], "%s records the committed offset", tr.To)
			require.Equal(t, "3", tr.Details["flow in_flight"], "%s records the child's details", tr.To)
			seen[tr.To] = true
		}
	}
	require.True(t, seen["draining"] && seen["stopped"])
}
