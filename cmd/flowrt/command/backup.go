package command

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/server"
	"github.com/flowrt/flowrt/snapshot"
	"github.com/spf13/cobra"
)

type backupOptions struct {
	db          string
	to          string
	overwrite   bool
	json        bool
	quiet       bool
	lockTimeout time.Duration
	token       string
	tokenFile   string
}

func newBackupCommand() *cobra.Command {
	var o backupOptions
	cmd := &cobra.Command{
		Use:   "backup --db FILE --to BACKUP [--overwrite] [--json] [--quiet]",
		Short: "Write a verified copy of a journal",
		Long: `Backup writes a consistent copy of the journal to --to: every stream, event,
consumer offset, dead letter and flow state as they stood when the copy began.
The copy is written under a temporary name next to --to, fsynced, opened and
checked like 'flowrt check' does, and only then renamed to --to; on any
failure, or on Ctrl-C, the temporary file is removed and --to is left as it
was. The backup is itself a journal: 'flowrt restore' puts it back in
service, and every read-only command reads it as it is.

Backup opens the journal read-only and changes nothing; it runs next to
other readers such as 'flowrt dump'. It cannot yet back up a journal that
'flowrt run' holds open (the daemon has no backup endpoint): it refuses
after --lock-timeout, and the daemon must be stopped for the backup.

--to must not exist, unless --overwrite; a journal some process holds open
is never overwritten, nor the journal itself.

On a terminal, a progress bar with the rate and ETA is drawn on stderr while
the copy runs; nothing is drawn when stderr is not a terminal, or with
--quiet. Backup then prints the backup's size, what it holds and a table of
its streams; with --json, one object:
{"db":"flowrt.db","backup":"b.db","bytes":32768,"streams":[{"name":"events",
"first":1,"last":6,"count":6,"bytes":1790}],"checked":{"streams":1,
"events":6,"consumers":0},"took_ms":4}.

` + exitStatusHelp,
		Example: `  flowrt backup --db flowrt.db --to /backups/flowrt-$(date +%F).db
  flowrt backup --db flowrt.db --to /backups/latest.db --overwrite --quiet
  flowrt backup --db flowrt.db --to b.db --json | jq .bytes`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBackup(cmd, &o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.db, "db", "", "journal file (required)")
	f.StringVar(&o.to, "to", "", "backup file to write (required)")
	f.BoolVar(&o.overwrite, "overwrite", false, "replace an existing file at --to")
	f.BoolVar(&o.json, "json", false, "print the result as a JSON object")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "draw no progress bar")
	f.DurationVar(&o.lockTimeout, "lock-timeout", defaultLockTimeout, "how long to wait for another process to release the journal")
	f.StringVar(&o.token, "token", "", "bearer token of the daemon that holds the journal, if any")
	f.StringVar(&o.tokenFile, "token-file", "", "file holding the daemon's bearer token")
	return cmd
}

// copyJSON is the --json output of backup and restore.
type copyJSON struct {
	DB      string          `json:"db"`
	Backup  string          `json:"backup"`
	Bytes   int64           `json:"bytes"`
	Streams []opsStreamJSON `json:"streams"`
	Checked checkedJSON     `json:"checked"`
	TookMS  int64           `json:"took_ms"`
}

// checkedJSON is what the verification of a copy covered.
type checkedJSON struct {
	Streams   int    `json:"streams"`
	Events    uint64 `json:"events"`
	Consumers int    `json:"consumers"`
}

func runBackup(cmd *cobra.Command, o *backupOptions) (err error) {
	if err := checkDB(o.db); err != nil {
		return err
	}
	if o.to == "" {
		return usageErrorf("--to is required: the backup file to write")
	}
	if o.lockTimeout <= 0 {
		return usageErrorf("--lock-timeout must be positive, got %v", o.lockTimeout)
	}
	l, err := opsOpen(o.db, true, o.lockTimeout,
		"backup opens the journal itself unless flowrt run serves --http, which it then asks for a hot backup")
	if errors.Is(err, eventlog.ErrLocked) {
		if info, lerr := readLiveFile(o.db); lerr == nil && info != nil {
			return backupThroughDaemon(cmd, o, info)
		}
	}
	if err != nil {
		return err
	}
	defer opsClose(l, &err)

	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	bar := newProgressBar(cmd, o.quiet, "backup", opsFileSize(o.db), progressBytes)
	defer bar.Done()
	rep, err := snapshot.Backup(ctx, l, o.to, &snapshot.BackupOptions{Progress: bar.Set, Overwrite: o.overwrite})
	bar.Done()
	if err != nil {
		return copyError("backup", o.to, "--overwrite replaces it, or choose another --to", err)
	}
	res := copyJSON{DB: o.db, Backup: o.to, Bytes: rep.Bytes, Streams: opsStreams(rep.Streams),
		Checked: checkedJSON{rep.Check.Streams, rep.Check.Events, rep.Check.Consumers}, TookMS: rep.Took.Milliseconds()}
	if o.json {
		return opsWriteJSON(cmd.OutOrStdout(), res)
	}
	return printCopy(cmd.OutOrStdout(), fmt.Sprintf("backed up %s to %s", o.db, o.to), res, rep.Took)
}

// backupThroughDaemon asks the daemon that holds the journal for a hot
// backup (POST /v1/backup): it copies while its flows keep writing.
func backupThroughDaemon(cmd *cobra.Command, o *backupOptions, info *server.Discovery) error {
	to, err := filepath.Abs(o.to)
	if err != nil {
		return err
	}
	lc, err := newLiveClient(&dumpCommon{db: o.db, lockTimeout: o.lockTimeout, token: o.token, tokenFile: o.tokenFile}, info)
	if err != nil {
		return err
	}
	body, err := json.Marshal(server.BackupRequest{To: to, Overwrite: o.overwrite})
	if err != nil {
		return err
	}
	var ans server.BackupAnswer
	if err := lc.post(cmd.Context(), "/v1/backup", "application/json", bytes.NewReader(body), &ans); err != nil {
		return err
	}
	res := copyJSON{DB: o.db, Backup: o.to, Bytes: ans.Bytes, Streams: opsStreams(ans.Streams),
		Checked: checkedJSON{len(ans.Streams), ans.Events, ans.Consumers}, TookMS: ans.TookMS}
	if o.json {
		return opsWriteJSON(cmd.OutOrStdout(), res)
	}
	took := time.Duration(ans.TookMS) * time.Millisecond
	return printCopy(cmd.OutOrStdout(), fmt.Sprintf("backed up %s to %s (hot, through the daemon at %s)", o.db, o.to, info.Addr), res, took)
}

// copyError words Backup's and Restore's refusals for the command line.
// exists is the advice for a destination that exists.
func copyError(op, dest, exists string, err error) error {
	var msg string
	switch {
	case errors.Is(err, context.Canceled):
		msg = fmt.Sprintf("%s interrupted: nothing was written at %s", op, dest)
	case errors.Is(err, snapshot.ErrInUse):
		msg = fmt.Sprintf("%s refused: %s is a journal in use (held open by a process such as flowrt run, or the journal itself); nothing was written", op, dest)
	case errors.Is(err, snapshot.ErrExists):
		msg = fmt.Sprintf("%s refused: %s exists (%s); nothing was written", op, dest, exists)
	default:
		return err
	}
	return &opsError{msg: msg, err: err}
}

// printCopy writes the human output of backup and restore: a summary line
// and a table of the copy's streams.
func printCopy(w io.Writer, head string, res copyJSON, took time.Duration) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "%s: %s, %s, %s, %s, verified (took %v)\n", head, opsSize(res.Bytes),
		plural(len(res.Streams), "stream"), plural(int(res.Checked.Events), "event"),
		plural(res.Checked.Consumers, "consumer offset"), took.Round(time.Millisecond))
	if len(res.Streams) > 0 {
		fmt.Fprintln(tw, "STREAM\tFIRST\tLAST\tEVENTS\tBYTES")
		for _, s := range res.Streams {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\n", s.Name, s.First, s.Last, s.Count, opsSize(int64(s.Bytes)))
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// opsFileSize returns the size of the file at path, 0 when unknown.
func opsFileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// opsError is an error whose message is worded for the command line and
// which wraps the error it replaces, for errors.Is.
type opsError struct {
	msg string
	err error
}

// Error returns the command-line message.
func (e *opsError) Error() string { return e.msg }

// Unwrap returns the error the message replaces.
func (e *opsError) Unwrap() error { return e.err }
