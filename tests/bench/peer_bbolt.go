package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/vmihailenco/msgpack/v5"
	bolt "go.etcd.io/bbolt"
)

// eventType is the type of every benchmark event, in bbolt's values and in
// flowrt's events.
const eventType = "bench.event"

var boltBucket = []byte("events")

// boltEvent is the value a bbolt-backed event store would keep: a ULID, the
// type, the time and the payload, msgpack-encoded (319 B for a 256 B payload
// as BASELINE.md measured it; the exact size is printed in the header).
type boltEvent struct {
	ID   ulid.ULID
	Type string
	Time int64
	Data []byte
}

// encodeBoltEvent returns the msgpack value for one record, with a new ULID
// and the current time.
func encodeBoltEvent(rec []byte) ([]byte, error) {
	v, err := msgpack.Marshal(&boltEvent{ID: ulid.Make(), Type: eventType, Time: time.Now().UnixNano(), Data: rec})
	if err != nil {
		return nil, fmt.Errorf("bench/bbolt: encode: %w", err)
	}
	return v, nil
}

// boltCommit says how boltLog.Append commits.
type boltCommit int

const (
	boltUpdate boltCommit = iota // one DB.Update per Append
	boltBatch                    // DB.Batch: concurrent Appends share a commit
)

// boltLog stores each record under the bucket's next sequence, as an 8-byte
// big-endian key, in a bbolt file opened with default options. Values are
// encoded before the transaction, outside bbolt's writer lock. Safe for
// concurrent use.
type boltLog struct {
	db     *bolt.DB
	commit boltCommit
}

// openBolt opens a fresh bbolt file. A non-zero maxBatchDelay replaces
// DB.MaxBatchDelay (default 10 ms) before any use.
func openBolt(dir string, commit boltCommit, maxBatchDelay time.Duration) (*boltLog, error) {
	db, err := bolt.Open(filepath.Join(dir, "bolt.db"), 0o600, nil)
	if err != nil {
		return nil, fmt.Errorf("bench/bbolt: open: %w", err)
	}
	if maxBatchDelay > 0 {
		db.MaxBatchDelay = maxBatchDelay
	}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(boltBucket)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("bench/bbolt: create bucket: %w", err)
	}
	return &boltLog{db: db, commit: commit}, nil
}

// put stores one encoded value under the next sequence.
func put(tx *bolt.Tx, value []byte) error {
	b := tx.Bucket(boltBucket)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	return b.Put(binary.BigEndian.AppendUint64(nil, seq), value)
}

func (l *boltLog) Append(rec []byte) error {
	v, err := encodeBoltEvent(rec)
	if err != nil {
		return err
	}
	fn := func(tx *bolt.Tx) error { return put(tx, v) }
	if l.commit == boltBatch {
		err = l.db.Batch(fn)
	} else {
		err = l.db.Update(fn)
	}
	if err != nil {
		return fmt.Errorf("bench/bbolt: commit: %w", err)
	}
	return nil
}

func (l *boltLog) AppendBatch(recs [][]byte) error {
	values := make([][]byte, len(recs))
	for i, rec := range recs {
		v, err := encodeBoltEvent(rec)
		if err != nil {
			return err
		}
		values[i] = v
	}
	err := l.db.Update(func(tx *bolt.Tx) error {
		for _, v := range values {
			if err := put(tx, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bench/bbolt: commit: %w", err)
	}
	return nil
}

func (l *boltLog) Close() error {
	if err := l.db.Close(); err != nil {
		return fmt.Errorf("bench/bbolt: close: %w", err)
	}
	return nil
}

// boltValueSize is the size of one encoded value, for the report header.
func boltValueSize(rec []byte) int {
	v, err := encodeBoltEvent(rec)
	if err != nil {
		return 0
	}
	return len(v)
}

// boltReader is workload 4's bbolt peer: the prefilled file reopened with
// default options and read in one read transaction with a cursor from the
// first key to the last. With decode, each value is msgpack-decoded into a
// new boltEvent, as a consumer hands each event to a handler that may keep
// it; without, the value is only touched. Not safe for concurrent use.
type boltReader struct {
	db     *bolt.DB
	n      int
	decode bool
	sink   int // keeps the no-decode loop from being optimised away
}

func openBoltReader(dir string, n int, decode bool) (*boltReader, error) {
	db, err := bolt.Open(filepath.Join(dir, "bolt.db"), 0o600, nil)
	if err != nil {
		return nil, fmt.Errorf("bench/bbolt: open: %w", err)
	}
	return &boltReader{db: db, n: n, decode: decode}, nil
}

func (*boltReader) Prepare(context.Context) error { return nil }

func (r *boltReader) Scan(ctx context.Context) error {
	count := 0
	err := r.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(boltBucket)
		if b == nil {
			return errors.New("no bucket")
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if count%65536 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			if r.decode {
				if err := msgpack.Unmarshal(v, new(boltEvent)); err != nil {
					return fmt.Errorf("decode key %x: %w", k, err)
				}
			} else {
				r.sink += len(k) + len(v)
			}
			count++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bench/bbolt: scan: %w", err)
	}
	if count != r.n {
		return fmt.Errorf("bench/bbolt: scan read %d records, want %d", count, r.n)
	}
	return nil
}

func (r *boltReader) Close() error {
	if err := r.db.Close(); err != nil {
		return fmt.Errorf("bench/bbolt: close: %w", err)
	}
	return nil
}
