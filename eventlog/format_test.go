package eventlog

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// The golden tests pin the on-disk format: a change to any encoding fails
// them. An intended change bumps FormatVersion, updates docs/FORMAT.md and
// adds new golden files (STYLE.md §5); regenerate with
//
//	go test ./eventlog -run TestFormat -update
var updateGolden = flag.Bool("update", false, "rewrite eventlog's golden files in testdata")

// goldenEvent is the fixed event of record_v1.golden.
func goldenEvent() Event {
	return Event{
		Seq:     7,
		ID:      ulid.MustParse("01HZX3K9Q8W5V7T2N4M6P8R0S2"),
		Stream:  "orders",
		Type:    "order.created",
		Key:     "order-42",
		Time:    time.Date(2024, 6, 1, 12, 34, 56, 789012345, time.UTC),
		Headers: map[string]string{"trace-id": "4bf92f35", "content-type": "application/json"},
		Data:    []byte(`{"total":42,"currency":"EUR"}`),
	}
}

// goldenHead is the fixed stream head of head_v1.golden.
var goldenHead = head{last: 7, lastTime: goldenEvent().Time.UnixNano(), bytes: 123456}

// goldenOffset is the offset entry of offset_v1.golden.
var (
	goldenOffsetSeq  uint64 = 5
	goldenOffsetTime        = time.Date(2024, 6, 1, 12, 35, 0, 1, time.UTC)
)

// readGolden returns the bytes of a golden hex dump; with -update and a
// non-nil got it first writes got there under a header comment.
func readGolden(t *testing.T, name, comment string, got []byte) []byte {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *updateGolden && got != nil {
		var b strings.Builder
		for _, line := range strings.Split(comment, "\n") {
			fmt.Fprintf(&b, "# %s\n", line)
		}
		b.WriteString(hex.Dump(got))
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
	}
	raw, err := os.ReadFile(path)
	require.NoError(t, err, "missing golden file; run with -update to create it")
	return parseHexDump(t, raw)
}

// parseHexDump reads the output of hex.Dump, skipping '#' comment lines.
func parseHexDump(t *testing.T, raw []byte) []byte {
	t.Helper()
	var out []byte
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line, _, _ = strings.Cut(line, "|")
		fields := strings.Fields(line)
		require.NotEmpty(t, fields)
		for _, f := range fields[1:] { // fields[0] is the offset
			b, err := hex.DecodeString(f)
			require.NoError(t, err, "line %q", sc.Text())
			out = append(out, b...)
		}
	}
	require.NoError(t, sc.Err())
	return out
}

func TestFormatRecordGolden(t *testing.T) {
	e := goldenEvent()
	v := encodeRecord(&e)
	sealRecord(v, e.Seq, e.Time)
	want := readGolden(t, "record_v1.golden", fmt.Sprintf(
		"flowrt event record, record version %d: the value stored under seq %d in e/%s.\n"+
			"Event: id %s, type %q, key %q, headers %v, data %s,\n"+
			"time %s. See docs/FORMAT.md; regenerate with -update only for a new format version.",
		recordVersion, e.Seq, e.Stream, e.ID, e.Type, e.Key, e.Headers, e.Data, e.Time.Format(time.RFC3339Nano)), v)
	require.Equal(t, hex.Dump(want), hex.Dump(v), "the record encoding changed: bump FormatVersion, update docs/FORMAT.md and add a new golden file")

	// The envelope, field by field, as docs/FORMAT.md describes it.
	require.Equal(t, byte(1), want[0], "record version")
	require.Equal(t, byte(1), want[1], "kind")
	require.Equal(t, recordCRC(e.Seq, want), uint32(want[2])<<24|uint32(want[3])<<16|uint32(want[4])<<8|uint32(want[5]), "CRC32C over seq and the rest of the value")
	require.Equal(t, e.Time, recordTime(want), "unix ns at bytes 6-13")
	require.Equal(t, byte(0x95), want[14], "payload is a msgpack array of 5")
	require.Equal(t, e.ID[:], recordID(want), "ID at the offset generated IDs are written to")
}

func TestFormatRecordDecodesGolden(t *testing.T) {
	want := goldenEvent()
	raw := readGolden(t, "record_v1.golden", "", nil)
	var got Event
	require.NoError(t, newDecoder().decode(want.Seq, raw, &got))
	want.Stream = "" // the bucket names the stream, not the record
	require.Equal(t, want, got)

	// The checksum covers the sequence: the same bytes under another key
	// are corrupt.
	err := newDecoder().decode(want.Seq+1, raw, &got)
	require.ErrorIs(t, err, errChecksum)
}

func TestFormatHeadGolden(t *testing.T) {
	got := goldenHead.encode()
	want := readGolden(t, "head_v1.golden", fmt.Sprintf(
		"flowrt stream head, format version %d: the value stored under the stream's name in heads/.\n"+
			"last %d, last time %d (unix ns), bytes %d, then CRC32C of the first 24 bytes.",
		FormatVersion, goldenHead.last, goldenHead.lastTime, goldenHead.bytes), got)
	require.Equal(t, hex.Dump(want), hex.Dump(got), "the head encoding changed: bump FormatVersion, update docs/FORMAT.md and add a new golden file")
	h, err := decodeHead(want)
	require.NoError(t, err)
	require.Equal(t, goldenHead, h)
}

func TestFormatOffsetGolden(t *testing.T) {
	got := encodeOffset(goldenOffsetSeq, goldenOffsetTime)
	want := readGolden(t, "offset_v1.golden", fmt.Sprintf(
		"flowrt consumer offset, format version %d: the value stored under <stream> 0x00 <consumer>\n"+
			"in offsets/. Offset %d (uint64 BE), then updated %s as unix ns (int64 BE).",
		FormatVersion, goldenOffsetSeq, goldenOffsetTime.Format(time.RFC3339Nano)), got)
	require.Equal(t, hex.Dump(want), hex.Dump(got), "the offset encoding changed: bump FormatVersion, update docs/FORMAT.md and add a new golden file")

	// Decode it the way the journal does: store the golden value, with raw
	// bbolt, under a golden key, and read it back through the API.
	path := filepath.Join(t.TempDir(), "j.db")
	l, err := Open(path, nil)
	require.NoError(t, err)
	for range 9 {
		_, err = l.Append("orders", Event{Type: "t"})
		require.NoError(t, err)
	}
	require.NoError(t, l.Close())
	db, err := bolt.Open(path, 0o644, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("offsets")).Put([]byte("orders\x00billing"), want)
	}))
	require.NoError(t, db.Close())
	l, err = Open(path, &Options{ReadOnly: true})
	require.NoError(t, err)
	defer l.Close()
	cs, err := l.Consumers("orders")
	require.NoError(t, err)
	require.Equal(t, []ConsumerInfo{{Stream: "orders", Name: "billing", Offset: goldenOffsetSeq, Lag: 9 - goldenOffsetSeq, Updated: goldenOffsetTime}}, cs)
}

// TestFormatLayout pins the names, keys and values of the bucket layout
// (docs/FORMAT.md).
func TestFormatLayout(t *testing.T) {
	lines := []string{
		fmt.Sprintf("FormatVersion %d", FormatVersion),
		fmt.Sprintf("meta/%q = %q", metaMagic, journalMagic),
		fmt.Sprintf("meta/%q = %x", metaVersion, []byte{0, 0, 0, FormatVersion}),
		fmt.Sprintf("meta/%q = 16-byte ULID", metaID),
		fmt.Sprintf("buckets %q %q %q %q", bucketMeta, bucketHeads, bucketOffsets, bucketNamespaces),
		fmt.Sprintf("events bucket of %q = %q", "orders", eventsBucket("orders")),
		fmt.Sprintf("ids bucket of %q = %q", "orders", idsBucket("orders")),
		fmt.Sprintf("seq key 7 = %x", seqKey(7)),
		fmt.Sprintf("offset key orders/billing = %x", offsetKey("orders", "billing")),
	}
	got := strings.Join(lines, "\n") + "\n"
	path := filepath.Join("testdata", fmt.Sprintf("layout_v%d.golden", FormatVersion))
	if *updateGolden {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "missing golden file; run with -update to create it")
	require.Equal(t, string(want), got, "the bucket layout changed: bump FormatVersion, update docs/FORMAT.md and add a new golden file")
}

// TestFormatGeneratedID checks an ID the journal generates against the
// layout docs/FORMAT.md gives, computed here independently: unix ms (6
// bytes BE), seq (6 bytes BE), CRC32C over the journal ID, the stream name
// and the seq as 8 bytes BE.
func TestFormatGeneratedID(t *testing.T) {
	l, err := Open(filepath.Join(t.TempDir(), "j.db"), nil)
	require.NoError(t, err)
	defer l.Close()
	for range 6 {
		_, err := l.Append("orders", Event{Type: "t", ID: DeriveID(fmt.Sprint(time.Now().UnixNano()))})
		require.NoError(t, err)
	}
	res, err := l.Append("orders", Event{Type: "t"})
	require.NoError(t, err)
	require.Equal(t, uint64(7), res[0].Seq)
	e, err := l.Get("orders", 7)
	require.NoError(t, err)

	var want ulid.ULID
	require.NoError(t, want.SetTime(ulid.Timestamp(e.Time)))
	copy(want[6:12], []byte{0, 0, 0, 0, 0, 7})
	jid := l.ID()
	tag := crc32.Update(0, crc32.MakeTable(crc32.Castagnoli), append(append(jid[:], "orders"...), 0, 0, 0, 0, 0, 0, 0, 7))
	binary.BigEndian.PutUint32(want[12:], tag)
	require.Equal(t, want, res[0].ID)
	require.Equal(t, want, e.ID)

	got, err := l.GetByID("orders", want)
	require.NoError(t, err)
	require.Equal(t, uint64(7), got.Seq)
	_, err = l.GetByID("payments", want)
	require.ErrorIs(t, err, ErrNotFound)
}
