package eventlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"
)

// bbolt's meta page, as laid out by bbolt v1 on a little-endian machine:
// a 16-byte page header, then magic, version, page size, flags (4 bytes
// each), the root bucket (root page, sequence), the freelist page, the high
// water mark page id and the transaction id (8 bytes each), and an FNV-64a
// checksum of everything from magic to txid.
const (
	boltMagic       = 0xED0CDAED
	boltVersion     = 2
	boltPageHeader  = 16
	boltMetaSize    = 64
	boltMetaSumSize = 56
	boltMinPageSize = 1024
)

type boltMeta struct {
	magic, version, pageSize uint32
	freelist, pgid, txid     uint64
	sumOK                    bool
}

// boltNoFreelist is the freelist page id of a bbolt file whose freelist is
// not synced (NoFreelistSync, or `bbolt surgery freelist abandon`).
const boltNoFreelist = ^uint64(0)

func parseBoltMeta(b []byte) boltMeta {
	m := b[boltPageHeader : boltPageHeader+boltMetaSize]
	le := binary.LittleEndian
	h := fnv.New64a()
	h.Write(m[:boltMetaSumSize])
	return boltMeta{
		magic:    le.Uint32(m[0:]),
		version:  le.Uint32(m[4:]),
		pageSize: le.Uint32(m[8:]),
		freelist: le.Uint64(m[32:]),
		pgid:     le.Uint64(m[40:]),
		txid:     le.Uint64(m[48:]),
		sumOK:    h.Sum64() == le.Uint64(m[56:]),
	}
}

func (m boltMeta) valid() bool {
	return m.magic == boltMagic && m.version == boltVersion && m.sumOK
}

// precheck inspects an existing file before bbolt maps it. bbolt trusts its
// meta pages and faults on a file shorter than they say, so the checks it
// cannot survive are made here: an empty or foreign file, a damaged meta
// page, a truncated file. Opened read-write, bbolt rewrites a file whose
// freelist is not synced before flowrt can look at it; such a file is first
// checked read-only, so a foreign one is refused unchanged.
func precheck(path string, o *Options) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("flowrt/eventlog: open %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("flowrt/eventlog: stat %s: %w", path, err)
	}
	size := st.Size()
	if size == 0 {
		return fmt.Errorf("%w: %s is empty", ErrNotJournal, path)
	}
	page0 := make([]byte, boltPageHeader+boltMetaSize)
	if n, err := f.ReadAt(page0, 0); err != nil {
		if !errors.Is(err, io.EOF) {
			return fmt.Errorf("flowrt/eventlog: read %s: %w", path, err)
		}
		le := binary.LittleEndian
		if n >= boltPageHeader+8 && le.Uint32(page0[boltPageHeader:]) == boltMagic && le.Uint32(page0[boltPageHeader+4:]) == boltVersion {
			return fmt.Errorf("%w: %s is %d bytes, shorter than its first meta page", ErrTruncated, path, size)
		}
		return fmt.Errorf("%w: %s is %d bytes, too short for a journal", ErrNotJournal, path, size)
	}
	m0 := parseBoltMeta(page0)
	ps := m0.pageSize
	if !m0.valid() {
		// The page size of a damaged page cannot be trusted: look for the
		// second meta page where bbolt does, at every page size it supports.
		ps = secondMetaPageSize(f, size)
	}
	if ps < boltMinPageSize || ps&(ps-1) != 0 {
		return &CorruptError{Path: path, Err: fmt.Errorf("meta page 0 has page size %d", ps)}
	}
	page1 := make([]byte, boltPageHeader+boltMetaSize)
	if _, err := f.ReadAt(page1, int64(ps)); err != nil {
		if !errors.Is(err, io.EOF) {
			return fmt.Errorf("flowrt/eventlog: read %s: %w", path, err)
		}
		if m0.magic != boltMagic {
			return fmt.Errorf("%w: %s is not a bbolt database (bad magic)", ErrNotJournal, path)
		}
		return fmt.Errorf("%w: %s is %d bytes, shorter than its two meta pages", ErrTruncated, path, size)
	}
	m1 := parseBoltMeta(page1)
	if !m0.valid() && !m1.valid() {
		if m0.magic != boltMagic {
			return fmt.Errorf("%w: %s is not a bbolt database (bad magic)", ErrNotJournal, path)
		}
		if m0.version != boltVersion {
			return fmt.Errorf("%w: %s has bbolt version %d, want %d", ErrNotJournal, path, m0.version, boltVersion)
		}
	}
	// bbolt would silently fall back to the older meta page if the newer
	// one is damaged, dropping the last committed transaction. A meta page
	// lies within one disk sector, so a torn write cannot explain a bad
	// checksum: report it instead.
	for i, m := range []boltMeta{m0, m1} {
		if !m.valid() {
			return &CorruptError{Path: path, Err: fmt.Errorf("bbolt meta page %d is damaged (run `flowrt check`; restore from backup)", i)}
		}
	}
	if m0.pageSize != m1.pageSize {
		return &CorruptError{Path: path, Err: fmt.Errorf("meta pages disagree on page size (%d, %d)", m0.pageSize, m1.pageSize)}
	}
	m := m0
	if m1.txid > m0.txid {
		m = m1
	}
	if need := max(int64(m.pgid), 2) * int64(m.pageSize); size < need {
		return fmt.Errorf("%w: %s is %d bytes, its meta page says at least %d", ErrTruncated, path, size, need)
	}
	if m.freelist == boltNoFreelist {
		if !o.ReadOnly {
			return peekMeta(path, o)
		}
		return nil
	}
	return checkFreelist(f, path, m)
}

// boltFreelistFlag is the type flag of a bbolt freelist page.
const boltFreelistFlag = 0x10

// checkFreelist verifies the freelist page that m names. bbolt reads it
// without checks when it opens a file for writing, and in Check: a count
// beyond the page makes it allocate without bound (a fatal out-of-memory
// error, which recover cannot contain), and a bad page id makes it free or
// hand out pages that are in use or outside the file.
func checkFreelist(f *os.File, path string, m boltMeta) error {
	bad := func(format string, args ...any) error {
		return &CorruptError{Path: path, Err: fmt.Errorf("bbolt freelist page %d: %s (restore from backup, or rebuild the freelist with `bbolt surgery freelist abandon`)", m.freelist, fmt.Sprintf(format, args...))}
	}
	if m.freelist < 2 || m.freelist >= m.pgid {
		return bad("outside the file's %d pages", m.pgid)
	}
	le := binary.LittleEndian
	off := int64(m.freelist) * int64(m.pageSize)
	var hdr [boltPageHeader + 8]byte
	if _, err := f.ReadAt(hdr[:], off); err != nil {
		return fmt.Errorf("flowrt/eventlog: read %s: %w", path, err)
	}
	id, flags := le.Uint64(hdr[0:]), le.Uint16(hdr[8:])
	count, overflow := uint64(le.Uint16(hdr[10:])), uint64(le.Uint32(hdr[12:]))
	switch {
	case id != m.freelist:
		return bad("its header names page %d", id)
	case flags != boltFreelistFlag:
		return bad("page type %#x is not a freelist", flags)
	case m.freelist+overflow >= m.pgid:
		return bad("%d overflow pages run past the file's %d pages", overflow, m.pgid)
	}
	first := uint64(0)
	if count == 0xFFFF { // the real count is in the first element
		count, first = le.Uint64(hdr[boltPageHeader:]), 1
	}
	room := ((1+overflow)*uint64(m.pageSize) - boltPageHeader) / 8
	if count > room-first {
		return bad("%d free page ids do not fit in %d pages", count, 1+overflow)
	}
	ids := make([]byte, (first+count)*8)
	if _, err := f.ReadAt(ids, off+boltPageHeader); err != nil {
		return fmt.Errorf("flowrt/eventlog: read %s: %w", path, err)
	}
	for i := first; i < first+count; i++ {
		if id := le.Uint64(ids[i*8:]); id < 2 || id >= m.pgid {
			return bad("free page id %d is outside the file's pages 2..%d", id, m.pgid-1)
		}
	}
	return nil
}

// secondMetaPageSize returns the page size at which a valid second meta
// page lies, trying every size bbolt supports, or the OS page size (which
// bbolt uses when creating a file) when there is none.
func secondMetaPageSize(f *os.File, size int64) uint32 {
	buf := make([]byte, boltPageHeader+boltMetaSize)
	for ps := int64(boltMinPageSize); ps <= 16<<20 && ps+int64(len(buf)) <= size; ps <<= 1 {
		if _, err := f.ReadAt(buf, ps); err == nil {
			if m := parseBoltMeta(buf); m.valid() && int64(m.pageSize) == ps {
				return m.pageSize
			}
		}
	}
	return uint32(os.Getpagesize())
}

// peekMeta opens path read-only and checks flowrt's meta bucket, then every
// page: opened for writing, bbolt rebuilds a missing freelist by walking
// every page in a goroutine of its own, where a panic on a damaged page
// would end the process. bbolt's Check makes the same walk and recovers.
func peekMeta(path string, o *Options) error {
	ro := *o
	ro.ReadOnly = true
	db, err := openBolt(path, &ro)
	if err != nil {
		return err
	}
	err = viewContained(db, path, func(btx *bolt.Tx) error {
		if _, err := readMeta(btx, path); err != nil {
			return err
		}
		if err := touchPages(btx); err != nil {
			return &CorruptError{Path: path, Err: fmt.Errorf("the freelist must be rebuilt, and a page is damaged: %w", err)}
		}
		var first error
		for err := range btx.Check() { // drained: bbolt's goroutine sends until done
			if first == nil {
				first = &CorruptError{Path: path, Err: fmt.Errorf("the freelist must be rebuilt, and a page is damaged: bbolt: %w", err)}
			}
		}
		return first
	})
	if cerr := db.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("flowrt/eventlog: close %s: %w", path, cerr)
	}
	return err
}

// create makes a new, empty journal at path. bbolt can leave a half-written
// file if the process dies during its first initialisation, so the journal
// is built under a temporary name, fsynced, and linked into place; the
// directory is fsynced after. Linking fails if path appeared meanwhile.
func create(path string, o *Options) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".creating-*")
	if err != nil {
		return fmt.Errorf("flowrt/eventlog: create %s: %w", path, err)
	}
	name := tmp.Name()
	tmp.Close()
	defer os.Remove(name)
	db, err := bolt.Open(name, 0o644, &bolt.Options{Timeout: o.LockTimeout, OpenFile: o.OpenFile})
	if err != nil {
		return fmt.Errorf("flowrt/eventlog: create %s: %w", path, mapWriteError(err))
	}
	err = db.Update(func(btx *bolt.Tx) error { return initBuckets(btx) })
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsyncPath(name)
	}
	if err == nil {
		err = os.Link(name, path)
	}
	if err == nil {
		err = fsyncPath(dir)
	}
	if err != nil {
		return fmt.Errorf("flowrt/eventlog: create %s: %w", path, mapWriteError(err))
	}
	return nil
}

func initBuckets(btx *bolt.Tx) error {
	meta, err := btx.CreateBucket(bucketMeta)
	if err != nil {
		return err
	}
	id := ulid.Make()
	for k, v := range map[string][]byte{
		metaMagic:   []byte(journalMagic),
		metaVersion: binary.BigEndian.AppendUint32(nil, FormatVersion),
		metaID:      id[:],
	} {
		if err := meta.Put([]byte(k), v); err != nil {
			return err
		}
	}
	for _, name := range [][]byte{bucketHeads, bucketOffsets, bucketNamespaces} {
		if _, err := btx.CreateBucket(name); err != nil {
			return err
		}
	}
	return nil
}

// upgradeFormat raises the stored format version of a journal opened for
// writing to FormatVersion, before anything is written: this build may
// write values an older build would misread (chunks, from version 2), and
// the stored version is what makes an older build refuse the file. A
// read-only open changes nothing.
func upgradeFormat(db *bolt.DB, path string) error {
	version := func(btx *bolt.Tx) uint32 {
		return binary.BigEndian.Uint32(btx.Bucket(bucketMeta).Get([]byte(metaVersion)))
	}
	return contained(path, func() error {
		var current uint32
		if err := db.View(func(btx *bolt.Tx) error { current = version(btx); return nil }); err != nil {
			return err
		}
		if current >= FormatVersion {
			return nil // bbolt commits even an empty Update: do not touch the file
		}
		return db.Update(func(btx *bolt.Tx) error {
			return btx.Bucket(bucketMeta).Put([]byte(metaVersion), binary.BigEndian.AppendUint32(nil, FormatVersion))
		})
	})
}

// readMeta checks flowrt's meta bucket and returns the journal ID.
func readMeta(btx *bolt.Tx, path string) (ulid.ULID, error) {
	var id ulid.ULID
	meta := btx.Bucket(bucketMeta)
	if meta == nil || string(meta.Get([]byte(metaMagic))) != journalMagic {
		return id, fmt.Errorf("%w: %s is a bbolt database without flowrt's meta bucket", ErrNotJournal, path)
	}
	v := meta.Get([]byte(metaVersion))
	if len(v) != 4 {
		return id, &CorruptError{Path: path, Err: errors.New("meta bucket: bad format version record")}
	}
	if ver := binary.BigEndian.Uint32(v); ver > FormatVersion {
		return id, &VersionError{Path: path, Have: ver, Want: FormatVersion}
	}
	if raw := meta.Get([]byte(metaID)); len(raw) == len(id) {
		copy(id[:], raw)
	} else {
		return id, &CorruptError{Path: path, Err: errors.New("meta bucket: bad journal id")}
	}
	for _, name := range [][]byte{bucketHeads, bucketOffsets, bucketNamespaces} {
		if btx.Bucket(name) == nil {
			return id, &CorruptError{Path: path, Err: fmt.Errorf("bucket %q is missing", name)}
		}
	}
	return id, nil
}

// SyncPath fsyncs the file or directory at path: after linking or renaming
// a file into a directory, syncing the directory makes the new name
// survive a power loss.
func SyncPath(path string) error { return fsyncPath(path) }

func fsyncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
