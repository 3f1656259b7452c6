package eventlog

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/oklog/ulid/v2"
)

// IDs the journal generates locate their own events, so they need no index:
//
//	+------------------+---------------+-----------+
//	| unix ms 6B (BE)  | seq 6B (BE)   | tag 4B    |
//	+------------------+---------------+-----------+
//
// The first 48 bits are the ULID timestamp (the append time); the 80 bits
// of ULID entropy hold the sequence and a CRC32C tag of the journal ID, the
// stream name and the sequence, so IDs are unique across journals and
// streams and a lookup verifies the tag and then the stored record.
// Only producer-supplied IDs go into the stream's ID index.
//
// These layouts are part of the on-disk format and must not be changed.
const (
	idOffset        = recordHeaderSize + 3 // after msgpack's fixarray and bin8 markers
	maxGeneratedSeq = 1<<48 - 1
)

// idTagBase is the CRC32C state after the journal ID and the stream name:
// each tag continues it with the sequence.
func (l *Log) idTagBase(stream string) uint32 {
	c := crc32.Update(0, castagnoli, l.id[:])
	return crc32.Update(c, castagnoli, []byte(stream))
}

func idTag(base uint32, seq uint64) uint32 {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return crc32.Update(base, castagnoli, k[:])
}

// generatedID returns the ID the journal gives the event at seq, and
// whether it must be indexed (only past maxGeneratedSeq, where IDs are
// random).
func (st *streamTx) generatedID(seq uint64, t time.Time) (ulid.ULID, bool) {
	var id ulid.ULID
	_ = id.SetTime(ulid.Timestamp(t))
	if seq > maxGeneratedSeq {
		_, _ = rand.Read(id[6:])
		return id, true
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	copy(id[6:12], b[2:])
	binary.BigEndian.PutUint32(id[12:], idTag(st.tagBase, seq))
	return id, false
}

// generatedSeq returns the sequence a journal-generated ID of the stream
// names, if id has that form.
func (st *streamTx) generatedSeq(id ulid.ULID) (uint64, bool) {
	var b [8]byte
	copy(b[2:], id[6:12])
	seq := binary.BigEndian.Uint64(b[:])
	if seq == 0 || binary.BigEndian.Uint32(id[12:]) != idTag(st.tagBase, seq) {
		return 0, false
	}
	return seq, true
}

// recordID returns the ID stored in a sealed record without decoding it.
func recordID(v []byte) []byte {
	if len(v) < idOffset+len(ulid.ULID{}) {
		return nil
	}
	return v[idOffset : idOffset+len(ulid.ULID{})]
}

// lookupID finds the event with id in the stream: through the ID index for
// producer-supplied IDs, through the ID itself for generated ones. It
// returns the sequence and the raw record, which aliases bbolt's memory.
func (tx *Tx) lookupID(st *streamTx, id ulid.ULID) (uint64, []byte, bool, error) {
	if k := st.ids.Get(id[:]); k != nil {
		if len(k) != 8 {
			return 0, nil, false, tx.corrupt(st.name, 0, fmt.Errorf("id index entry for %s is %d bytes", id, len(k)))
		}
		seq := binary.BigEndian.Uint64(k)
		v, err := tx.record(st, seq)
		if err != nil {
			return 0, nil, false, err
		}
		if v == nil {
			return 0, nil, false, tx.corrupt(st.name, seq, fmt.Errorf("id %s indexes a missing event", id))
		}
		return seq, v, true, nil
	}
	seq, ok := st.generatedSeq(id)
	if !ok {
		return 0, nil, false, nil
	}
	v, err := tx.record(st, seq)
	if err != nil || v == nil || !bytes.Equal(recordID(v), id[:]) {
		return 0, nil, false, err
	}
	return seq, v, true, nil
}

// record returns the record of seq, written or still pending in this
// transaction, or nil.
func (tx *Tx) record(st *streamTx, seq uint64) ([]byte, error) {
	if v, ok := st.pending[seq]; ok {
		return v, nil
	}
	return tx.recordAt(st, seq)
}
