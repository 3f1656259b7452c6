package command

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/eventjson"
	"github.com/spf13/cobra"
)

// appendChunk is how many events one Append call holds: one commit, one
// fsync. Larger inputs take several commits.
const appendChunk = 1000

type appendOptions struct {
	db          string
	stream      string
	file        string
	json        bool
	lockTimeout time.Duration
	token       string
	tokenFile   string
}

func newAppendCommand() *cobra.Command {
	var o appendOptions
	cmd := &cobra.Command{
		Use:   "append --db FILE [--stream S] [--file F] [--json]",
		Short: "Append JSON-lines events to a stream",
		Long: `Append reads events, one JSON object per line, from standard input or --file
and appends them to a stream of the journal, creating the journal file if it
is missing:

  {"type": "order.created", "key": "order-1001",
   "idempotency_key": "shop-7/order-1001/created",
   "headers": {"source": "shop-7"}, "data": {"total_cents": 1598}}

  type             required; dotted name such as "order.created"
  key              optional ordering key
  id               optional event ID, a ULID; appending an ID already in the
                   stream is a duplicate and appends nothing
  idempotency_key  optional, instead of id: the ID is derived from the stream
                   and this key, so re-running the same input is idempotent
  headers          optional object of string values
  data             optional, any JSON value, stored as its compact JSON text
                   (a string keeps its quotes); {"$base64": "..."} stands for
                   bytes that are not JSON, as dump --json writes them

Unknown or repeated fields are errors; blank lines are skipped. Every line is
parsed and validated before anything is appended: one bad line appends
nothing, and every bad line is reported with its line number (exit status 2).
The events are then appended in commits of ` + fmt.Sprint(appendChunk) + `; only a disk error can stop
the run between two commits, and the message then says how many were
appended. The whole input is held in memory.

Append prints how many events it appended, their sequence range and how many
were duplicates; with --json, one JSON object per input event instead:
{"line":1,"stream":"events","seq":1,"id":"...","duplicate":false}.

` + exitStatusHelp,
		Example: `  # Append the sample orders; run it twice: the second run appends nothing.
  flowrt append --db flowrt.db --file examples/events.jsonl

  # One event from the shell.
  echo '{"type":"order.created","key":"order-7","data":{"total":42}}' | flowrt append --db flowrt.db

  # Per-event results as JSON lines, into another stream.
  flowrt append --db flowrt.db --stream audit --json < audit.jsonl`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runAppend(cmd, &o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.db, "db", "", "journal file, created when missing (required)")
	f.StringVar(&o.stream, "stream", eventlog.DefaultStream, "stream to append to")
	_ = cmd.RegisterFlagCompletionFunc("stream", completeStreams)
	f.StringVarP(&o.file, "file", "f", "-", "file to read events from; - is standard input")
	f.BoolVar(&o.json, "json", false, "print one JSON result per event instead of a summary")
	f.DurationVar(&o.lockTimeout, "lock-timeout", defaultLockTimeout, "how long to wait for another process to release the journal")
	f.StringVar(&o.token, "token", "", "bearer token of the daemon that holds the journal, if any")
	f.StringVar(&o.tokenFile, "token-file", "", "file holding the daemon's bearer token")
	return cmd
}

func runAppend(cmd *cobra.Command, o *appendOptions) (err error) {
	if err := checkDB(o.db); err != nil {
		return err
	}
	if err := eventlog.ValidateName(o.stream); err != nil {
		return usageErrorf("--stream: %v", eventjson.Message(err))
	}
	if eventlog.IsReserved(o.stream) {
		return usageErrorf("--stream %q: names beginning with \"$\" are reserved for flowrt", o.stream)
	}
	if o.lockTimeout <= 0 {
		return usageErrorf("--lock-timeout must be positive, got %v", o.lockTimeout)
	}
	in, name, err := openInput(cmd, o.file)
	if err != nil {
		return err
	}
	defer in.Close()

	maxEventBytes := eventlog.DefaultOptions().MaxEventBytes
	lines, err := parseLines(in, name, o.stream, maxEventBytes)
	var ie *InputError
	if errors.As(err, &ie) {
		sep := "; "
		if ie.Total > 1 {
			sep = "\n"
		}
		return &exitError{code: ExitUsage, err: fmt.Errorf("%w%snothing appended", err, sep)}
	} else if err != nil {
		return err
	}

	j, err := openAppendTarget(cmd.Context(), o, maxEventBytes)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := j.Close(); err == nil {
			err = cerr
		}
	}()

	out := bufio.NewWriter(cmd.OutOrStdout())
	var sum appendSummary
	for start := 0; start < len(lines); start += appendChunk {
		chunk := lines[start:min(start+appendChunk, len(lines))]
		events := make([]eventlog.Event, len(chunk))
		for i, le := range chunk {
			events[i] = le.event
		}
		res, aerr := j.Append(o.stream, events...)
		if aerr != nil {
			if !o.json {
				sum.print(out, o.stream)
			}
			if ferr := out.Flush(); ferr != nil {
				aerr = errors.Join(aerr, ferr)
			}
			return fmt.Errorf("append to %q stopped after %s of %d (the events from line %d on were not appended): %w",
				o.stream, plural(sum.appended+sum.duplicates, "event"), len(lines), chunk[0].line, aerr)
		}
		for i, r := range res {
			sum.add(r)
			if o.json {
				line, err := eventjson.MarshalLine(appendResultJSON{Line: chunk[i].line, Stream: o.stream, Seq: r.Seq, ID: r.ID.String(), Duplicate: r.Duplicate})
				if err != nil {
					return err
				}
				out.Write(line)
			}
		}
	}
	if !o.json {
		sum.print(out, o.stream)
	}
	if err := out.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// openInput opens the --file argument; "-" is the command's stdin. A file
// that cannot be opened is an input error.
func openInput(cmd *cobra.Command, file string) (io.ReadCloser, string, error) {
	if file == "-" || file == "" {
		return io.NopCloser(cmd.InOrStdin()), "stdin", nil
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, "", &exitError{code: ExitUsage, err: fmt.Errorf("--file: %w", err)}
	}
	return f, file, nil
}

// appendResultJSON is one line of append --json.
type appendResultJSON struct {
	Line      int    `json:"line"`
	Stream    string `json:"stream"`
	Seq       uint64 `json:"seq"`
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate"`
}

// appendSummary counts what an append run did.
type appendSummary struct {
	appended, duplicates int
	first, last          uint64 // sequence range of the appended events
}

func (s *appendSummary) add(r eventlog.AppendResult) {
	if r.Duplicate {
		s.duplicates++
		return
	}
	if s.appended == 0 {
		s.first = r.Seq
	}
	s.appended++
	s.last = r.Seq
}

// print writes the summary line, for example
// `appended 3 events to "events": seq 1..3 (0 duplicates)`.
func (s *appendSummary) print(w io.Writer, stream string) {
	dups := plural(s.duplicates, "duplicate")
	if s.appended == 0 {
		fmt.Fprintf(w, "appended 0 events to %q (%s)\n", stream, dups)
		return
	}
	fmt.Fprintf(w, "appended %s to %q: seq %d..%d (%s)\n", plural(s.appended, "event"), stream, s.first, s.last, dups)
}
