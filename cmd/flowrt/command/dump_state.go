package command

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/flowrt/flowrt/snapshot"
	"github.com/spf13/cobra"
)

type dumpStateOptions struct {
	*dumpCommon
	flow      string
	key       string
	prefix    string
	snapshots bool
	width     int
}

// errSnapshotsLive is returned by --snapshots on a journal a daemon holds.
var errSnapshotsLive = errors.New("--snapshots reads the journal itself: the daemon's read side does not list snapshots; run it while the journal is at rest")

func newDumpStateCommand(c *dumpCommon) *cobra.Command {
	o := dumpStateOptions{dumpCommon: c}
	cmd := &cobra.Command{
		Use:   "state --db FILE --flow F [--key K | --prefix P | --snapshots] [--json]",
		Short: "Print a flow's committed state, or its snapshots",
		Long: `State prints the committed state of a flow with a reduce step: each key and
its value, in key order. Committed means what survives a crash: the effect of
exactly the events at or below the flow's committed offset (docs/STATE.md).
--key prints one key, --prefix the keys that begin with it.

VALUE is the stored JSON, cut to --width characters; a value that is not
JSON shows as {"$base64": "..."}. --json prints one JSON object per key,
values in full:
  {"key":"customer-42","value":{"orders":3,"total":4796}}

--snapshots lists the flow's state snapshots instead (journal at rest only):
  FLOOR    the committed offset the copy was taken at
  VERSION  the flow's state_version then
  ENTRIES  keys in the copy
  TAKEN    when it was taken (UTC)
and with --json: {"state":"totals","floor":8,"version":1,"entries":3,"taken":"..."}

A flow without committed state, or a --key without a value, prints nothing,
a note on stderr, and exits 0.

` + dumpLiveHelp + `

` + exitStatusHelp,
		Example: `  flowrt dump state --db flowrt.db --flow orders-per-customer
  flowrt dump state --db flowrt.db --flow orders-per-customer --key customer-42 --json
  flowrt dump state --db flowrt.db --flow orders-per-customer --prefix customer-4
  flowrt dump state --db flowrt.db --flow orders-per-customer --snapshots`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDumpState(cmd, &o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.flow, "flow", "", "the flow whose state to print (required)")
	f.StringVar(&o.key, "key", "", "print only this key")
	f.StringVar(&o.prefix, "prefix", "", "print only the keys that begin with this")
	f.BoolVar(&o.snapshots, "snapshots", false, "list the state's snapshots instead of its values")
	f.IntVar(&o.width, "width", 60, "cut the table's VALUE column to this many characters (0: no limit)")
	return cmd
}

func runDumpState(cmd *cobra.Command, o *dumpStateOptions) error {
	if err := o.check(); err != nil {
		return err
	}
	if o.flow == "" {
		return usageErrorf("--flow is required: the flow whose state to print")
	}
	if err := validName("--flow", o.flow); err != nil {
		return err
	}
	switch {
	case o.key != "" && o.prefix != "":
		return usageErrorf("--key and --prefix are exclusive: give one")
	case o.snapshots && (o.key != "" || o.prefix != ""):
		return usageErrorf("--snapshots lists whole snapshots: it takes no --key or --prefix")
	case o.width < 0:
		return usageErrorf("--width must not be negative, got %d", o.width)
	}
	if o.snapshots {
		return runDumpSnapshots(cmd, o)
	}
	st, err := loadState(cmd.Context(), o)
	if err != nil {
		return err
	}
	rows := st.rows
	stderr := cmd.ErrOrStderr()
	switch {
	case !st.known:
		fmt.Fprintf(stderr, "flowrt: note: %s has no committed state for flow %q%s\n", o.db, o.flow, flowList(st.stateful))
		return nil
	case len(rows) == 0 && o.key != "":
		fmt.Fprintf(stderr, "flowrt: note: flow %q has no key %q\n", o.flow, o.key)
		return nil
	case len(rows) == 0:
		fmt.Fprintf(stderr, "flowrt: note: flow %q has no keys%s\n", o.flow, withPrefix(o.prefix))
		return nil
	}
	if o.json {
		return writeJSONLines(cmd.OutOrStdout(), rows)
	}
	w := bufio.NewWriter(cmd.OutOrStdout())
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tVALUE")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\n", tableKey(r.Key), truncate(string(r.Value), o.width))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// flowList words the flows with state for a note, when they are known.
func flowList(flows []string) string {
	if len(flows) == 0 {
		return ""
	}
	q := make([]string, len(flows))
	for i, f := range flows {
		q[i] = strconv.Quote(f)
	}
	return " (flows with state: " + strings.Join(q, ", ") + ")"
}

func withPrefix(p string) string {
	if p == "" {
		return ""
	}
	return fmt.Sprintf(" beginning with %q", p)
}

// stateRows is what loadState found.
type stateRows struct {
	rows     []wireEntry
	known    bool     // the flow has committed state
	stateful []string // for an unknown flow, the flows with state, if known
}

// loadState reads the flow's committed values that the options select.
func loadState(ctx context.Context, o *dumpStateOptions) (st stateRows, err error) {
	src, err := openSource(o.dumpCommon)
	if err != nil {
		return st, err
	}
	defer func() {
		if cerr := src.Close(); err == nil {
			err = cerr
		}
	}()
	if src.live != nil {
		rows, err := src.live.state(ctx, o.flow, o.key, o.prefix)
		if isLiveNotFound(err) {
			return st, nil
		}
		if err != nil {
			return st, err
		}
		if o.key != "" { // exact, whatever the daemon makes of key
			rows = keepKey(rows, o.key)
		}
		return stateRows{rows: rows, known: true}, nil
	}
	if _, ok, err := snapshot.ReadMeta(src.log, o.flow); err != nil {
		return st, fmt.Errorf("read state of %q: %w", o.flow, err)
	} else if !ok {
		st.stateful, err = statefulFlows(src)
		return st, err
	}
	prefix := o.prefix
	if o.key != "" {
		prefix = o.key
	}
	entries, err := snapshot.Read(src.log, o.flow, prefix)
	if err != nil {
		return st, err
	}
	st = stateRows{rows: make([]wireEntry, len(entries)), known: true}
	for i, e := range entries {
		st.rows[i] = toWireEntry(e)
	}
	if o.key != "" {
		st.rows = keepKey(st.rows, o.key)
	}
	return st, nil
}

func keepKey(rows []wireEntry, key string) []wireEntry {
	out := rows[:0]
	for _, r := range rows {
		if r.Key == key {
			out = append(out, r)
		}
	}
	return out
}

// statefulFlows names the flows with state, found by their snapshots'
// retention guards.
func statefulFlows(src *source) ([]string, error) {
	cs, err := logConsumers(src.log, "")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, c := range cs {
		if name, ok := strings.CutPrefix(c.Consumer, snapshot.GuardName("")); ok {
			out = append(out, name)
		}
	}
	return out, nil
}

// runDumpSnapshots lists the flow's snapshots.
func runDumpSnapshots(cmd *cobra.Command, o *dumpStateOptions) (err error) {
	src, err := openSource(o.dumpCommon)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := src.Close(); err == nil {
			err = cerr
		}
	}()
	if src.live != nil {
		return errSnapshotsLive
	}
	snaps, err := snapshot.Snapshots(src.log, o.flow)
	if err != nil {
		return fmt.Errorf("list snapshots of %q: %w", o.flow, err)
	}
	if len(snaps) == 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "flowrt: note: flow %q has no snapshots\n", o.flow)
		return nil
	}
	rows := make([]wireSnapshot, len(snaps))
	for i, s := range snaps {
		rows[i] = wireSnapshot{State: s.State, Floor: s.Floor, Version: s.Version, Entries: s.Entries, Taken: wireTime(s.Taken)}
	}
	if o.json {
		return writeJSONLines(cmd.OutOrStdout(), rows)
	}
	w := bufio.NewWriter(cmd.OutOrStdout())
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "FLOOR\tVERSION\tENTRIES\tTAKEN")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\n", r.Floor, r.Version, r.Entries, tableTime(r.Taken.time()))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}
