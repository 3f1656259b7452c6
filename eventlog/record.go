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
	"github.com/vmihailenco/msgpack/v5/msgpcode"
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
	KindChunk RecordKind = 2 // consecutive events stored as one value (chunk.go)
)

// String returns the kind's name.
func (k RecordKind) String() string {
	switch k {
	case KindEvent:
		return "event"
	case KindChunk:
		return "chunk"
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

var zeroHeader [recordHeaderSize]byte

// append writes an unsealed value for e at the end of the buffer.
func (x *encoder) append(e *Event) {
	x.buf.Write(zeroHeader[:])
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
	types map[string]string // interned event types: a stream repeats a few
}

func newDecoder() *decoder { return &decoder{types: make(map[string]string)} }

// maxInternedTypes bounds the decoder's type cache.
const maxInternedTypes = 256

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
	p := payload{b: v[recordHeaderSize:]}
	if err := d.payload(&p, e); err != nil {
		return fmt.Errorf("payload: %w", err)
	}
	if len(p.b) != 0 {
		return errTrailing
	}
	e.Seq = seq
	e.Time = recordTime(v)
	return nil
}

// The payload is decoded straight from the record's bytes rather than
// through msgpack.Decoder and an io.Reader: the layout is fixed (encodeRecord
// writes it with the msgpack encoder), and catching up reads a million
// records a second. It accepts exactly the msgpack forms of each field's
// type; FuzzDecodeRecord checks it against the encoder.
func (d *decoder) payload(p *payload, e *Event) error {
	if c, err := p.byte(); err != nil {
		return err
	} else if c != msgpcode.FixedArrayLow|payloadFields {
		return fmt.Errorf("payload is not a %d-element array (code %#x)", payloadFields, c)
	}
	id, ok, err := p.bin()
	if err != nil {
		return fmt.Errorf("id: %w", err)
	}
	if !ok || len(id) != len(e.ID) {
		return fmt.Errorf("id is %d bytes, want %d", len(id), len(e.ID))
	}
	copy(e.ID[:], id)
	typ, err := p.str()
	if err != nil {
		return fmt.Errorf("type: %w", err)
	}
	if t, ok := d.types[string(typ)]; ok {
		e.Type = t
	} else {
		e.Type = string(typ)
		if len(d.types) < maxInternedTypes {
			d.types[e.Type] = e.Type
		}
	}
	key, err := p.str()
	if err != nil {
		return fmt.Errorf("key: %w", err)
	}
	e.Key = string(key)
	n, err := p.mapLen()
	if err != nil {
		return fmt.Errorf("headers: %w", err)
	}
	e.Headers = nil
	if n > 0 {
		if n > len(p.b)/2 { // each entry takes at least two bytes: refuse absurd counts
			return fmt.Errorf("header count %d exceeds record size", n)
		}
		e.Headers = make(map[string]string, n)
		for range n {
			k, err := p.str()
			if err != nil {
				return fmt.Errorf("header name: %w", err)
			}
			v, err := p.str()
			if err != nil {
				return fmt.Errorf("header value: %w", err)
			}
			e.Headers[string(k)] = string(v)
		}
	}
	data, ok, err := p.bin()
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	e.Data = nil
	if ok {
		e.Data = append(make([]byte, 0, len(data)), data...)
	}
	return nil
}

// payload is the unread rest of a record's msgpack payload.
type payload struct{ b []byte }

var errPayloadShort = errors.New("payload ends early")

func (p *payload) byte() (byte, error) {
	if len(p.b) == 0 {
		return 0, errPayloadShort
	}
	c := p.b[0]
	p.b = p.b[1:]
	return c, nil
}

// take returns the next n bytes, n given by a big-endian length of size
// bytes (0 for none).
func (p *payload) take(size int, n int) ([]byte, error) {
	if len(p.b) < size {
		return nil, errPayloadShort
	}
	switch size {
	case 1:
		n = int(p.b[0])
	case 2:
		n = int(binary.BigEndian.Uint16(p.b))
	case 4:
		n = int(binary.BigEndian.Uint32(p.b))
	}
	p.b = p.b[size:]
	if n < 0 || len(p.b) < n {
		return nil, errPayloadShort
	}
	out := p.b[:n:n]
	p.b = p.b[n:]
	return out, nil
}

// str reads a msgpack string.
func (p *payload) str() ([]byte, error) {
	c, err := p.byte()
	if err != nil {
		return nil, err
	}
	switch {
	case msgpcode.IsFixedString(c):
		return p.take(0, int(c&msgpcode.FixedStrMask))
	case c == msgpcode.Str8:
		return p.take(1, 0)
	case c == msgpcode.Str16:
		return p.take(2, 0)
	case c == msgpcode.Str32:
		return p.take(4, 0)
	}
	return nil, fmt.Errorf("want a string, got code %#x", c)
}

// bin reads msgpack binary data; ok is false for nil.
func (p *payload) bin() ([]byte, bool, error) {
	c, err := p.byte()
	if err != nil {
		return nil, false, err
	}
	var b []byte
	switch c {
	case msgpcode.Nil:
		return nil, false, nil
	case msgpcode.Bin8:
		b, err = p.take(1, 0)
	case msgpcode.Bin16:
		b, err = p.take(2, 0)
	case msgpcode.Bin32:
		b, err = p.take(4, 0)
	default:
		return nil, false, fmt.Errorf("want binary data, got code %#x", c)
	}
	return b, err == nil, err
}

// mapLen reads a msgpack map header; nil is an empty map.
func (p *payload) mapLen() (int, error) {
	c, err := p.byte()
	if err != nil {
		return 0, err
	}
	switch {
	case c == msgpcode.Nil:
		return 0, nil
	case c >= msgpcode.FixedMapLow && c <= msgpcode.FixedMapHigh:
		return int(c & msgpcode.FixedMapMask), nil
	case c == msgpcode.Map16 || c == msgpcode.Map32:
		size := 2
		if c == msgpcode.Map32 {
			size = 4
		}
		if len(p.b) < size {
			return 0, errPayloadShort
		}
		n := int(binary.BigEndian.Uint16(p.b))
		if size == 4 {
			n = int(binary.BigEndian.Uint32(p.b))
		}
		p.b = p.b[size:]
		return n, nil
	}
	return 0, fmt.Errorf("want a map, got code %#x", c)
}
