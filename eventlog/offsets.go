package eventlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// ConsumerInfo is a consumer's durable ack offset on one stream.
type ConsumerInfo struct {
	Stream  string
	Name    string
	Offset  uint64    // every event at or below it is done
	Lag     uint64    // the stream's last sequence minus Offset
	Updated time.Time // when the offset last moved
}

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

func encodeOffset(seq uint64, at time.Time) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b, seq)
	binary.BigEndian.PutUint64(b[8:], uint64(at.UnixNano()))
	return b
}

func (tx *Tx) offsetEntry(stream, consumer string) (seq uint64, updated time.Time, ok bool, err error) {
	if err := ValidateName(stream); err != nil {
		return 0, time.Time{}, false, err
	}
	if err := ValidateName(consumer); err != nil {
		return 0, time.Time{}, false, err
	}
	v := tx.btx.Bucket(bucketOffsets).Get(offsetKey(stream, consumer))
	if v == nil {
		return 0, time.Time{}, false, nil
	}
	if len(v) != 16 {
		return 0, time.Time{}, false, &CorruptError{Path: tx.log.path, Stream: stream, Err: fmt.Errorf("offset of consumer %q is %d bytes", consumer, len(v))}
	}
	return binary.BigEndian.Uint64(v), time.Unix(0, int64(binary.BigEndian.Uint64(v[8:]))).UTC(), true, nil
}

// Offset returns the consumer's ack offset on stream, and whether the
// consumer is registered there.
func (tx *Tx) Offset(stream, consumer string) (uint64, bool, error) {
	seq, _, ok, err := tx.offsetEntry(stream, consumer)
	return seq, ok, err
}

// SetOffset registers the consumer on stream if needed and moves its ack
// offset forward to seq. It refuses to move backward (ErrOffsetBackward) or
// past the stream's last sequence (ErrOffsetBeyondHead); setting the same
// offset again is a no-op.
func (tx *Tx) SetOffset(stream, consumer string, seq uint64) error {
	if !tx.Writable() {
		return ErrReadOnly
	}
	cur, _, ok, err := tx.offsetEntry(stream, consumer)
	if err != nil {
		return err
	}
	if ok && seq < cur {
		return fmt.Errorf("%w: consumer %q on %q from %d to %d", ErrOffsetBackward, consumer, stream, cur, seq)
	}
	if ok && seq == cur {
		return nil
	}
	return tx.putOffset(stream, consumer, seq)
}

// ResetOffset sets the consumer's ack offset to seq, backward or forward,
// registering the consumer if needed: the explicit way to replay or skip.
func (tx *Tx) ResetOffset(stream, consumer string, seq uint64) error {
	if _, _, _, err := tx.offsetEntry(stream, consumer); err != nil {
		return err
	}
	return tx.putOffset(stream, consumer, seq)
}

func (tx *Tx) putOffset(stream, consumer string, seq uint64) error {
	if !tx.Writable() {
		return ErrReadOnly
	}
	var last uint64
	if st, err := tx.stream(stream, existing); err == nil {
		last = st.head.last
	} else if !isNotFound(err) {
		return err
	}
	if seq > last {
		return fmt.Errorf("%w: consumer %q on %q at %d, last is %d", ErrOffsetBeyondHead, consumer, stream, seq, last)
	}
	return tx.btx.Bucket(bucketOffsets).Put(offsetKey(stream, consumer), encodeOffset(seq, time.Now()))
}

// DeleteOffset unregisters the consumer from stream. Deleting a missing
// consumer is not an error.
func (tx *Tx) DeleteOffset(stream, consumer string) error {
	if !tx.Writable() {
		return ErrReadOnly
	}
	if _, _, _, err := tx.offsetEntry(stream, consumer); err != nil {
		return err
	}
	return tx.btx.Bucket(bucketOffsets).Delete(offsetKey(stream, consumer))
}

// Consumers lists the registered consumers of stream, or of every stream
// when stream is "", ordered by stream then name.
func (tx *Tx) Consumers(stream string) ([]ConsumerInfo, error) {
	var prefix []byte
	if stream != "" {
		prefix = append([]byte(stream), 0)
	}
	var out []ConsumerInfo
	c := tx.btx.Bucket(bucketOffsets).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		// A damaged page can claim a key of any length: check the length
		// before scanning it.
		const maxKey = 2*MaxNameLen + 1
		i := -1
		if len(k) <= maxKey {
			i = bytes.IndexByte(k, 0)
		}
		if i < 0 || len(v) != 16 || ValidateName(string(k[:i])) != nil || ValidateName(string(k[i+1:])) != nil {
			return nil, &CorruptError{Path: tx.log.path, Err: fmt.Errorf("bad offset entry %q (%d bytes)", k[:min(len(k), maxKey)], len(k))}
		}
		ci := ConsumerInfo{
			Stream:  string(k[:i]),
			Name:    string(k[i+1:]),
			Offset:  binary.BigEndian.Uint64(v),
			Updated: time.Unix(0, int64(binary.BigEndian.Uint64(v[8:]))).UTC(),
		}
		if st, err := tx.stream(ci.Stream, existing); err == nil && st.head.last > ci.Offset {
			ci.Lag = st.head.last - ci.Offset
		} else if err != nil && !isNotFound(err) {
			return nil, err
		}
		out = append(out, ci)
	}
	return out, nil
}

// Offset returns the consumer's ack offset on stream and whether it is
// registered.
func (l *Log) Offset(stream, consumer string) (seq uint64, ok bool, err error) {
	err = l.View(func(tx *Tx) error { seq, ok, err = tx.Offset(stream, consumer); return err })
	return seq, ok, err
}

// CommitOffset moves the consumer's ack offset forward to seq, durably, in
// a group commit. See Tx.SetOffset.
func (l *Log) CommitOffset(stream, consumer string, seq uint64) error {
	return l.Update(func(tx *Tx) error { return tx.SetOffset(stream, consumer, seq) })
}

// ResetOffset sets the consumer's ack offset to seq, backward or forward.
func (l *Log) ResetOffset(stream, consumer string, seq uint64) error {
	return l.Update(func(tx *Tx) error { return tx.ResetOffset(stream, consumer, seq) })
}

// Consumers lists registered consumers with their lag; stream "" lists all.
func (l *Log) Consumers(stream string) (out []ConsumerInfo, err error) {
	err = l.View(func(tx *Tx) error { out, err = tx.Consumers(stream); return err })
	return out, err
}
