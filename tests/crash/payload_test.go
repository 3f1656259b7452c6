package crash_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/oklog/ulid/v2"
)

// The child appends to these streams; an event's Data names its stream by
// index.
var streams = [...]string{"alpha", "beta"}

const numStreams = len(streams)

// writers is how many goroutines of the child append concurrently. Each
// writer slot k owns the consumer consumerName(k) on every stream.
const writers = 8

func consumerName(slot int) string { return "w" + strconv.Itoa(slot) }

// parseConsumerName returns the writer slot of a consumer name.
func parseConsumerName(name string) (int, bool) {
	if len(name) < 2 || name[0] != 'w' {
		return 0, false
	}
	slot, err := strconv.Atoi(name[1:])
	return slot, err == nil && slot >= 0 && slot < writers
}

// eventKey names one event a child attempts: every other property of the
// event (size, type, key, headers, ID, payload bytes) is derived from it,
// so the parent can regenerate the event and compare it field by field.
// Keys are unique across the run: each cycle is a new child and each of its
// writers counts its events.
type eventKey struct {
	Stream uint8  // index in streams
	Cycle  uint32 // the child process that wrote it
	Writer uint8  // the writer goroutine within the child
	Ctr    uint64 // the writer's counter
}

func (k eventKey) String() string {
	return fmt.Sprintf("%s/c%d/w%d/#%d", streams[k.Stream], k.Cycle, k.Writer, k.Ctr)
}

// Data flags, stored in the payload and covered by its CRC.
const (
	// flagOffset marks the last event of an Update that also moved the
	// writer's consumer offset to this event's sequence, in the same
	// transaction.
	flagOffset byte = 1 << 0
)

// Data layout of every event the child writes:
//
//	+-----------+----------+-----------+-----------+--------------+--------------+--- ... ---+------------+
//	| magic 1B  | flags 1B | stream 1B | writer 1B | cycle uvarint| ctr uvarint  | filler    | CRC32C 4B  |
//	+-----------+----------+-----------+-----------+--------------+--------------+--- ... ---+------------+
//
// The filler is pseudo-random bytes seeded by the event's key; the CRC
// covers everything before it, so any event found in the journal can be
// checked on its own, acknowledged or not.
const (
	dataMagic   = 0xC7
	minDataSize = 10
	maxDataSize = 64 << 10
	bigDataSize = 256 << 10
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// digest is the payload digest an acknowledgement carries.
func digest(data []byte) uint32 { return crc32.Checksum(data, castagnoli) }

// specRand returns the generator every derived property of k comes from.
func specRand(k eventKey) *rand.Rand {
	s1 := uint64(k.Cycle)<<16 | uint64(k.Stream)<<8 | uint64(k.Writer)
	return rand.New(rand.NewPCG(s1^0x9e3779b97f4a7c15, k.Ctr))
}

var eventTypes = [...]string{"crash.created", "crash.updated", "crash.deleted.v2", "crash_test.big-one"}

// makeEvent returns the event k names, with flags in its payload.
func makeEvent(k eventKey, flags byte) eventlog.Event {
	r := specRand(k)
	size := dataSize(r)
	e := eventlog.Event{Type: eventTypes[r.IntN(len(eventTypes))]}
	if r.IntN(3) > 0 {
		e.Key = "key-" + strconv.Itoa(r.IntN(64))
	}
	if r.IntN(4) == 0 {
		e.Headers = map[string]string{"writer": strconv.Itoa(int(k.Writer)), "n": strconv.FormatUint(k.Ctr, 10)}
	}
	if r.IntN(4) > 0 { // producer-supplied ID; otherwise the journal makes one
		e.ID = eventlog.DeriveID("crash", streams[k.Stream], strconv.FormatUint(uint64(k.Cycle), 10),
			strconv.Itoa(int(k.Writer)), strconv.FormatUint(k.Ctr, 10))
	}
	data := make([]byte, 0, max(size, 32))
	data = append(data, dataMagic, flags, k.Stream, k.Writer)
	data = binary.AppendUvarint(data, uint64(k.Cycle))
	data = binary.AppendUvarint(data, k.Ctr)
	data = fillRandom(data, k, max(size-len(data)-4, 0))
	e.Data = binary.BigEndian.AppendUint32(data, digest(data))
	return e
}

// dataSize draws a payload size: log-uniform from 10 B to 64 KiB, and
// about one in a hundred close to 256 KiB.
func dataSize(r *rand.Rand) int {
	if r.IntN(100) == 0 {
		return bigDataSize - r.IntN(4096)
	}
	lo, hi := math.Log(minDataSize), math.Log(maxDataSize)
	return int(math.Exp(lo + r.Float64()*(hi-lo)))
}

// fillRandom appends n pseudo-random bytes seeded by k.
func fillRandom(b []byte, k eventKey, n int) []byte {
	var seed [32]byte
	seed[0], seed[1] = k.Stream, k.Writer
	binary.LittleEndian.PutUint32(seed[4:], k.Cycle)
	binary.LittleEndian.PutUint64(seed[8:], k.Ctr)
	b = slices.Grow(b, n)
	fill := b[len(b) : len(b)+n]
	_, _ = rand.NewChaCha8(seed).Read(fill) // never fails
	return b[:len(b)+n]
}

var errBadData = errors.New("payload is not one the child writes")

// parseData checks a payload's own CRC and returns its key and flags.
func parseData(data []byte) (eventKey, byte, error) {
	var k eventKey
	if len(data) < 4+4+2 {
		return k, 0, fmt.Errorf("%w: %d bytes", errBadData, len(data))
	}
	body := data[:len(data)-4]
	if got, want := binary.BigEndian.Uint32(data[len(body):]), digest(body); got != want {
		return k, 0, fmt.Errorf("%w: CRC32C stored %08x, computed %08x", errBadData, got, want)
	}
	if body[0] != dataMagic {
		return k, 0, fmt.Errorf("%w: magic %#x", errBadData, body[0])
	}
	flags := body[1]
	k.Stream, k.Writer = body[2], body[3]
	if int(k.Stream) >= numStreams || int(k.Writer) >= writers {
		return k, 0, fmt.Errorf("%w: stream %d writer %d", errBadData, k.Stream, k.Writer)
	}
	rest := body[4:]
	cycle, n := binary.Uvarint(rest)
	if n <= 0 || cycle > math.MaxUint32 {
		return k, 0, fmt.Errorf("%w: bad cycle", errBadData)
	}
	k.Cycle = uint32(cycle)
	if k.Ctr, n = binary.Uvarint(rest[n:]); n <= 0 {
		return k, 0, fmt.Errorf("%w: bad counter", errBadData)
	}
	return k, flags, nil
}

// checkEvent regenerates the event e's payload names and compares every
// field the producer set.
func checkEvent(e eventlog.Event, k eventKey, flags byte) error {
	want := makeEvent(k, flags)
	switch {
	case e.Type != want.Type:
		return fmt.Errorf("event %s: type %q, want %q", k, e.Type, want.Type)
	case e.Key != want.Key:
		return fmt.Errorf("event %s: key %q, want %q", k, e.Key, want.Key)
	case !maps.Equal(e.Headers, want.Headers):
		return fmt.Errorf("event %s: headers %v, want %v", k, e.Headers, want.Headers)
	case !bytes.Equal(e.Data, want.Data):
		return fmt.Errorf("event %s: data differs (%d bytes, want %d)", k, len(e.Data), len(want.Data))
	case want.ID != (ulid.ULID{}) && e.ID != want.ID:
		return fmt.Errorf("event %s: id %s, want %s", k, e.ID, want.ID)
	}
	return nil
}
