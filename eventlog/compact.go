package eventlog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// CompactResult reports the file sizes around a compaction.
type CompactResult struct {
	Before, After int64 // bytes
}

// compactTxBytes bounds the data one compaction transaction copies.
const compactTxBytes = 64 << 20

// Compact rewrites the journal at path into a new file with full pages and
// no free space, checks the copy, and swaps it in: bbolt never shrinks a
// file, so this is how space freed by retention returns to the disk. The
// journal must not be open elsewhere: Compact holds its lock throughout
// (ErrLocked otherwise). The copy is written under a temporary name,
// verified with Check, fsynced and renamed over path; the directory is
// fsynced after. On any failure path is left as it was.
func Compact(path string, opts *Options) (CompactResult, error) {
	var res CompactResult
	if err := opts.Validate(); err != nil {
		return res, err
	}
	o := opts.withDefaults()
	if o.ReadOnly {
		return res, ErrReadOnly
	}
	if err := precheck(path, &o); err != nil {
		return res, err
	}
	src, err := openBolt(path, &o)
	if err != nil {
		return res, err
	}
	defer src.Close()
	if err := viewContained(src, path, func(btx *bolt.Tx) error { _, err := readMeta(btx, path); return err }); err != nil {
		return res, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return res, err
	}
	res.Before = st.Size()

	tmp := path + ".compact"
	_ = os.Remove(tmp) // a leftover of an interrupted compaction
	defer os.Remove(tmp)
	if err := copyCompacted(tmp, path, src, &o); err != nil {
		return res, fmt.Errorf("flowrt/eventlog: compact %s: %w", path, mapWriteError(err))
	}
	if err := verifyCopy(tmp, path); err != nil {
		return res, fmt.Errorf("flowrt/eventlog: compact %s: the copy failed verification, nothing was changed: %w", path, err)
	}
	if err := fsyncPath(tmp); err != nil {
		return res, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return res, fmt.Errorf("flowrt/eventlog: compact %s: %w", path, err)
	}
	if err := fsyncPath(filepath.Dir(path)); err != nil {
		return res, fmt.Errorf("flowrt/eventlog: compact %s: fsync directory: %w", path, err)
	}
	if st, err := os.Stat(path); err == nil {
		res.After = st.Size()
	}
	return res, nil
}

func copyCompacted(tmp, path string, src *bolt.DB, o *Options) error {
	dst, err := bolt.Open(tmp, 0o644, &bolt.Options{Timeout: o.LockTimeout, FreelistType: bolt.FreelistMapType, NoSync: true})
	if err != nil {
		return err
	}
	// A damaged page of the source makes bbolt panic or fault while it
	// walks it; bbolt rolls both transactions back on the way out.
	err = contained(path, func() error { return bolt.Compact(dst, src, compactTxBytes) })
	if errors.Is(err, berrors.ErrKeyTooLarge) || errors.Is(err, berrors.ErrValueTooLarge) {
		// flowrt writes neither: the source's page claims them.
		err = &CorruptError{Path: path, Err: fmt.Errorf("bbolt: copying a damaged page: %w", err)}
	}
	if err == nil {
		err = dst.Sync()
	}
	return errors.Join(err, dst.Close())
}

// verifyCopy opens a compacted copy as a journal and checks every record.
// The copy holds the records of src byte for byte, so a damaged record is
// reported as src's: the copy is gone when Compact returns.
func verifyCopy(path, src string) error {
	l, err := Open(path, &Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer l.Close()
	r, err := l.Check(context.Background())
	if err != nil {
		return err
	}
	for _, p := range r.Problems {
		if ce := (*CorruptError)(nil); errors.As(p, &ce) && ce.Path == path {
			ce.Path = src
		}
	}
	if !r.OK() {
		return errors.Join(r.Problems...)
	}
	return nil
}
