package runtime

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/supervisor"
)

// Collector returns a prometheus.Collector exposing every flow's counters
// (from Stats) and the runtime's lifecycle (from Status), for embedders to
// register and for `flowrt run` to serve on /metrics. It reads the
// runtime at each scrape, so it may be registered before Start: until
// then the counters are zero, the runtime is "created" and every flow is
// "idle". The collector is fully described (its metric names and labels
// are fixed) and safe for concurrent use. Register it once per registry:
// two runtimes' collectors in one registry collide.
func (rt *Runtime) Collector() prometheus.Collector { return metricsCollector{rt: rt} }

// metricsCollector builds const metrics from the runtime at Collect time.
type metricsCollector struct{ rt *Runtime }

// flowMetric is one counter or gauge taken from FlowStats.
type flowMetric struct {
	desc  *prometheus.Desc
	typ   prometheus.ValueType
	value func(*FlowStats) float64
}

// The descriptors are created once; every Collector shares them.
var (
	flowLabels = []string{"flow", "stream"}

	flowMetrics = []flowMetric{
		{
			desc: prometheus.NewDesc("flowrt_flow_matched_total",
				"Handler attempts on events the flow's trigger selects: an event that is retried counts once per attempt.",
				flowLabels, nil),
			typ:   prometheus.CounterValue,
			value: func(s *FlowStats) float64 { return float64(s.Matched) },
		},
		{
			desc: prometheus.NewDesc("flowrt_flow_filtered_total",
				"Attempts on matched events whose every record a filter step dropped: the event was acked and nothing was delivered.",
				flowLabels, nil),
			typ:   prometheus.CounterValue,
			value: func(s *FlowStats) float64 { return float64(s.Filtered) },
		},
		{
			desc: prometheus.NewDesc("flowrt_flow_processed_total",
				"Matched events delivered to every sink (or, for a handler flow, events its handler acked).",
				flowLabels, nil),
			typ:   prometheus.CounterValue,
			value: func(s *FlowStats) float64 { return float64(s.Processed) },
		},
		{
			desc: prometheus.NewDesc("flowrt_flow_failed_total",
				"Attempts on matched events that failed at a step, a sink or the handler, counted before the event is retried or dead-lettered.",
				flowLabels, nil),
			typ:   prometheus.CounterValue,
			value: func(s *FlowStats) float64 { return float64(s.Failed) },
		},
		{
			desc: prometheus.NewDesc("flowrt_flow_retried_total",
				"Failed attempts the flow's consumer scheduled for another attempt (recorded in the journal).",
				flowLabels, nil),
			typ:   prometheus.CounterValue,
			value: func(s *FlowStats) float64 { return float64(s.Retried) },
		},
		{
			desc: prometheus.NewDesc("flowrt_flow_dead_lettered_total",
				"Events the flow's consumer sent to its dead letters: after its last retry, or at once for a permanent failure.",
				flowLabels, nil),
			typ:   prometheus.CounterValue,
			value: func(s *FlowStats) float64 { return float64(s.DeadLettered) },
		},
		{
			desc: prometheus.NewDesc("flowrt_flow_in_flight",
				"Events the flow's consumer has fetched and not yet acked or dead-lettered, including those waiting to be retried.",
				flowLabels, nil),
			typ:   prometheus.GaugeValue,
			value: func(s *FlowStats) float64 { return float64(s.InFlight) },
		},
		{
			desc: prometheus.NewDesc("flowrt_flow_lag_events",
				"The stream's last sequence minus the flow's floor (every event at or below the floor is done): events the flow has yet to finish.",
				flowLabels, nil),
			typ:   prometheus.GaugeValue,
			value: func(s *FlowStats) float64 { return float64(s.Lag) },
		},
		{
			desc: prometheus.NewDesc("flowrt_flow_committed_offset",
				"The flow's durable ack offset: the stream sequence at or below which the flow's progress is committed to the journal.",
				flowLabels, nil),
			typ:   prometheus.GaugeValue,
			value: func(s *FlowStats) float64 { return float64(s.Committed) },
		},
	}

	handlerDurationDesc = prometheus.NewDesc("flowrt_flow_handler_duration_seconds",
		"Duration of each attempt of the flow's handler (steps, sinks and middleware), in seconds, on every event of the stream, including those the trigger does not select.",
		flowLabels, nil)

	restartsDesc = prometheus.NewDesc("flowrt_flow_restarts_total",
		"Restarts of the flow the supervisor scheduled after its consumer failed, since the runtime started.",
		[]string{"flow"}, nil)

	flowStateDesc = prometheus.NewDesc("flowrt_flow_state",
		"The flow's lifecycle state under the supervisor: 1 for the current state, 0 for the others.",
		[]string{"flow", "state"}, nil)

	runtimeStateDesc = prometheus.NewDesc("flowrt_runtime_state",
		"The runtime's lifecycle state: 1 for the current state, 0 for the others.",
		[]string{"state"}, nil)
)

// runtimeStates and childStates list the states each state metric
// reports, so that every state has a series (0 when not current).
var (
	runtimeStates = []supervisor.State{
		supervisor.Created, supervisor.Starting, supervisor.Recovering, supervisor.Running,
		supervisor.Draining, supervisor.Stopped, supervisor.Failed,
	}
	childStates = []supervisor.ChildState{
		supervisor.ChildIdle, supervisor.ChildRunning, supervisor.ChildBackingOff,
		supervisor.ChildFailed, supervisor.ChildStopped,
	}
)

// Describe sends every descriptor the collector uses.
func (metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range flowMetrics {
		ch <- m.desc
	}
	ch <- handlerDurationDesc
	ch <- restartsDesc
	ch <- flowStateDesc
	ch <- runtimeStateDesc
}

// Collect sends the runtime's current metrics.
func (c metricsCollector) Collect(ch chan<- prometheus.Metric) {
	stats := c.rt.Stats()
	status := c.rt.Status()
	children := make(map[string]supervisor.ChildStatus, len(status.Children))
	for _, child := range status.Children {
		children[child.Name] = child
	}
	for i := range stats {
		s := &stats[i]
		for _, m := range flowMetrics {
			ch <- constMetric(m.desc, m.typ, m.value(s), s.Flow, s.Stream)
		}
		ch <- latencyHistogram(s)
		// Before Start the supervisor has no children: the zero
		// ChildStatus is idle, with no restarts.
		child := children[s.Flow]
		ch <- constMetric(restartsDesc, prometheus.CounterValue, float64(child.Restarts), s.Flow)
		found := false
		for _, st := range childStates {
			found = found || st == child.State
			ch <- constMetric(flowStateDesc, prometheus.GaugeValue, oneIf(st == child.State), s.Flow, st.String())
		}
		if !found {
			ch <- constMetric(flowStateDesc, prometheus.GaugeValue, 1, s.Flow, child.State.String())
		}
	}
	found := false
	for _, st := range runtimeStates {
		found = found || st == status.State
		ch <- constMetric(runtimeStateDesc, prometheus.GaugeValue, oneIf(st == status.State), st.String())
	}
	if !found {
		ch <- constMetric(runtimeStateDesc, prometheus.GaugeValue, 1, status.State.String())
	}
}

// constMetric returns a const metric, or an invalid metric carrying the
// error (which the registry reports) instead of panicking in a scrape.
func constMetric(desc *prometheus.Desc, typ prometheus.ValueType, v float64, labels ...string) prometheus.Metric {
	m, err := prometheus.NewConstMetric(desc, typ, v, labels...)
	if err != nil {
		return prometheus.NewInvalidMetric(desc, err)
	}
	return m
}

// latencyHistogram converts the flow's cumulative consumer histogram. A
// histogram with fewer counts than buckets (the zero one, before the flow
// has run) carries its last cumulative count up.
func latencyHistogram(s *FlowStats) prometheus.Metric {
	h := s.Latency
	buckets := make(map[float64]uint64, len(consumer.LatencyBuckets))
	var cum uint64
	for i, ub := range consumer.LatencyBuckets {
		if i < len(h.Counts) {
			cum = h.Counts[i]
		}
		buckets[ub] = cum
	}
	m, err := prometheus.NewConstHistogram(handlerDurationDesc, h.Count, h.Sum, buckets, s.Flow, s.Stream)
	if err != nil {
		return prometheus.NewInvalidMetric(handlerDurationDesc, err)
	}
	return m
}

func oneIf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
