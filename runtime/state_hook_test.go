package runtime

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/flowrt/flowrt/snapshot"
)

// foldingHook returns the hook of a flow summing per key, whose
// reductions are folded by its commits.
func foldingHook(t *testing.T) (*eventlog.Log, *stateHook) {
	t.Helper()
	l := flowtest.MustOpenLog(t, nil)
	st, err := snapshot.Open(l, "sums")
	require.NoError(t, err)
	h := newStateHook(st)
	sum := numericReducers["sum"]
	h.fold = &sum
	return l, h
}

// ack runs an attempt at event seq adding v to key, as a reduce step and
// the consumer would, acked or not.
func ack(h *stateHook, seq uint64, key string, v float64, acked bool) {
	att := h.attempt()
	att.ops = append(att.ops, reduction{key: key, value: v})
	h.keep(seq, att)
	h.Outcome(seq, acked)
}

func commitHook(t *testing.T, l *eventlog.Log, h *stateHook, floor uint64, done ...uint64) {
	t.Helper()
	require.NoError(t, l.Update(func(tx *eventlog.Tx) error { return h.Commit(tx, floor, done) }))
	h.Committed(floor, done)
}

func readHook(t *testing.T, h *stateHook) map[string]string {
	t.Helper()
	entries, err := h.Items("")
	require.NoError(t, err)
	out := map[string]string{}
	for _, e := range entries {
		out[e.Key] = string(e.Value)
		v, ok, err := h.Get(e.Key)
		require.NoError(t, err)
		require.True(t, ok, e.Key)
		assert.Equal(t, string(e.Value), string(v), "Get and Items agree on %s", e.Key)
	}
	return out
}

func TestFoldCommitsWhatTheFloorCovers(t *testing.T) {
	tests := []struct {
		name          string
		run           func(l *eventlog.Log, h *stateHook)
		floor         uint64
		done          []uint64
		wantCommitted map[string]string
		wantRead      map[string]string
	}{
		{
			name: "the floor covers a prefix of each key",
			run: func(_ *eventlog.Log, h *stateHook) {
				ack(h, 1, "a", 1, true)
				ack(h, 2, "b", 10, true)
				ack(h, 3, "a", 2, true)
				ack(h, 4, "a", 4, true)
			},
			floor:         3,
			wantCommitted: map[string]string{"a": "3", "b": "10"},
			wantRead:      map[string]string{"a": "7", "b": "10"},
		},
		{
			name: "a failed attempt folds nothing",
			run: func(_ *eventlog.Log, h *stateHook) {
				ack(h, 1, "a", 1, false)
				ack(h, 1, "a", 1, true)
				ack(h, 2, "a", 5, false)
			},
			floor:         2,
			wantCommitted: map[string]string{"a": "1"},
			wantRead:      map[string]string{"a": "1"},
		},
		{
			name: "done above the floor on a clean stop",
			run: func(_ *eventlog.Log, h *stateHook) {
				ack(h, 2, "a", 1, true)
				ack(h, 3, "b", 2, true)
				ack(h, 5, "a", 4, true)
			},
			floor:         0,
			done:          []uint64{2, 3, 5},
			wantCommitted: map[string]string{"a": "5", "b": "2"},
			wantRead:      map[string]string{"a": "5", "b": "2"},
		},
		{
			name: "a dead letter redelivered behind later events of its key",
			run: func(_ *eventlog.Log, h *stateHook) {
				ack(h, 8, "a", 100, true) // above the floor
				ack(h, 2, "a", 1, true)   // redelivered, below it
			},
			floor:         5,
			done:          []uint64{2},
			wantCommitted: map[string]string{"a": "1"}, // a crash now delivers event 8 again
			wantRead:      map[string]string{"a": "101"},
		},
		{
			name: "then the floor passes the later event",
			run: func(l *eventlog.Log, h *stateHook) {
				ack(h, 8, "a", 100, true)
				ack(h, 2, "a", 1, true)
				require.NoError(t, l.Update(func(tx *eventlog.Tx) error { return h.Commit(tx, 5, []uint64{2}) }))
				h.Committed(5, []uint64{2})
			},
			floor:         8,
			wantCommitted: map[string]string{"a": "101"},
			wantRead:      map[string]string{"a": "101"},
		},
		{
			name: "a later commit folds what an earlier one left",
			run: func(l *eventlog.Log, h *stateHook) {
				ack(h, 1, "a", 1, true)
				ack(h, 2, "a", 2, true)
				require.NoError(t, l.Update(func(tx *eventlog.Tx) error { return h.Commit(tx, 1, nil) }))
				h.Committed(1, nil)
				ack(h, 3, "a", 4, true)
			},
			floor:         3,
			wantCommitted: map[string]string{"a": "7"},
			wantRead:      map[string]string{"a": "7"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, h := foldingHook(t)
			tt.run(l, h)
			commitHook(t, l, h, tt.floor, tt.done...)
			assert.Equal(t, tt.wantCommitted, flowtest.CommittedState(t, l, "sums"))
			assert.Equal(t, tt.wantRead, readHook(t, h))
		})
	}
}

func TestFoldReadsTheQueueAndDiscardDropsIt(t *testing.T) {
	l, h := foldingHook(t)
	require.NoError(t, l.Update(func(tx *eventlog.Tx) error {
		return snapshot.Put(tx, "sums", snapshot.Change{Key: "a", Value: []byte("40")})
	}))
	for seq := uint64(1); seq <= 2*queueChunk+1; seq++ {
		ack(h, seq, "a", 1, true) // several arrays of the queue
	}
	ack(h, 2*queueChunk+2, "b", 3, true)
	assert.Equal(t, map[string]string{"a": "8233", "b": "3"}, readHook(t, h), "the committed value and every queued reduction")

	h.Discard()
	assert.Equal(t, map[string]string{"a": "40"}, readHook(t, h), "a restart delivers them again")
	commitHook(t, l, h, 2*queueChunk+2)
	assert.Equal(t, map[string]string{"a": "40"}, flowtest.CommittedState(t, l, "sums"))
}
