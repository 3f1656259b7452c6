//go:build unix

package eventlog_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"testing"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// corruptBase is a journal built once per test and copied into each case.
type corruptBase struct {
	path    string
	payload []byte // Data of event corruptTarget, unique in the file
}

func buildCorruptBase(t *testing.T) corruptBase {
	t.Helper()
	path := filepath.Join(t.TempDir(), "base.db")
	l, err := eventlog.Open(path, nil)
	require.NoError(t, err)
	payload := []byte(fmt.Sprintf("corrupt-me-%016x", rand.Uint64()))
	events := make([]eventlog.Event, corruptEvents)
	for i := range events {
		events[i] = eventlog.Event{
			Type:    "order.created",
			Key:     fmt.Sprintf("order-%d", i%7),
			Headers: map[string]string{"n": fmt.Sprint(i)},
			Data:    bytes.Repeat([]byte{'a' + byte(i%26)}, 480),
		}
	}
	// The target is larger than a chunk may be, so the journal stores it as
	// a plain record under its own key, which the record cases damage.
	events[corruptTarget-1].Data = append(bytes.Clone(payload), bytes.Repeat([]byte{'z'}, 9<<10)...)
	// One append: one commit, so every record is written once.
	_, err = l.Append(corruptStream, events...)
	require.NoError(t, err)
	require.NoError(t, l.CommitOffset(corruptStream, corruptConsumer, 10))
	require.NoError(t, l.Close())
	return corruptBase{path: path, payload: payload}
}

// copyTo copies the base journal to a fresh directory and returns the path.
func (b corruptBase) copyTo(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(b.path)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "journal.db")
	require.NoError(t, os.WriteFile(path, raw, 0o644))
	return path
}

// boltMetaFields reads a bbolt meta page at off, independently of the code
// under test: page size, high water mark, and whether the checksum holds.
func boltMetaFields(b []byte, off int) (pageSize uint32, pgid uint64, sumOK bool) {
	m := b[off+16 : off+16+64]
	h := fnv.New64a()
	h.Write(m[:56])
	return binary.LittleEndian.Uint32(m[8:]), binary.LittleEndian.Uint64(m[40:]), h.Sum64() == binary.LittleEndian.Uint64(m[56:])
}

// journalGeometry returns the page size and the high water mark (in pages)
// of the newer meta page of a healthy journal file.
func journalGeometry(t *testing.T, path string) (pageSize int, pgid int) {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	ps, pg0, ok0 := boltMetaFields(raw, 0)
	_, pg1, ok1 := boltMetaFields(raw, int(ps))
	require.True(t, ok0 && ok1, "base journal has a bad meta page")
	return int(ps), int(max(pg0, pg1))
}

// freelistPage returns the file offset of the freelist page named by the
// newer meta page.
func freelistPage(t *testing.T, path string) int64 {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	ps := int(binary.LittleEndian.Uint32(raw[16+8:]))
	newer := 0
	if binary.LittleEndian.Uint64(raw[ps+16+48:]) > binary.LittleEndian.Uint64(raw[16+48:]) {
		newer = ps
	}
	id := binary.LittleEndian.Uint64(raw[newer+16+32:])
	require.NotEqual(t, ^uint64(0), id, "base journal has no synced freelist")
	return int64(id) * int64(ps)
}

// editFreelist rewrites the header and first ids of the freelist page: the
// page header is id 8B, flags 2B, count 2B, overflow 4B, then the ids.
func editFreelist(fn func(page []byte)) func(*testing.T, corruptBase, string) {
	return func(t *testing.T, _ corruptBase, path string) {
		t.Helper()
		off := freelistPage(t, path)
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		require.NoError(t, err)
		defer f.Close()
		page := make([]byte, 64)
		_, err = f.ReadAt(page, off)
		require.NoError(t, err)
		fn(page)
		_, err = f.WriteAt(page, off)
		require.NoError(t, err)
	}
}

// rawValue reads one value from a journal with bbolt directly.
func rawValue(t *testing.T, path string, bucket, key []byte) []byte {
	t.Helper()
	db, err := bolt.Open(path, 0o644, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	require.NoError(t, err)
	defer db.Close()
	var v []byte
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if b == nil {
			return fmt.Errorf("no bucket %q", bucket)
		}
		v = bytes.Clone(b.Get(key))
		return nil
	}))
	require.NotNil(t, v, "no value under %x in %q", key, bucket)
	return v
}

func seqBytes(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// flipInEveryCopy flips the byte at off within every occurrence of needle in
// the file. bbolt leaves stale copies of rewritten pages in free pages; they
// are flipped too, which is harmless. It returns the number of copies.
func flipInEveryCopy(t *testing.T, path string, needle []byte, off int) int {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	n := 0
	for i := 0; ; {
		j := bytes.Index(raw[i:], needle)
		if j < 0 {
			break
		}
		raw[i+j+off] ^= 0x40
		n++
		i += j + len(needle)
	}
	require.NotZero(t, n, "needle not found in the file")
	require.NoError(t, os.WriteFile(path, raw, 0o644))
	return n
}

func flipAt(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	var b [1]byte
	_, err = f.ReadAt(b[:], off)
	require.NoError(t, err)
	b[0] ^= 0x5a
	_, err = f.WriteAt(b[:], off)
	require.NoError(t, err)
}

func fileDigest(t *testing.T, path string) [32]byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	return sha256.Sum256(raw)
}

// requireFileUnchanged is bbolt's requireDBNoChange: the journal's bytes are
// what they were, no other file appeared in its directory, and no lock on
// it is left held by this process.
func requireFileUnchanged(t *testing.T, path string, want [32]byte) {
	t.Helper()
	require.Equal(t, want, fileDigest(t, path), "the file's bytes changed")
	ents, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	require.Equal(t, []string{filepath.Base(path)}, names, "files left next to the journal")
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	require.NoError(t, err, "a lock on the journal is still held after the call returned")
	require.NoError(t, syscall.Flock(int(f.Fd()), syscall.LOCK_UN))
}

// noPanic runs fn and fails the test, with the stack, if a panic escapes.
func noPanic(t *testing.T, what string, fn func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("%s panicked: %v\n%s", what, r, debug.Stack())
		}
	}()
	fn()
}

func truncateTo(size func(t *testing.T, path string) int64) func(*testing.T, corruptBase, string) {
	return func(t *testing.T, _ corruptBase, path string) {
		t.Helper()
		require.NoError(t, os.Truncate(path, size(t, path)))
	}
}

func pages(n int, extra int64) func(t *testing.T, path string) int64 {
	return func(t *testing.T, path string) int64 {
		ps, _ := journalGeometry(t, path)
		return int64(n*ps) + extra
	}
}

func belowHighWater(pagesShort int) func(t *testing.T, path string) int64 {
	return func(t *testing.T, path string) int64 {
		ps, pgid := journalGeometry(t, path)
		return int64((pgid - pagesShort) * ps)
	}
}

func replaceWith(content func(t *testing.T, path string) []byte) func(*testing.T, corruptBase, string) {
	return func(t *testing.T, _ corruptBase, path string) {
		t.Helper()
		require.NoError(t, os.WriteFile(path, content(t, path), 0o644))
	}
}

// boltFile replaces the journal with a bbolt database built by fn.
func boltFile(opts *bolt.Options, fn func(tx *bolt.Tx) error) func(*testing.T, corruptBase, string) {
	return func(t *testing.T, _ corruptBase, path string) {
		t.Helper()
		require.NoError(t, os.Remove(path))
		db, err := bolt.Open(path, 0o644, opts)
		require.NoError(t, err)
		require.NoError(t, db.Update(fn))
		require.NoError(t, db.Close())
	}
}

// editJournal changes a journal with bbolt directly, as a foreign tool
// would.
func editJournal(fn func(tx *bolt.Tx) error) func(*testing.T, corruptBase, string) {
	return func(t *testing.T, _ corruptBase, path string) {
		t.Helper()
		db, err := bolt.Open(path, 0o644, &bolt.Options{Timeout: time.Second})
		require.NoError(t, err)
		require.NoError(t, db.Update(fn))
		require.NoError(t, db.Close())
	}
}

// flipMeta flips a byte at off within the checksummed part of meta page i.
func flipMeta(i int, off int64) func(*testing.T, corruptBase, string) {
	return func(t *testing.T, _ corruptBase, path string) {
		t.Helper()
		ps, _ := journalGeometry(t, path)
		flipAt(t, path, int64(i*ps)+16+off)
	}
}

// flipRecord flips the byte at off of the target event's record.
func flipRecord(off int) func(*testing.T, corruptBase, string) {
	return func(t *testing.T, _ corruptBase, path string) {
		t.Helper()
		rec := rawValue(t, path, []byte("e/"+corruptStream), seqBytes(corruptTarget))
		require.Less(t, off, len(rec))
		flipInEveryCopy(t, path, rec, off)
	}
}

// abandonFreelist marks both meta pages as having no synced freelist, as
// `bbolt surgery freelist abandon` does: bbolt rebuilds the freelist by
// walking every page when it next opens the file for writing.
func abandonFreelist(t *testing.T, path string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	ps := int(binary.LittleEndian.Uint32(raw[16+8:]))
	for _, off := range []int{16, ps + 16} {
		m := raw[off : off+64]
		binary.LittleEndian.PutUint64(m[32:], ^uint64(0))
		h := fnv.New64a()
		h.Write(m[:56])
		binary.LittleEndian.PutUint64(m[56:], h.Sum64())
	}
	require.NoError(t, os.WriteFile(path, raw, 0o644))
}

// damageRecordPage gives the leaf page that holds the target event an
// invalid page type.
func damageRecordPage(t *testing.T, b corruptBase, path string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	i := bytes.Index(raw, b.payload)
	require.GreaterOrEqual(t, i, 0)
	ps, _ := journalGeometry(t, path)
	page := i / ps * ps
	binary.LittleEndian.PutUint16(raw[page+8:], 0x00) // flags: neither branch nor leaf
	require.NoError(t, os.WriteFile(path, raw, 0o644))
}

// pageDamaged is afterOpen for a damaged bbolt page: reading through it is
// ErrCorrupt, and Check reports it.
func pageDamaged(t *testing.T, l *eventlog.Log, path string) {
	t.Helper()
	_, err := l.Get(corruptStream, corruptTarget)
	require.ErrorIs(t, err, eventlog.ErrCorrupt)
	var ce *eventlog.CorruptError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, path, ce.Path)
	_, err = l.Read(corruptStream, 1, corruptEvents)
	require.ErrorIs(t, err, eventlog.ErrCorrupt)
	rep, err := l.Check(context.Background())
	if err == nil {
		require.False(t, rep.OK())
		err = rep.Problems[0]
	}
	require.ErrorIs(t, err, eventlog.ErrCorrupt)
}

// flipPayload flips a byte in the middle of the target event's data.
func flipPayload(t *testing.T, b corruptBase, path string) {
	t.Helper()
	flipInEveryCopy(t, path, b.payload, len(b.payload)/2)
}

// requireCorruptAt checks that err is a *CorruptError naming the stream
// and seq of the damaged record.
func requireCorruptAt(t *testing.T, err error, path string, seq uint64) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, eventlog.ErrCorrupt)
	var ce *eventlog.CorruptError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, path, ce.Path)
	require.Equal(t, corruptStream, ce.Stream)
	require.Equal(t, seq, ce.Seq)
	require.NotNil(t, ce.Err)
	require.Contains(t, err.Error(), fmt.Sprintf("seq %d", seq))
}

// recordDamaged is afterOpen for cases that damage event corruptTarget: the
// journal opens, every read path reports the record, the others still read.
func recordDamaged(t *testing.T, l *eventlog.Log, path string) {
	t.Helper()
	ctx := context.Background()

	_, err := l.Get(corruptStream, corruptTarget)
	requireCorruptAt(t, err, path, corruptTarget)
	for _, seq := range []uint64{1, corruptTarget - 1, corruptTarget + 1, corruptEvents} {
		e, err := l.Get(corruptStream, seq)
		require.NoError(t, err, "seq %d", seq)
		require.Equal(t, seq, e.Seq)
	}

	// Read from the damaged seq fails; Read from before it returns the good
	// events with the error.
	_, err = l.Read(corruptStream, corruptTarget, 10)
	requireCorruptAt(t, err, path, corruptTarget)
	got, err := l.Read(corruptStream, corruptTarget-3, 10)
	requireCorruptAt(t, err, path, corruptTarget)
	require.Len(t, got, 3)
	got, err = l.Read(corruptStream, corruptTarget+1, 10)
	require.NoError(t, err)
	require.Len(t, got, 10)

	// Scan yields every event before the damaged one, then its error.
	var seqs []uint64
	var scanErr error
	for e, err := range l.Scan(corruptStream, 1, 0) {
		if err != nil {
			scanErr = err
			break
		}
		seqs = append(seqs, e.Seq)
	}
	requireCorruptAt(t, scanErr, path, corruptTarget)
	require.Len(t, seqs, corruptTarget-1, "Scan must yield the events before the damaged one")
	for i, s := range seqs {
		require.Equal(t, uint64(i+1), s)
	}

	// A subscription at the damaged seq returns the error at once; one from
	// the start delivers the events before it first.
	sub, err := l.Subscribe(corruptStream, eventlog.AtSeq(corruptTarget))
	require.NoError(t, err)
	ctx1, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = sub.Next(ctx1)
	requireCorruptAt(t, err, path, corruptTarget)

	sub, err = l.Subscribe(corruptStream, eventlog.Earliest())
	require.NoError(t, err)
	for want := uint64(1); want < corruptTarget; want++ {
		e, err := sub.Next(ctx1)
		require.NoError(t, err, "subscription from the start, seq %d", want)
		require.Equal(t, want, e.Seq)
	}
	_, err = sub.Next(ctx1)
	requireCorruptAt(t, err, path, corruptTarget)
	_, err = sub.Next(ctx1) // the error repeats: the subscription does not skip
	requireCorruptAt(t, err, path, corruptTarget)

	// Check finds exactly the damaged record and still counts the rest.
	rep, err := l.Check(ctx)
	require.NoError(t, err)
	require.False(t, rep.OK())
	require.Len(t, rep.Problems, 1, "%v", rep.Problems)
	requireCorruptAt(t, rep.Problems[0], path, corruptTarget)
	require.Equal(t, uint64(corruptEvents), rep.Events)

	// Metadata that does not need the record is unaffected.
	si, err := l.Info(corruptStream)
	require.NoError(t, err)
	require.Equal(t, uint64(corruptEvents), si.Last)
	off, ok, err := l.Offset(corruptStream, corruptConsumer)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, uint64(10), off)
}

// headDamaged is afterOpen for a damaged stream head.
func headDamaged(t *testing.T, l *eventlog.Log, path string) {
	t.Helper()
	check := func(err error) {
		t.Helper()
		require.ErrorIs(t, err, eventlog.ErrCorrupt)
		var ce *eventlog.CorruptError
		require.ErrorAs(t, err, &ce)
		require.Equal(t, path, ce.Path)
		require.Equal(t, corruptStream, ce.Stream)
	}
	_, err := l.Get(corruptStream, 1)
	check(err)
	_, err = l.Info(corruptStream)
	check(err)
	rep, err := l.Check(context.Background())
	require.NoError(t, err)
	require.False(t, rep.OK())
	check(rep.Problems[0])
}
