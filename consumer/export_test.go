package consumer

import (
	"time"

	"github.com/flowrt/flowrt/eventlog"
)

// PersistedRetry reads the retry record of seq, for tests: the failed
// attempts recorded and the time the next attempt is due. ok is false when
// there is no record, or when it marks the event dead-lettered.
func PersistedRetry(j Journal, stream, name string, seq uint64) (attempts int, due time.Time, ok bool, err error) {
	err = j.View(func(tx *eventlog.Tx) error {
		b, found, err := consumerBuckets(tx, stream, name)
		if err != nil || !found {
			return err
		}
		v := b.retries.Get(seqKey(seq))
		if v == nil {
			return nil
		}
		rec, err := decodeRecord[retryRecord](seqKey(seq), v)
		if err != nil {
			return err
		}
		attempts, due, ok = rec.Attempts, time.Unix(0, rec.Due), !rec.Dead
		return nil
	})
	return attempts, due, ok, err
}
