package eventlog_test

import (
	"testing"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/stretchr/testify/require"
)

// readStream returns every retained event of stream, in order.
func readStream(t testing.TB, l *eventlog.Log, stream string) []eventlog.Event {
	t.Helper()
	var out []eventlog.Event
	for e, err := range l.Scan(stream, 0, 0) {
		require.NoError(t, err)
		out = append(out, e)
	}
	return out
}

// seqsOf returns the sequences of events, nil for none.
func seqsOf(events []eventlog.Event) []uint64 {
	var out []uint64
	for _, e := range events {
		out = append(out, e.Seq)
	}
	return out
}

// seqRange returns from, from+1, ..., to.
func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// mustInfo returns the stream's summary and fails the test on error.
func mustInfo(t testing.TB, l *eventlog.Log, stream string) eventlog.StreamInfo {
	t.Helper()
	si, err := l.Info(stream)
	require.NoError(t, err)
	return si
}
