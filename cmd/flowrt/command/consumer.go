package command

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/spf13/cobra"
)

// This file holds `flowrt consumer` and the helpers shared by the
// operations commands (consumer, dlq, backup, restore, compact, truncate).

func newConsumerCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "consumer",
		Short: "Manage durable consumers: reset one to replay or skip",
		Long: `Consumer manages the durable consumers of a journal: each flow of 'flowrt run'
is one, named after the flow. Their offsets, lag and dead letters are listed
by 'flowrt dump consumers'.

  flowrt consumer reset   moves a consumer to a sequence, a time, the earliest
                          or the latest event, to replay or to skip

` + exitStatusHelp,
		Example: `  flowrt dump consumers --db flowrt.db
  flowrt consumer reset billing --db flowrt.db --to earliest`,
		Args: opsGroupArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },

		SuggestionsMinimumDistance: 2,
	}
	cmd.AddCommand(newConsumerResetCommand())
	return cmd
}

type consumerResetOptions struct {
	db          string
	stream      string
	to          string
	json        bool
	lockTimeout time.Duration
}

func newConsumerResetCommand() *cobra.Command {
	var o consumerResetOptions
	cmd := &cobra.Command{
		Use:   "reset NAME --db FILE [--stream S] --to SEQ|TIME|earliest|latest [--json]",
		Short: "Move a consumer to replay or skip events",
		Long: `Reset moves the consumer NAME of a stream so that its next run starts at the
event --to names, delivered afresh:

  --to SEQ        a sequence: the next run starts at SEQ (1 replays everything
                  retained)
  --to TIME       an RFC 3339 time such as 2025-11-24T08:00:00Z: the next run
                  starts at the first event appended at or after it
  --to earliest   the lowest retained event: replay everything
  --to latest     after the last event: skip everything, deliver only new events

Its ack offset becomes the sequence before that event (at most the stream's
last sequence), backward (replay) or forward (skip), and its pending retries
are forgotten, so dead-lettered events from there on are delivered again
too; its dead letters stay listed until purged ('flowrt dlq purge').

The consumer must already be registered on the stream ('flowrt dump
consumers' lists them); a name that is not is refused, so a typo cannot
register a consumer that then holds back truncation.

Reset changes the journal, so it needs the journal to itself: it refuses,
after --lock-timeout, while another process such as 'flowrt run' has it
open. Stop that process first, reset, and start it again.

Reset prints the offset before and after and how many events the consumer
will see again or skip; with --json, one object:
{"stream":"events","consumer":"billing","to":"seq 3","before":6,"offset":2,"last":6,"lag":4}.

` + exitStatusHelp,
		Example: `  # Replay everything retained.
  flowrt consumer reset billing --db flowrt.db --to earliest

  # Replay from a point in time, on another stream.
  flowrt consumer reset shipping --db flowrt.db --stream orders --to 2025-11-24T08:00:00Z

  # Skip the backlog: deliver only events appended from now on.
  flowrt consumer reset billing --db flowrt.db --to latest --json`,
		Args:              consumerResetArgs,
		ValidArgsFunction: completeConsumerArg,
		RunE:              func(cmd *cobra.Command, args []string) error { return runConsumerReset(cmd, args[0], &o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.db, "db", "", "journal file (required)")
	f.StringVar(&o.stream, "stream", eventlog.DefaultStream, "stream the consumer reads")
	f.StringVar(&o.to, "to", "", "where the next run starts: SEQ, an RFC 3339 TIME, earliest or latest (required)")
	f.BoolVar(&o.json, "json", false, "print the result as a JSON object")
	f.DurationVar(&o.lockTimeout, "lock-timeout", defaultLockTimeout, "how long to wait for another process to release the journal")
	_ = cmd.RegisterFlagCompletionFunc("stream", completeStreams)
	_ = cmd.RegisterFlagCompletionFunc("to", cobra.FixedCompletions([]string{"earliest", "latest"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// consumerResetArgs takes exactly one argument, the consumer's name.
func consumerResetArgs(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usageErrorf("%s takes one argument, the consumer's name, got %d", cmd.CommandPath(), len(args))
	}
	if err := eventlog.ValidateName(args[0]); err != nil {
		return usageErrorf("consumer name %q: names are 1 to %d characters of letters, digits, '.', '_' and '-'", args[0], eventlog.MaxNameLen)
	}
	return nil
}

// parseResetPosition parses --to: earliest, latest, a sequence (1 or more) or an
// RFC 3339 time.
func parseResetPosition(s string) (eventlog.Position, error) {
	switch s {
	case "":
		return eventlog.Position{}, usageErrorf("--to is required: SEQ, an RFC 3339 TIME, earliest or latest")
	case "earliest":
		return eventlog.Earliest(), nil
	case "latest":
		return eventlog.Latest(), nil
	}
	if seq, err := strconv.ParseUint(s, 10, 64); err == nil {
		if seq == 0 {
			return eventlog.Position{}, usageErrorf("--to 0: sequences start at 1 (--to earliest replays everything retained)")
		}
		return eventlog.AtSeq(seq), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return eventlog.AtTime(t), nil
	}
	return eventlog.Position{}, usageErrorf("--to %q: want a sequence, an RFC 3339 time such as 2025-11-24T08:00:00Z, earliest or latest", s)
}

// consumerResetJSON is reset's --json output.
type consumerResetJSON struct {
	Stream   string `json:"stream"`
	Consumer string `json:"consumer"`
	To       string `json:"to"`
	Before   uint64 `json:"before"` // the offset before the reset
	Offset   uint64 `json:"offset"` // the offset after it
	Last     uint64 `json:"last"`   // the stream's last sequence
	Lag      uint64 `json:"lag"`    // events the consumer's next run delivers
}

func runConsumerReset(cmd *cobra.Command, name string, o *consumerResetOptions) (err error) {
	if err := checkDB(o.db); err != nil {
		return err
	}
	if err := eventlog.ValidateName(o.stream); err != nil {
		return usageErrorf("--stream %q: invalid name", o.stream)
	}
	pos, err := parseResetPosition(o.to)
	if err != nil {
		return err
	}
	if o.lockTimeout <= 0 {
		return usageErrorf("--lock-timeout must be positive, got %v", o.lockTimeout)
	}
	l, err := opsOpen(o.db, false, o.lockTimeout, "consumer reset changes the journal and needs it to itself")
	if err != nil {
		return err
	}
	defer opsClose(l, &err)

	before, err := registeredOffset(l, o.stream, name)
	if err != nil {
		return err
	}
	if err := consumer.Reset(l, o.stream, name, pos); err != nil {
		return fmt.Errorf("reset consumer %q on stream %q: %w", name, o.stream, err)
	}
	after, _, err := l.Offset(o.stream, name)
	if err != nil {
		return fmt.Errorf("read the new offset: %w", err)
	}
	si, err := l.Info(o.stream)
	if err != nil {
		return fmt.Errorf("read stream %q: %w", o.stream, err)
	}
	res := consumerResetJSON{Stream: o.stream, Consumer: name, To: pos.String(), Before: before, Offset: after, Last: si.Last, Lag: si.Last - after}
	if o.json {
		return opsWriteJSON(cmd.OutOrStdout(), res)
	}
	var change string
	switch {
	case after < before:
		change = fmt.Sprintf("replays %s (seq %d..%d)", plural(int(before-after), "event"), after+1, before)
	case after > before:
		change = fmt.Sprintf("skips %s (seq %d..%d)", plural(int(after-before), "event"), before+1, after)
	default:
		change = "unchanged"
	}
	_, err = fmt.Fprintf(cmd.OutOrStdout(), "reset consumer %q on stream %q to %s: offset %d -> %d, %s, lag %d\n",
		name, o.stream, res.To, before, after, change, res.Lag)
	return err
}

// registeredOffset returns the consumer's offset on stream, or an error
// naming the consumers that are registered there.
func registeredOffset(l *eventlog.Log, stream, name string) (uint64, error) {
	off, ok, err := l.Offset(stream, name)
	if err != nil && !errors.Is(err, eventlog.ErrNotFound) {
		return 0, fmt.Errorf("read consumer %q on stream %q: %w", name, stream, err)
	}
	if ok && err == nil {
		return off, nil
	}
	cs, err := l.Consumers(stream)
	if err != nil {
		return 0, fmt.Errorf("list the consumers of stream %q: %w", stream, err)
	}
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = strconv.Quote(c.Name)
	}
	have := "it has none"
	if len(names) > 0 {
		have = "consumers: " + strings.Join(names, ", ")
	}
	return 0, fmt.Errorf("no consumer %q on stream %q of %s (%s; see 'flowrt dump consumers')", name, stream, l.Path(), have)
}

// opsInUseError reports that an operations command needs a journal that
// another process holds open. It wraps the open error, so
// errors.Is(err, eventlog.ErrLocked) holds.
type opsInUseError struct {
	Path string
	Why  string // what the command needs the journal for
	Err  error
}

// Error says who holds the journal and what to do.
func (e *opsInUseError) Error() string {
	return fmt.Sprintf("journal %s is in use by another process (flowrt run?); stop it first: %s", e.Path, e.Why)
}

// Unwrap returns the open error.
func (e *opsInUseError) Unwrap() error { return e.Err }

// opsOpen opens an existing journal for an operations command: a missing
// file is an error (never created), and a journal another process holds
// gives an *opsInUseError saying why the command needs it.
func opsOpen(path string, readOnly bool, lockTimeout time.Duration, why string) (*eventlog.Log, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no journal at %s (%w)", path, fs.ErrNotExist)
	}
	l, err := eventlog.Open(path, &eventlog.Options{ReadOnly: readOnly, LockTimeout: lockTimeout})
	switch {
	case err == nil:
		return l, nil
	case errors.Is(err, eventlog.ErrLocked):
		return nil, &opsInUseError{Path: path, Why: why, Err: err}
	}
	return nil, fmt.Errorf("open journal %s: %w", path, err)
}

// opsClose closes l and, when the command had no error, reports Close's.
func opsClose(l *eventlog.Log, err *error) {
	if cerr := l.Close(); *err == nil && cerr != nil {
		*err = fmt.Errorf("close journal %s: %w", l.Path(), cerr)
	}
}

// opsWriteJSON writes v as one line of JSON.
func opsWriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// opsSize formats a byte count with binary units: "512 B", "1.5 KiB".
func opsSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// opsStreamJSON is a stream's summary in the operations commands' --json
// output, with the keys of the daemon's /v1/status.
type opsStreamJSON struct {
	Name  string `json:"name"`
	First uint64 `json:"first"`
	Last  uint64 `json:"last"`
	Count uint64 `json:"count"`
	Bytes uint64 `json:"bytes"`
}

func opsStreams(infos []eventlog.StreamInfo) []opsStreamJSON {
	out := make([]opsStreamJSON, len(infos))
	for i, si := range infos {
		out[i] = opsStreamJSON{Name: si.Name, First: si.First, Last: si.Last, Count: si.Count, Bytes: si.Bytes}
	}
	return out
}

// opsGroupArgs is the Args of a command that only groups subcommands: an
// unknown subcommand is a usage error, as it is for the root.
func opsGroupArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += fmt.Sprintf(" (did you mean %s?)", strings.Join(s, ", "))
	}
	return usageErrorf("%s", msg)
}
