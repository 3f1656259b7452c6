package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/flowrt/flowrt/eventlog"
)

// BackupOptions configures Backup. A nil *BackupOptions, like the zero
// value, means no progress reports and no overwriting.
type BackupOptions struct {
	// Progress, when set, is called from the goroutine running the copy
	// after about every MiB written, and once when the copy is complete.
	// written counts bytes; total is the journal file's size when the copy
	// began, an upper bound on the copy's size (bbolt grows files ahead of
	// their pages), lowered to written in the last call. Progress runs
	// inside the copy's read transaction: keep it quick.
	Progress func(written, total int64)

	// Overwrite replaces a file already at the destination. Default false:
	// Backup refuses with ErrExists. A journal held open by a process is
	// never replaced (ErrInUse).
	Overwrite bool
}

// BackupReport describes a backup written by Backup.
type BackupReport struct {
	Path    string                // the backup file
	Bytes   int64                 // its size
	Streams []eventlog.StreamInfo // each stream as the backup holds it, in name order
	Check   eventlog.CheckReport  // Check's report on the backup; always OK on success
	Took    time.Duration         // copy, verification and rename
}

// Backup writes a consistent copy of the open journal l to path while it
// keeps being written, and verifies it: the copy holds every event and
// consumer offset committed before Backup was called, and whatever
// committed after up to the moment its read transaction began.
//
// The copy is written under a temporary name in path's directory (path's
// base name followed by ".backup-*.tmp"), fsynced, opened read-only and
// checked with Check, and only then renamed to path; the directory is
// fsynced after. On any failure, or when ctx is cancelled (Backup then
// returns an error for which errors.Is(err, ctx.Err()) holds), the
// temporary file is removed and path is left as it was.
//
// The copy runs in one read transaction of l for its whole duration (see
// eventlog.Log.WriteTo): appends keep committing meanwhile, except that a
// commit which must grow the journal's memory map waits for the copy to
// end. Backup refuses an existing path with ErrExists unless
// opts.Overwrite, and never replaces l's own file or a journal in use
// (ErrInUse). The backup is a journal with l's journal ID: Restore puts it
// back in service.
func Backup(ctx context.Context, l *eventlog.Log, path string, opts *BackupOptions) (BackupReport, error) {
	start := time.Now()
	var o BackupOptions
	if opts != nil {
		o = *opts
	}
	fail := func(err error) (BackupReport, error) {
		return BackupReport{}, fmt.Errorf("flowrt/snapshot: backup %s to %s: %w", l.Path(), path, err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	if err := checkDest(l.Path(), path, o.Overwrite); err != nil {
		return fail(err)
	}
	tmp, err := writeTemp(ctx, path, "backup", l.Path(), l, o.Progress)
	if tmp != "" {
		defer os.Remove(tmp) // gone already once renamed
	}
	if err != nil {
		return fail(err)
	}
	check, streams, err := verify(ctx, tmp, l.Path())
	if err != nil {
		return fail(err)
	}
	n, err := place(ctx, tmp, path, l.Path(), o.Overwrite)
	if err != nil {
		return fail(err)
	}
	return BackupReport{Path: path, Bytes: n, Streams: streams, Check: check, Took: time.Since(start)}, nil
}

// checkDest refuses a destination that exists (unless overwrite), that is
// the file at src (when src is not empty), or that a process holds open as
// a journal.
func checkDest(src, dest string, overwrite bool) error {
	fi, err := os.Lstat(dest)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect destination: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: %s is a %v, not a regular file", ErrExists, dest, fi.Mode().Type())
	}
	if src != "" {
		if sfi, err := os.Stat(src); err == nil && os.SameFile(fi, sfi) {
			return fmt.Errorf("%w: %s is the journal being backed up", ErrInUse, dest)
		}
	}
	held, err := locked(dest)
	if err != nil {
		return fmt.Errorf("inspect destination: %w", err)
	}
	if held {
		return fmt.Errorf("%w: %s is held open by a process (%w)", ErrInUse, dest, eventlog.ErrLocked)
	}
	if !overwrite {
		return fmt.Errorf("%w: %s (remove it or choose another path)", ErrExists, dest)
	}
	return nil
}

// locked reports whether a process holds a lock on the file at path, as an
// open journal does (bbolt takes flock: exclusive to write, shared to read).
// The probe's own lock is released before it returns.
func locked(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	switch err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); {
	case err == nil:
		return false, nil // released by Close
	case errors.Is(err, syscall.EWOULDBLOCK):
		return true, nil
	default:
		return false, fmt.Errorf("probe the lock of %s: %w", path, err)
	}
}

// writeTemp creates a temporary file next to dest, writes src's copy into
// it through a writer that honours ctx and reports progress, and fsyncs and
// closes it. It returns the temporary file's name, even with an error, once
// the file exists; the caller removes it.
func writeTemp(ctx context.Context, dest, purpose, srcPath string, src io.WriterTo, progress func(written, total int64)) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(dest), filepath.Base(dest)+"."+purpose+"-*.tmp")
	if err != nil {
		return "", fmt.Errorf("create temporary file: %w", err)
	}
	pw := &progressWriter{ctx: ctx, w: f, srcPath: srcPath, progress: progress}
	n, err := src.WriteTo(pw)
	if err == nil && progress != nil {
		progress(n, n)
	}
	if err == nil {
		if err = f.Sync(); err != nil {
			err = fmt.Errorf("fsync %s: %w", f.Name(), err)
		}
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", f.Name(), cerr)
	}
	return f.Name(), err
}

// progressBytes is how many bytes pass between two Progress calls.
const progressBytes = 1 << 20

// progressWriter writes to w, refusing once ctx is done, and calls progress
// after every progressBytes. It learns the total at the first write, which
// happens inside the copy's read transaction: the file's size then bounds
// the copy from above.
type progressWriter struct {
	ctx      context.Context
	w        io.Writer
	srcPath  string
	progress func(written, total int64)

	written, total, reported int64
	started                  bool
}

func (p *progressWriter) Write(b []byte) (int, error) {
	if err := p.ctx.Err(); err != nil {
		return 0, err
	}
	if !p.started {
		p.started = true
		if fi, err := os.Stat(p.srcPath); err == nil {
			p.total = fi.Size()
		}
	}
	n, err := p.w.Write(b)
	p.written += int64(n)
	if p.progress != nil && p.written-p.reported >= progressBytes {
		p.reported = p.written
		p.progress(p.written, max(p.total, p.written))
	}
	return n, err
}

// verify opens the journal at path read-only, checks it, and returns the
// report and its streams. A file that does not open as a journal or fails
// the check gives an error wrapping ErrVerify. Damaged records are
// reported under origin's name: the file at path is its byte-for-byte copy.
func verify(ctx context.Context, path, origin string) (r eventlog.CheckReport, streams []eventlog.StreamInfo, err error) {
	l, err := eventlog.Open(path, &eventlog.Options{ReadOnly: true})
	if err != nil {
		return r, nil, verifyError(err)
	}
	defer func() {
		if cerr := l.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	if r, err = l.Check(ctx); err != nil {
		return r, nil, verifyError(err)
	}
	if !r.OK() {
		for _, p := range r.Problems {
			if ce := (*eventlog.CorruptError)(nil); errors.As(p, &ce) && ce.Path == path {
				ce.Path = origin
			}
		}
		return r, nil, problemsError(r.Problems)
	}
	if streams, err = l.Streams(); err != nil {
		return r, nil, verifyError(err)
	}
	return r, streams, nil
}

// problemsError is the error for a check that found problems: ErrVerify,
// wrapping each of them.
func problemsError(problems []error) error {
	return fmt.Errorf("%w: check found %d problems: %w", ErrVerify, len(problems), errors.Join(problems...))
}

// verifyError wraps err with ErrVerify when it says the file is not a sound
// journal, rather than that it could not be read at all.
func verifyError(err error) error {
	for _, target := range []error{eventlog.ErrNotJournal, eventlog.ErrTruncated, eventlog.ErrCorrupt, eventlog.ErrVersion} {
		if errors.Is(err, target) {
			return fmt.Errorf("%w: %w", ErrVerify, err)
		}
	}
	return err
}

// place moves the verified temporary file tmp to dest and fsyncs the
// directory, returning the file's size. Without overwrite it links, which
// fails if dest appeared meanwhile; with it, it renames over dest after
// checking dest again. ctx is checked last before dest changes.
func place(ctx context.Context, tmp, dest, src string, overwrite bool) (int64, error) {
	fi, err := os.Stat(tmp)
	if err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if overwrite {
		if err := checkDest(src, dest, true); err != nil {
			return 0, err
		}
		if err := os.Rename(tmp, dest); err != nil {
			return 0, fmt.Errorf("rename into place: %w", err)
		}
	} else {
		if err := os.Link(tmp, dest); errors.Is(err, fs.ErrExist) {
			return 0, fmt.Errorf("%w: %s appeared during the copy", ErrExists, dest)
		} else if err != nil {
			return 0, fmt.Errorf("link into place: %w", err)
		}
		_ = os.Remove(tmp) // dest holds the data; the caller's deferred removal retries
	}
	if err := eventlog.SyncPath(filepath.Dir(dest)); err != nil {
		return 0, fmt.Errorf("fsync directory (the file is in place, but may not survive a power loss): %w", err)
	}
	return fi.Size(), nil
}
