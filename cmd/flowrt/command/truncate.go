package command

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/spf13/cobra"
)

type truncateOptions struct {
	db          string
	stream      string
	below       uint64
	force       bool
	json        bool
	lockTimeout time.Duration
}

func newTruncateCommand() *cobra.Command {
	var o truncateOptions
	cmd := &cobra.Command{
		Use:   "truncate --db FILE --stream S --below SEQ [--force] [--json]",
		Short: "Remove a stream's events below a sequence",
		Long: `Truncate removes the events of --stream whose sequences are below --below.
Sequences are never reused: the next event appended gets the sequence after
the stream's last, and the stream's remaining events keep theirs.

It respects the stream's consumers: if a registered consumer (a flow, or a
flow state's retention guard) has not acknowledged every event to remove,
truncate refuses, names those consumers with their offsets, removes nothing
and exits with status 1. Let them catch up, move them with 'flowrt consumer
reset', or use --force: with --force the events go anyway, and those
consumers resume at the first event left.

Truncate changes the journal, so it needs the journal to itself: it refuses,
after --lock-timeout, while another process such as 'flowrt run' has it
open. Stop that process first.

The file does not shrink: the freed pages are reused by new events, and
'flowrt compact' returns them to the disk.

Truncate prints how many events it removed and what the stream holds; with
--json, one object: {"stream":"events","below":5,"removed":4,"first":5,
"last":8,"count":4,"forced":false,"consumers_behind":[]}; consumers_behind
lists, with --force, the consumers that had not acknowledged the removed
events: [{"consumer":"billing","offset":2}].

` + exitStatusHelp,
		Example: `  # Drop everything before seq 1000, if every consumer is past it.
  flowrt truncate --db flowrt.db --stream events --below 1000

  # Drop it even if a consumer is behind.
  flowrt truncate --db flowrt.db --stream events --below 1000 --force --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runTruncate(cmd, &o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.db, "db", "", "journal file (required)")
	f.StringVar(&o.stream, "stream", "", "stream to truncate (required)")
	f.Uint64Var(&o.below, "below", 0, "remove the events with sequences below this one (required)")
	f.BoolVar(&o.force, "force", false, "remove the events even if consumers have not acknowledged them")
	f.BoolVar(&o.json, "json", false, "print the result as a JSON object")
	f.DurationVar(&o.lockTimeout, "lock-timeout", defaultLockTimeout, "how long to wait for another process to release the journal")
	_ = cmd.RegisterFlagCompletionFunc("stream", completeStreams)
	return cmd
}

// truncateJSON is truncate's --json output.
type truncateJSON struct {
	Stream          string               `json:"stream"`
	Below           uint64               `json:"below"`
	Removed         uint64               `json:"removed"`
	First           uint64               `json:"first"` // the stream's lowest retained sequence; last+1 when empty
	Last            uint64               `json:"last"`
	Count           uint64               `json:"count"`
	Forced          bool                 `json:"forced"`
	ConsumersBehind []consumerBehindJSON `json:"consumers_behind"`
}

// consumerBehindJSON is a consumer that had not acknowledged events that
// truncate removes.
type consumerBehindJSON struct {
	Consumer string `json:"consumer"`
	Offset   uint64 `json:"offset"`
}

func runTruncate(cmd *cobra.Command, o *truncateOptions) (err error) {
	if err := checkDB(o.db); err != nil {
		return err
	}
	if o.stream == "" {
		return usageErrorf("--stream is required: the stream to truncate")
	}
	if err := eventlog.ValidateName(o.stream); err != nil {
		return usageErrorf("--stream %q: invalid name", o.stream)
	}
	if o.below == 0 {
		return usageErrorf("--below is required: events with sequences below it are removed")
	}
	if o.lockTimeout <= 0 {
		return usageErrorf("--lock-timeout must be positive, got %v", o.lockTimeout)
	}
	l, err := opsOpen(o.db, false, o.lockTimeout, "truncate changes the journal and needs it to itself")
	if err != nil {
		return err
	}
	defer opsClose(l, &err)

	if _, err := l.Info(o.stream); errors.Is(err, eventlog.ErrNotFound) {
		return opsMissingStream(l, o.stream)
	} else if err != nil {
		return fmt.Errorf("read stream %q: %w", o.stream, err)
	}
	// The journal is ours alone: the consumers cannot move until we are done.
	behind, err := consumersBehind(l, o.stream, o.below)
	if err != nil {
		return err
	}
	policy := eventlog.KeepUnacked
	if o.force {
		policy = eventlog.Force
	}
	removed, err := l.Truncate(o.stream, o.below, policy)
	if errors.Is(err, eventlog.ErrConsumerBehind) {
		return &opsError{err: err, msg: fmt.Sprintf(
			"truncate refused, nothing removed: %s of stream %q %s not acknowledged the events below seq %d: %s; "+
				"let them catch up, move them with 'flowrt consumer reset NAME --stream %s --to %d', or use --force",
			plural(len(behind), "consumer"), o.stream, hasHave(len(behind)), o.below, behindText(behind), o.stream, o.below)}
	}
	if err != nil {
		return fmt.Errorf("truncate stream %q below seq %d (removed %d events before the error): %w", o.stream, o.below, removed, err)
	}
	si, err := l.Info(o.stream)
	if err != nil {
		return fmt.Errorf("read stream %q: %w", o.stream, err)
	}
	if !o.force {
		behind = nil
	}
	res := truncateJSON{Stream: o.stream, Below: o.below, Removed: removed, First: si.First, Last: si.Last, Count: si.Count,
		Forced: o.force, ConsumersBehind: make([]consumerBehindJSON, len(behind))}
	for i, c := range behind {
		res.ConsumersBehind[i] = consumerBehindJSON{Consumer: c.Name, Offset: c.Offset}
	}
	if o.json {
		return opsWriteJSON(cmd.OutOrStdout(), res)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "removed %s below seq %d from stream %q; ", plural(int(removed), "event"), o.below, o.stream)
	if si.Count == 0 {
		fmt.Fprintf(&b, "it holds no events (the next is seq %d)\n", si.Last+1)
	} else {
		fmt.Fprintf(&b, "it holds seq %d..%d (%s)\n", si.First, si.Last, plural(int(si.Count), "event"))
	}
	if len(behind) > 0 {
		fmt.Fprintf(&b, "forced past %s, which resume at seq %d: %s\n", plural(len(behind), "consumer"), si.First, behindText(behind))
	}
	if removed > 0 {
		fmt.Fprintf(&b, "the file does not shrink: 'flowrt compact --db %s' returns the space to the disk\n", o.db)
	}
	_, err = fmt.Fprint(cmd.OutOrStdout(), b.String())
	return err
}

// consumersBehind returns the consumers of stream that have not
// acknowledged every event below below, as eventlog.Truncate judges them.
func consumersBehind(l *eventlog.Log, stream string, below uint64) ([]eventlog.ConsumerInfo, error) {
	cs, err := l.Consumers(stream)
	if err != nil {
		return nil, fmt.Errorf("list the consumers of stream %q: %w", stream, err)
	}
	var behind []eventlog.ConsumerInfo
	for _, c := range cs {
		if c.Offset+1 < below {
			behind = append(behind, c)
		}
	}
	return behind, nil
}

// behindText lists consumers with their offsets: `"billing" at offset 2`.
func behindText(cs []eventlog.ConsumerInfo) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = fmt.Sprintf("%q at offset %d", c.Name, c.Offset)
	}
	return strings.Join(parts, ", ")
}

// hasHave returns "has" for one, "have" for several.
func hasHave(n int) string {
	if n == 1 {
		return "has"
	}
	return "have"
}

// opsMissingStream is the error for a stream that does not exist: it names
// the streams that do.
func opsMissingStream(l *eventlog.Log, stream string) error {
	infos, err := l.Streams()
	if err != nil {
		return fmt.Errorf("list streams: %w", err)
	}
	names := make([]string, len(infos))
	for i, si := range infos {
		names[i] = strconv.Quote(si.Name)
	}
	have := "it has no streams"
	if len(names) > 0 {
		have = "streams: " + strings.Join(names, ", ")
	}
	return fmt.Errorf("%s has no stream %q (%s)", l.Path(), stream, have)
}
