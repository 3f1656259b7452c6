package command

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"text/tabwriter"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/spf13/cobra"
)

type dumpConsumersOptions struct {
	*dumpCommon
	stream string
}

func newDumpConsumersCommand(c *dumpCommon) *cobra.Command {
	o := dumpConsumersOptions{dumpCommon: c}
	cmd := &cobra.Command{
		Use:   "consumers --db FILE [--stream S] [--json]",
		Short: "Print every consumer's offset, lag and dead letters",
		Long: `Consumers prints, per stream and consumer, ordered by stream then name:

  OFFSET        the committed ack offset: every event at or below it is done,
                and after a crash delivery resumes above it
  LAST          the stream's last sequence
  LAG           LAST - OFFSET
  UPDATED       when the offset last moved (UTC, milliseconds)
  DEAD LETTERS  events the consumer gave up on (see flowrt dump dlq)
  IN FLIGHT     only when read through a running daemon: events its flow
                has fetched and not finished ("-" for other consumers)

Each flow is a consumer named after it; "$snapshot.<flow>" is the retention
guard of a flow's state snapshots.

--json prints one JSON object per consumer:
  {"stream":"events","consumer":"billing","offset":8,"last":10,"lag":2,
   "updated":"...","dead_letters":2,"in_flight":0}
in_flight is present only when read through a daemon, for its flows.

` + dumpLiveHelp + `

` + exitStatusHelp,
		Example: `  flowrt dump consumers --db flowrt.db
  flowrt dump consumers --db flowrt.db --stream orders
  flowrt dump consumers --db flowrt.db --json | jq 'select(.lag > 1000)'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDumpConsumers(cmd, &o) },
	}
	cmd.Flags().StringVar(&o.stream, "stream", "", "only the consumers of this stream (default: every stream)")
	_ = cmd.RegisterFlagCompletionFunc("stream", completeStreams)
	return cmd
}

func runDumpConsumers(cmd *cobra.Command, o *dumpConsumersOptions) error {
	if err := o.check(); err != nil {
		return err
	}
	if o.stream != "" {
		if err := validName("--stream", o.stream); err != nil {
			return err
		}
	}
	rows, live, err := loadConsumers(cmd.Context(), o.dumpCommon, o.stream)
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "flowrt: note: %s has no consumers%s\n", o.db, onStream(o.stream))
		return nil
	}
	if o.json {
		return writeJSONLines(cmd.OutOrStdout(), rows)
	}
	w := bufio.NewWriter(cmd.OutOrStdout())
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	head := "STREAM\tCONSUMER\tOFFSET\tLAST\tLAG\tUPDATED\tDEAD LETTERS"
	if live {
		head += "\tIN FLIGHT"
	}
	fmt.Fprintln(tw, head)
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%d", r.Stream, r.Consumer, r.Offset, r.Last, r.Lag, tableTime(r.Updated.time()), r.DeadLetters)
		if live {
			inFlight := "-"
			if r.InFlight != nil {
				inFlight = strconv.FormatInt(*r.InFlight, 10)
			}
			fmt.Fprintf(tw, "\t%s", inFlight)
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// onStream words a --stream filter for a note.
func onStream(stream string) string {
	if stream == "" {
		return ""
	}
	return fmt.Sprintf(" on stream %q", stream)
}

// loadConsumers lists the consumers of stream ("" for every stream),
// ordered by stream then name, from the journal or its daemon; live says
// which, and so whether InFlight is known.
func loadConsumers(ctx context.Context, c *dumpCommon, stream string) (rows []wireConsumer, live bool, err error) {
	src, err := openSource(c)
	if err != nil {
		return nil, false, err
	}
	defer func() {
		if cerr := src.Close(); err == nil {
			err = cerr
		}
	}()
	if src.live != nil {
		if rows, err = liveConsumers(ctx, src.live, stream); err != nil {
			return nil, true, err
		}
		return rows, true, addInFlight(ctx, src.live, rows)
	}
	rows, err = logConsumers(src.log, stream)
	return rows, false, err
}

// logConsumers lists the consumers of stream from a journal.
func logConsumers(l *eventlog.Log, stream string) ([]wireConsumer, error) {
	infos, err := l.Consumers(stream)
	if err != nil {
		return nil, fmt.Errorf("list consumers: %w", err)
	}
	rows := make([]wireConsumer, 0, len(infos))
	for _, ci := range infos {
		dls, err := consumer.DeadLetters(l, ci.Stream, ci.Name, consumer.Range{})
		if err != nil {
			return nil, fmt.Errorf("dead letters of %q on %q: %w", ci.Name, ci.Stream, err)
		}
		rows = append(rows, wireConsumer{
			Stream: ci.Stream, Consumer: ci.Name, Offset: ci.Offset, Last: ci.Offset + ci.Lag, Lag: ci.Lag,
			Updated: wireTime(ci.Updated), DeadLetters: len(dls),
		})
	}
	sortConsumers(rows)
	return rows, nil
}

// liveConsumers lists the consumers of stream through the daemon.
func liveConsumers(ctx context.Context, lc *liveClient, stream string) ([]wireConsumer, error) {
	all, err := lc.consumers(ctx)
	if err != nil {
		return nil, err
	}
	rows := all[:0]
	for _, r := range all {
		if stream == "" || r.Stream == stream {
			rows = append(rows, r)
		}
	}
	sortConsumers(rows)
	return rows, nil
}

// addInFlight sets the in-flight counts of the daemon's flows on their
// consumers' rows.
func addInFlight(ctx context.Context, lc *liveClient, rows []wireConsumer) error {
	st, err := lc.status(ctx)
	if err == nil {
		setInFlight(st, rows)
	}
	return err
}

// setInFlight sets, from the daemon's status, the in-flight counts of its
// flows on their consumers' rows, and none on the others.
func setInFlight(st liveStatus, rows []wireConsumer) {
	type streamName struct{ stream, name string }
	inFlight := make(map[streamName]int64, len(st.Flows))
	for _, f := range st.Flows {
		inFlight[streamName{f.Stream, f.Name}] = f.InFlight
	}
	for i := range rows {
		rows[i].InFlight = nil
		if n, ok := inFlight[streamName{rows[i].Stream, rows[i].Consumer}]; ok {
			rows[i].InFlight = &n
		}
	}
}

func sortConsumers(rows []wireConsumer) {
	slices.SortFunc(rows, func(a, b wireConsumer) int {
		return cmp.Or(cmp.Compare(a.Stream, b.Stream), cmp.Compare(a.Consumer, b.Consumer))
	})
}
