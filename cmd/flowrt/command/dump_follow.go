package command

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/spf13/cobra"
)

// How `flowrt dump --follow` watches a journal at rest.
const (
	// followPoll is the pause between two looks at the journal.
	followPoll = 200 * time.Millisecond
	// followLockTimeout bounds each look's wait for the lock: a writer
	// holding the journal is simply looked at again later.
	followLockTimeout = 100 * time.Millisecond
	// followLockedNote is how many looks in a row must find the journal
	// locked before a note says so: a short append is not worth one.
	followLockedNote = 3
)

// eventDumper prints the events of one stream, from the journal or from
// the daemon that holds it, and remembers where it is so that --follow
// goes on from there. It is not safe for concurrent use.
type eventDumper struct {
	o       *dumpOptions
	out     *bufio.Writer
	p       printer
	stderr  io.Writer
	next    uint64 // the next sequence to read; 0 is the first retained
	printed int
	noted   map[string]bool // notes already given
	locked  int             // looks in a row that found the journal locked
	cmd     *cobra.Command
}

func newEventDumper(cmd *cobra.Command, o *dumpOptions) *eventDumper {
	out := bufio.NewWriter(cmd.OutOrStdout())
	var p printer = &jsonPrinter{w: out}
	if !o.json {
		p = newTablePrinter(out, o.width)
	}
	return &eventDumper{o: o, out: out, p: p, stderr: cmd.ErrOrStderr(), next: o.from, noted: map[string]bool{}, cmd: cmd}
}

// done reports whether --limit events have been printed.
func (d *eventDumper) done() bool { return d.o.limit > 0 && d.printed >= d.o.limit }

// noteOnce prints a note on stderr unless one with the same name was.
func (d *eventDumper) noteOnce(name string, note func(io.Writer)) {
	if !d.noted[name] {
		d.noted[name] = true
		note(d.stderr)
	}
}

// print prints ev unless --type leaves it out.
func (d *eventDumper) print(ev eventlog.Event) error {
	d.next = ev.Seq + 1
	if d.o.typeGlob != "" {
		if ok, _ := path.Match(d.o.typeGlob, ev.Type); !ok {
			return nil
		}
	}
	if err := d.p.print(ev); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	d.printed++
	return nil
}

// flush writes out what is printed.
func (d *eventDumper) flush() error {
	if err := d.p.flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// fromLog prints the stream's events in l from d.next on. A stream that
// does not exist is noted on stderr, once.
func (d *eventDumper) fromLog(l *eventlog.Log) error {
	si, err := l.Info(d.o.stream)
	if errors.Is(err, eventlog.ErrNotFound) {
		infos, err := l.Streams()
		if err != nil {
			return err
		}
		names := make([]string, len(infos))
		for i, si := range infos {
			names[i] = si.Name
		}
		d.noteOnce("missing", func(w io.Writer) { noteMissingStream(w, l.Path(), d.o.stream, names) })
		return d.flush()
	} else if err != nil {
		return err
	}
	if err := d.p.begin(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	bar := d.progress(si)
	defer bar.Done()
	for ev, err := range l.Scan(d.o.stream, d.next, 0) {
		if err != nil {
			_ = d.flush()
			return fmt.Errorf("dump %q: %w", d.o.stream, err)
		}
		if err := d.print(ev); err != nil {
			return err
		}
		bar.Add(1)
		if d.done() {
			break
		}
	}
	return d.flush()
}

// progress returns a progress bar over the events left to read, for a
// dump into a file or a pipe watched from a terminal (nil otherwise: with
// --follow, --quiet, or output on the terminal itself).
func (d *eventDumper) progress(si eventlog.StreamInfo) *progressBar {
	if d.o.follow || isTerminal(d.cmd.OutOrStdout()) {
		return nil
	}
	first := max(d.next, si.First)
	var total int64
	if si.Last >= first {
		total = int64(si.Last - first + 1)
	}
	return newProgressBar(d.cmd, d.o.quiet, "dump", total, progressEvents)
}

// fromLive prints the stream's events from d.next on, read through the
// daemon; with follow it goes on as they are appended, until ctx ends
// (ctx.Err() is returned) or the daemon ends the answer (nil). A stream
// that does not exist is noted on stderr, once, and reported as missing.
func (d *eventDumper) fromLive(ctx context.Context, lc *liveClient, follow bool) (missing bool, err error) {
	q := eventQuery{stream: d.o.stream, from: d.next, typeGlob: d.o.typeGlob, follow: follow}
	if d.o.limit > 0 {
		q.limit = d.o.limit - d.printed
	}
	evs, err := lc.events(ctx, q)
	if isLiveNotFound(err) {
		d.noteOnce("missing", func(w io.Writer) {
			var names []string
			if st, err := lc.status(ctx); err == nil {
				for _, s := range st.Streams {
					names = append(names, s.Name)
				}
			}
			noteMissingStream(w, lc.db, d.o.stream, names)
		})
		return true, d.flush()
	}
	if err != nil {
		return false, err
	}
	defer evs.Close()
	if err := d.p.begin(); err != nil {
		return false, fmt.Errorf("write output: %w", err)
	}
	for !d.done() {
		ev, more, err := evs.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			_ = d.flush()
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			return false, fmt.Errorf("dump %q through the daemon: %w", d.o.stream, err)
		}
		if err := d.print(ev); err != nil {
			return false, err
		}
		if !more { // the daemon sent a batch: show it
			if err := d.flush(); err != nil {
				return false, err
			}
		}
	}
	return false, d.flush()
}

// follow prints new events until ctx ends (then it returns nil) or --limit
// is reached. It looks at the journal every followPoll, and streams from
// the daemon that holds it, if one publishes its address, until that
// daemon goes away.
func (d *eventDumper) follow(ctx context.Context, c *dumpCommon) error {
	var lc *liveClient
	for !d.done() {
		if lc == nil {
			if !waitPoll(ctx) {
				return nil
			}
			var err error
			if lc, err = d.look(c); err != nil {
				return err
			}
			continue
		}
		missing, err := d.fromLive(ctx, lc, true)
		switch {
		case ctx.Err() != nil:
			return nil
		case daemonGone(err):
			lc = nil // read the journal once it is released
		case err != nil:
			return err
		case missing:
			if !waitPoll(ctx) { // the stream does not exist yet: ask again
				return nil
			}
		default:
			lc = nil // the daemon ended the answer: it is stopping
		}
	}
	return nil
}

// daemonGone reports whether err says that the daemon stopped answering,
// or never did.
func daemonGone(err error) bool {
	var ce *liveConnError
	var cut *liveCutError
	return errors.As(err, &ce) || errors.As(err, &cut)
}

// look opens the journal for a moment and prints what was appended since
// the last look. A journal held by a daemon that publishes its address is
// returned as a client to stream from; one held otherwise is looked at
// again later.
func (d *eventDumper) look(c *dumpCommon) (*liveClient, error) {
	l, err := openJournal(c.db, &eventlog.Options{ReadOnly: true, LockTimeout: followLockTimeout})
	if errors.Is(err, eventlog.ErrLocked) {
		info, err := readLiveFile(c.db)
		if err != nil || info != nil {
			if err != nil {
				return nil, err
			}
			return newLiveClient(c, info)
		}
		if d.locked++; d.locked >= followLockedNote {
			d.noteOnce("locked", func(w io.Writer) {
				fmt.Fprintf(w, "flowrt: note: %s is in use by another process; waiting for it to be released (a daemon started with --http can be followed while it runs)\n", c.db)
			})
		}
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	d.locked = 0
	err = d.fromLog(l)
	if cerr := l.Close(); err == nil {
		err = cerr
	}
	return nil, err
}

// waitPoll waits followPoll; it returns false if ctx ended first.
func waitPoll(ctx context.Context) bool {
	t := time.NewTimer(followPoll)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
