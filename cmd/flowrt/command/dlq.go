package command

import (
	"fmt"
	"time"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/spf13/cobra"
)

func newDLQCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Retry or purge a consumer's dead letters",
		Long: `Dlq manages a consumer's dead letters: the events it gave up on after its
retries, or at once for a permanent error. The events stay in the stream;
the dead letters are the consumer's record of them. 'flowrt dump dlq' lists
them.

  flowrt dlq retry   queues dead letters for redelivery
  flowrt dlq purge   removes dead letters

` + exitStatusHelp,
		Example: `  flowrt dump dlq --db flowrt.db --consumer billing
  flowrt dlq retry --db flowrt.db --consumer billing
  flowrt dlq purge --db flowrt.db --consumer billing --from 10 --to 20`,
		Args: opsGroupArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },

		SuggestionsMinimumDistance: 2,
	}
	cmd.AddCommand(newDLQActionCommand(dlqRetry), newDLQActionCommand(dlqPurge))
	return cmd
}

// dlqAction is what a dlq subcommand does to the dead letters it selects.
type dlqAction string

const (
	dlqRetry dlqAction = "retry"
	dlqPurge dlqAction = "purge"
)

type dlqOptions struct {
	db          string
	stream      string
	consumer    string
	from, to    uint64
	json        bool
	lockTimeout time.Duration
}

func newDLQActionCommand(action dlqAction) *cobra.Command {
	var o dlqOptions
	cmd := &cobra.Command{
		Use:  string(action) + " --db FILE --consumer C [--stream S] [--from SEQ] [--to SEQ] [--json]",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDLQ(cmd, action, &o) },
	}
	common := `--from and --to select the dead letters of events with sequences from --from
to --to inclusive (default: all of them; --to 0 has no upper bound).

It changes the journal, so it needs the journal to itself: it refuses, after
--lock-timeout, while another process such as 'flowrt run' has it open. Stop
that process first.

The consumer must be registered on the stream ('flowrt dump consumers').
`
	switch action {
	case dlqRetry:
		cmd.Short = "Queue a consumer's dead letters for redelivery"
		cmd.Long = `Retry queues the dead letters of consumer --consumer on --stream for
redelivery, with fresh attempts: the consumer delivers them again when it next
runs (within a second when it runs). A redelivered event that succeeds leaves
the dead letters; one that fails its attempts again stays there, its record
updated. The queue survives crashes.

` + common + `
Retry prints how many dead letters it queued; with --json, one object:
{"stream":"events","consumer":"billing","action":"retry","from":0,"to":0,"count":2}.

` + exitStatusHelp
		cmd.Example = `  flowrt dlq retry --db flowrt.db --consumer billing
  flowrt dlq retry --db flowrt.db --consumer shipping --stream orders --from 120 --to 180 --json`
	case dlqPurge:
		cmd.Short = "Remove a consumer's dead letters"
		cmd.Long = `Purge removes the dead letters of consumer --consumer on --stream: they are
no longer listed nor retried. The events themselves stay in the stream.

` + common + `
Purge prints how many dead letters it removed; with --json, one object:
{"stream":"events","consumer":"billing","action":"purge","from":0,"to":0,"count":2}.

` + exitStatusHelp
		cmd.Example = `  flowrt dlq purge --db flowrt.db --consumer billing
  flowrt dlq purge --db flowrt.db --consumer billing --to 99 --json`
	}
	f := cmd.Flags()
	f.StringVar(&o.db, "db", "", "journal file (required)")
	f.StringVar(&o.consumer, "consumer", "", "the consumer whose dead letters to "+string(action)+" (required)")
	f.StringVar(&o.stream, "stream", eventlog.DefaultStream, "stream the consumer reads")
	f.Uint64Var(&o.from, "from", 0, "lowest sequence selected (0: no lower bound)")
	f.Uint64Var(&o.to, "to", 0, "highest sequence selected (0: no upper bound)")
	f.BoolVar(&o.json, "json", false, "print the result as a JSON object")
	f.DurationVar(&o.lockTimeout, "lock-timeout", defaultLockTimeout, "how long to wait for another process to release the journal")
	_ = cmd.RegisterFlagCompletionFunc("stream", completeStreams)
	_ = cmd.RegisterFlagCompletionFunc("consumer", completeConsumerFlag)
	return cmd
}

// dlqJSON is the --json output of dlq retry and purge.
type dlqJSON struct {
	Stream   string    `json:"stream"`
	Consumer string    `json:"consumer"`
	Action   dlqAction `json:"action"`
	From     uint64    `json:"from"`
	To       uint64    `json:"to"`
	Count    int       `json:"count"`
}

func runDLQ(cmd *cobra.Command, action dlqAction, o *dlqOptions) (err error) {
	if err := checkDB(o.db); err != nil {
		return err
	}
	if o.consumer == "" {
		return usageErrorf("--consumer is required: the consumer whose dead letters to %s", action)
	}
	if err := eventlog.ValidateName(o.consumer); err != nil {
		return usageErrorf("--consumer %q: invalid name", o.consumer)
	}
	if err := eventlog.ValidateName(o.stream); err != nil {
		return usageErrorf("--stream %q: invalid name", o.stream)
	}
	if o.to != 0 && o.from > o.to {
		return usageErrorf("--from %d is above --to %d", o.from, o.to)
	}
	if o.lockTimeout <= 0 {
		return usageErrorf("--lock-timeout must be positive, got %v", o.lockTimeout)
	}
	l, err := opsOpen(o.db, false, o.lockTimeout, "dlq "+string(action)+" changes the journal and needs it to itself")
	if err != nil {
		return err
	}
	defer opsClose(l, &err)
	if _, err := registeredOffset(l, o.stream, o.consumer); err != nil {
		return err
	}

	r := consumer.Range{From: o.from, To: o.to}
	var n int
	switch action {
	case dlqRetry:
		n, err = consumer.Redeliver(l, o.stream, o.consumer, r)
	case dlqPurge:
		n, err = consumer.Purge(l, o.stream, o.consumer, r)
	}
	if err != nil {
		return fmt.Errorf("%s the dead letters of consumer %q on stream %q: %w", action, o.consumer, o.stream, err)
	}
	if o.json {
		return opsWriteJSON(cmd.OutOrStdout(), dlqJSON{Stream: o.stream, Consumer: o.consumer, Action: action, From: o.from, To: o.to, Count: n})
	}
	what := fmt.Sprintf("%s of consumer %q on stream %q%s", plural(n, "dead letter"), o.consumer, o.stream, rangeText(r))
	switch action {
	case dlqRetry:
		_, err = fmt.Fprintf(cmd.OutOrStdout(), "queued %s for redelivery; the consumer delivers them again when it next runs\n", what)
	case dlqPurge:
		_, err = fmt.Fprintf(cmd.OutOrStdout(), "purged %s; the events stay in the stream\n", what)
	}
	return err
}

// rangeText describes a selection for dlq's output: "" for everything,
// " in seq 3..7", " in seq 3.." or " in seq ..7".
func rangeText(r consumer.Range) string {
	switch {
	case r.From == 0 && r.To == 0:
		return ""
	case r.To == 0:
		return fmt.Sprintf(" in seq %d..", r.From)
	case r.From == 0:
		return fmt.Sprintf(" in seq ..%d", r.To)
	}
	return fmt.Sprintf(" in seq %d..%d", r.From, r.To)
}
