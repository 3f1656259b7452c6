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
}

// covered reports whether a commit of floor and done covers seq.
func covered(seq, floor uint64, done []uint64) bool {
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
	for _, c := range changes {
		if c.Deleted {
			err = b.Delete([]byte(c.Key))
		} else {
			err = b.Put([]byte(c.Key), c.Value)
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
			if covered(p.seq, floor, done) {
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
			if covered(p.seq, floor, done) {
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
		ks.staged = slices.DeleteFunc(ks.staged, func(p pending) bool { return covered(p.seq, floor, done) })
		if len(ks.staged) == 0 {
			ks.staged = nil
			delete(s.dirty, key)
		}
	}
	if len(s.keys) > cacheLimit {
		// Forget the committed values; keep the keys with staged changes.
		clear(s.keys)
		for k, ks := range s.dirty {
			s.keys[k] = ks
		}
	}
}

// Get returns key's current value: the latest staged change, else the
// committed value. ok is false when the key has no value. The value must
// not be modified.
func (s *State) Get(key string) (value []byte, ok bool, err error) {
	s.mu.Lock()
	if ks := s.keys[key]; ks != nil {
		if n := len(ks.staged); n > 0 {
			c := ks.staged[n-1]
			s.mu.Unlock()
			return c.Value, !c.Deleted, nil
		}
		if ks.known {
			s.mu.Unlock()
			return ks.committed, ks.committed != nil, nil
		}
	}
	s.mu.Unlock()
	err = s.j.View(func(tx *eventlog.Tx) error {
		b, err := s.bucket(tx)
		if err != nil || b == nil {
			return err
		}
		value = b.Get([]byte(key))
		return nil
	})
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
