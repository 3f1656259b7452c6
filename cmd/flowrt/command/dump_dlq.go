package command

import (
	"bufio"
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/flowrt/flowrt/consumer"
	"github.com/spf13/cobra"
)

type dumpDLQOptions struct {
	*dumpCommon
	stream   string
	consumer string
	width    int
}

func newDumpDLQCommand(c *dumpCommon) *cobra.Command {
	o := dumpDLQOptions{dumpCommon: c}
	cmd := &cobra.Command{
		Use:   "dlq --db FILE [--stream S] [--consumer C] [--json]",
		Short: "Print dead letters: the events consumers gave up on",
		Long: `Dlq prints the dead letters of every consumer, or of those --stream and
--consumer select, ordered by stream, consumer and sequence. A dead letter is
an event that failed its last attempt, or failed permanently; the event
itself stays in the stream (flowrt dump --from SEQ --limit 1 shows it).

  SEQ, ID, TYPE, KEY  the event
  ATTEMPTS            how many times it was tried
  FIRST/LAST FAILURE  when its first and last attempt failed (UTC)
  REDELIVER           "queued" when it is queued for redelivery
  LAST ERROR          the last attempt's error, cut to --width characters

--json prints one JSON object per dead letter, with the error in full:
  {"stream":"events","consumer":"billing","seq":7,"id":"01J...",
   "type":"order.paid","key":"order-7","attempts":5,"first_failure":"...",
   "last_failure":"...","last_error":"card declined","redeliver":false}

A --consumer that does not exist prints nothing, a note on stderr, and
exits 0, as does a journal without dead letters.

` + dumpLiveHelp + `

` + exitStatusHelp,
		Example: `  flowrt dump dlq --db flowrt.db
  flowrt dump dlq --db flowrt.db --consumer billing
  flowrt dump dlq --db flowrt.db --stream orders --json | jq -r .last_error | sort | uniq -c`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDumpDLQ(cmd, &o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.stream, "stream", "", "only the dead letters of consumers of this stream")
	f.StringVar(&o.consumer, "consumer", "", "only the dead letters of this consumer")
	_ = cmd.RegisterFlagCompletionFunc("stream", completeStreams)
	_ = cmd.RegisterFlagCompletionFunc("consumer", completeConsumerFlag)
	f.IntVar(&o.width, "width", 60, "cut the table's LAST ERROR column to this many characters (0: no limit)")
	return cmd
}

func runDumpDLQ(cmd *cobra.Command, o *dumpDLQOptions) error {
	if err := o.check(); err != nil {
		return err
	}
	for _, f := range []struct{ flag, v string }{{"--stream", o.stream}, {"--consumer", o.consumer}} {
		if f.v != "" {
			if err := validName(f.flag, f.v); err != nil {
				return err
			}
		}
	}
	if o.width < 0 {
		return usageErrorf("--width must not be negative, got %d", o.width)
	}
	rows, found, err := loadDeadLetters(cmd.Context(), o)
	if err != nil {
		return err
	}
	switch {
	case o.consumer != "" && !found:
		fmt.Fprintf(cmd.ErrOrStderr(), "flowrt: note: %s has no consumer %q%s (see flowrt dump consumers)\n", o.db, o.consumer, onStream(o.stream))
		return nil
	case len(rows) == 0:
		fmt.Fprintf(cmd.ErrOrStderr(), "flowrt: note: no dead letters%s\n", o.selection())
		return nil
	}
	if o.json {
		return writeJSONLines(cmd.OutOrStdout(), rows)
	}
	w := bufio.NewWriter(cmd.OutOrStdout())
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tCONSUMER\tSEQ\tID\tTYPE\tKEY\tATTEMPTS\tFIRST FAILURE\tLAST FAILURE\tREDELIVER\tLAST ERROR")
	for _, r := range rows {
		redeliver := "-"
		if r.Redeliver {
			redeliver = "queued"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", r.Stream, r.Consumer, r.Seq, r.ID, r.Type, tableKey(r.Key),
			r.Attempts, tableTime(r.FirstFailure.time()), tableTime(r.LastFailure.time()), redeliver,
			truncate(orDash(oneLine(r.LastError)), o.width))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// selection words the --stream and --consumer filters for a note.
func (o *dumpDLQOptions) selection() string {
	s := onStream(o.stream)
	if o.consumer != "" {
		s = fmt.Sprintf(" for consumer %q", o.consumer) + s
	}
	return s
}

// loadDeadLetters lists the dead letters the options select, from the
// journal or its daemon; found says whether a consumer was selected.
func loadDeadLetters(ctx context.Context, o *dumpDLQOptions) (rows []wireDeadLetter, found bool, err error) {
	src, err := openSource(o.dumpCommon)
	if err != nil {
		return nil, false, err
	}
	defer func() {
		if cerr := src.Close(); err == nil {
			err = cerr
		}
	}()
	var cs []wireConsumer
	if src.live != nil {
		cs, err = liveConsumers(ctx, src.live, o.stream)
	} else {
		cs, err = logConsumers(src.log, o.stream)
	}
	if err != nil {
		return nil, false, err
	}
	for _, c := range cs {
		if o.consumer != "" && c.Consumer != o.consumer {
			continue
		}
		found = true
		if src.live != nil {
			if c.DeadLetters == 0 {
				continue
			}
			dls, err := src.live.deadLetters(ctx, c.Stream, c.Consumer)
			if err != nil {
				return nil, found, err
			}
			rows = append(rows, dls...)
			continue
		}
		dls, err := consumer.DeadLetters(src.log, c.Stream, c.Consumer, consumer.Range{})
		if err != nil {
			return nil, found, fmt.Errorf("dead letters of %q on %q: %w", c.Consumer, c.Stream, err)
		}
		for _, dl := range dls {
			rows = append(rows, toWireDeadLetter(c.Stream, c.Consumer, dl))
		}
	}
	return rows, found, nil
}
