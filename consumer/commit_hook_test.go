package consumer_test

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
)

// floorHook writes each commit's floor and done list into a namespace, in
// the commit's transaction.
type floorHook struct {
	mu        sync.Mutex
	fail      error
	committed []uint64
	done      []uint64
}

func (h *floorHook) Commit(tx *eventlog.Tx, floor uint64, done []uint64) error {
	if h.fail != nil {
		return h.fail
	}
	b, err := tx.Namespace("hooktest")
	if err != nil {
		return err
	}
	return b.Put([]byte("floor"), binary.BigEndian.AppendUint64(nil, floor))
}

func (h *floorHook) Committed(floor uint64, done []uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.committed = append(h.committed, floor)
	h.done = append(h.done, done...)
}

func hookFloor(t *testing.T, l *eventlog.Log) uint64 {
	t.Helper()
	var floor uint64
	require.NoError(t, l.View(func(tx *eventlog.Tx) error {
		b, err := tx.Namespace("hooktest")
		if err != nil {
			return err
		}
		floor = binary.BigEndian.Uint64(b.Get([]byte("floor")))
		return nil
	}))
	return floor
}

func TestCommitHookWritesWithTheFloor(t *testing.T) {
	l := openLog(t)
	appendN(t, l, 20)
	h := &floorHook{}
	r := openReader(t, l, "hooked", &consumer.Options{Commit: h})
	errc := start(r, func(context.Context, eventlog.Event) error { return nil })
	waitFloor(t, r, 20)
	shutdown(t, r, errc)
	assert.Equal(t, uint64(20), committed(t, l, "hooked"))
	assert.Equal(t, uint64(20), hookFloor(t, l), "the hook wrote in the transaction that committed the floor")
	h.mu.Lock()
	defer h.mu.Unlock()
	require.NotEmpty(t, h.committed)
	assert.Equal(t, uint64(20), h.committed[len(h.committed)-1])
}

func TestCommitHookFailureFailsTheCommit(t *testing.T) {
	l := openLog(t)
	appendN(t, l, 5)
	h := &floorHook{fail: errors.New("state is broken")}
	r := openReader(t, l, "hooked", &consumer.Options{Commit: h})
	err := runResult(t, start(r, func(context.Context, eventlog.Event) error { return nil }))
	require.ErrorContains(t, err, "state is broken")
	assert.Equal(t, uint64(0), committed(t, l, "hooked"), "no floor without its hook's writes")
}
