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
	pgid, txid               uint64
	sumOK                    bool
}

func parseBoltMeta(b []byte) boltMeta {
	m := b[boltPageHeader : boltPageHeader+boltMetaSize]
	le := binary.LittleEndian
	h := fnv.New64a()
	h.Write(m[:boltMetaSumSize])
	return boltMeta{
		magic:    le.Uint32(m[0:]),
		version:  le.Uint32(m[4:]),
		pageSize: le.Uint32(m[8:]),
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
// page, a truncated file.
func precheck(path string) error {
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
	if _, err := f.ReadAt(page0, 0); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: %s is %d bytes, too short for a journal", ErrNotJournal, path, size)
		}
		return fmt.Errorf("flowrt/eventlog: read %s: %w", path, err)
	}
	m0 := parseBoltMeta(page0)
	if m0.magic != boltMagic {
		return fmt.Errorf("%w: %s is not a bbolt database (bad magic)", ErrNotJournal, path)
	}
	if m0.version != boltVersion {
		return fmt.Errorf("%w: %s has bbolt version %d, want %d", ErrNotJournal, path, m0.version, boltVersion)
	}
	ps := m0.pageSize
	if !m0.sumOK {
		// The page size of a damaged page cannot be trusted: bbolt writes
		// the OS page size, so look for the second meta page there.
		ps = uint32(os.Getpagesize())
	}
	if ps < boltMinPageSize || ps&(ps-1) != 0 {
		return &CorruptError{Path: path, Err: fmt.Errorf("meta page 0 has page size %d", ps)}
	}
	page1 := make([]byte, boltPageHeader+boltMetaSize)
	if _, err := f.ReadAt(page1, int64(ps)); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: %s is %d bytes, shorter than its two meta pages", ErrTruncated, path, size)
		}
		return fmt.Errorf("flowrt/eventlog: read %s: %w", path, err)
	}
	m1 := parseBoltMeta(page1)
	// bbolt would silently fall back to the older meta page if the newer
	// one is damaged, dropping the last committed transaction. A meta page
	// lies within one disk sector, so a torn write cannot explain a bad
	// checksum: report it instead.
	for i, m := range []boltMeta{m0, m1} {
		if !m.valid() {
			return &CorruptError{Path: path, Err: fmt.Errorf("bbolt meta page %d fails its checksum (run `flowrt check`; restore from backup)", i)}
		}
	}
	if m0.pageSize != m1.pageSize {
		return &CorruptError{Path: path, Err: fmt.Errorf("meta pages disagree on page size (%d, %d)", m0.pageSize, m1.pageSize)}
	}
	m := m0
	if m1.txid > m0.txid {
		m = m1
	}
	if need := int64(m.pgid) * int64(m.pageSize); size < need {
		return fmt.Errorf("%w: %s is %d bytes, its meta page says at least %d", ErrTruncated, path, size, need)
	}
	return nil
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
		return fmt.Errorf("flowrt/eventlog: create %s: %w", path, err)
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
