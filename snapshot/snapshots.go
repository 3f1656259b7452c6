package snapshot

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/flowrt/flowrt/eventlog"
)

// Snapshot describes an immutable copy of a flow's state at a floor: the
// state after exactly the events at or below Floor.
type Snapshot struct {
	State   string    // the state's name
	Floor   uint64    // the ack floor the copy was taken at
	Version int       // the state definition's version (Meta.Version)
	Entries int       // keys in the copy
	Taken   time.Time // when the copy was committed (UTC)
}

// snapshotMeta is the msgpack record stored under snaps/<flow>/<floor>
// next to the copied keys' bucket.
type snapshotMeta struct {
	_msgpack struct{} `msgpack:",as_array"`
	Version  int
	Entries  int
	Taken    int64 // unix ns
}

// metaKey and dataBucket name the two parts of one snapshot's bucket.
var (
	metaKey    = []byte("m")
	dataBucket = []byte("d")
)

func floorKey(floor uint64) []byte { return binary.BigEndian.AppendUint64(nil, floor) }

// Take snapshots a state at its consumer's committed floor, in one
// transaction: the state's committed values change only in the
// transactions that commit that floor, so the copy is exactly the state
// after the events at or below it. The stream's retention guard (see
// Guard) moves up to the snapshot's floor. A snapshot at the same floor is
// replaced: it holds the same state.
//
// A clean stop commits the changes of the events done above the floor too.
// Until the floor passes them the state is ahead of it, and settled, when
// not nil, must say so (in the same transaction) by returning an error,
// which Take returns wrapped in ErrNotSettled.
func Take(j Journal, name, stream, consumer string, settled func(tx *eventlog.Tx) error) (Snapshot, error) {
	var snap Snapshot
	err := j.Update(func(tx *eventlog.Tx) error {
		if settled != nil {
			if err := settled(tx); err != nil {
				return fmt.Errorf("%w: %w", ErrNotSettled, err)
			}
		}
		floor, _, err := tx.Offset(stream, consumer)
		if err != nil {
			return err
		}
		b, err := stateBucket(tx, name)
		if err != nil {
			return err
		}
		meta, err := readMeta(tx, name)
		if err != nil {
			return err
		}
		snaps, err := nested(tx, bucketSnaps, []byte(name))
		if err != nil {
			return err
		}
		if err := snaps.DeleteBucket(floorKey(floor)); err != nil {
			return err
		}
		one, err := snaps.Bucket(floorKey(floor))
		if err != nil {
			return err
		}
		data, err := one.Bucket(dataBucket)
		if err != nil {
			return err
		}
		n, err := copyBucket(data, b)
		if err != nil {
			return err
		}
		snap = Snapshot{State: name, Floor: floor, Version: meta.Version, Entries: n, Taken: time.Now().UTC()}
		rec, err := msgpack.Marshal(&snapshotMeta{Version: snap.Version, Entries: n, Taken: snap.Taken.UnixNano()})
		if err != nil {
			return err
		}
		if err := one.Put(metaKey, rec); err != nil {
			return err
		}
		return tx.ResetOffset(stream, GuardName(name), floor)
	})
	if err != nil {
		return Snapshot{}, fmt.Errorf("flowrt/snapshot: snapshot %s: %w", name, err)
	}
	return snap, nil
}

// GuardName is the consumer name of a state's retention guard: an offset
// on the flow's stream at the newest snapshot's floor (0 before the
// first), so that truncation that respects consumers keeps every event a
// rebuild from that snapshot replays.
func GuardName(state string) string { return "$snapshot." + state }

// Guard registers a state's retention guard on stream if it has none,
// within tx.
func Guard(tx *eventlog.Tx, state, stream string) error {
	if _, ok, err := tx.Offset(stream, GuardName(state)); err != nil || ok {
		return err
	}
	return tx.ResetOffset(stream, GuardName(state), 0)
}

// Snapshots lists a state's snapshots, oldest floor first.
func Snapshots(j Journal, name string) ([]Snapshot, error) {
	var out []Snapshot
	err := j.View(func(tx *eventlog.Tx) error {
		snaps, err := nested(tx, bucketSnaps, []byte(name))
		if err != nil || snaps == nil {
			return err
		}
		for k := range snaps.Items(nil) {
			one, err := snaps.Bucket(k)
			if err != nil {
				return err
			}
			var m snapshotMeta
			if err := msgpack.Unmarshal(one.Get(metaKey), &m); err != nil {
				return fmt.Errorf("%w: snapshot %d of %s: %v", ErrCorrupt, binary.BigEndian.Uint64(k), name, err)
			}
			out = append(out, Snapshot{State: name, Floor: binary.BigEndian.Uint64(k), Version: m.Version, Entries: m.Entries, Taken: time.Unix(0, m.Taken).UTC()})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("flowrt/snapshot: list snapshots of %s: %w", name, err)
	}
	return out, nil
}

// ReadSnapshot returns the entries of the snapshot of a state at floor,
// in key order.
func ReadSnapshot(j Journal, name string, floor uint64) ([]Entry, error) {
	var out []Entry
	err := j.View(func(tx *eventlog.Tx) error {
		snaps, err := nested(tx, bucketSnaps, []byte(name))
		if err != nil || snaps == nil {
			return err
		}
		data, err := snapshotData(snaps, floor)
		if err != nil {
			return err
		}
		for k, v := range data.Items(nil) {
			out = append(out, Entry{Key: string(k), Value: bytes.Clone(v)})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("flowrt/snapshot: read snapshot %d of %s: %w", floor, name, err)
	}
	return out, nil
}

// DropSnapshots removes the snapshots of a state below floor, keeping the
// newest keep of them.
func DropSnapshots(j Journal, name string, keep int) (int, error) {
	list, err := Snapshots(j, name)
	if err != nil || len(list) <= keep {
		return 0, err
	}
	drop := list[:len(list)-keep]
	err = j.Update(func(tx *eventlog.Tx) error {
		snaps, err := nested(tx, bucketSnaps, []byte(name))
		if err != nil {
			return err
		}
		for _, s := range drop {
			if err := snaps.DeleteBucket(floorKey(s.Floor)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("flowrt/snapshot: drop snapshots of %s: %w", name, err)
	}
	return len(drop), nil
}

// Meta is what the journal records about a state.
type Meta struct {
	_msgpack struct{} `msgpack:",as_array"`
	// Version is the version of the state's definition the committed
	// values were computed with. A different version needs a rebuild.
	Version int
	// Rebuilt is the floor a rebuild last replayed up to (0: never).
	Rebuilt uint64
}

// ReadMeta returns a state's Meta; ok is false for a state never written.
func ReadMeta(j Journal, name string) (m Meta, ok bool, err error) {
	err = j.View(func(tx *eventlog.Tx) error {
		b, err := nested(tx, bucketMeta)
		if err != nil || b == nil {
			return err
		}
		ok = b.Get([]byte(name)) != nil
		m, err = readMeta(tx, name)
		return err
	})
	return m, ok, err
}

func readMeta(tx *eventlog.Tx, name string) (Meta, error) {
	var m Meta
	b, err := nested(tx, bucketMeta)
	if err != nil || b == nil {
		return m, err
	}
	v := b.Get([]byte(name))
	if v == nil {
		return m, nil
	}
	if err := msgpack.Unmarshal(v, &m); err != nil {
		return m, fmt.Errorf("%w: meta of %s: %v", ErrCorrupt, name, err)
	}
	return m, nil
}

// WriteMeta records a state's Meta within tx.
func WriteMeta(tx *eventlog.Tx, name string, m Meta) error {
	b, err := nested(tx, bucketMeta)
	if err != nil {
		return err
	}
	v, err := msgpack.Marshal(&m)
	if err != nil {
		return err
	}
	return b.Put([]byte(name), v)
}

// Reset replaces a state's committed values within tx: with the copy held
// by the snapshot at floor, or with nothing when floor is 0. Staged
// changes are the caller's to discard (a rebuild runs before the flow).
func Reset(tx *eventlog.Tx, name string, floor uint64) error {
	root, err := nested(tx, bucketState)
	if err != nil {
		return err
	}
	if err := root.DeleteBucket([]byte(name)); err != nil {
		return err
	}
	b, err := root.Bucket([]byte(name))
	if err != nil || floor == 0 {
		return err
	}
	snaps, err := nested(tx, bucketSnaps, []byte(name))
	if err != nil {
		return err
	}
	data, err := snapshotData(snaps, floor)
	if err != nil {
		return err
	}
	_, err = copyBucket(b, data)
	return err
}

// snapshotData returns the bucket holding the copied keys of the
// snapshot at floor.
func snapshotData(snaps *eventlog.Bucket, floor uint64) (*eventlog.Bucket, error) {
	one, err := snaps.Bucket(floorKey(floor))
	if err != nil {
		return nil, err
	}
	return one.Bucket(dataBucket)
}

// copyBucket copies every key of src into dst and returns how many.
func copyBucket(dst, src *eventlog.Bucket) (int, error) {
	n := 0
	for k, v := range src.Items(nil) {
		if err := dst.Put(bytes.Clone(k), bytes.Clone(v)); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// Put writes one committed value within tx, for rebuilds.
func Put(tx *eventlog.Tx, name string, c Change) error {
	b, err := stateBucket(tx, name)
	if err != nil {
		return err
	}
	if c.Deleted {
		return b.Delete([]byte(c.Key))
	}
	return b.Put([]byte(c.Key), c.Value)
}
