package eventlog

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
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

// editValue rewrites the value stored under key 1 of stream "s" with raw
// bbolt, the journal closed.
func editValue(t *testing.T, path string, edit func(v []byte)) {
	t.Helper()
	db, err := bolt.Open(path, 0o644, nil)
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.Update(func(btx *bolt.Tx) error {
		b := btx.Bucket(eventsBucket("s"))
		v := bytes.Clone(b.Get(seqKey(1)))
		require.True(t, isChunk(v), "the ten events are one chunk")
		edit(v)
		return b.Put(seqKey(1), v)
	}))
}

// TestChunkDamageIsReported: a damaged record inside a chunk is reported
// with its own sequence while its neighbours still read; a damaged chunk
// header is reported with the chunk's first sequence (docs/FORMAT.md).
func TestChunkDamageIsReported(t *testing.T) {
	for _, tc := range []struct {
		name    string
		edit    func(v []byte)
		read    uint64 // the sequence to read
		wantSeq uint64 // the sequence the error names
		healthy uint64 // a sequence that still reads, or 0
	}{
		{name: "record inside a chunk", read: 5, wantSeq: 5, healthy: 4, edit: func(v []byte) {
			p := chunkHeaderSize
			for range 4 { // skip records 1-4
				l, w := binary.Uvarint(v[p:])
				p += w + int(l)
			}
			_, w := binary.Uvarint(v[p:])
			v[p+w+recordHeaderSize+5] ^= 0xff // inside record 5's payload
		}},
		{name: "chunk count", read: 3, wantSeq: 1, edit: func(v []byte) {
			binary.BigEndian.PutUint16(v[offChunkCount:], 0)
		}},
		{name: "record length", read: 3, wantSeq: 1, edit: func(v []byte) {
			v[chunkHeaderSize] = 0xff // first length runs past the chunk
			v[chunkHeaderSize+1] = 0xff
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "j.db")
			l, err := Open(path, nil)
			require.NoError(t, err)
			evs := make([]Event, 10)
			for i := range evs {
				evs[i] = Event{Type: "t", Data: []byte(fmt.Sprint("event ", i))}
			}
			_, err = l.Append("s", evs...)
			require.NoError(t, err)
			require.NoError(t, l.Close())
			editValue(t, path, tc.edit)

			l, err = Open(path, nil)
			require.NoError(t, err)
			defer l.Close()
			_, err = l.Get("s", tc.read)
			var ce *CorruptError
			require.ErrorAs(t, err, &ce)
			require.Equal(t, "s", ce.Stream)
			require.Equal(t, tc.wantSeq, ce.Seq)
			if tc.healthy != 0 {
				e, err := l.Get("s", tc.healthy)
				require.NoError(t, err)
				require.Equal(t, tc.healthy, e.Seq)
			}
			rep, err := l.Check(context.Background())
			require.NoError(t, err)
			require.False(t, rep.OK())
			require.ErrorAs(t, rep.Problems[0], &ce)
			require.Equal(t, tc.wantSeq, ce.Seq)
		})
	}
}

// TestFormatVersion1Reads: a version 1 journal (plain records only) opens,
// reads and takes appends, which may then be chunks: version 2 adds a kind
// of value, nothing a version 1 file holds changes meaning.
func TestFormatVersion1Reads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	l, err := Open(path, nil)
	require.NoError(t, err)
	for i := range 3 {
		_, err := l.Append("s", Event{Type: "t", Data: []byte(fmt.Sprint(i))})
		require.NoError(t, err)
	}
	require.NoError(t, l.Close())
	db, err := bolt.Open(path, 0o644, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(btx *bolt.Tx) error {
		return btx.Bucket(bucketMeta).Put([]byte(metaVersion), binary.BigEndian.AppendUint32(nil, 1))
	}))
	require.NoError(t, db.Close())
	storedVersion := func(l *Log) uint32 {
		v, err := l.FormatVersion()
		require.NoError(t, err)
		return v
	}

	ro, err := Open(path, &Options{ReadOnly: true})
	require.NoError(t, err)
	got, err := ro.Read("s", 1, 10)
	require.NoError(t, err)
	require.Len(t, got, 3)
	require.Equal(t, uint32(1), storedVersion(ro), "a read-only open changes nothing")
	require.NoError(t, ro.Close())

	l, err = Open(path, nil)
	require.NoError(t, err)
	defer l.Close()
	require.Equal(t, uint32(FormatVersion), storedVersion(l), "opened for writing, the journal now says version %d: older builds refuse it", FormatVersion)
	_, err = l.Append("s", Event{Type: "t"}, Event{Type: "t"})
	require.NoError(t, err)
	got, err = l.Read("s", 1, 10)
	require.NoError(t, err)
	require.Len(t, got, 5)
	rep, err := l.Check(context.Background())
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Problems)
}
