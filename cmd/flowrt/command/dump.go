package command

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/eventjson"
	"github.com/spf13/cobra"
)

// Time layouts of dump's output, always in UTC. The JSON one keeps all nine
// fraction digits so that times sort as strings.
const (
	tableTimeLayout = "2006-01-02T15:04:05.000Z07:00"
	jsonTimeLayout  = "2006-01-02T15:04:05.000000000Z07:00"
)

// tableFlushRows is how many table rows are aligned together: the table is
// written in blocks so that a long dump streams instead of being held in
// memory.
const tableFlushRows = 1024

// dumpCommon holds the flags every dump command takes.
type dumpCommon struct {
	db          string
	json        bool
	lockTimeout time.Duration
	token       string
	tokenFile   string
}

// check checks the common flags.
func (c *dumpCommon) check() error {
	if err := checkDB(c.db); err != nil {
		return err
	}
	if c.lockTimeout <= 0 {
		return usageErrorf("--lock-timeout must be positive, got %v", c.lockTimeout)
	}
	if c.token != "" && c.tokenFile != "" {
		return usageErrorf("--token and --token-file are exclusive: give one")
	}
	return nil
}

type dumpOptions struct {
	*dumpCommon
	stream   string
	from     uint64
	limit    int
	typeGlob string
	width    int
	follow   bool
	quiet    bool
}

// dumpLiveHelp says how every dump command reads a journal a daemon holds.
const dumpLiveHelp = `The journal is opened read-only and never changed. When another process holds
it (flowrt run), the command reads through that daemon's HTTP read side if it
was started with --http (it publishes its address in <db>.http, and its token
file, if any; --token or --token-file give another token); otherwise it gives
up after --lock-timeout with exit status 1 and says what to do.`

func newDumpCommand() *cobra.Command {
	o := dumpOptions{dumpCommon: &dumpCommon{}}
	cmd := &cobra.Command{
		Use:   "dump --db FILE [--stream S] [--from SEQ] [--limit N] [--type GLOB] [--follow] [--json]",
		Short: "Print a stream's events, or the journal's runs, consumers, dead letters and state",
		Long: `Dump prints the events of one stream in sequence order; its subcommands print
what else the journal holds:

  flowrt dump system      the supervisor's runs, crashes and recoveries
  flowrt dump consumers   consumer offsets, lag, dead letters (in flight when live)
  flowrt dump dlq         dead letters
  flowrt dump state       a flow's committed state, or its snapshots

` + dumpLiveHelp + `

The default output is a table: SEQ, TIME (UTC, milliseconds), TYPE, KEY, ID
and DATA (as in --json below, cut to --width characters). An empty KEY or
DATA shows as "-"; a key that is "-" or has control characters is quoted.
Rows are aligned in blocks of ` + strconv.Itoa(tableFlushRows) + ` (with --follow, per batch).

--json prints one JSON object per event instead, with every field in full:

  {"stream":"events","seq":1,"id":"01J...","time":"2025-01-02T03:04:05.123456789Z",
   "type":"order.created","key":"order-1001","headers":{"source":"shop-7"},
   "data":{"total_cents":1598}}

time is RFC 3339 in UTC with nine fraction digits. key, headers and data are
omitted when empty. data is the stored bytes inline when they are JSON (and
not an object with a "$base64" key), else {"$base64": "<standard base64 of
the bytes>"}; append reads both forms back to the same bytes (JSON data
stored with extra white space comes back compacted).

--from starts at a sequence (default: the first retained event); --type keeps
the events whose type matches a glob (Go's path.Match: * ? [a-z] \); --limit
stops after that many printed events (0: no limit). A stream that does not
exist prints nothing, a note on stderr, and exits 0.

--follow keeps printing events as they are appended, until SIGINT or SIGTERM
(exit status 0) or --limit. On a journal at rest it re-opens the journal
read-only every ` + followPoll.String() + ` for a moment, so writers are never held up for long;
on a journal a daemon holds, it streams from the daemon. It waits for a
stream that does not exist yet.

` + exitStatusHelp,
		Example: `  flowrt dump --db flowrt.db
  flowrt dump --db flowrt.db --type 'order.*' --from 100 --limit 10
  flowrt dump --db flowrt.db --follow
  flowrt dump --db flowrt.db --json | jq -r .type | sort | uniq -c
  flowrt dump --db flowrt.db --stream '$system' --json
  flowrt dump system --db flowrt.db`,
		Args: dumpArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDump(cmd, &o) },
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&o.db, "db", "", "journal file (required)")
	pf.BoolVar(&o.json, "json", false, "print JSON lines instead of a table")
	pf.DurationVar(&o.lockTimeout, "lock-timeout", defaultLockTimeout, "how long to wait for another process to release the journal")
	pf.StringVar(&o.token, "token", "", "bearer token of the daemon holding the journal (default: its token_file)")
	pf.StringVar(&o.tokenFile, "token-file", "", "file holding the daemon's bearer token")
	f := cmd.Flags()
	f.StringVar(&o.stream, "stream", eventlog.DefaultStream, "stream to print")
	_ = cmd.RegisterFlagCompletionFunc("stream", completeStreams)
	f.Uint64Var(&o.from, "from", 0, "first sequence to print (0: the first retained event)")
	f.IntVar(&o.limit, "limit", 0, "print at most this many events (0: all)")
	f.StringVar(&o.typeGlob, "type", "", "print only events whose type matches this glob, e.g. 'order.*'")
	f.IntVar(&o.width, "width", 60, "cut the table's DATA column to this many characters (0: no limit)")
	f.BoolVarP(&o.follow, "follow", "f", false, "keep printing events as they are appended, until interrupted")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "no progress bar when the output goes to a file or a pipe")
	cmd.SuggestionsMinimumDistance = 2
	cmd.AddCommand(
		newDumpSystemCommand(o.dumpCommon),
		newDumpConsumersCommand(o.dumpCommon),
		newDumpDLQCommand(o.dumpCommon),
		newDumpStateCommand(o.dumpCommon),
	)
	return cmd
}

// dumpArgs refuses positional arguments, naming the subcommands.
func dumpArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("%s takes no arguments, got %q (subcommands: system, consumers, dlq, state; flags start with --)", cmd.CommandPath(), args)
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += fmt.Sprintf("; did you mean %s?", strings.Join(s, ", "))
	}
	return usageErrorf("%s", msg)
}

func runDump(cmd *cobra.Command, o *dumpOptions) error {
	if err := o.check(); err != nil {
		return err
	}
	if err := eventlog.ValidateName(o.stream); err != nil {
		return usageErrorf("--stream: %v", eventjson.Message(err))
	}
	if o.limit < 0 {
		return usageErrorf("--limit must not be negative, got %d", o.limit)
	}
	if o.width < 0 {
		return usageErrorf("--width must not be negative, got %d", o.width)
	}
	if _, err := path.Match(o.typeGlob, ""); err != nil {
		return usageErrorf("--type %q: %v", o.typeGlob, err)
	}

	src, err := openSource(o.dumpCommon)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	if o.follow {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
	}
	d := newEventDumper(cmd, o)
	if src.live != nil {
		_, err = d.fromLive(ctx, src.live, o.follow)
		var cut *liveCutError
		switch {
		case o.follow && ctx.Err() != nil:
			return nil // interrupted: the normal end of --follow
		case o.follow && errors.As(err, &cut):
			err = nil // the daemon stopped: follow the journal at rest
		}
	} else {
		err = d.fromLog(src.log)
		// Close before following: --follow must not keep the lock.
		if cerr := src.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil || !o.follow || d.done() {
		return err
	}
	return d.follow(ctx, o.dumpCommon)
}

// noteMissingStream tells, on stderr, that the journal at path has no
// stream and which streams it has.
func noteMissingStream(w io.Writer, path, stream string, streams []string) {
	names := make([]string, len(streams))
	for i, name := range streams {
		names[i] = strconv.Quote(name)
	}
	have := "it has no streams"
	if len(names) > 0 {
		have = "streams: " + strings.Join(names, ", ")
	}
	fmt.Fprintf(w, "flowrt: note: %s has no stream %q (%s)\n", path, stream, have)
}

// printer writes dump's output, one event at a time.
type printer interface {
	begin() error // the stream exists: write a header, if any, once
	print(eventlog.Event) error
	flush() error
}

// jsonPrinter writes one JSON object per line.
type jsonPrinter struct{ w *bufio.Writer }

func (p *jsonPrinter) print(ev eventlog.Event) error {
	line, err := eventjson.EncodeEvent(ev)
	if err != nil {
		return err
	}
	_, err = p.w.Write(line)
	return err
}

func (p *jsonPrinter) begin() error { return nil }

func (p *jsonPrinter) flush() error { return p.w.Flush() }

// tablePrinter writes an aligned table.
type tablePrinter struct {
	w      *bufio.Writer
	tw     *tabwriter.Writer
	width  int
	rows   int
	headed bool
}

func newTablePrinter(w *bufio.Writer, width int) *tablePrinter {
	return &tablePrinter{w: w, tw: tabwriter.NewWriter(w, 0, 8, 2, ' ', 0), width: width}
}

func (p *tablePrinter) begin() error {
	if p.headed {
		return nil
	}
	p.headed = true
	_, err := fmt.Fprintln(p.tw, "SEQ\tTIME\tTYPE\tKEY\tID\tDATA")
	return err
}

func (p *tablePrinter) print(ev eventlog.Event) error {
	_, err := fmt.Fprintf(p.tw, "%d\t%s\t%s\t%s\t%s\t%s\n",
		ev.Seq, ev.Time.UTC().Format(tableTimeLayout), ev.Type, tableKey(ev.Key), ev.ID, tableData(ev.Data, p.width))
	if err != nil {
		return err
	}
	if p.rows++; p.rows%tableFlushRows == 0 {
		return p.tw.Flush()
	}
	return nil
}

func (p *tablePrinter) flush() error {
	if err := p.tw.Flush(); err != nil {
		return err
	}
	return p.w.Flush()
}

// tableKey shows a key in one table cell: "-" when empty, quoted when it
// is "-" or holds tabs, newlines or other control characters.
func tableKey(k string) string {
	switch {
	case k == "":
		return "-"
	case k == "-" || strings.ContainsFunc(k, unicode.IsControl):
		return strconv.Quote(k)
	}
	return k
}

// tableData shows data in the last table cell: its JSON form (see
// encodeData) cut to width, or "-" when empty.
func tableData(data []byte, width int) string {
	if len(data) == 0 {
		return "-"
	}
	return truncate(string(eventjson.EncodeData(data)), width)
}

// truncate cuts s to width characters, the last three of them "...". A
// width of 0 means no limit.
func truncate(s string, width int) string {
	if width == 0 || utf8.RuneCountInString(s) <= width {
		return s
	}
	keep := max(width-3, 0)
	r := []rune(s)
	return string(r[:keep]) + "..."[:min(3, width)]
}
