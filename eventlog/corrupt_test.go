//go:build unix

package eventlog_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
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
			// Damage every copy: freed pages may hold stale ones, and which
			// is live depends on page allocation.
			needle := append([]byte(corruptStream), hv...)
			damaged := 0
			for off := 0; ; {
				i := bytes.Index(raw[off:], needle)
				if i < 0 {
					break
				}
				k := off + i
				off = k + 1
				if k > 16 && binary.LittleEndian.Uint32(raw[k-16+4:]) == 16 { // element pos
					binary.LittleEndian.PutUint32(raw[k-16+8:], 0x1c000000)
					damaged++
				}
			}
			require.Positive(t, damaged, "the heads element")
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
