package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
)

// The journal's metric descriptors; every collector shares them.
var (
	streamLabels   = []string{"stream"}
	consumerLabels = []string{"stream", "consumer"}

	streamLastSeqDesc = prometheus.NewDesc("flowrt_stream_last_seq",
		"The stream's highest sequence ever assigned (0 for a new stream).", streamLabels, nil)
	streamEventsDesc = prometheus.NewDesc("flowrt_stream_events",
		"Events the stream retains.", streamLabels, nil)
	streamBytesDesc = prometheus.NewDesc("flowrt_stream_bytes",
		"Encoded bytes of the events the stream retains.", streamLabels, nil)
	consumerOffsetDesc = prometheus.NewDesc("flowrt_consumer_offset",
		"The consumer's committed offset: every event of the stream at or below it is done.", consumerLabels, nil)
	consumerLagDesc = prometheus.NewDesc("flowrt_consumer_lag_events",
		"The stream's last sequence minus the consumer's committed offset.", consumerLabels, nil)
	consumerDeadDesc = prometheus.NewDesc("flowrt_consumer_dead_letters",
		"Events in the consumer's dead letters.", consumerLabels, nil)
)

// NewJournalCollector returns a prometheus.Collector exposing the
// journal's streams (last sequence, retained events and bytes) and
// consumers (committed offset, lag, dead letters), read at each scrape.
// It is safe for concurrent use. A failed read is reported to the
// registry as an invalid metric.
func NewJournalCollector(l *eventlog.Log) prometheus.Collector { return journalCollector{l: l} }

type journalCollector struct{ l *eventlog.Log }

// Describe sends every descriptor the collector uses.
func (journalCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{streamLastSeqDesc, streamEventsDesc, streamBytesDesc, consumerOffsetDesc, consumerLagDesc, consumerDeadDesc} {
		ch <- d
	}
}

// Collect sends the journal's current metrics.
func (c journalCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		m, err := prometheus.NewConstMetric(d, prometheus.GaugeValue, v, labels...)
		if err != nil {
			m = prometheus.NewInvalidMetric(d, err)
		}
		ch <- m
	}
	streams, err := c.l.Streams()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(streamLastSeqDesc, err)
	}
	for _, si := range streams {
		gauge(streamLastSeqDesc, float64(si.Last), si.Name)
		gauge(streamEventsDesc, float64(si.Count), si.Name)
		gauge(streamBytesDesc, float64(si.Bytes), si.Name)
	}
	consumers, err := c.l.Consumers("")
	if err != nil {
		ch <- prometheus.NewInvalidMetric(consumerOffsetDesc, err)
	}
	for _, ci := range consumers {
		gauge(consumerOffsetDesc, float64(ci.Offset), ci.Stream, ci.Name)
		gauge(consumerLagDesc, float64(ci.Lag), ci.Stream, ci.Name)
		dead, err := consumer.DeadLetters(c.l, ci.Stream, ci.Name, consumer.Range{})
		if err != nil {
			ch <- prometheus.NewInvalidMetric(consumerDeadDesc, err)
			continue
		}
		gauge(consumerDeadDesc, float64(len(dead)), ci.Stream, ci.Name)
	}
}
