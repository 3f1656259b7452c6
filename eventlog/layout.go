package eventlog

import "encoding/binary"

// Bucket layout. These names and encodings are part of the on-disk format
// (docs/FORMAT.md) and must not be changed without a FormatVersion bump.
//
//	meta/                     journal identity
//	  "magic"   = "flowrt-journal"
//	  "version" = uint32 BE FormatVersion
//	  "id"      = 16-byte ULID of the journal
//	heads/                    one entry per stream
//	  <stream> = head: last seq, last time, retained bytes, CRC32C
//	e/<stream>                seq (uint64 BE) -> record (see record.go)
//	i/<stream>                producer-supplied event ID (16 bytes) -> seq (uint64 BE)
//	offsets/                  consumer ack offsets
//	  <stream> 0x00 <consumer> = offset uint64 BE, updated unix ns int64 BE
//	ns/<namespace>/           key-value space owned by one flowrt package
const (
	// FormatVersion is the journal format this build writes. Open refuses a
	// journal with a higher version.
	FormatVersion = 2

	journalMagic = "flowrt-journal"
	metaMagic    = "magic"
	metaVersion  = "version"
	metaID       = "id"
)

var (
	bucketMeta       = []byte("meta")
	bucketHeads      = []byte("heads")
	bucketOffsets    = []byte("offsets")
	bucketNamespaces = []byte("ns")
)

// Streams live in top-level buckets rather than nested ones: every level of
// nesting is one more page rewritten by every commit.
func eventsBucket(stream string) []byte { return []byte("e/" + stream) }
func idsBucket(stream string) []byte    { return []byte("i/" + stream) }

// seqKey encodes a sequence as a big-endian key so cursors iterate in order.
func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func offsetKey(stream, consumer string) []byte {
	k := make([]byte, 0, len(stream)+1+len(consumer))
	k = append(k, stream...)
	k = append(k, 0)
	return append(k, consumer...)
}
