// Package command holds the flowrt commands, one file each. NewRoot builds
// the command tree; Execute runs it and reports errors; ExitCode maps an
// error to the process's exit status.
package command

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/eventjson"
	"github.com/spf13/cobra"
)

// Exit statuses of the flowrt command.
const (
	ExitOK      = 0 // success
	ExitRuntime = 1 // the command ran and failed: a journal or I/O error
	ExitUsage   = 2 // the command did not run: bad flags or arguments, or bad input lines
)

// exitStatusHelp is the exit-status section of every command's help.
const exitStatusHelp = `Exit status:
  0  success
  1  runtime error: the journal could not be opened, read or written
     (locked by another process, corrupt, disk full, ...)
  2  usage or input error: unknown command or flag, bad flag value, bad
     input line; nothing was changed`

// defaultLockTimeout is how long commands wait for another process to
// release the journal.
const defaultLockTimeout = time.Second

// NewRoot returns the flowrt command with its subcommands. Errors are left
// for the caller to print (see Execute).
func NewRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "flowrt",
		Short: "flowrt: a durable event journal in one bbolt file",
		Long: `flowrt keeps an append-only journal of events in one bbolt file.

  flowrt append   appends JSON-lines events to a stream
  flowrt dump     prints a stream's events, as a table or JSON lines
  flowrt run      runs the flows of a config file over the journal

Inspection:
  flowrt stat       summarises a journal: streams, sizes, consumers, last run
  flowrt check      verifies a journal's integrity; exit status 1 if damaged
  flowrt validate   checks a flows config file, every problem with its line
  flowrt graph      draws a flows config's topology (Mermaid, DOT, JSON)

Operations:
  flowrt consumer reset   moves a consumer to replay or skip events
  flowrt dlq retry|purge  redelivers or removes a consumer's dead letters
  flowrt backup           writes a verified copy of a journal
  flowrt restore          puts a backup back in service as a new journal
  flowrt compact          rewrites a journal without its free space
  flowrt truncate         removes a stream's events below a sequence
  flowrt completion       prints a bash, zsh or fish completion script

Errors are printed to stderr as "flowrt: <message>".

` + exitStatusHelp,
		Example: `  flowrt append --db flowrt.db --file examples/events.jsonl
  flowrt dump --db flowrt.db --type 'order.*'`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return nil
			}
			msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += fmt.Sprintf(" (did you mean %s?)", strings.Join(s, ", "))
			}
			return usageErrorf("%s", msg)
		},
		// The root runs only when no subcommand was named: it shows help.
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },

		SilenceErrors: true, // Execute prints them
		SilenceUsage:  true,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SuggestionsMinimumDistance = 2
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: ExitUsage, err: err, usage: true}
	})
	root.AddCommand(newAppendCommand(), newDumpCommand(), newRunCommand(),
		newConsumerCommand(), newDLQCommand(), newBackupCommand(), newRestoreCommand(),
		newCompactCommand(), newTruncateCommand(), newCompletionCommand(),
		newStatCommand(), newCheckCommand(), newValidateCommand(), newGraphCommand())
	return root
}

// Execute runs root with its configured arguments and streams. If the
// command fails it prints "flowrt: <message>" to root's stderr, and for a
// command-line mistake a pointer to --help, and returns the error; the
// caller exits with ExitCode(err).
func Execute(root *cobra.Command) error {
	cmd, err := root.ExecuteC()
	if err == nil {
		return nil
	}
	w := root.ErrOrStderr()
	fmt.Fprintf(w, "flowrt: %s\n", eventjson.Message(err))
	var ee *exitError
	if errors.As(err, &ee) && ee.usage {
		fmt.Fprintf(w, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return err
}

// ExitCode maps an error returned by Execute to the process exit status:
// ExitOK for nil, ExitUsage for command-line and input errors, ExitRuntime
// for everything else.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var ie *InputError
	if errors.As(err, &ie) {
		return ExitUsage
	}
	return ExitRuntime
}

// exitError gives an error its exit status.
type exitError struct {
	code  int
	err   error
	usage bool // a command-line mistake: point at --help
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErrorf reports a mistake on the command line.
func usageErrorf(format string, args ...any) error {
	return &exitError{code: ExitUsage, err: fmt.Errorf(format, args...), usage: true}
}

// noArgs refuses positional arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf("%s takes no arguments, got %q (flags start with --)", cmd.CommandPath(), args)
	}
	return nil
}

// checkDB checks the --db flag.
func checkDB(db string) error {
	if db == "" {
		return usageErrorf("--db is required: the journal file")
	}
	return nil
}

// LockedError reports that another process holds the journal: Open gave up
// after the lock timeout. It wraps eventlog.ErrLocked.
type LockedError struct {
	Path    string
	Timeout time.Duration
	Err     error
}

// Error says the journal is held by another process and what to do.
func (e *LockedError) Error() string {
	return fmt.Sprintf("%s is locked: another process (probably `flowrt run`) has it open; gave up after %v (--lock-timeout)", e.Path, e.Timeout)
}

// Unwrap returns the eventlog error.
func (e *LockedError) Unwrap() error { return e.Err }

// openJournal opens the journal at path and words the errors users meet
// most for the command line.
func openJournal(path string, opts *eventlog.Options) (*eventlog.Log, error) {
	l, err := eventlog.Open(path, opts)
	switch {
	case err == nil:
		return l, nil
	case errors.Is(err, eventlog.ErrLocked):
		return nil, &LockedError{Path: path, Timeout: opts.LockTimeout, Err: err}
	case opts.ReadOnly && errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("no journal at %s (%w)", path, fs.ErrNotExist)
	}
	return nil, err
}

// plural returns "1 event", "2 events".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
