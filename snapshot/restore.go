package snapshot

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/flowrt/flowrt/eventlog"
)

// RestoreOptions configures Restore. A nil *RestoreOptions, like the zero
// value, means no progress reports.
type RestoreOptions struct {
	// Progress, when set, is called as BackupOptions.Progress is, while the
	// backup is copied to the destination.
	Progress func(written, total int64)
}

// RestoreReport describes a journal written by Restore.
type RestoreReport struct {
	Path    string                // the restored journal
	Backup  string                // the backup it was restored from
	Bytes   int64                 // the restored journal's size
	Streams []eventlog.StreamInfo // each stream as restored, in name order
	Check   eventlog.CheckReport  // Check's report on the backup; always OK on success
	Took    time.Duration         // verification, copy and rename
}

// Restore puts the backup at backup back in service as a new journal at
// dest. dest must not exist: Restore never replaces a file (ErrExists), and
// says so with ErrInUse when dest is a journal a process holds open.
//
// The backup is opened read-only (its shared lock keeps writers out for the
// duration) and checked; a backup that is not a journal, is truncated or
// fails the check is refused with an error wrapping ErrVerify and
// eventlog's own (ErrNotJournal, ErrTruncated, ErrCorrupt, ErrVersion). The
// checked state is then copied under a temporary name in dest's directory
// (dest's base name followed by ".restore-*.tmp"), fsynced, opened once
// more as a journal, and linked to dest; the directory is fsynced after. On
// any failure, or when ctx is cancelled, the temporary file is removed and
// nothing is left at dest. The backup itself is never changed.
//
// The restored journal keeps the backup's journal ID, streams, sequences
// and consumer offsets: consumers resume from their offsets as of the
// backup and see again whatever they processed after it.
func Restore(ctx context.Context, backup, dest string, opts *RestoreOptions) (RestoreReport, error) {
	start := time.Now()
	var o RestoreOptions
	if opts != nil {
		o = *opts
	}
	fail := func(err error) (RestoreReport, error) {
		return RestoreReport{}, fmt.Errorf("flowrt/snapshot: restore %s to %s: %w", backup, dest, err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	if err := checkDest("", dest, false); err != nil {
		return fail(err)
	}
	src, err := eventlog.Open(backup, &eventlog.Options{ReadOnly: true})
	if err != nil {
		return fail(verifyError(err))
	}
	defer src.Close() // read-only: nothing to lose
	check, err := src.Check(ctx)
	if err != nil {
		return fail(verifyError(err))
	}
	if !check.OK() {
		return fail(problemsError(check.Problems))
	}
	streams, err := src.Streams()
	if err != nil {
		return fail(verifyError(err))
	}
	tmp, err := writeTemp(ctx, dest, "restore", backup, src, o.Progress)
	if tmp != "" {
		defer os.Remove(tmp) // gone already once linked
	}
	if err != nil {
		return fail(err)
	}
	// The copy was checked at its source; opening it catches a copy that
	// the disk did not keep whole, at a fraction of the cost of a second Check.
	if err := reopen(tmp); err != nil {
		return fail(fmt.Errorf("the copy at %s: %w", tmp, err))
	}
	n, err := place(ctx, tmp, dest, "", false)
	if err != nil {
		return fail(err)
	}
	return RestoreReport{Path: dest, Backup: backup, Bytes: n, Streams: streams, Check: check, Took: time.Since(start)}, nil
}

// reopen opens the journal at path read-only and closes it: the meta pages,
// the file's length and flowrt's meta bucket are checked on open.
func reopen(path string) error {
	l, err := eventlog.Open(path, &eventlog.Options{ReadOnly: true})
	if err != nil {
		return verifyError(err)
	}
	return l.Close()
}
