package eventlog

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

// AppendResult says what became of one appended event.
type AppendResult struct {
	Seq uint64    // the event's sequence; for a duplicate, the original's
	ID  ulid.ULID // the event's ID, generated when the caller gave none
	// Duplicate is true when an event with this ID was already in the
	// stream within the dedup window: nothing was written for it.
	Duplicate bool
}

// encoded is an event validated and encoded before it reaches the committer.
type encoded struct {
	id        ulid.ULID
	value     []byte // header unsealed until the commit assigns seq and time
	generated bool   // the journal made the ID, so it cannot be a duplicate
}

// encodeEvents validates every event and encodes it. Nothing is written.
// The values share one buffer: a bulk append of a thousand events costs
// one allocation, not a thousand, and none when arena (a buffer the caller
// owns until its transaction ends) is big enough.
func encodeEvents(events []Event, maxBytes int, arena *[]byte) ([]encoded, int, error) {
	out := make([]encoded, len(events))
	ends := make([]int, len(events))
	x := encoders.Get().(*encoder)
	defer encoders.Put(x)
	x.buf.Reset()
	for i := range events {
		e := &events[i]
		if err := validateEvent(i, e); err != nil {
			return nil, 0, err
		}
		start := x.buf.Len()
		x.append(e)
		if n := x.buf.Len() - start; n > maxBytes {
			return nil, 0, &EventError{Index: i, Field: "size", Err: fmt.Errorf("%w: %d bytes encoded, limit %d (Options.MaxEventBytes)", ErrEventTooLarge, n, maxBytes)}
		}
		ends[i] = x.buf.Len()
		// A zero ID is generated at commit, when the sequence is known.
		out[i] = encoded{id: e.ID, generated: e.ID == (ulid.ULID{})}
	}
	var all []byte
	if arena != nil {
		all = append((*arena)[:0], x.buf.Bytes()...)
		*arena = all
	} else {
		all = bytes.Clone(x.buf.Bytes())
	}
	start := 0
	for i, end := range ends {
		out[i].value = all[start:end:end]
		start = end
	}
	return out, len(all), nil
}

// ValidateEvents runs the checks Append makes on events, without writing
// anything: each event's type, key and headers, and its encoded size
// against maxEventBytes (zero or less means the default, that of
// DefaultOptions). It returns the first problem as an *EventError whose
// Index is the event's position in events, wrapping ErrInvalidEvent or
// ErrEventTooLarge. It does not check the stream name (see ValidateName) or
// whether an ID is a duplicate. Tools that must refuse a whole input before
// appending any of it, such as `flowrt append`, call it first.
func ValidateEvents(events []Event, maxEventBytes int) error {
	if maxEventBytes <= 0 {
		maxEventBytes = DefaultOptions().MaxEventBytes
	}
	_, _, err := encodeEvents(events, maxEventBytes, nil)
	return err
}

// Append validates the events and appends them to stream, atomically: all
// or none. It returns once they are committed and, under the default
// SyncInterval, fsynced: a nil error means the events are on disk. Results
// are in the order of events.
//
// Concurrent calls are group-committed into one transaction. An invalid
// event (EventError wrapping ErrInvalidEvent or ErrEventTooLarge) fails the
// whole call before anything is written. Names beginning with "$" are
// reserved (ErrReservedStream).
//
// Errors from the disk are sticky: after a failed write or fsync every
// Append returns that error (wrapping ErrDiskFull for a full disk) until the
// journal is reopened, because a failed fsync may have lost data that a
// retry would wrongly report as durable. Reads keep working.
func (l *Log) Append(stream string, events ...Event) ([]AppendResult, error) {
	if err := ValidateName(stream); err != nil {
		return nil, err
	}
	if IsReserved(stream) {
		return nil, fmt.Errorf("%w: %q", ErrReservedStream, stream)
	}
	if len(events) == 0 {
		// Nothing to write, but the journal's state is still reported.
		switch {
		case l.opts.ReadOnly:
			return nil, ErrReadOnly
		case l.isClosed():
			return nil, ErrClosed
		}
		return nil, l.writeErr()
	}
	// The encoded records and the chunks built from them are referenced
	// by bbolt until the transaction ends, which submit waits for: then
	// the buffers go back to the pool.
	a := getArenas()
	defer putArenas(a)
	encs, size, err := encodeEvents(events, l.opts.MaxEventBytes, &a.records)
	if err != nil {
		return nil, err
	}
	var results []AppendResult
	err = l.submit(&request{
		events: len(encs),
		bytes:  size,
		fn: func(tx *Tx) (err error) {
			results, err = tx.appendEncoded(stream, encs, &a.chunks)
			return err
		},
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// Append appends events to stream within the transaction. Unlike
// Log.Append it accepts reserved "$" streams: it is how flowrt's own
// packages write system events. The results hold only if the transaction
// commits.
func (tx *Tx) Append(stream string, events ...Event) ([]AppendResult, error) {
	if !tx.Writable() {
		return nil, ErrReadOnly
	}
	encs, _, err := encodeEvents(events, tx.log.opts.MaxEventBytes, nil)
	if err != nil {
		return nil, err
	}
	return tx.appendEncoded(stream, encs, nil)
}

// appendEncoded appends encoded events. The chunks are built in arena when
// it is not nil (and the caller keeps it until the transaction ends).
func (tx *Tx) appendEncoded(stream string, encs []encoded, arena *[]byte) ([]AppendResult, error) {
	st, err := tx.stream(stream, orCreate)
	if err != nil {
		return nil, err
	}
	now := st.nextTime()
	results := make([]AppendResult, len(encs))
	keys := make([]byte, 8*len(encs)) // one allocation for the batch's keys
	w := chunkWriter{st: st, limit: tx.log.chunkLimit}
	if arena != nil {
		// Every chunk fits in the records' bytes plus its framing; with
		// that capacity no chunk moves the arena, so earlier ones stay valid.
		need := 0
		for _, e := range encs {
			need += len(e.value) + binary.MaxVarintLen32 + chunkHeaderSize
		}
		if cap(*arena) < need {
			*arena = make([]byte, 0, need)
		}
		w.arena = (*arena)[:0]
	}
	for i, e := range encs {
		seq := st.head.last + 1
		key := keys[8*i : 8*i+8 : 8*i+8]
		binary.BigEndian.PutUint64(key, seq)
		index := !e.generated
		if e.generated {
			e.id, index = st.generatedID(seq, now)
			copy(e.value[idOffset:], e.id[:])
		} else {
			orig, dup, err := tx.duplicate(st, e.id, now)
			if err != nil {
				return nil, err
			}
			if dup {
				results[i] = AppendResult{Seq: orig, ID: e.id, Duplicate: true}
				continue
			}
		}
		sealRecord(e.value, seq, now)
		if err := w.add(key, seq, e.value, !e.generated); err != nil {
			return nil, err
		}
		if index {
			if err := st.ids.Put(e.id[:], key); err != nil {
				return nil, err
			}
		}
		st.head.last = seq
		st.head.lastTime = now.UnixNano()
		st.dirty = true
		results[i] = AppendResult{Seq: seq, ID: e.id}
	}
	if err := w.flush(); err != nil {
		return nil, err
	}
	return results, nil
}

// chunkWriter gathers consecutive sealed records into chunks (chunk.go)
// and puts them into the stream's events bucket.
type chunkWriter struct {
	st    *streamTx
	limit int    // largest chunk, framing included
	key   []byte // the first record's key
	recs  [][]byte
	bytes int    // the records' bytes
	size  int    // the chunk's bytes, framing included
	arena []byte // where chunks are built, when not nil; never grown
}

// add queues a record; keep makes it findable by duplicate checks before
// its chunk is written.
func (w *chunkWriter) add(key []byte, seq uint64, rec []byte, keep bool) error {
	limit := w.limit
	if chunkHeaderSize+binary.MaxVarintLen32+len(rec) > limit {
		if err := w.flush(); err != nil {
			return err
		}
		return w.put(key, rec, len(rec))
	}
	if len(w.recs) > 0 && w.size+binary.MaxVarintLen32+len(rec) > limit {
		if err := w.flush(); err != nil {
			return err
		}
	}
	if len(w.recs) == 0 {
		w.key = key
		w.size = chunkHeaderSize
	}
	w.size += uvarintLen(len(rec)) + len(rec)
	w.recs = append(w.recs, rec)
	w.bytes += len(rec)
	if keep {
		if w.st.pending == nil {
			w.st.pending = make(map[uint64][]byte)
		}
		w.st.pending[seq] = rec
	}
	if len(w.recs) == maxChunkEvents {
		return w.flush()
	}
	return nil
}

func uvarintLen(n int) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], uint64(n))
}

func (w *chunkWriter) flush() error {
	var err error
	switch len(w.recs) {
	case 0:
		return nil
	case 1:
		err = w.put(w.key, w.recs[0], len(w.recs[0]))
	default:
		var v []byte
		if w.arena != nil {
			start := len(w.arena)
			w.arena = appendChunk(w.arena, w.recs)
			v = w.arena[start:len(w.arena):len(w.arena)]
		} else {
			v = appendChunk(make([]byte, 0, chunkHeaderSize+w.bytes+3*len(w.recs)), w.recs)
		}
		err = w.put(w.key, v, w.bytes)
	}
	w.recs, w.bytes = w.recs[:0], 0
	clear(w.st.pending)
	return err
}

// put stores a value holding records of recBytes bytes: the head counts
// the records' bytes, not the chunk framing.
func (w *chunkWriter) put(key, v []byte, recBytes int) error {
	if err := w.st.events.Put(key, v); err != nil {
		return err
	}
	w.st.head.bytes += uint64(recBytes)
	return nil
}

// duplicate reports whether id is already in the stream within the dedup
// window, and its sequence.
func (tx *Tx) duplicate(st *streamTx, id ulid.ULID, now time.Time) (uint64, bool, error) {
	seq, rec, ok, err := tx.lookupID(st, id)
	if err != nil || !ok {
		return 0, false, err
	}
	window := tx.log.opts.DedupWindow
	if window == 0 || len(rec) < recordHeaderSize {
		return seq, true, nil
	}
	return seq, now.Sub(recordTime(rec)) < window, nil
}

// arenas are the buffers one Append encodes into, reused across appends.
type arenas struct{ records, chunks []byte }

var arenaPool = sync.Pool{New: func() any { return new(arenas) }}

// maxPooledArena bounds the buffers kept for reuse, so one huge append
// does not pin its memory.
const maxPooledArena = 4 << 20

func getArenas() *arenas { return arenaPool.Get().(*arenas) }

func putArenas(a *arenas) {
	if cap(a.records) > maxPooledArena || cap(a.chunks) > maxPooledArena {
		return
	}
	arenaPool.Put(a)
}
