package consumer

import (
	"encoding/binary"
	"time"

	"github.com/flowrt/flowrt/eventlog"
)

// persistedState is what an earlier run left above the floor: events that
// failed and wait for their retry, and events already done (dead-lettered,
// or acked before a clean stop).
type persistedState struct {
	retries map[uint64]retryRecord
	done    map[uint64]bool
}

func seqFromKey(k []byte) uint64 { return binary.BigEndian.Uint64(k) }

// loadState reads the retry records and dead letters above floor.
func (r *Reader) loadState(floor uint64) (persistedState, error) {
	st := persistedState{retries: map[uint64]retryRecord{}, done: map[uint64]bool{}}
	err := r.j.View(func(tx *eventlog.Tx) error {
		b, ok, err := consumerBuckets(tx, r.stream, r.name)
		if err != nil || !ok {
			return err
		}
		for k, v := range b.retries.ItemsFrom(seqKey(floor + 1)) {
			rec, err := decodeRecord[retryRecord](k, v)
			if err != nil {
				return err
			}
			if rec.Dead || rec.Acked {
				st.done[seqFromKey(k)] = true
			} else {
				st.retries[seqFromKey(k)] = rec
			}
		}
		return nil
	})
	return st, err
}

// pollRedeliveries picks up dead letters queued for redelivery. They run
// outside the window (the floor passed them long ago) and hold their key
// like any event; for a Reader with a commit hook they wait, parked, for
// their turn alone (releaseRedelivery).
func (d *dispatcher) pollRedeliveries() {
	room := d.r.opts.MaxInFlight - len(d.redelivering)
	if room <= 0 {
		return
	}
	var items []*item
	err := d.r.j.View(func(tx *eventlog.Tx) error {
		b, ok, err := consumerBuckets(tx, d.r.stream, d.r.name)
		if err != nil || !ok {
			return err
		}
		for k := range b.redeliver.Items(nil) {
			seq := seqFromKey(k)
			if d.redelivering[seq] {
				continue
			}
			ev, err := tx.Get(d.r.stream, seq)
			if err != nil {
				d.r.opts.Logger.Warn("dead letter cannot be redelivered", "consumer", d.r.name, "seq", seq, "err", err)
				continue
			}
			items = append(items, &item{ev: ev, redelivery: true})
			if len(items) == room {
				break
			}
		}
		return nil
	})
	if err != nil {
		d.r.opts.Logger.Error("reading redelivery queue failed", "consumer", d.r.name, "err", err)
		return
	}
	for _, it := range items {
		d.redelivering[it.ev.Seq] = true
		it.due = time.Time{}
		if d.r.opts.Commit != nil {
			d.parked = append(d.parked, it) // see releaseRedelivery
			continue
		}
		d.makeReady(it)
	}
	d.r.stats.redelivering.Store(int64(len(d.redelivering)))
}
