package eventlog

import (
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Chunks. An Append of several events stores them in chunks: one value,
// under the first event's sequence, holding consecutive records:
//
//	+--------+----------+------------+------------------------------------+
//	| ver 1B | kind 1B  | count 2B BE| count × (uvarint length, record)   |
//	+--------+----------+------------+------------------------------------+
//
// ver is recordVersion and kind KindChunk; each record is a whole record as
// in record.go, with its own CRC over its own sequence. A lone event is
// stored as a plain record. Chunks cut the bbolt Puts of a bulk append by
// the chunk's size, and let bbolt write a leaf of several chunks in one
// call instead of one call per page.
//
// These constants are part of the on-disk format (FormatVersion 2).
const (
	chunkHeaderSize = 4
	offChunkCount   = 2

	// maxChunkEvents bounds a chunk's records.
	maxChunkEvents = 64
)

// chunkBytes returns the largest chunk appends build for a file of the
// given page size. bbolt keeps at least two keys in a leaf, so two chunks
// of this size fill exactly two pages, written in one call; a chunk a
// little larger would take five pages for two. Not part of the format:
// readers take any chunk.
func chunkBytes(pageSize int) int { return pageSize - 32 }

var (
	errChunkCount  = errors.New("chunk has no records or too many")
	errChunkLength = errors.New("chunk record length runs past the chunk")
)

// appendChunk appends to dst a chunk of the sealed records.
func appendChunk(dst []byte, recs [][]byte) []byte {
	dst = append(dst, recordVersion, byte(KindChunk), 0, 0)
	binary.BigEndian.PutUint16(dst[len(dst)-2:], uint16(len(recs)))
	for _, r := range recs {
		dst = binary.AppendUvarint(dst, uint64(len(r)))
		dst = append(dst, r...)
	}
	return dst
}

// isChunk reports whether a stored value is a chunk rather than a record.
func isChunk(v []byte) bool {
	return len(v) >= chunkHeaderSize && v[offVersion] == recordVersion && RecordKind(v[offKind]) == KindChunk
}

// valueSpan returns how many sequences a stored value holds.
func valueSpan(v []byte) (uint64, error) {
	if !isChunk(v) {
		return 1, nil
	}
	n := binary.BigEndian.Uint16(v[offChunkCount:])
	if n == 0 || n > maxChunkEvents {
		return 0, fmt.Errorf("%w: %d", errChunkCount, n)
	}
	return uint64(n), nil
}

// eachRecord calls fn with the sequence and bytes of every record of the
// value stored under first, from sequence from on, until fn returns false.
func eachRecord(first uint64, v []byte, from uint64, fn func(seq uint64, rec []byte) bool) error {
	if !isChunk(v) {
		if first >= from {
			fn(first, v)
		}
		return nil
	}
	n, err := valueSpan(v)
	if err != nil {
		return err
	}
	p := v[chunkHeaderSize:]
	for i := range n {
		l, w := binary.Uvarint(p)
		if w <= 0 || l > uint64(len(p)-w) {
			return errChunkLength
		}
		rec := p[w : w+int(l) : w+int(l)]
		p = p[w+int(l):]
		if seq := first + i; seq >= from && !fn(seq, rec) {
			return nil
		}
	}
	if len(p) != 0 {
		return errTrailing
	}
	return nil
}

// seekValue positions c on the stored value that holds seq, or the first
// one after it: the value whose key is at or below seq, else the next.
func seekValue(c *bolt.Cursor, seq uint64) (k, v []byte) {
	k, v = c.Seek(seqKey(seq))
	if k != nil && binary.BigEndian.Uint64(k) == seq {
		return k, v
	}
	if k == nil {
		pk, pv := c.Last()
		if pk == nil {
			return nil, nil
		}
		if span, err := valueSpan(pv); err != nil || binary.BigEndian.Uint64(pk)+span > seq {
			return pk, pv
		}
		return nil, nil
	}
	pk, pv := c.Prev()
	if pk != nil {
		if span, err := valueSpan(pv); err != nil || binary.BigEndian.Uint64(pk)+span > seq {
			return pk, pv
		}
	}
	return c.Seek(seqKey(seq)) // back to the first value after seq
}

// recordAt returns the record stored for seq, or nil when there is none.
func (tx *Tx) recordAt(st *streamTx, seq uint64) ([]byte, error) {
	k, v := seekValue(st.events.Cursor(), seq)
	if k == nil {
		return nil, nil
	}
	first := binary.BigEndian.Uint64(k)
	if first > seq {
		return nil, nil
	}
	var rec []byte
	err := eachRecord(first, v, seq, func(s uint64, r []byte) bool {
		if s == seq {
			rec = r
		}
		return false
	})
	if err != nil {
		return nil, tx.corrupt(st.name, first, err)
	}
	return rec, nil
}
