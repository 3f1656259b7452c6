package eventlog

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// goldenChunk is three copies of the golden event as records 7, 8, 9 of a
// chunk stored under 7.
func goldenChunk() []byte {
	var recs [][]byte
	for i := range uint64(3) {
		e := goldenEvent()
		e.Seq += i
		v := encodeRecord(&e)
		sealRecord(v, e.Seq, e.Time)
		recs = append(recs, v)
	}
	return appendChunk(nil, recs)
}

func TestFormatChunkGolden(t *testing.T) {
	got := goldenChunk()
	want := readGolden(t, "chunk_v2.golden", fmt.Sprintf(
		"flowrt chunk, format version 2: records %d..%d of the golden event stored as one value under seq %d.\n"+
			"ver 1B, kind 1B (2 = chunk), count 2B BE, then count x (uvarint length, record). See docs/FORMAT.md.",
		goldenEvent().Seq, goldenEvent().Seq+2, goldenEvent().Seq), got)
	require.Equal(t, want, got, "the chunk encoding changed: bump FormatVersion, update docs/FORMAT.md and add a new golden file")
	require.Equal(t, byte(recordVersion), want[0])
	require.Equal(t, byte(KindChunk), want[1])
	require.Equal(t, uint16(3), binary.BigEndian.Uint16(want[2:]))

	var seqs []uint64
	d := newDecoder()
	require.NoError(t, eachRecord(7, want, 8, func(seq uint64, rec []byte) bool {
		var e Event
		require.NoError(t, d.decode(seq, rec, &e))
		seqs = append(seqs, e.Seq)
		return true
	}))
	require.Equal(t, []uint64{8, 9}, seqs, "records from 8 on")
}

// FuzzChunk feeds arbitrary bytes to the chunk reader as a stored value:
// it never panics, never reads past the value, and yields at most the
// chunk's count of records, each a sub-slice of the value.
func FuzzChunk(f *testing.F) {
	f.Add(goldenChunk())
	f.Add(goldenChunk()[:20])
	f.Add([]byte{recordVersion, byte(KindChunk), 0, 0})
	f.Add([]byte{recordVersion, byte(KindChunk), 0xff, 0xff, 0x80})
	f.Fuzz(func(t *testing.T, v []byte) {
		span, serr := valueSpan(v)
		n := uint64(0)
		err := eachRecord(100, v, 100, func(seq uint64, rec []byte) bool {
			require.Equal(t, 100+n, seq)
			require.True(t, len(rec) <= len(v))
			n++
			return true
		})
		if serr == nil && err == nil {
			require.LessOrEqual(t, n, span)
		}
	})
}

// TestChunkedAppendRoundTrip: a bulk append is stored in chunks, every
// event reads back by sequence and by ID, and truncation inside a chunk
// keeps the rest.
func TestChunkedAppendRoundTrip(t *testing.T) {
	l, err := Open(filepath.Join(t.TempDir(), "j.db"), nil)
	require.NoError(t, err)
	defer l.Close()
	evs := make([]Event, 300)
	for i := range evs {
		evs[i] = Event{Type: "t", Key: fmt.Sprint(i), Data: bytes.Repeat([]byte{byte(i)}, 100)}
	}
	res, err := l.Append("s", evs...)
	require.NoError(t, err)
	var values int
	require.NoError(t, l.View(func(tx *Tx) error {
		st, err := tx.stream("s", existing)
		values = st.events.Stats().KeyN
		return err
	}))
	require.LessOrEqual(t, values, 30, "stored as chunks, at least ten events a value")
	for i, r := range res {
		e, err := l.Get("s", r.Seq)
		require.NoError(t, err)
		require.Equal(t, evs[i].Key, e.Key)
		byID, err := l.GetByID("s", r.ID)
		require.NoError(t, err)
		require.Equal(t, r.Seq, byID.Seq)
	}
	n, err := l.Truncate("s", 150, Force)
	require.NoError(t, err)
	require.Equal(t, uint64(149), n)
	got, err := l.Read("s", 1, 1000)
	require.NoError(t, err)
	require.Len(t, got, 151)
	require.Equal(t, uint64(150), got[0].Seq)
	seq, err := l.SeqAtTime("s", time.Time{})
	require.NoError(t, err)
	require.Equal(t, uint64(150), seq)
}
