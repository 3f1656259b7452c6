//go:build unix

package eventlog_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// The corruption table, in the manner of etcd's testRepair: each case
// damages a copy of a known journal, then opens it read-write, read-only
// and through Compact, and checks the typed error, that no panic escaped,
// that the file's bytes are unchanged and that no lock or stray file is
// left behind.

const (
	corruptStream   = "orders"
	corruptEvents   = 300 // enough for tens of data pages
	corruptTarget   = 150 // seq of the event whose record the record cases damage
	corruptConsumer = "billing"
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
	events[corruptTarget-1].Data = payload
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

// openMode is how a case opens the damaged journal.
type openMode struct {
	name    string
	open    func(path string, timeout time.Duration) (*eventlog.Log, error)
	compact bool // opened through Compact, which also must leave it as it was
}

var corruptModes = []openMode{
	{name: "rw", open: func(p string, d time.Duration) (*eventlog.Log, error) {
		return eventlog.Open(p, &eventlog.Options{LockTimeout: d})
	}},
	{name: "ro", open: func(p string, d time.Duration) (*eventlog.Log, error) {
		return eventlog.Open(p, &eventlog.Options{ReadOnly: true, LockTimeout: d})
	}},
	{name: "compact", compact: true},
}

// wantErr says what a case expects from Open.
type wantErr struct {
	is      error // the sentinel; nil when Open succeeds
	corrupt bool  // the error is a *CorruptError naming the path
	version bool  // the error is a *VersionError
}

type corruptCase struct {
	name    string
	corrupt func(t *testing.T, b corruptBase, path string)
	want    wantErr
	// afterOpen runs when Open succeeds, before the file is compared.
	afterOpen func(t *testing.T, l *eventlog.Log, path string)
	// compactErr is what Compact returns when it differs from want, as for
	// damage that Open lets through but Compact's verification refuses.
	compactErr *wantErr
	// rebuildsFreelist is set for a healthy journal without a synced
	// freelist: bbolt writes one when it opens the file for writing, and
	// Compact succeeds.
	rebuildsFreelist bool
	// targetReadable is set when the damage spares event corruptTarget.
	targetReadable bool
	// compactSucceeds is set when Compact copies the data around the
	// damage, leaving a healthy journal.
	compactSucceeds bool
	// noAppend skips the append after the checks: a known crasher (see
	// TestKnownCrashers) that writes cannot yet survive.
	noAppend string
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

func corruptCases() []corruptCase {
	notJournal := wantErr{is: eventlog.ErrNotJournal}
	truncated := wantErr{is: eventlog.ErrTruncated}
	corrupt := wantErr{is: eventlog.ErrCorrupt, corrupt: true}
	opens := wantErr{}
	cases := []corruptCase{
		{name: "zero-length", corrupt: truncateTo(func(*testing.T, string) int64 { return 0 }), want: notJournal},
		{name: "truncated/inside-meta-0-header", corrupt: truncateTo(pages(0, 40)), want: truncated},
		{name: "truncated/inside-meta-0-after-meta", corrupt: truncateTo(pages(0, 100)), want: truncated},
		{name: "truncated/inside-page-0", corrupt: truncateTo(pages(0, 2048)), want: truncated},
		{name: "truncated/between-meta-pages", corrupt: truncateTo(pages(1, 0)), want: truncated},
		{name: "truncated/inside-meta-1", corrupt: truncateTo(pages(1, 40)), want: truncated},
		{name: "truncated/after-both-metas", corrupt: truncateTo(pages(2, 0)), want: truncated},
		{name: "truncated/middle-of-data", corrupt: truncateTo(func(t *testing.T, path string) int64 {
			ps, pgid := journalGeometry(t, path)
			return int64(pgid / 2 * ps)
		}), want: truncated},
		{name: "truncated/one-page-short", corrupt: truncateTo(belowHighWater(1)), want: truncated},
		{name: "truncated/one-byte-short", corrupt: truncateTo(func(t *testing.T, path string) int64 {
			return belowHighWater(0)(t, path) - 1
		}), want: truncated},

		{name: "foreign/json-short", corrupt: replaceWith(func(*testing.T, string) []byte {
			return []byte(`{"events":[{"type":"order.created"}]}` + "\n")
		}), want: notJournal},
		{name: "foreign/json-long", corrupt: replaceWith(func(*testing.T, string) []byte {
			return []byte(`{"pad":"` + strings.Repeat("x", 20000) + `"}`)
		}), want: notJournal},
		{name: "foreign/random-small", corrupt: replaceWith(func(*testing.T, string) []byte {
			return randomBytes(1, 50)
		}), want: notJournal},
		{name: "foreign/random-large", corrupt: replaceWith(func(*testing.T, string) []byte {
			return randomBytes(2, 64<<10)
		}), want: notJournal},
		{name: "foreign/zeros", corrupt: replaceWith(func(*testing.T, string) []byte {
			return make([]byte, 32<<10)
		}), want: notJournal},
		{name: "foreign/bbolt-without-meta", corrupt: boltFile(nil, func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket([]byte("widgets"))
			if err != nil {
				return err
			}
			return b.Put([]byte("k"), []byte("v"))
		}), want: notJournal},
		{name: "foreign/bbolt-empty", corrupt: boltFile(nil, func(*bolt.Tx) error { return nil }), want: notJournal},
		{name: "foreign/bbolt-no-freelist-sync", corrupt: boltFile(&bolt.Options{NoFreelistSync: true}, func(tx *bolt.Tx) error {
			_, err := tx.CreateBucket([]byte("widgets"))
			return err
		}), want: notJournal},
		{name: "foreign/bbolt-wrong-magic", corrupt: boltFile(nil, func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket([]byte("meta"))
			if err != nil {
				return err
			}
			return b.Put([]byte("magic"), []byte("some-other-tool"))
		}), want: notJournal},

		{name: "version/newer", corrupt: editJournal(func(tx *bolt.Tx) error {
			return tx.Bucket([]byte("meta")).Put([]byte("version"), binary.BigEndian.AppendUint32(nil, eventlog.FormatVersion+1))
		}), want: wantErr{is: eventlog.ErrVersion, version: true}},
		{name: "version/bad-length", corrupt: editJournal(func(tx *bolt.Tx) error {
			return tx.Bucket([]byte("meta")).Put([]byte("version"), []byte{1})
		}), want: corrupt},
		{name: "meta-bucket/missing-heads", corrupt: editJournal(func(tx *bolt.Tx) error {
			return tx.DeleteBucket([]byte("heads"))
		}), want: corrupt},

		{name: "record/payload-byte", corrupt: flipPayload, want: opens, afterOpen: recordDamaged, compactErr: &corrupt},
		{name: "record/version-byte", corrupt: flipRecord(0), want: opens, afterOpen: recordDamaged, compactErr: &corrupt},
		{name: "record/kind-byte", corrupt: flipRecord(1), want: opens, afterOpen: recordDamaged, compactErr: &corrupt},
		{name: "record/crc-byte", corrupt: flipRecord(3), want: opens, afterOpen: recordDamaged, compactErr: &corrupt},
		{name: "record/time-byte", corrupt: flipRecord(12), want: opens, afterOpen: recordDamaged, compactErr: &corrupt},
		{name: "record/msgpack-array-marker", corrupt: flipRecord(14), want: opens, afterOpen: recordDamaged, compactErr: &corrupt},
		{name: "record/id-byte", corrupt: flipRecord(20), want: opens, afterOpen: recordDamaged, compactErr: &corrupt},
		{name: "freelist/page-type", corrupt: editFreelist(func(p []byte) {
			binary.LittleEndian.PutUint16(p[8:], 0x02) // a leaf page
		}), want: corrupt},
		{name: "freelist/count-beyond-page", corrupt: editFreelist(func(p []byte) {
			binary.LittleEndian.PutUint16(p[10:], 0xFFFE)
		}), want: corrupt},
		{name: "freelist/huge-count", corrupt: editFreelist(func(p []byte) {
			binary.LittleEndian.PutUint16(p[10:], 0xFFFF)
			binary.LittleEndian.PutUint64(p[16:], 1<<33)
		}), want: corrupt},
		{name: "freelist/overflow-beyond-file", corrupt: editFreelist(func(p []byte) {
			binary.LittleEndian.PutUint32(p[12:], 1<<20)
		}), want: corrupt},
		{name: "freelist/frees-a-meta-page", corrupt: editFreelist(func(p []byte) {
			binary.LittleEndian.PutUint16(p[10:], 1)
			binary.LittleEndian.PutUint64(p[16:], 1)
		}), want: corrupt},
		{name: "page/invalid-type", corrupt: damageRecordPage, want: opens, afterOpen: pageDamaged, compactErr: &corrupt},
		{name: "page/invalid-type-freelist-abandoned", corrupt: func(t *testing.T, b corruptBase, path string) {
			damageRecordPage(t, b, path)
			abandonFreelist(t, path)
		}, want: corrupt, afterOpen: pageDamaged},
		{name: "freelist-abandoned/healthy", corrupt: func(t *testing.T, _ corruptBase, path string) {
			abandonFreelist(t, path)
		}, want: opens, rebuildsFreelist: true, afterOpen: func(t *testing.T, l *eventlog.Log, path string) {
			rep, err := l.Check(context.Background())
			require.NoError(t, err)
			require.True(t, rep.OK(), "%v", rep.Problems)
		}},
		{name: "page/overflow-count-beyond-file", corrupt: func(t *testing.T, b corruptBase, path string) {
			// bbolt's Check visits every page a page claims; before Check
			// bounded the claims it ran out of memory here.
			raw, err := os.ReadFile(path)
			require.NoError(t, err)
			ps, _ := journalGeometry(t, path)
			page := bytes.Index(raw, b.payload) / ps * ps
			binary.LittleEndian.PutUint32(raw[page+12:], 0xF6000000)
			require.NoError(t, os.WriteFile(path, raw, 0o644))
		}, want: opens, targetReadable: true, compactSucceeds: true, afterOpen: func(t *testing.T, l *eventlog.Log, path string) {
			rep, err := l.Check(context.Background())
			require.NoError(t, err)
			require.False(t, rep.OK())
			require.ErrorIs(t, rep.Problems[0], eventlog.ErrCorrupt)
			require.Contains(t, rep.Problems[0].Error(), "claim")
			e, err := l.Get(corruptStream, corruptTarget)
			require.NoError(t, err)
			require.Equal(t, uint64(corruptTarget), e.Seq)
		}},
		{name: "heads/invalid-stream-name", corrupt: editJournal(func(tx *bolt.Tx) error {
			h := tx.Bucket([]byte("heads"))
			return h.Put([]byte("bad name\x00"), bytes.Clone(h.Get([]byte(corruptStream))))
		}), want: opens, targetReadable: true, compactErr: &corrupt, afterOpen: func(t *testing.T, l *eventlog.Log, path string) {
			_, err := l.Streams()
			require.ErrorIs(t, err, eventlog.ErrCorrupt)
			require.NotErrorIs(t, err, eventlog.ErrInvalidName, "a name read from the file is corrupt, not an invalid argument")
			rep, err := l.Check(context.Background())
			require.NoError(t, err)
			require.False(t, rep.OK())
			require.ErrorIs(t, rep.Problems[0], eventlog.ErrCorrupt)
			_, err = l.Get(corruptStream, corruptTarget)
			require.NoError(t, err)
		}},
		{name: "heads/key-size-beyond-file", corrupt: func(t *testing.T, _ corruptBase, path string) {
			// The heads bucket is inline in the root leaf: its one element
			// header sits 16 bytes before the key. Claim a 448 MiB key.
			hv := rawValue(t, path, []byte("heads"), []byte(corruptStream))
			raw, err := os.ReadFile(path)
			require.NoError(t, err)
			k := bytes.Index(raw, append([]byte(corruptStream), hv...))
			require.Greater(t, k, 16)
			require.Equal(t, uint32(16), binary.LittleEndian.Uint32(raw[k-16+4:]), "element pos")
			binary.LittleEndian.PutUint32(raw[k-16+8:], 0x1c000000)
			require.NoError(t, os.WriteFile(path, raw, 0o644))
		}, want: opens, compactErr: &corrupt, noAppend: "known crasher inline-bucket-element-beyond-value.db: a write " +
			"transaction copies the inline heads page to the heap and follows the damaged key size out of it",
			afterOpen: func(t *testing.T, l *eventlog.Log, path string) {
				start := time.Now()
				_, err := l.Streams()
				require.ErrorIs(t, err, eventlog.ErrCorrupt)
				require.Less(t, len(err.Error()), 1000, "the error quotes a bounded prefix of the key")
				rep, err := l.Check(context.Background())
				if err == nil {
					require.False(t, rep.OK())
					err = rep.Problems[0]
				}
				require.ErrorIs(t, err, eventlog.ErrCorrupt)
				require.Less(t, time.Since(start), 5*time.Second)
			}},
		{name: "offsets/invalid-stream-name", corrupt: editJournal(func(tx *bolt.Tx) error {
			return tx.Bucket([]byte("offsets")).Put([]byte("bad name\x00billing"), make([]byte, 16))
		}), want: opens, targetReadable: true, compactErr: &corrupt, afterOpen: func(t *testing.T, l *eventlog.Log, path string) {
			_, err := l.Consumers("")
			require.ErrorIs(t, err, eventlog.ErrCorrupt)
			require.NotErrorIs(t, err, eventlog.ErrInvalidName)
			rep, err := l.Check(context.Background())
			require.NoError(t, err)
			require.False(t, rep.OK())
			require.ErrorIs(t, rep.Problems[0], eventlog.ErrCorrupt)
		}},
		{name: "head/crc-byte", corrupt: func(t *testing.T, _ corruptBase, path string) {
			h := rawValue(t, path, []byte("heads"), []byte(corruptStream))
			flipInEveryCopy(t, path, h, 25)
		}, want: opens, afterOpen: headDamaged, compactErr: &corrupt},
	}
	// Meta pages rewritten with a valid checksum, as a buggy tool might:
	// a high water mark below the two meta pages, on a file that short.
	cases = append(cases, corruptCase{name: "meta/high-water-below-two-pages", corrupt: func(t *testing.T, _ corruptBase, path string) {
		raw, err := os.ReadFile(path)
		require.NoError(t, err)
		ps := int(binary.LittleEndian.Uint32(raw[16+8:]))
		for _, off := range []int{16, ps + 16} {
			m := raw[off : off+64]
			binary.LittleEndian.PutUint64(m[40:], 1)
			h := fnv.New64a()
			h.Write(m[:56])
			binary.LittleEndian.PutUint64(m[56:], h.Sum64())
		}
		require.NoError(t, os.WriteFile(path, raw[:ps+100], 0o644))
	}, want: truncated})
	// Every byte class of both bbolt meta pages: magic, version, page size,
	// flags, root, sequence, freelist, high water mark, txid, checksum.
	for i := range 2 {
		for _, f := range []struct {
			name string
			off  int64
		}{{"magic", 0}, {"version", 4}, {"page-size", 9}, {"flags", 12}, {"root", 16}, {"sequence", 24}, {"freelist", 32}, {"pgid", 40}, {"txid", 48}, {"checksum", 56}} {
			cases = append(cases, corruptCase{name: fmt.Sprintf("meta-%d/%s", i, f.name), corrupt: flipMeta(i, f.off), want: corrupt})
		}
	}
	return cases
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestCorruptionTable(t *testing.T) {
	base := buildCorruptBase(t)
	for _, c := range corruptCases() {
		for _, mode := range corruptModes {
			t.Run(c.name+"/"+mode.name, func(t *testing.T) {
				path := base.copyTo(t)
				c.corrupt(t, base, path)
				sum := fileDigest(t, path)
				want := c.want
				if mode.compact {
					if c.compactErr != nil {
						want = *c.compactErr
					}
					var err error
					noPanic(t, "Compact", func() {
						_, err = eventlog.Compact(path, &eventlog.Options{LockTimeout: 100 * time.Millisecond})
					})
					if c.rebuildsFreelist || c.compactSucceeds {
						require.NoError(t, err)
						l, err := eventlog.Open(path, nil)
						require.NoError(t, err)
						defer l.Close()
						rep, err := l.Check(context.Background())
						require.NoError(t, err)
						require.True(t, rep.OK(), "%v", rep.Problems)
						return
					}
					requireWantErr(t, err, want, path)
					requireFileUnchanged(t, path, sum)
					return
				}
				var l *eventlog.Log
				var err error
				noPanic(t, "Open", func() { l, err = mode.open(path, 100*time.Millisecond) })
				if want.is != nil && mode.name == "ro" && c.afterOpen != nil {
					// Read-only, bbolt walks no pages at open: the damage
					// shows when read.
					want = wantErr{}
				}
				if want.is != nil {
					require.Nil(t, l)
					requireWantErr(t, err, want, path)
					requireFileUnchanged(t, path, sum)
					return
				}
				require.NoError(t, err)
				noPanic(t, "reads", func() { c.afterOpen(t, l, path) })
				noPanic(t, "Close", func() { require.NoError(t, l.Close()) })
				if c.rebuildsFreelist && mode.name == "rw" {
					return
				}
				requireFileUnchanged(t, path, sum)
				if mode.name != "rw" {
					return
				}
				// The journal stays usable around the damage: appends go on
				// after the last sequence and the damage is still reported.
				l, err = eventlog.Open(path, nil)
				require.NoError(t, err)
				defer l.Close()
				if c.afterOpen == nil {
					return
				}
				if c.noAppend != "" {
					t.Logf("no append: %s", c.noAppend)
					return
				}
				res, err := l.Append(corruptStream, eventlog.Event{Type: "order.after"})
				if errors.Is(err, eventlog.ErrCorrupt) {
					return // the stream head itself is damaged
				}
				require.NoError(t, err)
				require.Equal(t, uint64(corruptEvents+1), res[0].Seq)
				_, err = l.Get(corruptStream, corruptTarget)
				if c.targetReadable {
					require.NoError(t, err)
				} else {
					require.ErrorIs(t, err, eventlog.ErrCorrupt)
				}
				e, err := l.Get(corruptStream, corruptEvents+1)
				require.NoError(t, err)
				require.Equal(t, "order.after", e.Type)
			})
		}
	}
}

// requireWantErr checks a refused Open (or Compact) against want.
func requireWantErr(t *testing.T, err error, want wantErr, path string) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, want.is)
	for _, other := range []error{eventlog.ErrNotJournal, eventlog.ErrTruncated, eventlog.ErrCorrupt, eventlog.ErrVersion, eventlog.ErrLocked} {
		if other != want.is {
			require.NotErrorIs(t, err, other, "%v", err)
		}
	}
	if want.corrupt {
		var ce *eventlog.CorruptError
		require.ErrorAs(t, err, &ce)
		require.Equal(t, path, ce.Path)
		require.NotNil(t, ce.Err)
	}
	if want.version {
		var ve *eventlog.VersionError
		require.ErrorAs(t, err, &ve)
		require.Equal(t, path, ve.Path)
		require.Equal(t, uint32(eventlog.FormatVersion+1), ve.Have)
		require.Equal(t, uint32(eventlog.FormatVersion), ve.Want)
	}
	require.Contains(t, err.Error(), filepath.Base(path), "the error should name the file")
}

// A journal held by another Log, in this process or another, is refused
// with ErrLocked after about LockTimeout, and left as it was.

const lockHolderEnv = "FLOWRT_TEST_LOCK_HOLDER"

// TestLockHolderProcess is not a test: it is the child process of
// TestLockedByOtherProcess, which re-executes the test binary with
// lockHolderEnv set to "path,mode". It opens the journal, says "ready" and
// holds it until its stdin closes.
func TestLockHolderProcess(t *testing.T) {
	spec := os.Getenv(lockHolderEnv)
	if spec == "" {
		t.Skip("helper process for TestLockedByOtherProcess")
	}
	path, mode, _ := strings.Cut(spec, ",")
	l, err := eventlog.Open(path, &eventlog.Options{ReadOnly: mode == "ro"})
	if err != nil {
		fmt.Println("error:", err)
		t.Fatal(err)
	}
	fmt.Println("ready")
	_, _ = os.Stdin.Read(make([]byte, 1)) // EOF when the parent closes it
	require.NoError(t, l.Close())
}

// lockedCases lists who holds the journal and how the second Open asks.
var lockedCases = []struct {
	holder, opener string
}{{"rw", "rw"}, {"rw", "ro"}, {"ro", "rw"}}

func requireLocked(t *testing.T, path, opener string, sum [32]byte, holderSeesNoChange func()) {
	t.Helper()
	const timeout = 300 * time.Millisecond
	var l *eventlog.Log
	var err error
	start := time.Now()
	noPanic(t, "Open", func() {
		l, err = eventlog.Open(path, &eventlog.Options{ReadOnly: opener == "ro", LockTimeout: timeout})
	})
	took := time.Since(start)
	require.Nil(t, l)
	require.ErrorIs(t, err, eventlog.ErrLocked)
	// bbolt stops retrying (every 50 ms) once another retry would overshoot.
	require.GreaterOrEqual(t, took, timeout-60*time.Millisecond, "gave up well before LockTimeout")
	require.Less(t, took, timeout+2*time.Second, "waited far beyond LockTimeout")
	require.Contains(t, err.Error(), path)
	require.Equal(t, sum, fileDigest(t, path), "the file's bytes changed")
	holderSeesNoChange()

	// Compact needs the journal to itself too.
	_, err = eventlog.Compact(path, &eventlog.Options{LockTimeout: timeout})
	require.ErrorIs(t, err, eventlog.ErrLocked)
	require.Equal(t, sum, fileDigest(t, path), "the file's bytes changed")
	_, err = os.Stat(path + ".compact")
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestLockedByOtherLog(t *testing.T) {
	base := buildCorruptBase(t)
	for _, c := range lockedCases {
		t.Run(c.holder+"-held/"+c.opener, func(t *testing.T) {
			path := base.copyTo(t)
			sum := fileDigest(t, path)
			holder, err := eventlog.Open(path, &eventlog.Options{ReadOnly: c.holder == "ro"})
			require.NoError(t, err)
			requireLocked(t, path, c.opener, sum, func() {
				si, err := holder.Info(corruptStream)
				require.NoError(t, err)
				require.Equal(t, uint64(corruptEvents), si.Last)
			})
			require.NoError(t, holder.Close())
			// Once released, it opens.
			l, err := eventlog.Open(path, &eventlog.Options{ReadOnly: c.opener == "ro", LockTimeout: 300 * time.Millisecond})
			require.NoError(t, err)
			require.NoError(t, l.Close())
		})
	}
}

func TestLockedByOtherProcess(t *testing.T) {
	if os.Getenv(lockHolderEnv) != "" {
		t.Skip("inside the helper process")
	}
	exe, err := os.Executable()
	require.NoError(t, err)
	base := buildCorruptBase(t)
	for _, c := range lockedCases {
		t.Run(c.holder+"-held/"+c.opener, func(t *testing.T) {
			path := base.copyTo(t)
			sum := fileDigest(t, path)
			cmd := exec.Command(exe, "-test.run=^TestLockHolderProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), lockHolderEnv+"="+path+","+c.holder)
			stdin, err := cmd.StdinPipe()
			require.NoError(t, err)
			stdout, err := cmd.StdoutPipe()
			require.NoError(t, err)
			cmd.Stderr = os.Stderr
			require.NoError(t, cmd.Start())
			t.Cleanup(func() {
				stdin.Close()
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					_ = cmd.Process.Kill()
					<-done
				}
			})
			ready := make(chan string, 1)
			go func() {
				buf := make([]byte, 256)
				n, _ := stdout.Read(buf)
				ready <- string(buf[:n])
			}()
			select {
			case line := <-ready:
				require.Equal(t, "ready\n", line, "lock holder did not start")
			case <-time.After(30 * time.Second):
				t.Fatal("lock holder did not report ready within 30s")
			}
			requireLocked(t, path, c.opener, sum, func() {})
			stdin.Close()
			require.NoError(t, cmd.Wait())
			l, err := eventlog.Open(path, &eventlog.Options{ReadOnly: c.opener == "ro", LockTimeout: time.Second})
			require.NoError(t, err)
			require.NoError(t, l.Close())
		})
	}
}

// The record cases flip every copy of the damaged record; the base journal
// is built in one commit so that there is exactly one.
func TestCorruptBaseRecordIsUnique(t *testing.T) {
	base := buildCorruptBase(t)
	raw, err := os.ReadFile(base.path)
	require.NoError(t, err)
	require.Equal(t, 1, bytes.Count(raw, base.payload), "the payload should be written once (one commit)")
	rec := rawValue(t, base.path, []byte("e/"+corruptStream), seqBytes(corruptTarget))
	require.Equal(t, 1, bytes.Count(raw, rec))
}
