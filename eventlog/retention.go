package eventlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// TruncatePolicy says whether truncation respects registered consumers.
type TruncatePolicy uint8

const (
	// KeepUnacked never removes an event that a registered consumer of the
	// stream has not acknowledged.
	KeepUnacked TruncatePolicy = iota
	// Force removes events whether or not consumers have acknowledged them;
	// those consumers resume at the next retained event.
	Force
)

// String returns the policy's name.
func (p TruncatePolicy) String() string {
	if p == Force {
		return "force"
	}
	return "keep-unacked"
}

// truncateChunk bounds the events one truncation transaction removes, so a
// large truncation never holds the committer for long.
const truncateChunk = 4096

// Truncate removes the events of stream below seq below. Under KeepUnacked
// it refuses with ErrConsumerBehind, removing nothing, if a registered
// consumer's offset is below below-1. It returns how many events it
// removed. Sequences are never reused: the next append continues after the
// stream's last sequence.
func (l *Log) Truncate(stream string, below uint64, policy TruncatePolicy) (uint64, error) {
	return l.truncate(stream, below, policy, refuseBehind)
}

type behindRule uint8

const (
	refuseBehind behindRule = iota // fail when a consumer is behind
	stopAtBehind                   // remove only what every consumer acked
)

func (l *Log) truncate(stream string, below uint64, policy TruncatePolicy, rule behindRule) (uint64, error) {
	var total uint64
	for chunk := 0; ; chunk++ {
		var n uint64
		err := l.Update(func(tx *Tx) (err error) {
			limit := below
			if policy == KeepUnacked {
				// Checked in the same transaction as the removal, so a
				// consumer registering meanwhile is never overtaken.
				cs, err := tx.Consumers(stream)
				if err != nil {
					return err
				}
				for _, c := range cs {
					if c.Offset+1 < limit {
						if rule == refuseBehind && chunk == 0 {
							return fmt.Errorf("%w: consumer %q on %q is at %d, truncation is below %d (use Force)", ErrConsumerBehind, c.Name, stream, c.Offset, below)
						}
						limit = c.Offset + 1
					}
				}
			}
			n, err = tx.truncate(stream, limit, truncateChunk)
			return err
		})
		total += n
		if err != nil || n < truncateChunk {
			return total, err
		}
	}
}

// truncate removes up to limit events below below, with their ID index
// entries, and returns how many it removed.
func (tx *Tx) truncate(stream string, below uint64, limit int) (uint64, error) {
	st, err := tx.stream(stream, existing)
	if err != nil {
		return 0, err
	}
	type removal struct {
		key  []byte
		keep []byte // what stays of a chunk that straddles below, or nil
		ids  []idSeq
	}
	var removals []removal
	removed := 0
	c := st.events.Cursor()
	for k, v := c.First(); k != nil && removed < limit; k, v = c.Next() {
		first := binary.BigEndian.Uint64(k)
		if first >= below {
			break
		}
		r := removal{key: bytes.Clone(k)}
		var rest [][]byte
		err := eachRecord(first, v, first, func(seq uint64, rec []byte) bool {
			if seq < below {
				r.ids = append(r.ids, idSeq{id: bytes.Clone(recordID(rec)), seq: seq})
				st.head.bytes -= min(st.head.bytes, uint64(len(rec)))
			} else {
				rest = append(rest, rec)
			}
			return true
		})
		if err != nil {
			return 0, tx.corrupt(stream, first, err)
		}
		switch len(rest) {
		case 0:
		case 1:
			r.keep = bytes.Clone(rest[0])
		default:
			r.keep = appendChunk(nil, rest)
		}
		removed += len(r.ids)
		removals = append(removals, r)
	}
	for _, r := range removals {
		if err := st.events.Delete(r.key); err != nil {
			return 0, err
		}
		if r.keep != nil {
			if err := st.events.Put(seqKey(below), r.keep); err != nil {
				return 0, err
			}
		}
		for _, x := range r.ids {
			// Only producer-supplied IDs are indexed, and with a dedup
			// window an ID can index a later event: remove only an entry
			// naming this one.
			if x.id != nil && bytes.Equal(st.ids.Get(x.id), seqKey(x.seq)) {
				if err := st.ids.Delete(x.id); err != nil {
					return 0, err
				}
			}
		}
	}
	if len(removals) > 0 {
		st.dirty = true
	}
	return uint64(removed), nil
}

// idSeq is an event's ID and sequence, for index clean-up.
type idSeq struct {
	id  []byte
	seq uint64
}

// Retention is a stream's retention policy. Each non-zero limit removes the
// oldest events beyond it; the strictest wins.
type Retention struct {
	MaxAge    time.Duration // remove events appended longer ago than this
	MaxEvents uint64        // keep at most this many events
	MaxBytes  uint64        // keep at most this many encoded bytes
	// Policy KeepUnacked (the default) stops at the lowest registered
	// consumer's offset; Force removes regardless.
	Policy TruncatePolicy
}

func (r Retention) validate() error {
	var errs []error
	if r.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("MaxAge must not be negative (got %v)", r.MaxAge))
	}
	if r.Policy > Force {
		errs = append(errs, fmt.Errorf("unknown Policy %d", r.Policy))
	}
	return errors.Join(errs...)
}

// ApplyRetention removes the events of stream that r does not keep and
// returns how many it removed.
func (l *Log) ApplyRetention(stream string, r Retention) (uint64, error) {
	if err := r.validate(); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	var below uint64
	err := l.View(func(tx *Tx) error {
		st, err := tx.stream(stream, existing)
		if err != nil {
			return err
		}
		first, last := st.first(), st.head.last
		below = first
		if r.MaxEvents > 0 && last+1-first > r.MaxEvents {
			below = max(below, last+1-r.MaxEvents)
		}
		if r.MaxAge > 0 {
			seq, err := tx.SeqAtTime(stream, time.Now().Add(-r.MaxAge))
			if err != nil {
				return err
			}
			below = max(below, seq)
		}
		if r.MaxBytes > 0 && st.head.bytes > r.MaxBytes {
			excess := st.head.bytes - r.MaxBytes
			c := st.events.Cursor()
			for k, v := c.First(); k != nil && excess > 0; k, v = c.Next() {
				first := binary.BigEndian.Uint64(k)
				if err := eachRecord(first, v, first, func(seq uint64, rec []byte) bool {
					excess -= min(excess, uint64(len(rec)))
					below = max(below, seq+1)
					return excess > 0
				}); err != nil {
					return tx.corrupt(stream, first, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return l.truncate(stream, below, r.Policy, stopAtBehind)
}

func (l *Log) retentionLoop() {
	t := time.NewTicker(l.opts.RetentionInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stopc:
			return
		case <-t.C:
			for stream, r := range l.opts.Retention {
				n, err := l.ApplyRetention(stream, r)
				switch {
				case errors.Is(err, ErrClosed):
					return // Close is under way: not a failure
				case err != nil && !isNotFound(err):
					l.opts.Logger.Error("retention failed", "stream", stream, "err", err)
				case n > 0:
					l.opts.Logger.Info("retention removed events", "stream", stream, "events", n)
				}
			}
		}
	}
}
