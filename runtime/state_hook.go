package runtime

import (
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/snapshot"
)

// A reduce step runs in one of two ways:
//
//   - Applied: the step reads the key's state, applies the reducer and
//     keeps the new value in the attempt; an acked attempt's values are
//     staged in the State. A Go Reducer, a reduce whose result a later
//     step reads (As), and every rebuild run this way: the reducer's
//     errors then fail the event.
//   - Folded: the step only checks and keeps the value reduced; an acked
//     attempt's reductions queue in the hook, and the commit that covers
//     them folds them into the state. The built-in numeric reducers (count,
//     sum, min, max: commutative, and unable to fail on a number) run this
//     way when nothing reads their result: the worker neither reads nor
//     encodes state, and a key's state is decoded and encoded once per
//     commit instead of once per event.
//
// Either way, what a commit writes is exactly the effect of the events it
// covers, and the State's reads see every acked event.

// attemptState holds what one attempt at one event did to the state: the
// values it applied, or the reductions it leaves to the commit. They are
// staged or queued only if the attempt is acked. State is per event key,
// so an attempt touches one key, however many parts its event fans out to;
// the slices allow for more all the same. An attempt belongs to one
// goroutine at a time: the worker running its event, then the hook.
type attemptState struct {
	from    stateReader // the state before the attempt
	fold    bool        // reductions are folded by the commit, not applied
	changes []snapshot.Change
	ops     []reduction
	first   [1]snapshot.Change // changes' array for the first key
	firstOp [1]reduction       // ops' array for the first part
}

// reduction is one record's reduction of its key, folded by a commit.
type reduction struct {
	seq   uint64
	key   string
	value float64 // the number reduced (none for count)
}

// attempts recycles attemptStates: a stateful flow makes one per event.
var attempts = sync.Pool{New: func() any { return new(attemptState) }}

// newAttempt returns an attempt that reads the state from from: the live
// State, or a rebuild's overlay. With fold, the reduce step leaves its
// reductions to the commit.
func newAttempt(from stateReader, fold bool) *attemptState {
	a := attempts.Get().(*attemptState)
	a.from, a.fold, a.changes, a.ops = from, fold, a.first[:0], a.firstOp[:0]
	return a
}

// release returns a to the pool; no record may use it after.
func (a *attemptState) release() {
	clear(a.first[:])
	clear(a.firstOp[:])
	*a = attemptState{}
	attempts.Put(a)
}

func (a *attemptState) get(key string) ([]byte, bool) {
	for _, c := range a.changes {
		if c.Key == key {
			return c.Value, true
		}
	}
	return nil, false
}

func (a *attemptState) set(key string, v []byte) {
	for i := range a.changes {
		if a.changes[i].Key == key {
			a.changes[i].Value = v
			return
		}
	}
	a.changes = append(a.changes, snapshot.Change{Key: key, Value: v})
}

// stateHook is a stateful flow's consumer.OutcomeHook: the State commits
// with the floor, and an acked attempt's changes are staged, or its
// reductions queued, before the floor can pass its event.
type stateHook struct {
	*snapshot.State
	// fold is the built-in reducer a folding flow's commits apply; nil
	// when the reduce step applies its reducer.
	fold *numericReducer

	mu       sync.Mutex
	attempts map[uint64]*attemptState
	queue    reductionQueue // acked reductions not yet folded, in the order acked

	// foldMu serializes commits (and Discard); foldQueue's buffers are
	// kept from one to the next.
	foldMu sync.Mutex
	// viewMu is held by a fold from when it takes the queue until it has
	// staged what it took, and by reads, so that they never see the
	// reductions in neither place, nor in both.
	viewMu sync.RWMutex
	failed error // a fold failed: every commit fails until Discard
	index  map[string]int
	folds  []keyFold
}

var _ consumer.OutcomeHook = (*stateHook)(nil)

func newStateHook(st *snapshot.State) *stateHook {
	return &stateHook{State: st, attempts: map[uint64]*attemptState{}}
}

func (h *stateHook) keep(seq uint64, att *attemptState) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.attempts[seq] = att
}

// Outcome stages the changes, or queues the reductions, of an acked
// attempt; a failed one's are dropped.
func (h *stateHook) Outcome(seq uint64, acked bool) {
	h.mu.Lock()
	att := h.attempts[seq]
	delete(h.attempts, seq)
	if acked && att != nil {
		for _, op := range att.ops {
			op.seq = seq
			h.queue.push(op)
		}
	}
	h.mu.Unlock()
	if att == nil {
		return
	}
	if acked && len(att.changes) > 0 {
		h.Stage(seq, att.changes) // Stage copies them
	}
	att.release()
}

// Discard drops what was staged and queued: for a flow that restarts,
// whose events above the committed floor will be delivered again.
func (h *stateHook) Discard() {
	h.foldMu.Lock()
	defer h.foldMu.Unlock()
	h.mu.Lock()
	h.queue.reset()
	h.mu.Unlock()
	h.failed = nil
	h.State.Discard()
}

// Commit folds the queued reductions the commit covers into the state,
// then writes, with the floor, the changes of every event it covers.
func (h *stateHook) Commit(tx *eventlog.Tx, floor uint64, done []uint64) error {
	h.foldMu.Lock()
	defer h.foldMu.Unlock()
	if h.failed != nil {
		return h.failed
	}
	// Until the fold is done, its reductions are taken from the queue: if
	// it fails, even by a panic, they are lost, and no commit may pass
	// their events until a restart discards the rest and delivers them
	// again.
	h.failed = errFoldUnfinished
	if err := h.foldQueue(tx, floor, done); err != nil {
		h.failed = err
		return err
	}
	h.failed = nil
	return h.State.Commit(tx, floor, done)
}

var errFoldUnfinished = errors.New("flowrt/runtime: folding reductions into the state did not finish")

// foldQueue stages, for each key, the queued reductions that a commit of
// floor and done covers, folded into the key's current state, at the last
// one's sequence; the others stay queued for a later commit. A key's
// staged value is always covered by the commit that follows its staging
// (the floor only grows), so it is the base the next fold starts from.
// The folded reducers are commutative, so covered reductions queued behind
// ones that are not (a dead letter redelivered behind later events of its
// key) fold the same.
func (h *stateHook) foldQueue(tx *eventlog.Tx, floor uint64, done []uint64) error {
	h.viewMu.Lock()
	defer h.viewMu.Unlock()
	h.mu.Lock()
	queue := h.queue.take() // what is acked meanwhile queues anew
	h.mu.Unlock()
	if len(queue) == 0 {
		return nil
	}
	if h.index == nil {
		h.index = make(map[string]int)
	}
	folds := h.folds[:0]
	defer func() {
		clear(h.index)
		clear(folds)
		h.folds = folds[:0]
	}()
	var rest []reduction
	for op := range allOf(queue) {
		if !covers(op.seq, floor, done) {
			rest = append(rest, op)
			continue
		}
		i, ok := h.index[op.key]
		if !ok {
			cur, _, err := h.GetTx(tx, op.key)
			if err != nil {
				return fmt.Errorf("reduce: read state %q: %w", op.key, err)
			}
			v, has, err := h.number(op.key, cur)
			if err != nil {
				return err
			}
			i = len(folds)
			h.index[op.key] = i
			folds = append(folds, keyFold{key: op.key, v: v, has: has})
		}
		kf := &folds[i]
		kf.v, kf.has, kf.last = h.fold.step(kf.v, kf.has, op.value), true, op.seq
	}
	for _, kf := range folds {
		enc, err := encodeState(kf.v)
		if err != nil {
			return fmt.Errorf("reduce: encode state %q: %w", kf.key, err)
		}
		h.Stage(kf.last, []snapshot.Change{{Key: kf.key, Value: enc}})
	}
	h.requeue(queue, rest)
	return nil
}

// keyFold is what foldQueue knows of one key.
type keyFold struct {
	key  string
	v    float64 // the state, with the covered reductions folded in
	has  bool    // the key has a state
	last uint64  // the sequence of the last reduction folded
}

// requeue puts rest, the reductions a commit left, back at the head of
// the queue, and recycles the arrays of queue, the part it took.
func (h *stateHook) requeue(queue [][]reduction, rest []reduction) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.queue.recycle(queue)
	h.queue.prepend(rest)
}

// number decodes key's state for the built-in numeric reducer.
func (h *stateHook) number(key string, cur []byte) (v float64, has bool, err error) {
	state, err := decodeState(cur)
	if err != nil {
		return 0, false, fmt.Errorf("reduce: decode state %q: %w", key, err)
	}
	if v, err = h.fold.number(state, "state"); err != nil {
		// The state is not the reducer's: it changed without a new
		// StateVersion. The commit fails, and so the flow, with why.
		return 0, false, fmt.Errorf("key %q: %w (did the reducer change without a new StateVersion?)", key, err)
	}
	return v, state != nil, nil
}

// covers reports whether a commit of floor and done covers seq.
func covers(seq, floor uint64, done []uint64) bool {
	if seq <= floor {
		return true
	}
	_, found := slices.BinarySearch(done, seq)
	return found
}

// foldValue returns key's encoded state cur with reductions folded in.
func (h *stateHook) foldValue(key string, cur []byte, ops []reduction) ([]byte, error) {
	if len(ops) == 0 {
		return cur, nil
	}
	v, has, err := h.number(key, cur)
	if err != nil {
		return nil, err
	}
	for _, op := range ops {
		v, has = h.fold.step(v, has, op.value), true
	}
	return encodeState(v)
}

// Get returns key's state as the events acked so far made it: the State's
// value with the key's queued reductions folded in.
func (h *stateHook) Get(key string) ([]byte, bool, error) {
	h.viewMu.RLock()
	defer h.viewMu.RUnlock()
	v, ok, err := h.State.Get(key)
	if err != nil || h.fold == nil {
		return v, ok, err
	}
	h.mu.Lock()
	var ops []reduction
	for op := range allOf(h.queue.chunks) {
		if op.key == key {
			ops = append(ops, op)
		}
	}
	h.mu.Unlock()
	if len(ops) == 0 {
		return v, ok, nil
	}
	v, err = h.foldValue(key, v, ops)
	return v, err == nil, err
}

// Items returns every key starting with prefix and its state, in key
// order, as Get does.
func (h *stateHook) Items(prefix string) ([]snapshot.Entry, error) {
	h.viewMu.RLock()
	defer h.viewMu.RUnlock()
	byKey := make(map[string][]reduction)
	h.mu.Lock()
	for op := range allOf(h.queue.chunks) {
		if strings.HasPrefix(op.key, prefix) {
			byKey[op.key] = append(byKey[op.key], op)
		}
	}
	h.mu.Unlock()
	entries, err := h.State.Items(prefix)
	if err != nil || len(byKey) == 0 {
		return entries, err
	}
	for i, e := range entries {
		if ops, ok := byKey[e.Key]; ok {
			delete(byKey, e.Key)
			if entries[i].Value, err = h.foldValue(e.Key, e.Value, ops); err != nil {
				return nil, err
			}
		}
	}
	for key, ops := range byKey {
		v, err := h.foldValue(key, nil, ops)
		if err != nil {
			return nil, err
		}
		entries = append(entries, snapshot.Entry{Key: key, Value: v})
	}
	slices.SortFunc(entries, func(a, b snapshot.Entry) int { return strings.Compare(a.Key, b.Key) })
	return entries, nil
}

// queueChunk is how many reductions one array of a reductionQueue holds.
const queueChunk = 4096

// reductionQueue holds reductions in order, in arrays of queueChunk that
// it reuses: a push never copies what is queued, and a queue that is
// folded and refilled allocates nothing.
type reductionQueue struct {
	chunks [][]reduction // in order; every one but the last may be partial
	free   [][]reduction // empty arrays to reuse
}

func (q *reductionQueue) push(op reduction) {
	n := len(q.chunks)
	if n == 0 || len(q.chunks[n-1]) == cap(q.chunks[n-1]) {
		q.chunks = append(q.chunks, q.chunk())
		n++
	}
	q.chunks[n-1] = append(q.chunks[n-1], op)
}

func (q *reductionQueue) chunk() []reduction {
	if n := len(q.free); n > 0 {
		c := q.free[n-1]
		q.free = q.free[:n-1]
		return c
	}
	return make([]reduction, 0, queueChunk)
}

// take empties the queue and returns what it held.
func (q *reductionQueue) take() [][]reduction {
	chunks := q.chunks
	q.chunks = nil
	return chunks
}

// prepend puts ops before what the queue holds.
func (q *reductionQueue) prepend(ops []reduction) {
	if len(ops) == 0 {
		return
	}
	later := q.chunks
	q.chunks = nil
	for _, op := range ops {
		q.push(op)
	}
	q.chunks = append(q.chunks, later...)
}

// recycle keeps the arrays of chunks, which take returned, for reuse.
func (q *reductionQueue) recycle(chunks [][]reduction) {
	for _, c := range chunks {
		clear(c)
		q.free = append(q.free, c[:0])
	}
}

// reset empties the queue.
func (q *reductionQueue) reset() {
	q.recycle(q.take())
}

// allOf iterates over the reductions of chunks, in order.
func allOf(chunks [][]reduction) iter.Seq[reduction] {
	return func(yield func(reduction) bool) {
		for _, c := range chunks {
			for _, op := range c {
				if !yield(op) {
					return
				}
			}
		}
	}
}
