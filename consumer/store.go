package consumer

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/oklog/ulid/v2"
	"github.com/vmihailenco/msgpack/v5"
)

// The consumer's durable records live in the journal's "consumer"
// namespace, one bucket per consumer, written in the journal's own
// transactions (docs/FORMAT.md):
//
//	ns/consumer/<stream> 0x00 <name>/
//	  r/ seq (uint64 BE) -> retryRecord     events above the floor that failed
//	                                        and wait for a retry, or are done
//	                                        (dead-lettered, or acked before a
//	                                        clean stop left a gap below them)
//	  d/ seq (uint64 BE) -> DeadLetter      events that exhausted their attempts
//	  q/ seq (uint64 BE) -> empty           dead letters queued for redelivery
//
// Records are msgpack arrays. These names are part of the on-disk format.
const namespace = "consumer"

var (
	bucketRetries     = []byte("r")
	bucketDead        = []byte("d")
	bucketRedeliver   = []byte("q")
	consumerBucketSep = byte(0)
)

func consumerKey(stream, name string) []byte {
	return append(append([]byte(stream), consumerBucketSep), name...)
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// retryRecord is the persisted state of an event above the floor that
// failed: a restart neither resets its attempts nor retries it before its
// due time, and does not deliver it again once it is dead. Committing the
// floor sweeps the records at or below it.
type retryRecord struct {
	_msgpack  struct{} `msgpack:",as_array"`
	Attempts  int
	First     int64 // unix ns of the first failure
	Last      int64 // unix ns of the last failure
	Due       int64 // unix ns of the next attempt
	LastError string
	Dead      bool // dead-lettered: done, not to be delivered again
	Acked     bool // acked above the floor before a clean stop: done
}

// DeadLetter is an event that exhausted its attempts or failed
// permanently. The event itself stays in the stream; this is the
// consumer's record of it.
type DeadLetter struct {
	_msgpack     struct{} `msgpack:",as_array"`
	Seq          uint64
	ID           ulid.ULID
	Type         string
	Key          string
	Attempts     int
	FirstFailure time.Time
	LastFailure  time.Time
	LastError    string
	Redeliver    bool `msgpack:"-"` // queued for redelivery (not stored here: q/ holds it)
}

// consumerBuckets opens (creating in a write Tx) the consumer's buckets.
// In a read-only Tx a consumer with no records has none: ok is false.
func consumerBuckets(tx *eventlog.Tx, stream, name string) (b buckets, ok bool, err error) {
	ns, err := tx.Namespace(namespace)
	if err != nil {
		return b, false, ignoreNotFound(err)
	}
	root, err := ns.Bucket(consumerKey(stream, name))
	if err != nil {
		return b, false, ignoreNotFound(err)
	}
	for _, x := range []struct {
		dst  **eventlog.Bucket
		name []byte
	}{{&b.retries, bucketRetries}, {&b.dead, bucketDead}, {&b.redeliver, bucketRedeliver}} {
		if *x.dst, err = root.Bucket(x.name); err != nil {
			return b, false, ignoreNotFound(err)
		}
	}
	return b, true, nil
}

type buckets struct {
	retries, dead, redeliver *eventlog.Bucket
}

// has reports whether b holds key. Bucket.Get cannot tell: it returns nil
// for the empty values q/ holds.
func has(b *eventlog.Bucket, key []byte) bool {
	for k := range b.ItemsFrom(key) {
		return bytes.Equal(k, key)
	}
	return false
}

func ignoreNotFound(err error) error {
	if isNotFound(err) {
		return nil
	}
	return err
}

func decodeRecord[T any](k, v []byte) (T, error) {
	var r T
	if err := msgpack.Unmarshal(v, &r); err != nil {
		return r, fmt.Errorf("flowrt/consumer: record %x: %w", k, err)
	}
	return r, nil
}

func putRecord(b *eventlog.Bucket, seq uint64, r any) error {
	v, err := msgpack.Marshal(r)
	if err != nil {
		return err
	}
	return b.Put(seqKey(seq), v)
}
