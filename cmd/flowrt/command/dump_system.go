package command

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/flowrt/flowrt/supervisor"
	"github.com/spf13/cobra"
)

type dumpSystemOptions struct {
	*dumpCommon
	run     string
	verbose bool
}

func newDumpSystemCommand(c *dumpCommon) *cobra.Command {
	o := dumpSystemOptions{dumpCommon: c}
	cmd := &cobra.Command{
		Use:   "system --db FILE [--run ID | -v] [--json]",
		Short: "Print the supervisor's runs, crashes and recoveries",
		Long: `System prints the lifecycle the supervisor recorded in the journal's $system
stream: one line per run of flowrt run (or of a program embedding the
runtime), oldest first.

  RUN      the run's ID (a ULID)
  STARTED  its first record, LAST its latest (UTC, milliseconds)
  END      the last runtime state it recorded: stopped or failed for a run
           that ended; another state for one that did not
  CRASHED  yes: it never ended and a later run recovered from it;
           no: it ended; unended: the newest run has recorded no end, so it
           is running now, or it died and the next start will recover it
  REASON   why it ended, for a failed run

Below the table, each recovery: the run that recovered, the crashed run and
the state it was in, its children's last states, and where each consumer
resumed (after its committed offset; PENDING events above it were delivered
again or for the first time).

-v prints every run in full instead: its recovery, then every transition of
the runtime and of its children (SEQ in $system, TIME, CHILD or - for the
runtime, FROM, TO, REASON, DETAILS). --run prints one run so; it takes a
run's ID or a unique prefix of it.

--json prints one JSON object per run, with its transitions and recovery:
  {"id":"01J...","started":"...","last":"...","end":"stopped","crashed":false,
   "transitions":[{"seq":1,"run":"01J...","from":"created","to":"starting",
   "time":"..."}],"recovery":{"run":"01J...","crashed_run":"01J...",
   "last_state":"running","last_time":"...","children":{"a":"running"},
   "consumers":[{"stream":"events","consumer":"a","offset":7,"pending":3}],
   "time":"..."}}
The raw events are 'flowrt dump --stream $system --json'.

` + dumpLiveHelp + `

` + exitStatusHelp + `
  (an unknown --run is exit status 1)`,
		Example: `  flowrt dump system --db flowrt.db
  flowrt dump system --db flowrt.db -v
  flowrt dump system --db flowrt.db --run 01JH4
  flowrt dump system --db flowrt.db --json | jq 'select(.crashed) | .id'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDumpSystem(cmd, &o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.run, "run", "", "print this run in full: its ID or a unique prefix")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "print every run in full, with its transitions")
	return cmd
}

func runDumpSystem(cmd *cobra.Command, o *dumpSystemOptions) error {
	if err := o.check(); err != nil {
		return err
	}
	runs, err := loadRuns(cmd.Context(), o.dumpCommon)
	if err != nil {
		return err
	}
	if len(runs) == 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "flowrt: note: %s has no recorded runs ($system is empty; flowrt run records each run there)\n", o.db)
		return nil
	}
	if o.run != "" {
		r, err := findRun(runs, o.run)
		if err != nil {
			return err
		}
		runs = []wireRun{r}
	}
	if o.json {
		return writeJSONLines(cmd.OutOrStdout(), runs)
	}
	w := bufio.NewWriter(cmd.OutOrStdout())
	if o.run != "" || o.verbose {
		for i, r := range runs {
			if i > 0 {
				fmt.Fprintln(w)
			}
			printRun(w, r)
		}
	} else {
		printRunsTable(w, runs)
		for _, r := range runs {
			if r.Recovery != nil {
				fmt.Fprintln(w)
				printRecovery(w, "", *r.Recovery)
			}
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// loadRuns reads every run, oldest first, from the journal or its daemon.
func loadRuns(ctx context.Context, c *dumpCommon) (_ []wireRun, err error) {
	src, err := openSource(c)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := src.Close(); err == nil {
			err = cerr
		}
	}()
	if src.live != nil {
		return src.live.runs(ctx)
	}
	runs, err := supervisor.Runs(src.log)
	if err != nil {
		return nil, fmt.Errorf("read runs: %w", err)
	}
	out := make([]wireRun, len(runs))
	for i, r := range runs {
		out[i] = toWireRun(r)
	}
	return out, nil
}

// findRun returns the run whose ID is id or begins with it.
func findRun(runs []wireRun, id string) (wireRun, error) {
	var found []wireRun
	for _, r := range runs {
		if r.ID == id {
			return r, nil
		}
		if strings.HasPrefix(r.ID, strings.ToUpper(id)) {
			found = append(found, r)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return wireRun{}, fmt.Errorf("no run %q in $system (%s recorded; see flowrt dump system)", id, plural(len(runs), "run"))
	}
	ids := make([]string, len(found))
	for i, r := range found {
		ids[i] = r.ID
	}
	return wireRun{}, fmt.Errorf("--run %q matches %d runs: %s", id, len(found), strings.Join(ids, ", "))
}

// crashedCell says whether a run crashed, in the CRASHED column.
func crashedCell(r wireRun) string {
	switch {
	case r.Crashed:
		return "yes"
	case r.ended():
		return "no"
	}
	return "unended"
}

func printRunsTable(w io.Writer, runs []wireRun) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tSTARTED\tLAST\tEND\tCRASHED\tREASON")
	for _, r := range runs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, tableTime(r.Started.time()), tableTime(r.Last.time()),
			orDash(r.End), crashedCell(r), orDash(oneLine(r.Reason)))
	}
	tw.Flush()
}

// printRecovery prints what a run recorded about the crashed run before
// it, each line after indent.
func printRecovery(w io.Writer, indent string, rec wireRecovery) {
	fmt.Fprintf(w, "%srun %s recovered run %s, which crashed in state %s (its last record at %s)\n",
		indent, rec.Run, rec.CrashedRun, orDash(rec.LastState), tableTime(rec.LastTime.time()))
	if len(rec.Children) > 0 {
		fmt.Fprintf(w, "%s  children: %s\n", indent, pairs(rec.Children))
	}
	if len(rec.Consumers) == 0 {
		fmt.Fprintf(w, "%s  no consumers\n", indent)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "%s  STREAM\tCONSUMER\tRESUMES AFTER\tPENDING\n", indent)
	for _, c := range rec.Consumers {
		fmt.Fprintf(tw, "%s  %s\t%s\t%d\t%d\n", indent, c.Stream, c.Consumer, c.Offset, c.Pending)
	}
	tw.Flush()
}

// printRun prints one run in full: its summary, recovery and transitions.
func printRun(w io.Writer, r wireRun) {
	fmt.Fprintf(w, "run %s\n", r.ID)
	fmt.Fprintf(w, "  started %s, last record %s, end %s, crashed %s\n",
		tableTime(r.Started.time()), tableTime(r.Last.time()), orDash(r.End), crashedCell(r))
	if r.Reason != "" {
		fmt.Fprintf(w, "  reason: %s\n", oneLine(r.Reason))
	}
	if r.Recovery != nil {
		printRecovery(w, "  ", *r.Recovery)
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  SEQ\tTIME\tCHILD\tFROM\tTO\tREASON\tDETAILS")
	for _, t := range r.Transitions {
		seq := "-"
		if t.Seq > 0 {
			seq = strconv.FormatUint(t.Seq, 10)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", seq, tableTime(t.Time.time()), orDash(t.Child),
			t.From, t.To, orDash(oneLine(t.Reason)), orDash(pairs(t.Details)))
	}
	tw.Flush()
}

// pairs shows a map as "k=v k=v", in key order, quoting keys and values
// that need it.
func pairs(m map[string]string) string {
	quote := func(s string) string {
		if s == "" || strings.ContainsAny(s, " \t\n\"=") {
			return strconv.Quote(s)
		}
		return s
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(quote(k) + "=" + quote(m[k]))
	}
	return b.String()
}

// orDash shows an empty cell as "-".
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps free text on one line of a table.
func oneLine(s string) string {
	if strings.ContainsAny(s, "\t\n\r") {
		return strconv.Quote(s)
	}
	return s
}
