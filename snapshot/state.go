package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync"

	"github.com/flowrt/flowrt/eventlog"
)

// Journal is what State needs of a journal: its transactions. The state
// lives in the journal's own file, so it can commit with the ack floor.
type Journal interface {
	Update(fn func(*eventlog.Tx) error) error
	View(fn func(*eventlog.Tx) error) error
}

// namespace is the journal namespace this package owns. Inside it:
//
//	state/<flow>/<key>            the committed value of key
//	meta/<flow>                   the state's Meta (msgpack)
//	snaps/<flow>/<floor BE 8B>/…  an immutable copy of state/<flow> at floor
const namespace = "snapshot"

var (
	bucketState = []byte("state")
	bucketMeta  = []byte("meta")
	bucketSnaps = []byte("snaps")
)

// Change is one key's new value, or its deletion.
type Change struct {
	Key     string
	Value   []byte
	Deleted bool
}

// pending is a change made by an event that is done but not yet covered by
// a committed floor.
type pending struct {
	seq uint64
	Change
}

// State is one flow's keyed state, committed with the flow's ack floor.
//
// Handlers stage each event's changes once the event is done (Stage).
// State is a consumer.CommitHook: the transaction that commits the floor
// writes the staged changes of every event it covers, and nothing else.
// After a crash, the committed state is therefore exactly the effect of
// the events at or below the committed floor; the events above it are
// delivered again and apply once more, to that state.
//
// Reads (Get, Items) see the committed values overlaid with the staged
// ones: what the events done so far have made. A State is safe for
// concurrent use.
type State struct {
	j    Journal
	name string

	mu sync.Mutex
	// keys holds, per key read or changed, its staged changes and the
	// committed value when known, so reads need no transaction: committed
	// values change only in the commits of this State, which update it.
	// Discard clears it.
	keys map[string]*keyState
	// dirty holds the keys with staged changes.
	dirty map[string]*keyState
	// filled is set once a read has tried to load every committed value
	// into keys (fill), and complete once that worked: keys then holds
	// every key with a committed value, so a key missing from it has
	// none. Discard clears both; a cache overflow clears complete.
	filled, complete bool
	gen              uint64 // counts Discards, so a fill they overtake is dropped
}

// keyState is what a State knows of one key.
type keyState struct {
	staged    []pending // in sequence order
	committed []byte    // the committed value, nil for none
	known     bool      // committed is known
}

// key returns the key's state, creating it.
func (s *State) key(k string) *keyState {
	ks := s.keys[k]
	if ks == nil {
		ks = &keyState{}
		s.keys[k] = ks
	}
	return ks
}

// cacheLimit bounds the keys a State keeps in memory; past it, it forgets
// the committed values it knows.
const cacheLimit = 1 << 18

// Open returns the state of the named flow (a valid journal name).
func Open(j Journal, name string) (*State, error) {
	if err := eventlog.ValidateName(name); err != nil {
		return nil, fmt.Errorf("flowrt/snapshot: state name: %w", err)
	}
	return &State{j: j, name: name, keys: map[string]*keyState{}, dirty: map[string]*keyState{}}, nil
}

// Name returns the state's name.
func (s *State) Name() string { return s.name }

// Stage records the changes made by event seq, which is done: they become
// visible to reads at once and durable with the first commit whose floor
// covers seq. Events of one key must be staged in sequence order.
func (s *State) Stage(seq uint64, changes []Change) {
	if len(changes) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range changes {
		ks := s.key(c.Key)
		if len(ks.staged) == 0 {
			s.dirty[c.Key] = ks
		}
		ks.staged = append(ks.staged, pending{seq: seq, Change: c})
	}
}

// Discard drops every staged change: for a consumer that restarts, whose
// events above the committed floor will be delivered again.
func (s *State) Discard() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.keys)
	clear(s.dirty)
	s.filled, s.complete = false, false
	s.gen++
}

// Covers reports whether a commit of floor and done (sorted) covers event
// seq: the events at or below the floor, and those in done.
func Covers(seq, floor uint64, done []uint64) bool {
	if seq <= floor {
		return true
	}
	_, found := slices.BinarySearch(done, seq)
	return found
}

// Commit writes, in the floor's transaction, the latest staged change of
// each key made by an event the commit covers. done must be sorted.
func (s *State) Commit(tx *eventlog.Tx, floor uint64, done []uint64) error {
	b, err := s.bucket(tx)
	if err != nil {
		return err
	}
	// Pick the changes under the lock, write them without it: handlers
	// keep staging and reading meanwhile. In key order, bbolt's cursor
	// moves forward through the pages instead of seeking at random.
	changes := s.covered(floor, done)
	slices.SortFunc(changes, func(a, b Change) int { return strings.Compare(a.Key, b.Key) })
	// The journal holds the keys until the transaction ends: one array
	// for all of them.
	n := 0
	for _, c := range changes {
		n += len(c.Key)
	}
	keys := make([]byte, 0, n)
	for _, c := range changes {
		keys = append(keys, c.Key...)
		key := keys[len(keys)-len(c.Key):]
		if c.Deleted {
			err = b.Delete(key)
		} else {
			err = b.Put(key, c.Value)
		}
		if err != nil {
			return fmt.Errorf("flowrt/snapshot: write %q of %s: %w", c.Key, s.name, err)
		}
	}
	return nil
}

// covered returns, per key, the latest staged change a commit of floor and
// done covers.
func (s *State) covered(floor uint64, done []uint64) []Change {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Change
	for _, ks := range s.dirty {
		ps := ks.staged
		last := -1
		for i, p := range ps {
			if Covers(p.seq, floor, done) {
				last = i
			}
		}
		if last >= 0 {
			out = append(out, ps[last].Change)
		}
	}
	return out
}

// Committed drops the staged changes the committed transaction wrote, and
// keeps the values it wrote as the committed ones.
func (s *State) Committed(floor uint64, done []uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, ks := range s.dirty {
		last := -1
		for i, p := range ks.staged {
			if Covers(p.seq, floor, done) {
				last = i
			}
		}
		if last < 0 {
			continue
		}
		c := ks.staged[last]
		ks.committed, ks.known = c.Value, true
		if c.Deleted {
			ks.committed = nil
		}
		// The slice keeps its array for the key's next changes.
		ks.staged = slices.DeleteFunc(ks.staged, func(p pending) bool { return Covers(p.seq, floor, done) })
		if len(ks.staged) == 0 {
			delete(s.dirty, key)
		}
	}
	if len(s.keys) > cacheLimit {
		// Forget the committed values; keep the keys with staged changes.
		clear(s.keys)
		for k, ks := range s.dirty {
			s.keys[k] = ks
		}
		s.complete = false
	}
}

// Get returns key's current value: the latest staged change, else the
// committed value. ok is false when the key has no value. The value must
// not be modified.
func (s *State) Get(key string) (value []byte, ok bool, err error) {
	return s.get(key, s.j.View)
}

// GetTx is Get for a commit hook, inside the commit's transaction: it
// reads what the cache does not know through tx, instead of a transaction
// of its own.
func (s *State) GetTx(tx *eventlog.Tx, key string) (value []byte, ok bool, err error) {
	return s.get(key, func(fn func(*eventlog.Tx) error) error { return fn(tx) })
}

// get is Get, reading the journal through view.
func (s *State) get(key string, view func(func(*eventlog.Tx) error) error) (value []byte, ok bool, err error) {
	value, ok, found := s.cached(key)
	if found {
		return value, ok, nil
	}
	s.mu.Lock()
	fill, gen := !s.filled, s.gen
	s.filled = true
	s.mu.Unlock()
	if fill {
		// The first miss loads every committed value in one pass, instead
		// of a read transaction per key.
		if err := s.fill(gen, view); err != nil {
			return nil, false, err
		}
		if value, ok, found := s.cached(key); found {
			return value, ok, nil
		}
	}
	value, err = s.read(key, view)
	if err != nil {
		return nil, false, err
	}
	s.mu.Lock()
	// A commit meanwhile may have recorded a newer value: keep it.
	if ks := s.key(key); !ks.known {
		ks.committed, ks.known = value, true
	}
	s.mu.Unlock()
	return value, value != nil, nil
}

// read returns key's committed value. Its own function, so that the
// transaction's closure does not move get's results to the heap.
func (s *State) read(key string, view func(func(*eventlog.Tx) error) error) (value []byte, err error) {
	err = view(func(tx *eventlog.Tx) error {
		b, err := s.bucket(tx)
		if err != nil || b == nil {
			return err
		}
		value = b.Get([]byte(key))
		return nil
	})
	return value, err
}

// cached returns what the cache knows of key: found is false when only
// the journal can tell.
func (s *State) cached(key string) (value []byte, ok, found bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ks := s.keys[key]; ks != nil {
		if n := len(ks.staged); n > 0 {
			c := ks.staged[n-1]
			return c.Value, !c.Deleted, true
		}
		if ks.known {
			return ks.committed, ks.committed != nil, true
		}
	}
	return nil, false, s.complete
}

// fill loads the committed values into the cache, all of them unless they
// number more than cacheLimit. Values committed meanwhile are newer than
// those it read, and are kept; a Discard meanwhile (gen changed) drops
// what it read.
func (s *State) fill(gen uint64, view func(func(*eventlog.Tx) error) error) error {
	var keys []string
	var values [][]byte
	all := true
	err := view(func(tx *eventlog.Tx) error {
		b, err := s.bucket(tx)
		if err != nil || b == nil {
			return err
		}
		for k, v := range b.Items(nil) {
			if len(keys) == cacheLimit {
				all = false
				break
			}
			keys, values = append(keys, string(k)), append(values, bytes.Clone(v))
		}
		return nil
	})
	if err != nil {
		s.mu.Lock()
		if s.gen == gen {
			s.filled = false // the next miss tries again
		}
		s.mu.Unlock()
		return fmt.Errorf("flowrt/snapshot: load state of %s: %w", s.name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen {
		return nil
	}
	for i, k := range keys {
		if ks := s.key(k); !ks.known {
			ks.committed, ks.known = values[i], true
		}
	}
	s.complete = all
	return nil
}

// Entry is one key's value.
type Entry struct {
	Key   string
	Value []byte
}

// Items returns every key starting with prefix ("" for all) and its
// current value, in key order.
func (s *State) Items(prefix string) ([]Entry, error) {
	// The staged changes first: a commit between the two reads moves them
	// to the committed values, which the second read then sees.
	s.mu.Lock()
	overlay := make(map[string]Change)
	for key, ks := range s.dirty {
		if strings.HasPrefix(key, prefix) {
			overlay[key] = ks.staged[len(ks.staged)-1].Change
		}
	}
	s.mu.Unlock()
	committed, err := Read(s.j, s.name, prefix)
	if err != nil {
		return nil, err
	}
	out := committed[:0:0]
	for _, e := range committed {
		if c, ok := overlay[e.Key]; ok {
			delete(overlay, e.Key)
			if c.Deleted {
				continue
			}
			e.Value = bytes.Clone(c.Value)
		}
		out = append(out, e)
	}
	for key, c := range overlay {
		if !c.Deleted {
			out = append(out, Entry{Key: key, Value: bytes.Clone(c.Value)})
		}
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// Read returns the committed values of a flow's state whose keys start
// with prefix, in key order: what survives a crash. It works on a journal
// opened read-only.
func Read(j Journal, name, prefix string) ([]Entry, error) {
	var out []Entry
	err := j.View(func(tx *eventlog.Tx) error {
		b, err := stateBucket(tx, name)
		if err != nil || b == nil {
			return err
		}
		for k, v := range items(b, prefix) {
			out = append(out, Entry{Key: string(k), Value: bytes.Clone(v)})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("flowrt/snapshot: read state of %s: %w", name, err)
	}
	return out, nil
}

func items(b *eventlog.Bucket, prefix string) iter.Seq2[[]byte, []byte] {
	return b.Items([]byte(prefix))
}

// bucket returns the state's bucket: created in a write Tx, nil (and no
// error) in a read Tx when the state has never been committed.
func (s *State) bucket(tx *eventlog.Tx) (*eventlog.Bucket, error) {
	return stateBucket(tx, s.name)
}

func stateBucket(tx *eventlog.Tx, name string) (*eventlog.Bucket, error) {
	return nested(tx, bucketState, []byte(name))
}

// nested returns the bucket at path inside the namespace: created in a
// write Tx, nil without error in a read Tx when it does not exist.
func nested(tx *eventlog.Tx, path ...[]byte) (*eventlog.Bucket, error) {
	b, err := tx.Namespace(namespace)
	for _, name := range path {
		if err != nil {
			break
		}
		b, err = b.Bucket(name)
	}
	if errors.Is(err, eventlog.ErrNotFound) && !tx.Writable() {
		return nil, nil
	}
	return b, err
}
