package command

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/supervisor"
)

type statOptions struct {
	*dumpCommon
}

func newStatCommand() *cobra.Command {
	o := statOptions{dumpCommon: &dumpCommon{}}
	cmd := &cobra.Command{
		Use:   "stat --db FILE [--json]",
		Short: "Summarise a journal: streams, sizes, consumers, last run",
		Long: `Stat summarises a journal: its ID, format version and file size; each
stream's first and last sequence, event count, bytes and last append time;
each consumer's committed offset, lag and dead letters; and the last run of
the supervisor recorded in $system (when it started, how it ended, whether
it crashed), with how many runs and crashes $system holds.

A last run that never reached stopped or failed, in a journal at rest, is a
crash: its process died, and the next run records a recovery.

` + dumpLiveHelp + ` Read through a
daemon, stat shows what the daemon serves: no journal ID, format version or
last append time, and the last run is the daemon's own, running.

--json prints one object:

  {"db":"flowrt.db","id":"01J...","format_version":2,"file_size":32768,
   "streams":[{"name":"events","first":1,"last":6,"count":6,"bytes":1790,
     "last_time":"2025-01-02T03:04:05.123456789Z"}],
   "consumers":[{"stream":"events","consumer":"orders","offset":6,"last":6,
     "lag":0,"updated":"...","dead_letters":0}],
   "runs":2,"crashed_runs":1,
   "last_run":{"id":"01J...","state":"stopped","started":"...","last":"...",
     "ended":true,"crashed":false}}

last_run is null when no run is recorded. Read through a daemon, "live"
holds its address and pid, and id and format_version are omitted.

` + exitStatusHelp,
		Example: `  flowrt stat --db flowrt.db
  flowrt stat --db flowrt.db --json | jq '.consumers[] | select(.lag > 0)'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runStat(cmd, &o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.db, "db", "", "journal file (required)")
	f.BoolVar(&o.json, "json", false, "print one JSON object instead of tables")
	f.DurationVar(&o.lockTimeout, "lock-timeout", defaultLockTimeout, "how long to wait for another process to release the journal")
	f.StringVar(&o.token, "token", "", "bearer token of the daemon holding the journal (default: its token_file)")
	f.StringVar(&o.tokenFile, "token-file", "", "file holding the daemon's bearer token")
	return cmd
}

// statJSON is stat's report, as --json prints it.
type statJSON struct {
	DB            string           `json:"db"`
	Live          *statLiveJSON    `json:"live,omitempty"`
	ID            string           `json:"id,omitempty"`
	FormatVersion uint32           `json:"format_version,omitempty"`
	FileSize      int64            `json:"file_size"`
	Streams       []statStreamJSON `json:"streams"`
	Consumers     []wireConsumer   `json:"consumers"`
	Runs          int              `json:"runs"`
	CrashedRuns   int              `json:"crashed_runs"`
	LastRun       *statRunJSON     `json:"last_run"`
}

// statLiveJSON names the daemon a live journal was read through.
type statLiveJSON struct {
	Addr string `json:"addr"`
	PID  int    `json:"pid"`
}

// statStreamJSON is one stream, with the keys of the daemon's /v1/status.
type statStreamJSON struct {
	Name     string   `json:"name"`
	First    uint64   `json:"first"`
	Last     uint64   `json:"last"`
	Count    uint64   `json:"count"`
	Bytes    uint64   `json:"bytes"`
	LastTime wireTime `json:"last_time,omitzero"` // of the last append
}

// statRunJSON is the last run recorded in $system.
type statRunJSON struct {
	ID      string   `json:"id"`
	State   string   `json:"state"` // its last recorded runtime state
	Started wireTime `json:"started,omitzero"`
	Last    wireTime `json:"last,omitzero"` // its last record
	Ended   bool     `json:"ended"`         // it reached stopped or failed
	Crashed bool     `json:"crashed"`       // it never ended and its process is gone
	Reason  string   `json:"reason,omitempty"`
}

func runStat(cmd *cobra.Command, o *statOptions) (err error) {
	if err := o.check(); err != nil {
		return err
	}
	src, err := openSource(o.dumpCommon)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := src.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close journal %s: %w", o.db, cerr)
		}
	}()
	var rep statJSON
	if src.live != nil {
		rep, err = statLive(cmd.Context(), o.db, src.live)
	} else {
		rep, err = statAtRest(src.log)
	}
	if err != nil {
		return err
	}
	w := bufio.NewWriter(cmd.OutOrStdout())
	if o.json {
		err = writeIndentedJSON(w, rep)
	} else {
		err = printStat(w, rep)
	}
	if err = errors.Join(err, w.Flush()); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// statAtRest reads the report from a journal opened read-only.
func statAtRest(l *eventlog.Log) (statJSON, error) {
	rep := statJSON{DB: l.Path(), ID: l.ID().String(), Streams: []statStreamJSON{}, Consumers: []wireConsumer{}}
	fi, err := os.Stat(l.Path())
	if err != nil {
		return rep, fmt.Errorf("stat %s: %w", l.Path(), err)
	}
	rep.FileSize = fi.Size()
	if rep.FormatVersion, err = l.FormatVersion(); err != nil {
		return rep, err
	}
	streams, err := l.Streams()
	if err != nil {
		return rep, fmt.Errorf("read streams: %w", err)
	}
	for _, si := range streams {
		rep.Streams = append(rep.Streams, statStreamJSON{Name: si.Name, First: si.First, Last: si.Last,
			Count: si.Count, Bytes: si.Bytes, LastTime: wireTime(si.LastTime)})
	}
	cs, err := l.Consumers("")
	if err != nil {
		return rep, fmt.Errorf("read consumers: %w", err)
	}
	for _, c := range cs {
		dead, err := consumer.DeadLetters(l, c.Stream, c.Name, consumer.Range{})
		if err != nil {
			return rep, fmt.Errorf("read dead letters of %q on %q: %w", c.Name, c.Stream, err)
		}
		rep.Consumers = append(rep.Consumers, wireConsumer{Stream: c.Stream, Consumer: c.Name, Offset: c.Offset,
			Last: c.Offset + c.Lag, Lag: c.Lag, Updated: wireTime(c.Updated), DeadLetters: len(dead)})
	}
	runs, err := supervisor.Runs(l)
	if err != nil {
		return rep, fmt.Errorf("read runs: %w", err)
	}
	rep.Runs = len(runs)
	for i, r := range runs {
		// At rest no process holds the journal: a last run that never
		// ended died without a recovery yet.
		crashed := r.Crashed || (i == len(runs)-1 && !r.Ended())
		if crashed {
			rep.CrashedRuns++
		}
		if i == len(runs)-1 {
			rep.LastRun = &statRunJSON{ID: r.ID, State: r.End.String(), Started: wireTime(r.Started), Last: wireTime(r.Last),
				Ended: r.Ended(), Crashed: crashed, Reason: r.Reason}
		}
	}
	return rep, nil
}

// statLive reads the report from the daemon that holds the journal: GET
// /v1/status, /v1/consumers and /v1/system/runs.
func statLive(ctx context.Context, db string, c *liveClient) (statJSON, error) {
	rep := statJSON{DB: db, Live: &statLiveJSON{Addr: c.file.Addr, PID: c.file.PID}, Streams: []statStreamJSON{}}
	if fi, err := os.Stat(db); err == nil {
		rep.FileSize = fi.Size()
	}
	st, err := c.status(ctx)
	if err != nil {
		return rep, err
	}
	for _, s := range st.Streams {
		rep.Streams = append(rep.Streams, statStreamJSON{Name: s.Name, First: s.First, Last: s.Last, Count: s.Count, Bytes: s.Bytes, LastTime: s.LastTime})
	}
	cs, err := c.consumers(ctx)
	if err != nil {
		return rep, err
	}
	rep.Consumers = append([]wireConsumer{}, cs...)
	setInFlight(st, rep.Consumers)
	runs, err := c.runs(ctx)
	if err != nil {
		return rep, err
	}
	rep.Runs = len(runs)
	for _, r := range runs {
		if r.Crashed {
			rep.CrashedRuns++
		}
	}
	if len(runs) > 0 {
		r := runs[len(runs)-1]
		rep.LastRun = &statRunJSON{ID: r.ID, State: r.End, Started: r.Started, Last: r.Last, Ended: r.ended(), Reason: r.Reason}
	}
	if st.Run != "" && (rep.LastRun == nil || rep.LastRun.ID != st.Run) {
		// The daemon's run may not be in the list it read a moment before.
		rep.LastRun = &statRunJSON{ID: st.Run}
		rep.Runs++
	}
	if rep.LastRun != nil && rep.LastRun.ID == st.Run && st.State != "" {
		rep.LastRun.State = st.State // the daemon knows its own state best
	}
	return rep, nil
}

// printStat writes stat's human report.
func printStat(w io.Writer, rep statJSON) error {
	field := func(key, format string, args ...any) {
		fmt.Fprintf(w, "%-11s%s\n", key, fmt.Sprintf(format, args...))
	}
	field("journal", "%s", rep.DB)
	if rep.Live != nil {
		field("held by", "flowrt run (pid %d); read through its HTTP API at %s", rep.Live.PID, rep.Live.Addr)
	}
	if rep.ID != "" {
		field("id", "%s", rep.ID)
	}
	if rep.FormatVersion != 0 {
		field("format", "version %d", rep.FormatVersion)
	}
	field("file size", "%s (%d bytes)", opsSize(rep.FileSize), rep.FileSize)

	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(w)
	if len(rep.Streams) == 0 {
		fmt.Fprintln(w, "no streams")
	} else {
		fmt.Fprintln(tw, "STREAM\tFIRST\tLAST\tEVENTS\tBYTES\tLAST APPEND")
		for _, s := range rep.Streams {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\n", s.Name, s.First, s.Last, s.Count,
				opsSize(int64(s.Bytes)), tableTime(time.Time(s.LastTime)))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	fmt.Fprintln(w)
	if len(rep.Consumers) == 0 {
		fmt.Fprintln(w, "no consumers")
	} else {
		fmt.Fprintln(tw, "CONSUMER\tSTREAM\tOFFSET\tLAST\tLAG\tDEAD LETTERS\tUPDATED")
		for _, c := range rep.Consumers {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\n", c.Consumer, c.Stream, c.Offset, c.Last, c.Lag,
				c.DeadLetters, tableTime(time.Time(c.Updated)))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	fmt.Fprintln(w)
	if r := rep.LastRun; r == nil {
		field("last run", "none recorded")
	} else {
		field("last run", "%s %s", r.ID, statRunState(r, rep.Live != nil))
		if !time.Time(r.Started).IsZero() {
			field("", "started %s, last record %s", tableTime(time.Time(r.Started)), tableTime(time.Time(r.Last)))
		}
	}
	field("runs", "%d recorded in $system, %d crashed", rep.Runs, rep.CrashedRuns)
	return nil
}

// statRunState says how a run stands, in words.
func statRunState(r *statRunJSON, live bool) string {
	switch {
	case live && !r.Ended:
		return fmt.Sprintf("(%s: the daemon's own run)", r.State)
	case r.Crashed:
		return fmt.Sprintf("(crashed: its last state was %s; the next run records a recovery)", r.State)
	case r.Reason != "":
		return fmt.Sprintf("(%s: %s)", r.State, r.Reason)
	}
	return "(" + r.State + ")"
}
