package eventlog

import (
	"bytes"
	"errors"
	"fmt"
	"iter"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Bucket is a key-value space inside a namespace, valid for the life of its
// Tx. Keys sort bytewise. Writes through a read-only Tx return ErrReadOnly.
// Like its Tx, a Bucket is not safe for concurrent use.
type Bucket struct {
	b *bolt.Bucket
}

// Get returns a copy of the value stored under key, or nil.
func (b *Bucket) Get(key []byte) []byte {
	if v := b.b.Get(key); v != nil {
		return append([]byte(nil), v...)
	}
	return nil
}

// Put stores value under key. The journal keeps references to both until the
// transaction ends: do not change them before then.
func (b *Bucket) Put(key, value []byte) error {
	return mapBoltError(b.b.Put(key, value))
}

// Delete removes key. Deleting a missing key is not an error.
func (b *Bucket) Delete(key []byte) error {
	return mapBoltError(b.b.Delete(key))
}

// Bucket returns the nested bucket name, creating it in a write Tx. In a
// read-only Tx a missing bucket is ErrNotFound.
func (b *Bucket) Bucket(name []byte) (*Bucket, error) {
	if nb := b.b.Bucket(name); nb != nil {
		return &Bucket{b: nb}, nil
	}
	if !b.b.Writable() {
		return nil, fmt.Errorf("%w: bucket %q", ErrNotFound, name)
	}
	nb, err := b.b.CreateBucket(name)
	if err != nil {
		return nil, mapBoltError(err)
	}
	return &Bucket{b: nb}, nil
}

// DeleteBucket removes the nested bucket name and everything in it.
// Deleting a missing bucket is not an error.
func (b *Bucket) DeleteBucket(name []byte) error {
	err := b.b.DeleteBucket(name)
	if errors.Is(err, berrors.ErrBucketNotFound) {
		return nil
	}
	return mapBoltError(err)
}

// Items iterates, in key order, over the keys that start with prefix and
// their values (nil for a nested bucket). The slices are valid only until
// the iteration moves on; copy what you keep.
func (b *Bucket) Items(prefix []byte) iter.Seq2[[]byte, []byte] {
	return func(yield func([]byte, []byte) bool) {
		c := b.b.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if !yield(k, v) {
				return
			}
		}
	}
}

// ItemsFrom iterates, in key order, over the keys at or after start and
// their values, with the same validity rule as Items.
func (b *Bucket) ItemsFrom(start []byte) iter.Seq2[[]byte, []byte] {
	return func(yield func([]byte, []byte) bool) {
		c := b.b.Cursor()
		for k, v := c.Seek(start); k != nil; k, v = c.Next() {
			if !yield(k, v) {
				return
			}
		}
	}
}

// Last returns a copy of the highest key and its value, or nils when empty.
func (b *Bucket) Last() (key, value []byte) {
	k, v := b.b.Cursor().Last()
	if k == nil {
		return nil, nil
	}
	return append([]byte(nil), k...), append([]byte(nil), v...)
}

// NextSequence returns a new unique, increasing integer for the bucket.
func (b *Bucket) NextSequence() (uint64, error) {
	n, err := b.b.NextSequence()
	return n, mapBoltError(err)
}

func mapBoltError(err error) error {
	if errors.Is(err, berrors.ErrTxNotWritable) {
		return ErrReadOnly
	}
	return err
}
