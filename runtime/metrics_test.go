package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/flowrt/flowrt/runtime"
)

// The HELP lines of the counters and gauges, as the exposition shows them.
const metricsHelp = `
# HELP flowrt_flow_matched_total Handler attempts on events the flow's trigger selects: an event that is retried counts once per attempt.
# TYPE flowrt_flow_matched_total counter
# HELP flowrt_flow_filtered_total Attempts on matched events whose every record a filter step dropped: the event was acked and nothing was delivered.
# TYPE flowrt_flow_filtered_total counter
# HELP flowrt_flow_processed_total Matched events delivered to every sink (or, for a handler flow, events its handler acked).
# TYPE flowrt_flow_processed_total counter
# HELP flowrt_flow_failed_total Attempts on matched events that failed at a step, a sink or the handler, counted before the event is retried or dead-lettered.
# TYPE flowrt_flow_failed_total counter
# HELP flowrt_flow_retried_total Failed attempts the flow's consumer scheduled for another attempt (recorded in the journal).
# TYPE flowrt_flow_retried_total counter
# HELP flowrt_flow_dead_lettered_total Events the flow's consumer sent to its dead letters: after its last retry, or at once for a permanent failure.
# TYPE flowrt_flow_dead_lettered_total counter
# HELP flowrt_flow_in_flight Events the flow's consumer has fetched and not yet acked or dead-lettered, including those waiting to be retried.
# TYPE flowrt_flow_in_flight gauge
# HELP flowrt_flow_lag_events The stream's last sequence minus the flow's floor (every event at or below the floor is done): events the flow has yet to finish.
# TYPE flowrt_flow_lag_events gauge
# HELP flowrt_flow_committed_offset The flow's durable ack offset: the stream sequence at or below which the flow's progress is committed to the journal.
# TYPE flowrt_flow_committed_offset gauge
# HELP flowrt_flow_restarts_total Restarts of the flow the supervisor scheduled after its consumer failed, since the runtime started.
# TYPE flowrt_flow_restarts_total counter
# HELP flowrt_flow_state The flow's lifecycle state under the supervisor: 1 for the current state, 0 for the others.
# TYPE flowrt_flow_state gauge
# HELP flowrt_runtime_state The runtime's lifecycle state: 1 for the current state, 0 for the others.
# TYPE flowrt_runtime_state gauge
`

// metricNames are the metrics the exposition tests compare exactly: all
// but the histogram, whose durations vary.
var metricNames = []string{
	"flowrt_flow_matched_total", "flowrt_flow_filtered_total", "flowrt_flow_processed_total",
	"flowrt_flow_failed_total", "flowrt_flow_retried_total", "flowrt_flow_dead_lettered_total",
	"flowrt_flow_in_flight", "flowrt_flow_lag_events", "flowrt_flow_committed_offset",
	"flowrt_flow_restarts_total", "flowrt_flow_state", "flowrt_runtime_state",
}

// metricFlows are two flows over two streams: "orders" keeps big orders,
// its sink failing the first attempt on A1 (retried) and every attempt on
// X9 for good (dead-lettered); "users" takes every user event.
func metricFlows() []runtime.Flow {
	var failedOnce atomic.Bool
	orders := newCollector()
	orders.fail = func(d runtime.Delivery) error {
		switch d.Payload.(map[string]any)["id"] {
		case "A1":
			if failedOnce.CompareAndSwap(false, true) {
				return errors.New("warehouse busy")
			}
		case "X9":
			return consumer.Permanent(errors.New("rejected"))
		}
		return nil
	}
	return []runtime.Flow{
		{
			Name:     "orders",
			On:       runtime.On("order.*"),
			Steps:    []runtime.Step{runtime.Filter(`data.total > 100`)},
			Sinks:    []runtime.Sink{orders},
			Consumer: &consumer.Options{Retry: consumer.Retry{MaxAttempts: 5, Base: 1, Max: 1}},
		},
		{Name: "users", On: runtime.Trigger{Stream: "users"}, Sinks: []runtime.Sink{newCollector()}},
	}
}

func TestCollectorReportsFlowCounters(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, eventlog.DefaultStream,
		event("order.created", "A1", `{"id":"A1","total":250}`), // fails once, then processed
		event("order.created", "A2", `{"id":"A2","total":20}`),  // filtered
		event("order.created", "X9", `{"id":"X9","total":500}`), // dead-lettered
		event("user.signed_up", "u1", `{}`),                     // not matched
	)
	flowtest.MustAppend(t, l, "users", event("user.signed_up", "u1", `{}`), event("user.renamed", "u1", `{}`))
	rt := runIdle(t, l, nil, metricFlows()...)

	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(rt.Collector()))
	_, err := reg.Gather()
	require.NoError(t, err, "the pedantic registry checks the collector's descriptions")

	want := metricsHelp + `
flowrt_flow_matched_total{flow="orders",stream="events"} 4
flowrt_flow_matched_total{flow="users",stream="users"} 2
flowrt_flow_filtered_total{flow="orders",stream="events"} 1
flowrt_flow_filtered_total{flow="users",stream="users"} 0
flowrt_flow_processed_total{flow="orders",stream="events"} 1
flowrt_flow_processed_total{flow="users",stream="users"} 2
flowrt_flow_failed_total{flow="orders",stream="events"} 2
flowrt_flow_failed_total{flow="users",stream="users"} 0
flowrt_flow_retried_total{flow="orders",stream="events"} 1
flowrt_flow_retried_total{flow="users",stream="users"} 0
flowrt_flow_dead_lettered_total{flow="orders",stream="events"} 1
flowrt_flow_dead_lettered_total{flow="users",stream="users"} 0
flowrt_flow_in_flight{flow="orders",stream="events"} 0
flowrt_flow_in_flight{flow="users",stream="users"} 0
flowrt_flow_lag_events{flow="orders",stream="events"} 0
flowrt_flow_lag_events{flow="users",stream="users"} 0
flowrt_flow_committed_offset{flow="orders",stream="events"} 4
flowrt_flow_committed_offset{flow="users",stream="users"} 2
flowrt_flow_restarts_total{flow="orders"} 0
flowrt_flow_restarts_total{flow="users"} 0
` + stateLines("orders", "stopped") + stateLines("users", "stopped") + runtimeStateLines("stopped")
	require.NoError(t, testutil.CollectAndCompare(rt.Collector(), strings.NewReader(want), metricNames...))
	// Every attempt is timed, including the retry and the event the
	// trigger does not select.
	checkLatency(t, reg, map[string]uint64{"orders": 5, "users": 2})

	problems, err := testutil.CollectAndLint(rt.Collector())
	require.NoError(t, err)
	assert.Empty(t, problems)
}

func TestCollectorBeforeStart(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	rt, err := runtime.New(l, nil)
	require.NoError(t, err)
	require.NoError(t, rt.Add(metricFlows()...))

	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(rt.Collector()))
	_, err = reg.Gather()
	require.NoError(t, err)

	var want strings.Builder
	want.WriteString(metricsHelp)
	for _, name := range metricNames {
		if strings.HasSuffix(name, "_state") {
			continue
		}
		for _, f := range []struct{ flow, stream string }{{"orders", "events"}, {"users", "users"}} {
			if name == "flowrt_flow_restarts_total" {
				fmt.Fprintf(&want, "%s{flow=%q} 0\n", name, f.flow)
			} else {
				fmt.Fprintf(&want, "%s{flow=%q,stream=%q} 0\n", name, f.flow, f.stream)
			}
		}
	}
	want.WriteString(stateLines("orders", "idle") + stateLines("users", "idle") + runtimeStateLines("created"))
	require.NoError(t, testutil.CollectAndCompare(rt.Collector(), strings.NewReader(want.String()), metricNames...))
	checkLatency(t, reg, map[string]uint64{"orders": 0, "users": 0})

	problems, err := testutil.CollectAndLint(rt.Collector())
	require.NoError(t, err)
	assert.Empty(t, problems)
}

func TestCollectorWithoutFlows(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	rt, err := runtime.New(l, nil)
	require.NoError(t, err)
	want := metricsHelp + runtimeStateLines("created")
	require.NoError(t, testutil.CollectAndCompare(rt.Collector(), strings.NewReader(want), "flowrt_runtime_state"))
	assert.Equal(t, 7, testutil.CollectAndCount(rt.Collector()), "only the runtime's state")
}

// TestCollectorScrapesWhileFlowsRun scrapes concurrently with the flows,
// for the race detector, and checks the counts once they have stopped.
func TestCollectorScrapesWhileFlowsRun(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	sink := newCollector()
	rt, err := runtime.New(l, nil)
	require.NoError(t, err)
	require.NoError(t, rt.Add(runtime.Flow{Name: "all", Sinks: []runtime.Sink{sink}}))
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(rt.Collector()))

	stop, scraped := make(chan struct{}), make(chan error, 1)
	go func() {
		for {
			if _, err := reg.Gather(); err != nil {
				scraped <- err
				return
			}
			select {
			case <-stop:
				scraped <- nil
				return
			default:
			}
		}
	}()

	require.NoError(t, rt.Start(context.Background()))
	const n = 20
	flowtest.MustAppend(t, l, eventlog.DefaultStream, flowtest.Events(n, "tick")...)
	sink.await(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, rt.Stop(ctx))
	close(stop)
	select {
	case err := <-scraped:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the scraping goroutine did not stop")
	}

	want := metricsHelp + `
flowrt_flow_processed_total{flow="all",stream="events"} 20
flowrt_flow_committed_offset{flow="all",stream="events"} 20
` + runtimeStateLines("stopped")
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want),
		"flowrt_flow_processed_total", "flowrt_flow_committed_offset", "flowrt_runtime_state"))
}

// stateLines returns the flowrt_flow_state series of a flow in state.
func stateLines(flow, state string) string {
	var b strings.Builder
	for _, s := range []string{"idle", "running", "backing_off", "failed", "stopped"} {
		fmt.Fprintf(&b, "flowrt_flow_state{flow=%q,state=%q} %d\n", flow, s, one(s == state))
	}
	return b.String()
}

// runtimeStateLines returns the flowrt_runtime_state series in state.
func runtimeStateLines(state string) string {
	var b strings.Builder
	for _, s := range []string{"created", "starting", "recovering", "running", "draining", "stopped", "failed"} {
		fmt.Fprintf(&b, "flowrt_runtime_state{state=%q} %d\n", s, one(s == state))
	}
	return b.String()
}

func one(b bool) int {
	if b {
		return 1
	}
	return 0
}

// checkLatency checks each flow's handler duration histogram: its count,
// its buckets (consumer.LatencyBuckets) and that they are cumulative.
func checkLatency(t *testing.T, g prometheus.Gatherer, want map[string]uint64) {
	t.Helper()
	families, err := g.Gather()
	require.NoError(t, err)
	got := map[string]uint64{}
	for _, mf := range families {
		if mf.GetName() != "flowrt_flow_handler_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var flow string
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "flow" {
					flow = lp.GetValue()
				}
			}
			h := m.GetHistogram()
			got[flow] = h.GetSampleCount()
			require.Len(t, h.GetBucket(), len(consumer.LatencyBuckets), "flow %s", flow)
			var prev uint64
			for i, b := range h.GetBucket() {
				assert.Equal(t, consumer.LatencyBuckets[i], b.GetUpperBound(), "flow %s bucket %d", flow, i)
				assert.GreaterOrEqual(t, b.GetCumulativeCount(), prev, "flow %s bucket %d is cumulative", flow, i)
				prev = b.GetCumulativeCount()
			}
			assert.LessOrEqual(t, prev, h.GetSampleCount(), "flow %s", flow)
			if h.GetSampleCount() == 0 {
				assert.Zero(t, h.GetSampleSum(), "flow %s", flow)
			}
		}
	}
	assert.Equal(t, want, got)
}

// Register a runtime's collector with a registry, then serve the registry
// (promhttp.HandlerFor(reg, promhttp.HandlerOpts{}) on /metrics). The
// collector reads the runtime at every scrape.
func ExampleRuntime_Collector() {
	dir, _ := os.MkdirTemp("", "flowrt-example")
	defer os.RemoveAll(dir)
	l, err := eventlog.Open(filepath.Join(dir, "flowrt.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	for _, data := range []string{`{"total":250}`, `{"total":20}`} {
		if _, err := l.Append(eventlog.DefaultStream, eventlog.Event{Type: "order.created", Data: []byte(data)}); err != nil {
			log.Fatal(err)
		}
	}

	rt, err := runtime.New(l, nil)
	if err != nil {
		log.Fatal(err)
	}
	err = rt.Add(runtime.Flow{
		Name:  "big-orders",
		On:    runtime.On("order.*"),
		Steps: []runtime.Step{runtime.Filter(`data.total > 100`)},
		Sinks: []runtime.Sink{runtime.SinkFunc(func(context.Context, runtime.Delivery) error { return nil })},
	})
	if err != nil {
		log.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(rt.Collector())
	if err := rt.RunUntilIdle(context.Background()); err != nil {
		log.Fatal(err)
	}

	families, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			switch {
			case strings.HasSuffix(mf.GetName(), "_total") && m.GetCounter().GetValue() > 0:
				fmt.Println(mf.GetName(), m.GetCounter().GetValue())
			case mf.GetName() == "flowrt_runtime_state" && m.GetGauge().GetValue() == 1:
				fmt.Println(mf.GetName(), m.GetLabel()[0].GetValue())
			}
		}
	}
	// Output:
	// flowrt_flow_filtered_total 1
	// flowrt_flow_matched_total 2
	// flowrt_flow_processed_total 1
	// flowrt_runtime_state stopped
}
