package eventlog

import (
	"encoding/binary"
	"fmt"
	"iter"
	"sort"
	"time"

	"github.com/oklog/ulid/v2"
)

// StreamInfo summarises a stream.
type StreamInfo struct {
	Name     string
	First    uint64    // lowest retained sequence; Last+1 when none is retained
	Last     uint64    // highest sequence ever assigned; 0 for a new stream
	Count    uint64    // retained events
	Bytes    uint64    // encoded bytes of the retained events
	LastTime time.Time // append time of the last event; zero for a new stream
}

func (st *streamTx) info() StreamInfo {
	first := st.first()
	si := StreamInfo{Name: st.name, First: first, Last: st.head.last, Bytes: st.head.bytes}
	si.Count = st.head.last + 1 - first
	if st.head.last > 0 {
		si.LastTime = time.Unix(0, st.head.lastTime).UTC()
	}
	return si
}

// Info returns the stream's summary, or ErrNotFound.
func (tx *Tx) Info(stream string) (StreamInfo, error) {
	st, err := tx.stream(stream, existing)
	if err != nil {
		return StreamInfo{}, err
	}
	return st.info(), nil
}

// Streams returns every stream's summary, in name order, system streams
// included.
func (tx *Tx) Streams() ([]StreamInfo, error) {
	var out []StreamInfo
	err := tx.btx.Bucket(bucketHeads).ForEach(func(name, _ []byte) error {
		// A damaged page can claim a key of any length: check the length
		// before copying it, and quote only a bounded prefix.
		if len(name) > MaxNameLen || ValidateName(string(name)) != nil {
			return &CorruptError{Path: tx.log.path, Err: fmt.Errorf("heads: stored stream name %q (%d bytes) is invalid", name[:min(len(name), MaxNameLen)], len(name))}
		}
		st, err := tx.stream(string(name), existing)
		if err != nil {
			return err
		}
		out = append(out, st.info())
		return nil
	})
	return out, err
}

// Get returns the event at seq, or ErrNotFound.
func (tx *Tx) Get(stream string, seq uint64) (Event, error) {
	st, err := tx.stream(stream, existing)
	if err != nil {
		return Event{}, err
	}
	v, err := tx.recordAt(st, seq)
	if err != nil {
		return Event{}, err
	}
	if v == nil {
		return Event{}, fmt.Errorf("%w: stream %q seq %d", ErrNotFound, stream, seq)
	}
	return tx.decode(st, seq, v)
}

// GetByID returns the event with the given ID, or ErrNotFound. With a
// DedupWindow, an ID appended twice returns the later event.
func (tx *Tx) GetByID(stream string, id ulid.ULID) (Event, error) {
	st, err := tx.stream(stream, existing)
	if err != nil {
		return Event{}, err
	}
	seq, v, ok, err := tx.lookupID(st, id)
	if err != nil {
		return Event{}, err
	}
	if !ok {
		return Event{}, fmt.Errorf("%w: stream %q id %s", ErrNotFound, stream, id)
	}
	return tx.decode(st, seq, v)
}

func (tx *Tx) decode(st *streamTx, seq uint64, v []byte) (Event, error) {
	var e Event
	if err := tx.decoder().decode(seq, v, &e); err != nil {
		return Event{}, tx.corrupt(st.name, seq, err)
	}
	e.Stream = st.name
	return e, nil
}

// Read appends to dst the events of stream from seq on, at most limit of
// them, and returns the extended slice. Sequences removed by retention are
// skipped.
func (tx *Tx) Read(dst []Event, stream string, from uint64, limit int) ([]Event, error) {
	st, err := tx.stream(stream, existing)
	if err != nil {
		return dst, err
	}
	c := st.events.Cursor()
	for k, v := seekValue(c, from); k != nil && limit > 0; k, v = c.Next() {
		first := binary.BigEndian.Uint64(k)
		var derr error
		err := eachRecord(first, v, from, func(seq uint64, rec []byte) bool {
			var e Event
			if e, derr = tx.decode(st, seq, rec); derr != nil {
				return false
			}
			dst = append(dst, e)
			limit--
			return limit > 0
		})
		if err != nil {
			return dst, tx.corrupt(stream, first, err)
		}
		if derr != nil {
			return dst, derr
		}
	}
	return dst, nil
}

// SeqAtTime returns the first sequence whose append time is at or after t,
// or Last+1 when every event is older. Append times never decrease within
// a stream, so it is a binary search.
func (tx *Tx) SeqAtTime(stream string, t time.Time) (uint64, error) {
	st, err := tx.stream(stream, existing)
	if err != nil {
		return 0, err
	}
	first, last := st.first(), st.head.last
	var ferr error
	n := sort.Search(int(last+1-first), func(i int) bool {
		seq := first + uint64(i)
		v, err := tx.recordAt(st, seq)
		if err == nil && (v == nil || len(v) < recordHeaderSize) {
			err = tx.corrupt(stream, seq, fmt.Errorf("event missing or short inside the retained range"))
		}
		if err != nil {
			ferr = err
			return true
		}
		return !recordTime(v).Before(t)
	})
	return first + uint64(n), ferr
}

// Get returns the event at seq in stream, or ErrNotFound.
func (l *Log) Get(stream string, seq uint64) (e Event, err error) {
	err = l.View(func(tx *Tx) error { e, err = tx.Get(stream, seq); return err })
	return e, err
}

// GetByID returns the event with the given ID in stream, or ErrNotFound.
func (l *Log) GetByID(stream string, id ulid.ULID) (e Event, err error) {
	err = l.View(func(tx *Tx) error { e, err = tx.GetByID(stream, id); return err })
	return e, err
}

// Read returns up to limit events of stream from seq on, from one
// consistent snapshot.
func (l *Log) Read(stream string, from uint64, limit int) (events []Event, err error) {
	err = l.View(func(tx *Tx) error { events, err = tx.Read(nil, stream, from, limit); return err })
	return events, err
}

// Info returns the stream's summary, or ErrNotFound.
func (l *Log) Info(stream string) (si StreamInfo, err error) {
	err = l.View(func(tx *Tx) error { si, err = tx.Info(stream); return err })
	return si, err
}

// Streams returns every stream's summary in name order.
func (l *Log) Streams() (out []StreamInfo, err error) {
	err = l.View(func(tx *Tx) error { out, err = tx.Streams(); return err })
	return out, err
}

// SeqAtTime returns the first sequence of stream appended at or after t.
func (l *Log) SeqAtTime(stream string, t time.Time) (seq uint64, err error) {
	err = l.View(func(tx *Tx) error { seq, err = tx.SeqAtTime(stream, t); return err })
	return seq, err
}

// scanChunk is how many events Scan reads per read transaction: short
// transactions never hold back the file's growth.
const scanChunk = 1024

// Scan iterates over the events of stream from seq from up to and including
// seq to (0 means up to the last event when each chunk is read), in order,
// reading in short transactions. It stops at the first error, which it
// yields.
func (l *Log) Scan(stream string, from, to uint64) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		for {
			// On a damaged record Read returns the events before it with
			// the error: yield those first.
			buf, err := l.Read(stream, from, scanChunk)
			for _, e := range buf {
				if to != 0 && e.Seq > to {
					return
				}
				if !yield(e, nil) {
					return
				}
			}
			if err != nil {
				yield(Event{}, err)
				return
			}
			if len(buf) < scanChunk {
				return
			}
			from = buf[len(buf)-1].Seq + 1
		}
	}
}
