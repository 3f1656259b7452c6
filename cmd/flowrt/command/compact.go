package command

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/snapshot"
	"github.com/spf13/cobra"
)

type compactOptions struct {
	db          string
	to          string
	json        bool
	quiet       bool
	lockTimeout time.Duration
}

func newCompactCommand() *cobra.Command {
	var o compactOptions
	cmd := &cobra.Command{
		Use:   "compact --db FILE [--to OUT] [--json] [--quiet]",
		Short: "Rewrite a journal without its free space",
		Long: `Compact rewrites the journal into a new file with full pages and no free
space. bbolt never shrinks its file: the space that truncation and retention
free is reused for new events but stays on disk, and compaction is how it
returns to the disk.

Without --to the journal is compacted in place: the copy is written under
the name FILE.compact, checked like 'flowrt check' does, fsynced and renamed
over FILE. It needs the journal to itself and refuses, after
--lock-timeout, while another process such as 'flowrt run' has it open: stop
that process first. On any failure FILE is left as it was. Compaction cannot
be interrupted cleanly: a compaction killed half way leaves FILE as it was
and a FILE.compact that the next compaction removes.

With --to the journal is left as it was and its compacted copy is written to
OUT, which must not exist; the journal is opened read-only, so other readers
may run, but not 'flowrt run'.

On a terminal, a progress bar with the rate and ETA is drawn on stderr (its
total is the journal's size, an upper bound: it ends early when there was
free space to drop); nothing is drawn when stderr is not a terminal, or with
--quiet. Compact then prints the sizes before and after; with --json, one
object: {"db":"flowrt.db","to":"","before":1048576,"after":262144,"took_ms":12}.

` + exitStatusHelp,
		Example: `  # After a large truncation, with the daemon stopped.
  flowrt truncate --db flowrt.db --stream events --below 1000000
  flowrt compact --db flowrt.db

  # A compacted copy, leaving the journal as it is.
  flowrt compact --db flowrt.db --to /tmp/flowrt-compact.db --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runCompact(cmd, &o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.db, "db", "", "journal file (required)")
	f.StringVar(&o.to, "to", "", "write the compacted copy to this new file and leave the journal as it is")
	f.BoolVar(&o.json, "json", false, "print the result as a JSON object")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "draw no progress bar")
	f.DurationVar(&o.lockTimeout, "lock-timeout", defaultLockTimeout, "how long to wait for another process to release the journal")
	return cmd
}

// compactJSON is compact's --json output.
type compactJSON struct {
	DB     string `json:"db"`
	To     string `json:"to"` // "" when compacted in place
	Before int64  `json:"before"`
	After  int64  `json:"after"`
	TookMS int64  `json:"took_ms"`
}

func runCompact(cmd *cobra.Command, o *compactOptions) error {
	if err := checkDB(o.db); err != nil {
		return err
	}
	if o.lockTimeout <= 0 {
		return usageErrorf("--lock-timeout must be positive, got %v", o.lockTimeout)
	}
	if o.to != "" && filepath.Clean(o.to) == filepath.Clean(o.db) {
		return usageErrorf("--to %s is the journal itself: leave --to out to compact in place", o.to)
	}
	before := opsFileSize(o.db)
	if _, err := os.Stat(o.db); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no journal at %s (%w)", o.db, fs.ErrNotExist)
	}
	start := time.Now()
	var res eventlog.CompactResult
	var err error
	if o.to == "" {
		res, err = compactInPlace(cmd, o, before)
	} else {
		res, err = compactTo(cmd, o, before)
	}
	if err != nil {
		return err
	}
	took := time.Since(start)
	out := compactJSON{DB: o.db, To: o.to, Before: before, After: res.After, TookMS: took.Milliseconds()}
	if o.json {
		return opsWriteJSON(cmd.OutOrStdout(), out)
	}
	freed := before - res.After
	pct := 0.0
	if before > 0 {
		pct = 100 * float64(freed) / float64(before)
	}
	head := "compacted " + o.db
	tail := ""
	if o.to != "" {
		head += " into " + o.to
		tail = fmt.Sprintf("; %s is unchanged", o.db)
	}
	_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s: %s -> %s (%s smaller, %.0f%%)%s (took %v)\n",
		head, opsSize(before), opsSize(res.After), opsSize(freed), pct, tail, took.Round(time.Millisecond))
	return err
}

// compactInPlace compacts the journal at o.db with eventlog.Compact.
func compactInPlace(cmd *cobra.Command, o *compactOptions, before int64) (eventlog.CompactResult, error) {
	bar := newProgressBar(cmd, o.quiet, "compact", before, progressBytes)
	defer bar.Done()
	// eventlog.Compact writes its copy to path + ".compact": its size is
	// the progress.
	stop := watchFileSize(o.db+".compact", before, bar)
	res, err := eventlog.Compact(o.db, &eventlog.Options{LockTimeout: o.lockTimeout})
	stop()
	bar.Done()
	if errors.Is(err, eventlog.ErrLocked) {
		return res, &opsInUseError{Path: o.db, Why: "compact rewrites the journal and needs it to itself", Err: err}
	}
	if err != nil {
		return res, fmt.Errorf("compact %s (the journal is left as it was): %w", o.db, err)
	}
	return res, nil
}

// compactTo writes a compacted copy of the journal at o.db to o.to: a
// backup under a temporary name next to o.to, compacted there, then linked
// to o.to, so that o.to appears whole or not at all.
func compactTo(cmd *cobra.Command, o *compactOptions, before int64) (res eventlog.CompactResult, err error) {
	if _, err := os.Lstat(o.to); err == nil {
		return res, &opsError{msg: fmt.Sprintf("compact refused: %s exists (choose another --to); nothing was written", o.to), err: fs.ErrExist}
	}
	l, err := opsOpen(o.db, true, o.lockTimeout,
		"compact --to opens the journal itself, and a journal that flowrt run holds open cannot be copied from outside yet")
	if err != nil {
		return res, err
	}
	f, err := os.CreateTemp(filepath.Dir(o.to), filepath.Base(o.to)+".compact-*.tmp")
	if err != nil {
		return res, errors.Join(fmt.Errorf("compact: create a temporary file next to %s: %w", o.to, err), l.Close())
	}
	tmp := f.Name()
	defer os.Remove(tmp) // gone already once linked
	if err := f.Close(); err != nil {
		return res, errors.Join(fmt.Errorf("compact: %w", err), l.Close())
	}
	ctx, stopSignals := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	bar := newProgressBar(cmd, o.quiet, "copy", before, progressBytes)
	defer bar.Done()
	_, err = snapshot.Backup(ctx, l, tmp, &snapshot.BackupOptions{Progress: bar.Set, Overwrite: true})
	if cerr := l.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close journal %s: %w", o.db, cerr)
	}
	if err != nil {
		bar.Done()
		return res, copyError("compact", o.to, "choose another --to", err)
	}

	copied := opsFileSize(tmp)
	bar.Describe("compact")
	bar.Set(0, copied)
	stop := watchFileSize(tmp+".compact", copied, bar)
	res, err = eventlog.Compact(tmp, &eventlog.Options{LockTimeout: o.lockTimeout})
	stop()
	bar.Done()
	if err != nil {
		return res, fmt.Errorf("compact the copy of %s: %w", o.db, err)
	}
	if err := os.Link(tmp, o.to); err != nil {
		return res, fmt.Errorf("compact: put the copy at %s: %w", o.to, err)
	}
	if err := eventlog.SyncPath(filepath.Dir(o.to)); err != nil {
		return res, fmt.Errorf("compact: fsync the directory of %s (the copy is in place, but may not survive a power loss): %w", o.to, err)
	}
	return res, nil
}

// watchFileSize shows the size of the file at path, at most limit, on bar
// every progressThrottle, until the returned function is called; that
// function waits for the watching goroutine to end. With a nil bar it
// starts nothing.
func watchFileSize(path string, limit int64, bar *progressBar) (stop func()) {
	if bar == nil {
		return func() {}
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(progressThrottle)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				if fi, err := os.Stat(path); err == nil {
					bar.Set(min(fi.Size(), limit), 0)
				}
			}
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}
