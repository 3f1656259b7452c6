package eventlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Tx is a transaction on the journal, handed to the function given to
// Log.Update or Log.View. Through it flowrt's packages append events, move
// consumer offsets and keep their own records in a namespace, all committed
// atomically. A Tx is not safe for concurrent use and must not be kept after
// the function returns.
type Tx struct {
	log     *Log
	btx     *bolt.Tx
	streams map[string]*streamTx
	dec     *decoder
}

// streamTx is a stream's buckets and head as staged in one transaction.
type streamTx struct {
	name   string
	events *bolt.Bucket // e/<stream>
	ids    *bolt.Bucket // i/<stream>
	head   head
	dirty  bool

	tagBase uint32 // see idTagBase

	// pending holds records appended in this transaction but not yet
	// written (their chunk is being built), for duplicate checks.
	pending map[uint64][]byte
}

// head is a stream's durable summary, stored under its name in heads/:
//
//	+------------+----------------+---------------+-----------+
//	| last 8B BE | last time 8B BE| bytes 8B BE   | CRC32C 4B |
//	+------------+----------------+---------------+-----------+
//
// last is the highest sequence ever assigned, kept even when retention has
// removed every event, so sequences never restart.
type head struct {
	last     uint64
	lastTime int64 // unix ns
	bytes    uint64
}

const headSize = 28

func (h head) encode() []byte {
	b := make([]byte, headSize)
	binary.BigEndian.PutUint64(b[0:], h.last)
	binary.BigEndian.PutUint64(b[8:], uint64(h.lastTime))
	binary.BigEndian.PutUint64(b[16:], h.bytes)
	binary.BigEndian.PutUint32(b[24:], crc32.Checksum(b[:24], castagnoli))
	return b
}

func decodeHead(b []byte) (head, error) {
	if len(b) != headSize {
		return head{}, fmt.Errorf("stream head is %d bytes, want %d", len(b), headSize)
	}
	if crc32.Checksum(b[:24], castagnoli) != binary.BigEndian.Uint32(b[24:]) {
		return head{}, errors.New("stream head fails its CRC32C")
	}
	return head{
		last:     binary.BigEndian.Uint64(b[0:]),
		lastTime: int64(binary.BigEndian.Uint64(b[8:])),
		bytes:    binary.BigEndian.Uint64(b[16:]),
	}, nil
}

func newTx(l *Log, btx *bolt.Tx) *Tx {
	return &Tx{log: l, btx: btx, streams: make(map[string]*streamTx)}
}

// Writable reports whether the Tx can write.
func (tx *Tx) Writable() bool { return tx.btx.Writable() }

func (tx *Tx) decoder() *decoder {
	if tx.dec == nil {
		tx.dec = newDecoder()
	}
	return tx.dec
}

func (tx *Tx) corrupt(stream string, seq uint64, err error) error {
	return &CorruptError{Path: tx.log.path, Stream: stream, Seq: seq, Err: err}
}

// lookup says whether stream creates a missing stream.
type lookup uint8

const (
	existing lookup = iota // a missing stream is ErrNotFound
	orCreate               // a missing stream is created (in a write Tx)
)

// stream returns the stream's staged state. A missing stream is created
// under orCreate in a writable Tx; otherwise it is ErrNotFound.
func (tx *Tx) stream(name string, mode lookup) (*streamTx, error) {
	if st, ok := tx.streams[name]; ok {
		return st, nil
	}
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	heads := tx.btx.Bucket(bucketHeads)
	hv := heads.Get([]byte(name))
	if hv == nil {
		if mode != orCreate || !tx.Writable() {
			return nil, fmt.Errorf("%w: stream %q", ErrNotFound, name)
		}
		for _, b := range [][]byte{eventsBucket(name), idsBucket(name)} {
			if _, err := tx.btx.CreateBucket(b); errors.Is(err, berrors.ErrBucketExists) {
				return nil, tx.corrupt(name, 0, fmt.Errorf("bucket %q exists but the stream has no head", b))
			} else if err != nil {
				return nil, err
			}
		}
		hv = head{}.encode()
		if err := heads.Put([]byte(name), hv); err != nil {
			return nil, err
		}
	}
	h, err := decodeHead(hv)
	if err != nil {
		return nil, tx.corrupt(name, 0, err)
	}
	st := &streamTx{
		name:    name,
		events:  tx.btx.Bucket(eventsBucket(name)),
		ids:     tx.btx.Bucket(idsBucket(name)),
		head:    h,
		tagBase: tx.log.idTagBase(name),
	}
	if st.events == nil || st.ids == nil {
		return nil, tx.corrupt(name, 0, errors.New("stream has a head but lacks its events or ids bucket"))
	}
	if !tx.Writable() {
		tx.streams[name] = st
		return st, nil
	}
	// Appends arrive in key order: fill pages instead of splitting them in
	// half. FillPercent is not persisted, so set it on every write Tx.
	st.events.FillPercent = 1.0
	st.ids.FillPercent = 1.0
	tx.streams[name] = st
	return st, nil
}

// flush writes the heads of the streams this Tx changed.
func (tx *Tx) flush() error {
	heads := tx.btx.Bucket(bucketHeads)
	for _, st := range tx.streams {
		if st.dirty {
			if err := heads.Put([]byte(st.name), st.head.encode()); err != nil {
				return err
			}
		}
	}
	return nil
}

// first returns the lowest retained sequence, or last+1 when none is.
func (st *streamTx) first() uint64 {
	if k, _ := st.events.Cursor().First(); k != nil {
		return binary.BigEndian.Uint64(k)
	}
	return st.head.last + 1
}

// nextTime is the time for the next appended events: now, but never
// earlier than the stream's last time.
func (st *streamTx) nextTime() time.Time {
	now := time.Now().UTC()
	if last := time.Unix(0, st.head.lastTime); now.Before(last) {
		return last.UTC()
	}
	return now
}

// Namespace returns the key-value bucket owned by one flowrt package (for
// example "consumer" or "snapshot"), creating it in a write Tx. In a
// read-only Tx a missing namespace is ErrNotFound.
func (tx *Tx) Namespace(name string) (*Bucket, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	root := tx.btx.Bucket(bucketNamespaces)
	if b := root.Bucket([]byte(name)); b != nil {
		return &Bucket{b: b}, nil
	}
	if !tx.Writable() {
		return nil, fmt.Errorf("%w: namespace %q", ErrNotFound, name)
	}
	b, err := root.CreateBucket([]byte(name))
	if err != nil {
		return nil, err
	}
	return &Bucket{b: b}, nil
}
