package consumer

import (
	"fmt"

	"github.com/flowrt/flowrt/eventlog"
)

// Range selects sequences From to To inclusive; a zero To has no upper
// bound, so Range{} selects everything.
type Range struct {
	From, To uint64
}

func (r Range) contains(seq uint64) bool {
	return seq >= r.From && (r.To == 0 || seq <= r.To)
}

// DeadLetters lists the consumer's dead letters in r, in sequence order.
func DeadLetters(j Journal, stream, name string, r Range) ([]DeadLetter, error) {
	var out []DeadLetter
	err := j.View(func(tx *eventlog.Tx) error {
		b, ok, err := consumerBuckets(tx, stream, name)
		if err != nil || !ok {
			return err
		}
		for k, v := range b.dead.ItemsFrom(seqKey(r.From)) {
			if !r.contains(seqFromKey(k)) {
				break
			}
			dl, err := decodeRecord[DeadLetter](k, v)
			if err != nil {
				return err
			}
			dl.Redeliver = has(b.redeliver, k)
			out = append(out, dl)
		}
		return nil
	})
	return out, err
}

// DoneAbove lists, in sequence order, the events above the consumer's
// committed offset that a clean stop recorded as done: the next run does
// not deliver them again. Dead letters are listed by DeadLetters.
func DoneAbove(j Journal, stream, name string) (out []uint64, err error) {
	err = j.View(func(tx *eventlog.Tx) error {
		out, err = DoneAboveTx(tx, stream, name)
		return err
	})
	return out, err
}

// DoneAboveTx is DoneAbove within a transaction.
func DoneAboveTx(tx *eventlog.Tx, stream, name string) ([]uint64, error) {
	b, ok, err := consumerBuckets(tx, stream, name)
	if err != nil || !ok {
		return nil, err
	}
	var out []uint64
	for k, v := range b.retries.Items(nil) {
		if len(k) != 8 {
			continue
		}
		rec, err := decodeRecord[retryRecord](k, v)
		if err != nil {
			return nil, err
		}
		if rec.Acked {
			out = append(out, seqFromKey(k))
		}
	}
	return out, nil
}

// Redeliver queues the consumer's dead letters in r for redelivery and
// returns how many it queued. A running Reader picks them up within a
// second, one not running when it next runs; the queue survives crashes.
// A redelivered event that succeeds leaves the dead letters; one that
// fails its attempts again stays there with its record updated.
func Redeliver(j Journal, stream, name string, r Range) (int, error) {
	return editDead(j, stream, name, r, func(b buckets, k []byte) error {
		return b.redeliver.Put(k, []byte{})
	})
}

// Purge removes the consumer's dead letters in r and returns how many it
// removed. The events stay in the stream.
func Purge(j Journal, stream, name string, r Range) (int, error) {
	return editDead(j, stream, name, r, func(b buckets, k []byte) error {
		if err := b.redeliver.Delete(k); err != nil {
			return err
		}
		return b.dead.Delete(k)
	})
}

func editDead(j Journal, stream, name string, r Range, edit func(buckets, []byte) error) (int, error) {
	n := 0
	err := j.Update(func(tx *eventlog.Tx) error {
		n = 0
		b, _, err := consumerBuckets(tx, stream, name)
		if err != nil {
			return err
		}
		var keys [][]byte
		for k := range b.dead.ItemsFrom(seqKey(r.From)) {
			if !r.contains(seqFromKey(k)) {
				break
			}
			keys = append(keys, append([]byte(nil), k...))
		}
		for _, k := range keys {
			if err := edit(b, k); err != nil {
				return err
			}
		}
		n = len(keys)
		return nil
	})
	return n, err
}

// Reset moves the consumer to pos for a replay or a skip: the ack offset
// becomes the sequence before pos (clamped to the stream's end), and
// pending retries are forgotten, so every event from pos on is delivered
// afresh, dead-lettered ones included. Dead letters stay listed. The
// consumer must not be running (ErrInUse).
func Reset(j Journal, stream, name string, pos eventlog.Position) error {
	if c, ok := j.(claimer); ok {
		release, err := c.Claim(claimName(stream, name))
		if err != nil {
			return fmt.Errorf("%w: consumer %q on stream %q is running: %w", ErrInUse, name, stream, err)
		}
		defer release()
	}
	return j.Update(func(tx *eventlog.Tx) error {
		floor, err := startFloor(tx, stream, pos)
		if err != nil {
			return err
		}
		if err := tx.ResetOffset(stream, name, floor); err != nil {
			return err
		}
		b, _, err := consumerBuckets(tx, stream, name)
		if err != nil {
			return err
		}
		var keys [][]byte
		for k := range b.retries.Items(nil) {
			keys = append(keys, append([]byte(nil), k...))
		}
		for _, k := range keys {
			if err := b.retries.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}
