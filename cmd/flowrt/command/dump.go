package command

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/flowrt/flowrt/eventlog"
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

type dumpOptions struct {
	db          string
	stream      string
	from        uint64
	limit       int
	typeGlob    string
	json        bool
	width       int
	lockTimeout time.Duration
}

func newDumpCommand() *cobra.Command {
	var o dumpOptions
	cmd := &cobra.Command{
		Use:   "dump --db FILE [--stream S] [--from SEQ] [--limit N] [--type GLOB] [--json]",
		Short: "Print a stream's events",
		Long: `Dump prints the events of one stream in sequence order. It opens the journal
read-only and never changes the file; it can run while no other process has
the journal open, and gives up after --lock-timeout if one does (exit status 1).

The default output is a table: SEQ, TIME (UTC, milliseconds), TYPE, KEY, ID
and DATA (as in --json below, cut to --width characters). An empty KEY or
DATA shows as "-"; a key that is "-" or has control characters is quoted.
Rows are aligned in blocks of ` + strconv.Itoa(tableFlushRows) + `.

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

` + exitStatusHelp,
		Example: `  flowrt dump --db flowrt.db
  flowrt dump --db flowrt.db --type 'order.*' --from 100 --limit 10
  flowrt dump --db flowrt.db --json | jq -r .type | sort | uniq -c
  flowrt dump --db flowrt.db --stream '$system' --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDump(cmd, &o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.db, "db", "", "journal file (required)")
	f.StringVar(&o.stream, "stream", eventlog.DefaultStream, "stream to print")
	f.Uint64Var(&o.from, "from", 0, "first sequence to print (0: the first retained event)")
	f.IntVar(&o.limit, "limit", 0, "print at most this many events (0: all)")
	f.StringVar(&o.typeGlob, "type", "", "print only events whose type matches this glob, e.g. 'order.*'")
	f.BoolVar(&o.json, "json", false, "print JSON lines instead of a table")
	f.IntVar(&o.width, "width", 60, "cut the table's DATA column to this many characters (0: no limit)")
	f.DurationVar(&o.lockTimeout, "lock-timeout", defaultLockTimeout, "how long to wait for another process to release the journal")
	return cmd
}

func runDump(cmd *cobra.Command, o *dumpOptions) (err error) {
	if err := checkDB(o.db); err != nil {
		return err
	}
	if err := eventlog.ValidateName(o.stream); err != nil {
		return usageErrorf("--stream: %v", cliMessage(err))
	}
	if o.limit < 0 {
		return usageErrorf("--limit must not be negative, got %d", o.limit)
	}
	if o.width < 0 {
		return usageErrorf("--width must not be negative, got %d", o.width)
	}
	if o.lockTimeout <= 0 {
		return usageErrorf("--lock-timeout must be positive, got %v", o.lockTimeout)
	}
	if _, err := path.Match(o.typeGlob, ""); err != nil {
		return usageErrorf("--type %q: %v", o.typeGlob, err)
	}

	l, err := openJournal(o.db, &eventlog.Options{ReadOnly: true, LockTimeout: o.lockTimeout})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := l.Close(); err == nil {
			err = cerr
		}
	}()
	if _, err := l.Info(o.stream); errors.Is(err, eventlog.ErrNotFound) {
		return noteMissingStream(cmd.ErrOrStderr(), l, o.stream)
	} else if err != nil {
		return err
	}

	out := bufio.NewWriter(cmd.OutOrStdout())
	var p printer = &jsonPrinter{w: out}
	if !o.json {
		p = newTablePrinter(out, o.width)
	}
	printed := 0
	for ev, err := range l.Scan(o.stream, o.from, 0) {
		if err != nil {
			_ = p.flush()
			return fmt.Errorf("dump %q: %w", o.stream, err)
		}
		if o.typeGlob != "" {
			if ok, _ := path.Match(o.typeGlob, ev.Type); !ok {
				continue
			}
		}
		if err := p.print(ev); err != nil {
			return err
		}
		printed++
		if o.limit > 0 && printed >= o.limit {
			break
		}
	}
	if err := p.flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// noteMissingStream tells, on stderr, that the stream does not exist and
// which streams do.
func noteMissingStream(w io.Writer, l *eventlog.Log, stream string) error {
	infos, err := l.Streams()
	if err != nil {
		return err
	}
	names := make([]string, len(infos))
	for i, si := range infos {
		names[i] = strconv.Quote(si.Name)
	}
	have := "it has no streams"
	if len(names) > 0 {
		have = "streams: " + strings.Join(names, ", ")
	}
	fmt.Fprintf(w, "flowrt: note: %s has no stream %q (%s)\n", l.Path(), stream, have)
	return nil
}

// printer writes dump's output, one event at a time.
type printer interface {
	print(eventlog.Event) error
	flush() error
}

// jsonPrinter writes one JSON object per line.
type jsonPrinter struct{ w *bufio.Writer }

func (p *jsonPrinter) print(ev eventlog.Event) error {
	line, err := marshalLine(jsonEvent{
		Stream:  ev.Stream,
		Seq:     ev.Seq,
		ID:      ev.ID.String(),
		Time:    ev.Time.UTC().Format(jsonTimeLayout),
		Type:    ev.Type,
		Key:     ev.Key,
		Headers: ev.Headers,
		Data:    encodeData(ev.Data),
	})
	if err != nil {
		return err
	}
	_, err = p.w.Write(line)
	return err
}

func (p *jsonPrinter) flush() error { return p.w.Flush() }

// tablePrinter writes an aligned table.
type tablePrinter struct {
	w     *bufio.Writer
	tw    *tabwriter.Writer
	width int
	rows  int
}

func newTablePrinter(w *bufio.Writer, width int) *tablePrinter {
	p := &tablePrinter{w: w, tw: tabwriter.NewWriter(w, 0, 8, 2, ' ', 0), width: width}
	fmt.Fprintln(p.tw, "SEQ\tTIME\tTYPE\tKEY\tID\tDATA")
	return p
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
	return truncate(string(encodeData(data)), width)
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
