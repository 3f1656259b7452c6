package command

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/snapshot"
	"github.com/spf13/cobra"
)

type restoreOptions struct {
	from  string
	db    string
	json  bool
	quiet bool
}

func newRestoreCommand() *cobra.Command {
	var o restoreOptions
	cmd := &cobra.Command{
		Use:   "restore --from BACKUP --db FILE [--json] [--quiet]",
		Short: "Put a backup back in service as a new journal",
		Long: `Restore checks the backup --from (a file written by 'flowrt backup', or any
journal at rest) like 'flowrt check' does, then copies it to --db as a new
journal: under a temporary name next to --db, fsynced, opened once more, and
only then linked into place. The backup itself is never changed.

--db must not exist: restore never replaces a file. To put a backup in place
of a journal, stop the process that uses the journal, move the journal
aside (keep it until the restored one runs), and restore to its name.

The restored journal keeps the backup's journal ID, streams, sequences,
consumer offsets, dead letters and flow states: flows resume from their
offsets as of the backup, and see again whatever they processed after it.

A backup that is not a journal, is truncated or fails the check is refused
and nothing is written (exit status 1). On any failure, or on Ctrl-C, the
temporary file is removed and nothing is left at --db.

On a terminal, a progress bar with the rate and ETA is drawn on stderr while
the copy runs; nothing is drawn when stderr is not a terminal, or with
--quiet. Restore then prints the journal's size, what it holds and a table
of its streams; with --json, one object with the keys of 'flowrt backup
--json'.

` + exitStatusHelp,
		Example: `  flowrt restore --from /backups/flowrt-2025-11-24.db --db /var/lib/flowrt/flowrt.db

  # Replace a journal by its backup.
  systemctl stop flowrt
  mv /var/lib/flowrt/flowrt.db /var/lib/flowrt/flowrt.db.old
  flowrt restore --from /backups/latest.db --db /var/lib/flowrt/flowrt.db
  systemctl start flowrt`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runRestore(cmd, &o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.from, "from", "", "backup file to restore (required)")
	f.StringVar(&o.db, "db", "", "journal file to create; must not exist (required)")
	f.BoolVar(&o.json, "json", false, "print the result as a JSON object")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "draw no progress bar")
	return cmd
}

func runRestore(cmd *cobra.Command, o *restoreOptions) error {
	if o.from == "" {
		return usageErrorf("--from is required: the backup file to restore")
	}
	if err := checkDB(o.db); err != nil {
		return err
	}
	if _, err := os.Stat(o.from); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no backup at %s (%w)", o.from, fs.ErrNotExist)
	}

	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	bar := newProgressBar(cmd, o.quiet, "restore", opsFileSize(o.from), progressBytes)
	defer bar.Done()
	rep, err := snapshot.Restore(ctx, o.from, o.db, &snapshot.RestoreOptions{Progress: bar.Set})
	bar.Done()
	if err != nil {
		return restoreError(o, err)
	}
	res := copyJSON{DB: o.db, Backup: o.from, Bytes: rep.Bytes, Streams: opsStreams(rep.Streams),
		Checked: checkedJSON{rep.Check.Streams, rep.Check.Events, rep.Check.Consumers}, TookMS: rep.Took.Milliseconds()}
	if o.json {
		return opsWriteJSON(cmd.OutOrStdout(), res)
	}
	return printCopy(cmd.OutOrStdout(), fmt.Sprintf("restored %s to %s", o.from, o.db), res, rep.Took.Round(time.Millisecond))
}

// restoreError words Restore's refusals for the command line.
func restoreError(o *restoreOptions, err error) error {
	switch {
	case errors.Is(err, snapshot.ErrVerify):
		why := err.Error()
		if _, after, ok := strings.Cut(why, snapshot.ErrVerify.Error()+": "); ok {
			why = after // what eventlog found, without the wrapping
		}
		return &opsError{msg: fmt.Sprintf("restore refused: %s is not a sound journal (%s); nothing was written", o.from, why), err: err}
	case errors.Is(err, eventlog.ErrLocked):
		// The destination's lock is ErrInUse (below); this is the backup's.
		if !errors.Is(err, snapshot.ErrInUse) {
			return &opsError{msg: fmt.Sprintf("restore refused: the backup %s is held open by a process that writes it; nothing was written", o.from), err: err}
		}
	}
	return copyError("restore", o.db, "restore never replaces a file: move it aside, or choose another --db", err)
}
