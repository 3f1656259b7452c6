package command

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/eventjson"
)

// checkProblemLimit is how many problems eventlog's Check collects before
// it stops looking.
const checkProblemLimit = 100

type checkOptions struct {
	db          string
	json        bool
	lockTimeout time.Duration
}

func newCheckCommand() *cobra.Command {
	var o checkOptions
	cmd := &cobra.Command{
		Use:   "check --db FILE [--json]",
		Short: "Verify a journal's integrity: pages, records, sequences, offsets",
		Long: `Check verifies the whole journal in one read transaction: bbolt's own page
consistency check, every record's CRC and encoding, dense sequences within
each stream, stream heads that agree with their events, an ID index that
finds every event, and consumer offsets within their streams' bounds. It
opens the journal read-only and changes nothing.

It prints what it checked, then "OK" or every problem found (up to ` + fmt.Sprint(checkProblemLimit) + `),
each naming the stream and sequence of a damaged record:

  checked flowrt.db: 2 streams, 31 events, 1 consumer offset
  PROBLEMS (1):
    stream "events" seq 17: corrupt record: CRC32C mismatch: stored ..., computed ...

A file too damaged to open as a journal is reported the same way, as one
problem. docs/OPERATIONS.md says how to recover from a corrupted file.

--json prints one object instead:

  {"db":"flowrt.db","ok":false,"streams":2,"events":31,"consumers":1,
   "problems":[{"stream":"events","seq":17,"message":"..."}]}

Check needs the journal at rest: it cannot run while another process, such
as 'flowrt run', holds the journal open. Stop that process first, or check
a copy made with 'flowrt backup'.

Exit status:
  0  the journal is healthy
  1  problems were found, or the check could not run: no journal at --db,
     the journal is in use by another process, or it could not be read
  2  usage error: unknown flag, bad flag value, missing --db`,
		Example: `  flowrt check --db flowrt.db
  flowrt check --db flowrt.db --json | jq -r '.problems[].message'
  flowrt check --db /var/lib/flowrt/flowrt.db > /dev/null || echo 'journal damaged' >&2`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runCheck(cmd, &o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.db, "db", "", "journal file (required)")
	f.BoolVar(&o.json, "json", false, "print the report as a JSON object")
	f.DurationVar(&o.lockTimeout, "lock-timeout", defaultLockTimeout, "how long to wait for another process to release the journal")
	return cmd
}

// checkJSON is check's report, as --json prints it.
type checkJSON struct {
	DB        string             `json:"db"`
	OK        bool               `json:"ok"`
	Streams   int                `json:"streams"`
	Events    uint64             `json:"events"`
	Consumers int                `json:"consumers"`
	Problems  []checkProblemJSON `json:"problems"`
}

// checkProblemJSON is one problem check found. Stream and Seq name the
// damaged record, when the problem is in one.
type checkProblemJSON struct {
	Stream  string `json:"stream,omitempty"`
	Seq     uint64 `json:"seq,omitempty"`
	Message string `json:"message"`
}

// CheckBusyError reports that check cannot run because another process
// holds the journal open. It wraps the open error, so
// errors.Is(err, eventlog.ErrLocked) holds.
type CheckBusyError struct {
	Path string
	Err  error
}

// Error says that check needs the journal at rest, and what to do.
func (e *CheckBusyError) Error() string {
	return fmt.Sprintf("journal %s is in use by another process (flowrt run?); check needs the journal at rest: stop that process and check again, or check a copy made with 'flowrt backup'", e.Path)
}

// Unwrap returns the open error.
func (e *CheckBusyError) Unwrap() error { return e.Err }

// checkFailedError is check's error when it found problems: the report is
// on stdout, and the exit status is 1.
type checkFailedError struct {
	db       string
	problems int
}

func (e *checkFailedError) Error() string {
	more := ""
	if e.problems >= checkProblemLimit {
		more = " (the check stops there: there may be more)"
	}
	return fmt.Sprintf("%s: %s found%s; see 'Recovering from a corrupted file' in docs/OPERATIONS.md",
		e.db, plural(e.problems, "problem"), more)
}

func runCheck(cmd *cobra.Command, o *checkOptions) (err error) {
	if err := checkDB(o.db); err != nil {
		return err
	}
	if o.lockTimeout <= 0 {
		return usageErrorf("--lock-timeout must be positive, got %v", o.lockTimeout)
	}
	rep := checkJSON{DB: o.db, Problems: []checkProblemJSON{}}
	opened := false
	l, err := openJournal(o.db, &eventlog.Options{ReadOnly: true, LockTimeout: o.lockTimeout})
	switch {
	case err == nil:
		opened = true
		defer func() {
			if cerr := l.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("close journal %s: %w", o.db, cerr)
			}
		}()
		r, err := l.Check(cmd.Context())
		if err != nil {
			return fmt.Errorf("check %s: %w", o.db, err)
		}
		rep.Streams, rep.Events, rep.Consumers = r.Streams, r.Events, r.Consumers
		for _, p := range r.Problems {
			rep.Problems = append(rep.Problems, checkProblem(o.db, p))
		}
	case errors.Is(err, eventlog.ErrLocked):
		return &CheckBusyError{Path: o.db, Err: err}
	case errors.Is(err, eventlog.ErrCorrupt), errors.Is(err, eventlog.ErrNotJournal):
		// Damage found at open is what check is for: report it.
		rep.Problems = append(rep.Problems, checkProblem(o.db, err))
	default:
		return err
	}
	rep.OK = len(rep.Problems) == 0

	w := bufio.NewWriter(cmd.OutOrStdout())
	var werr error
	if o.json {
		werr = writeIndentedJSON(w, rep)
	} else {
		printCheck(w, rep, opened)
	}
	if werr = errors.Join(werr, w.Flush()); werr != nil {
		return fmt.Errorf("write output: %w", werr)
	}
	if !rep.OK {
		return &checkFailedError{db: o.db, problems: len(rep.Problems)}
	}
	return nil
}

// checkProblem words one problem for the report: without the package
// prefix and the journal's path, which the report already names.
func checkProblem(db string, err error) checkProblemJSON {
	p := checkProblemJSON{Message: eventjson.Message(err)}
	var ce *eventlog.CorruptError
	if errors.As(err, &ce) {
		p.Stream, p.Seq = ce.Stream, ce.Seq
		p.Message = strings.Replace(p.Message, ce.Path+": ", "", 1)
	}
	p.Message = strings.Replace(p.Message, db+": ", "", 1)
	return p
}

// printCheck writes check's human report; opened says whether the file
// opened as a journal.
func printCheck(w io.Writer, rep checkJSON, opened bool) {
	if !opened {
		fmt.Fprintf(w, "checked %s: it does not open as a journal\n", rep.DB)
	} else {
		fmt.Fprintf(w, "checked %s: %s, %s, %s\n", rep.DB, plural(rep.Streams, "stream"),
			plural(int(rep.Events), "event"), plural(rep.Consumers, "consumer offset"))
	}
	if rep.OK {
		fmt.Fprintln(w, "OK: no problems found")
		return
	}
	fmt.Fprintf(w, "PROBLEMS (%d):\n", len(rep.Problems))
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "  %s\n", p.Message)
	}
}
