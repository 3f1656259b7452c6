package runtime

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/snapshot"
)

// A reduce step runs in one of two ways:
//
//   - Applied: the step reads the key's state, applies the reducer and
//     keeps the new value in the attempt; an acked attempt's values are
//     staged in the State. last, recent, a Go Reducer, a reduce whose
//     result a later step reads (As), and every rebuild run this way: the
//     reducer's errors then fail the event.
//   - Folded: the step only checks and keeps the value reduced; an acked
//     attempt's reductions queue in the hook, and the commit that covers
//     them folds them into the state. The built-in numeric reducers (count,
//     sum, min, max: commutative, and unable to fail on a finite number
//     short of overflowing) run this way when nothing reads their result:
//     the worker neither reads nor encodes state, and a key's state is
//     decoded and encoded once per commit instead of once per event.
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

// newAttempt returns an attempt whose reduce step applies its reducer to
// the state read from from: the live State, or a rebuild's overlay.
func newAttempt(from stateReader) *attemptState {
	a := attempts.Get().(*attemptState)
	a.from, a.changes, a.ops = from, a.first[:0], a.firstOp[:0]
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
// reductions queued, before the floor can pass its event. It is safe for
// concurrent use.
type stateHook struct {
	*snapshot.State
	// fold is the built-in reducer a folding flow's commits apply; nil
	// when the reduce step applies its reducer.
	fold *numericReducer

	mu       sync.Mutex // guards attempts and queue
	attempts map[uint64]*attemptState
	queue    reductionQueue // acked reductions not yet folded, in the order acked

	// moving is odd while a fold (or Discard) moves reductions between
	// the queue and the State, which it does holding viewMu: reads retry
	// until they ran wholly between two moves, so they never see a
	// reduction in neither place, nor in both, and do not hold up a fold.
	moving atomic.Uint64
	viewMu sync.Mutex

	// foldMu serializes commits and Discard, and guards what follows:
	// foldQueue's buffers are kept from one commit to the next.
	foldMu sync.Mutex
	failed error // a fold failed: every commit fails until Discard
	index  map[string]int
	folds  []keyFold
}

var _ consumer.OutcomeHook = (*stateHook)(nil)

func newStateHook(st *snapshot.State) *stateHook {
	return &stateHook{State: st, attempts: map[uint64]*attemptState{}}
}

// attempt returns a new attempt of the live flow: folded when the flow's
// reductions are.
func (h *stateHook) attempt() *attemptState {
	a := newAttempt(h.State)
	a.fold = h.fold != nil
	return a
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
	defer h.move()()
	h.mu.Lock()
	h.queue.reset()
	h.mu.Unlock()
	h.failed = nil
	h.State.Discard()
}

// move marks the start of a move of reductions between the queue and the
// State, and returns its end.
func (h *stateHook) move() (end func()) {
	h.viewMu.Lock()
	h.moving.Add(1)
	return func() {
		h.moving.Add(1)
		h.viewMu.Unlock()
	}
}

// read runs fn until it ran wholly between two moves. After a few tries
// overtaken by moves (a long read of a large state, commits every few
// milliseconds), it runs fn holding the moves off.
func (h *stateHook) read(fn func() error) error {
	for range readTries {
		before := h.moving.Load()
		if before%2 == 1 {
			h.viewMu.Lock() // wait for the move to end
			h.viewMu.Unlock()
			continue
		}
		if err := fn(); err != nil || h.moving.Load() == before {
			return err
		}
	}
	h.viewMu.Lock()
	defer h.viewMu.Unlock()
	return fn()
}

// readTries is how many times a read tries between moves.
const readTries = 4

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

// foldQueue stages, for each key, the queued reductions that a commit of
// floor and done covers, folded into the key's current state, at the
// highest of their sequences; the others stay queued for a later commit.
// A fold stages only inside a commit, whose Committed (or the flow's
// restart) clears what it staged, so the key's current state is the base
// this commit writes onto. The folded reducers are commutative, so the
// order in which the covered reductions fold does not matter.
func (h *stateHook) foldQueue(tx *eventlog.Tx, floor uint64, done []uint64) error {
	h.mu.Lock()
	empty := len(h.queue.chunks) == 0
	h.mu.Unlock()
	if empty {
		return nil // no move: reads go on undisturbed
	}
	defer h.move()()
	h.mu.Lock()
	queue := h.queue.take() // what is acked meanwhile queues anew
	h.mu.Unlock()
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
		if !snapshot.Covers(op.seq, floor, done) {
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
		kf.v, kf.has, kf.last = h.fold.step(kf.v, kf.has, op.value), true, max(kf.last, op.seq)
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
	last uint64  // the highest sequence of the reductions folded
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
func (h *stateHook) Get(key string) (v []byte, ok bool, err error) {
	if h.fold == nil {
		return h.State.Get(key)
	}
	err = h.read(func() error {
		if v, ok, err = h.State.Get(key); err != nil {
			return err
		}
		if ops := h.queued(func(k string) bool { return k == key })[key]; len(ops) > 0 {
			v, err = h.foldValue(key, v, ops)
			ok = err == nil
		}
		return err
	})
	return v, ok, err
}

// Items returns every key starting with prefix and its state, in key
// order, as Get does.
func (h *stateHook) Items(prefix string) (entries []snapshot.Entry, err error) {
	if h.fold == nil {
		return h.State.Items(prefix)
	}
	err = h.read(func() error {
		if entries, err = h.State.Items(prefix); err != nil {
			return err
		}
		byKey := h.queued(func(k string) bool { return strings.HasPrefix(k, prefix) })
		for i, e := range entries {
			if ops, ok := byKey[e.Key]; ok {
				delete(byKey, e.Key)
				if entries[i].Value, err = h.foldValue(e.Key, e.Value, ops); err != nil {
					return err
				}
			}
		}
		for key, ops := range byKey {
			v, err := h.foldValue(key, nil, ops)
			if err != nil {
				return err
			}
			entries = append(entries, snapshot.Entry{Key: key, Value: v})
		}
		slices.SortFunc(entries, func(a, b snapshot.Entry) int { return strings.Compare(a.Key, b.Key) })
		return nil
	})
	return entries, err
}

// queued returns the queued reductions of the keys match accepts, by key.
func (h *stateHook) queued(match func(key string) bool) map[string][]reduction {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string][]reduction)
	for op := range allOf(h.queue.chunks) {
		if match(op.key) {
			out[op.key] = append(out[op.key], op)
		}
	}
	return out
}
