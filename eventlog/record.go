package eventlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Record envelope. Every event value in a stream's events bucket is:
//
//	+--------+---------+-------------+-------------+--- ... ---+
//	| ver 1B | kind 1B | CRC32C 4B   | unix ns 8B  | payload   |
//	+--------+---------+-------------+-------------+--- ... ---+
//
// payload is a msgpack array [id bin16, type str, key str, headers map|nil,
// data bin]. The CRC32C (Castagnoli) covers the record's sequence as 8
// big-endian bytes, then every byte of the value except the CRC itself, so a
// record copied under the wrong key fails its check too.
//
// These constants are part of the on-disk format and must not be changed.
const (
	recordVersion    = 1
	recordHeaderSize = 14
	offVersion       = 0
	offKind          = 1
	offCRC           = 2
	offTime          = 6
	payloadFields    = 5
)

// RecordKind says what a record holds.
type RecordKind uint8

// Record kinds. Part of the on-disk format.
const (
	KindEvent RecordKind = 1 // an application or system event
)

func (k RecordKind) String() string {
	switch k {
	case KindEvent:
		return "event"
	default:
		return fmt.Sprintf("RecordKind(%d)", uint8(k))
	}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Decoding errors, wrapped in a CorruptError naming the stream and sequence.
var (
	errShortRecord   = errors.New("record shorter than its header")
	errRecordVersion = errors.New("unknown record version")
	errRecordKind    = errors.New("unknown record kind")
	errChecksum      = errors.New("CRC32C mismatch")
	errTrailing      = errors.New("trailing bytes after payload")
)

type encoder struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

var encoders = sync.Pool{New: func() any {
	e := new(encoder)
	e.enc = msgpack.NewEncoder(&e.buf)
	return e
}}

// encodeRecord returns an event's value with the header left for sealRecord
// to fill: the payload is encoded here, outside the commit path.
func encodeRecord(e *Event) []byte {
	x := encoders.Get().(*encoder)
	defer encoders.Put(x)
	x.buf.Reset()
	x.buf.Write(make([]byte, recordHeaderSize))
	enc := x.enc
	// Writes to a bytes.Buffer cannot fail, so neither can these.
	_ = enc.EncodeArrayLen(payloadFields)
	_ = enc.EncodeBytes(e.ID[:])
	_ = enc.EncodeString(e.Type)
	_ = enc.EncodeString(e.Key)
	if len(e.Headers) == 0 {
		_ = enc.EncodeNil()
	} else {
		_ = enc.EncodeMapLen(len(e.Headers))
		keys := make([]string, 0, len(e.Headers))
		for k := range e.Headers {
			keys = append(keys, k)
		}
		slices.Sort(keys) // deterministic bytes for equal events
		for _, k := range keys {
			_ = enc.EncodeString(k)
			_ = enc.EncodeString(e.Headers[k])
		}
	}
	_ = enc.EncodeBytes(e.Data)
	return bytes.Clone(x.buf.Bytes())
}

// sealRecord fills the header of a value built by encodeRecord.
func sealRecord(v []byte, seq uint64, t time.Time) {
	v[offVersion] = recordVersion
	v[offKind] = byte(KindEvent)
	binary.BigEndian.PutUint64(v[offTime:], uint64(t.UnixNano()))
	binary.BigEndian.PutUint32(v[offCRC:], recordCRC(seq, v))
}

func recordCRC(seq uint64, v []byte) uint32 {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	c := crc32.Update(0, castagnoli, k[:])
	c = crc32.Update(c, castagnoli, v[:offCRC])
	return crc32.Update(c, castagnoli, v[offTime:])
}

// recordTime returns the append time of a sealed value without decoding it.
func recordTime(v []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(v[offTime:]))).UTC()
}

// decoder decodes records. It is not safe for concurrent use.
type decoder struct {
	r   bytes.Reader
	dec *msgpack.Decoder
}

func newDecoder() *decoder {
	d := new(decoder)
	d.dec = msgpack.NewDecoder(&d.r)
	return d
}

// checkRecord verifies a value's header and checksum.
func checkRecord(seq uint64, v []byte) error {
	if len(v) < recordHeaderSize {
		return errShortRecord
	}
	if v[offVersion] != recordVersion {
		return fmt.Errorf("%w %d", errRecordVersion, v[offVersion])
	}
	if RecordKind(v[offKind]) != KindEvent {
		return fmt.Errorf("%w %d", errRecordKind, v[offKind])
	}
	if got, want := binary.BigEndian.Uint32(v[offCRC:]), recordCRC(seq, v); got != want {
		return fmt.Errorf("%w: stored %08x, computed %08x", errChecksum, got, want)
	}
	return nil
}

// decode verifies and decodes the value stored under seq into e. The result
// does not alias v, which may point into bbolt's memory map.
func (d *decoder) decode(seq uint64, v []byte, e *Event) error {
	if err := checkRecord(seq, v); err != nil {
		return err
	}
	d.r.Reset(v[recordHeaderSize:])
	d.dec.Reset(&d.r)
	if err := d.payload(e); err != nil {
		return fmt.Errorf("payload: %w", err)
	}
	if d.r.Len() != 0 {
		return errTrailing
	}
	e.Seq = seq
	e.Time = recordTime(v)
	return nil
}

func (d *decoder) payload(e *Event) error {
	dec := d.dec
	n, err := dec.DecodeArrayLen()
	if err != nil {
		return err
	}
	if n != payloadFields {
		return fmt.Errorf("payload has %d fields, want %d", n, payloadFields)
	}
	if n, err = dec.DecodeBytesLen(); err != nil {
		return err
	} else if n != len(e.ID) {
		return fmt.Errorf("id is %d bytes, want %d", n, len(e.ID))
	}
	if err := dec.ReadFull(e.ID[:]); err != nil {
		return err
	}
	if e.Type, err = dec.DecodeString(); err != nil {
		return err
	}
	if e.Key, err = dec.DecodeString(); err != nil {
		return err
	}
	if n, err = dec.DecodeMapLen(); err != nil {
		return err
	}
	e.Headers = nil
	if n > 0 {
		if n > d.r.Len() { // each entry takes at least one byte: refuse absurd lengths
			return fmt.Errorf("header count %d exceeds record size", n)
		}
		e.Headers = make(map[string]string, n)
		for range n {
			k, err := dec.DecodeString()
			if err != nil {
				return err
			}
			if e.Headers[k], err = dec.DecodeString(); err != nil {
				return err
			}
		}
	}
	e.Data, err = dec.DecodeBytes()
	return err
}
