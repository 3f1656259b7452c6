// Package crashflow_test kills a process running a flow with SIGKILL at
// random moments and checks the runtime's promise end to end
// (runtime/doc.go, Caveats): delivery to the file sink is at least once,
// and only events above the flow's last committed floor are delivered
// again after a crash.
//
// The child process appends events to a stream from several goroutines
// while a runtime runs one flow over it: a trigger on "order.*", a filter
// on the data's amount (so matched is not appended) and the file sink,
// which writes one JSON line per delivery and fsyncs before Deliver
// returns. The parent kills the child a random moment after its first
// delivery, opens the journal as the next process would and checks
// everything the file gained in that run. After the last cycle it runs the
// flow itself until idle, so every event is processed, and checks that
// every matched event is in the file.
//
// The short run is part of `go test ./...`; FLOWRT_CRASH_CYCLES sets the
// number of cycles for a long run and FLOWRT_CRASH_SEED replays one:
//
//	FLOWRT_CRASH_CYCLES=500 go test -run TestCrashFlow -count=1 -timeout 0 ./tests/crashflow/
package crashflow_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/flowrt/flowrt/runtime"
)

const (
	shortCycles  = 20               // the default run
	readyTimeout = time.Minute      // from start to the child's first delivery
	exitTimeout  = 30 * time.Second // from SIGKILL to the child's exit
	maxKillDelay = 250 * time.Millisecond
	catchUp      = time.Minute // the final run
)

// TestChildProcess is the child the crash test starts; it is skipped in a
// normal run.
func TestChildProcess(t *testing.T) {
	flowtest.RunChild(t, childMaxLife, runChild)
}

func TestCrashFlow(t *testing.T) {
	n := shortCycles
	if testing.Short() {
		n = shortCycles / 4
	}
	n = flowtest.Cycles(t, n)
	sd := flowtest.Seed(t)
	rng := rand.New(rand.NewPCG(uint64(sd), 0x666c6f77))
	dir := t.TempDir()
	v := &verifier{
		journal:   filepath.Join(dir, "journal.db"),
		sink:      filepath.Join(dir, "deliveries.jsonl"),
		delivered: map[uint64][]int{},
	}
	start := time.Now()
	for c := 1; c <= n; c++ {
		cfg := childConfig{
			Journal:        v.journal,
			Sink:           v.sink,
			Cycle:          c,
			Seed:           rng.Uint64(),
			Writers:        1 + rng.IntN(3),
			Produce:        20 + rng.IntN(100),
			Pace:           time.Millisecond + time.Duration(rng.Int64N(int64(8*time.Millisecond))),
			Workers:        []int{1, 4}[rng.IntN(2)],
			CommitInterval: []time.Duration{5 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond}[rng.IntN(3)],
		}
		delay := time.Duration(rng.Int64N(int64(maxKillDelay)))
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("seed %d (rerun with %s=%d), cycle %d of %d (%s), kill %v after the first delivery: %s",
				sd, flowtest.SeedEnv, sd, c, n, cfg, delay, fmt.Sprintf(format, args...))
		}
		acked := runCycle(cfg, delay, fail)
		if err := v.afterRun(c, acked); err != nil {
			fail("%v", err)
		}
	}

	// The final run, in this process, processes everything: the file then
	// holds every matched event.
	deadLetters, err := finalRun(v.journal, v.sink)
	if err != nil {
		t.Fatalf("seed %d: the final run: %v", sd, err)
	}
	if deadLetters > 0 {
		t.Fatalf("seed %d: %d events were dead-lettered; none may be", sd, deadLetters)
	}
	if err := v.afterRun(n+1, nil); err != nil {
		t.Fatalf("seed %d: the final run: %v", sd, err)
	}
	if err := v.complete(); err != nil {
		t.Fatalf("seed %d: after the final run: %v", sd, err)
	}
	flowtest.MustCheck(t, v.journal)

	s := v.summary()
	t.Logf("%d cycles in %v (seed %d): %d events appended (%d acknowledged to the children), %d matched the flow; "+
		"%d lines in the file, %d matched events delivered more than once (at most %d times), %d in the final run; "+
		"%d kills left no new commit; %d kills cut a line",
		n, time.Since(start).Round(time.Millisecond), sd, len(v.events), v.acked, s.matched,
		v.lines, s.duplicates, s.maxCopies, v.runs[n].lines, s.noCommit, v.tornTails)
	if v.acked == 0 || s.matched == 0 || v.lines == 0 {
		t.Fatalf("seed %d: %d events acknowledged, %d matched, %d lines: nothing was tested", sd, v.acked, s.matched, v.lines)
	}
}

// runCycle starts a child, kills it delay after its first delivery and
// waits for it to end. It returns the sequences of the appends the child
// reported. The child is killed on every path out.
func runCycle(cfg childConfig, delay time.Duration, fail func(string, ...any)) []uint64 {
	ready := make(chan struct{})
	var acked []uint64
	var lineErr error
	c, err := flowtest.StartChild("TestChildProcess", cfg, func(line []byte) {
		s, ok := strings.CutSuffix(string(line), "\n")
		switch {
		case !ok:
			// Cut by the kill: the append it reports returned, but the
			// parent does not count it.
		case s == readyLine:
			close(ready)
		case strings.HasPrefix(s, ackPrefix+" "):
			for f := range strings.FieldsSeq(strings.TrimPrefix(s, ackPrefix)) {
				seq, err := strconv.ParseUint(f, 10, 64)
				if err != nil && lineErr == nil {
					lineErr = fmt.Errorf("bad line from the child: %q", s)
				}
				acked = append(acked, seq)
			}
		}
	})
	if err != nil {
		fail("start child: %v", err)
	}
	defer c.Stop(exitTimeout)
	if err := c.Await(ready, readyTimeout); err != nil {
		_ = c.Wait(exitTimeout)
		fail("%v\n%s", err, c.Diagnostics())
	}
	if err := c.KillAfter(delay, exitTimeout); err != nil {
		fail("%v\n%s", err, c.Diagnostics())
	}
	// The child has exited and onLine returned for the last time.
	if lineErr != nil {
		fail("%v", lineErr)
	}
	return acked
}

// finalRun runs the flow in this process until it has committed the
// stream's last event, and returns the number of its dead letters.
func finalRun(journal, sink string) (int, error) {
	l, err := eventlog.Open(journal, &eventlog.Options{LockTimeout: 10 * time.Second})
	if err != nil {
		return 0, fmt.Errorf("open journal: %w", err)
	}
	run := func() (int, error) {
		rt, err := runtime.New(l, nil)
		if err != nil {
			return 0, err
		}
		if err := rt.Add(newFlow(runtime.FileSink(sink), 4, 20*time.Millisecond)); err != nil {
			return 0, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), catchUp)
		defer cancel()
		if err := rt.RunUntilIdle(ctx); err != nil {
			return 0, fmt.Errorf("run until idle: %w", err)
		}
		dls, err := consumer.DeadLetters(l, streamName, flowName, consumer.Range{})
		return len(dls), err
	}
	dls, err := run()
	if cerr := l.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close journal: %w", cerr))
	}
	return dls, err
}

// journalEvent is what the verifier keeps of an event of the stream.
type journalEvent struct {
	id      string
	typ     string
	data    eventData
	matched bool
}

// runReport is what the verifier saw of one run of the flow: a killed
// child, or the final run.
type runReport struct {
	lines     int    // lines the file gained
	committed uint64 // the flow's committed offset after the run
	last      uint64 // the stream's last sequence after the run
}

// verifier follows the journal and the sink file across the runs.
//
// Runs are numbered from 1; the final run is the last. After run k the
// verifier reads the journal as the next process would (the flow's
// committed offset C(k), and the events appended since run k-1) and the
// lines the file gained during run k, and checks:
//
//   - every event the child reported appended is in the journal;
//   - every line is a whole JSON delivery of the flow, of an event that is
//     in the journal with that ID, type and data and that the flow matches;
//   - no event is delivered twice within run k (one process, a sink that
//     does not fail: no retry);
//   - no event at or below C(k-1) is delivered in run k. A run's consumer
//     resumes after the offset committed before it started, and nothing
//     else moves that offset between the runs: so an event delivered in
//     two runs j < k lies above C(k-1), the floor at the kill that ended
//     run k-1. That is "only events after the last committed floor appear
//     twice", made precise;
//   - C(k-1) <= C(k) <= the stream's last sequence, and every matched
//     event at or below C(k) was delivered in some run up to k: the floor
//     never passes an event whose line is not in the file.
//
// Lines are attributed to runs by the file's length between the runs. A
// kill can in principle cut the line being written (the kernel checks for
// a fatal signal between the pages of a write), so the verifier stops at
// the end of the last whole line and reads on from there after the next
// run: a cut tail that the next run left in place, or wrote after, shows
// up as a line that does not parse. After the final run the file must end
// with a whole line.
type verifier struct {
	journal, sink string

	events    []journalEvent   // by sequence - 1: the stream's events so far
	delivered map[uint64][]int // sequence -> the runs whose lines deliver it
	committed uint64           // C(k-1)
	fileOff   int64            // the end of the last whole line read
	tail      int              // bytes after it: a line cut by the last kill
	tornTails int              // kills that cut a line
	acked     int              // events the children reported appended
	lines     int              // whole lines read
	runs      []runReport
}

// afterRun checks what run k left: acked are the sequences the child
// reported appended.
func (v *verifier) afterRun(k int, acked []uint64) error {
	committed, err := v.readJournal()
	if err != nil {
		return err
	}
	for _, s := range acked {
		if s == 0 || s > uint64(len(v.events)) {
			return fmt.Errorf("the append of event %d returned nil, but the stream ends at %d", s, len(v.events))
		}
		if c := v.events[s-1].data.Cycle; c != k {
			return fmt.Errorf("the append of event %d returned nil in run %d, but the journal has the event of run %d there", s, k, c)
		}
	}
	v.acked += len(acked)

	lines, err := v.readSink()
	if err != nil {
		return err
	}
	inRun := map[uint64]bool{}
	for _, ln := range lines {
		s := ln.Source.Seq
		if err := v.checkLine(ln); err != nil {
			return err
		}
		if s <= v.committed {
			return fmt.Errorf("event %d delivered again in run %d, at or below the offset %d committed before the run (delivered before in runs %v)",
				s, k, v.committed, v.delivered[s])
		}
		if inRun[s] {
			return fmt.Errorf("event %d delivered twice in run %d", s, k)
		}
		inRun[s] = true
		v.delivered[s] = append(v.delivered[s], k)
	}

	last := uint64(len(v.events))
	if committed < v.committed {
		return fmt.Errorf("the committed offset moved back from %d to %d", v.committed, committed)
	}
	if committed > last {
		return fmt.Errorf("the committed offset %d is beyond the stream's last sequence %d", committed, last)
	}
	for s := v.committed + 1; s <= committed; s++ {
		if v.events[s-1].matched && len(v.delivered[s]) == 0 {
			return fmt.Errorf("matched event %d is at or below the committed offset %d but is not in the file", s, committed)
		}
	}
	v.committed = committed
	v.runs = append(v.runs, runReport{lines: len(lines), committed: committed, last: last})
	return nil
}

// readJournal opens the journal as a restarted process would, reads the
// events appended since the last call and returns the flow's committed
// offset.
func (v *verifier) readJournal() (committed uint64, err error) {
	l, err := eventlog.Open(v.journal, &eventlog.Options{LockTimeout: 10 * time.Second})
	if err != nil {
		return 0, fmt.Errorf("reopen the journal: %w", err)
	}
	defer func() {
		if cerr := l.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close the journal: %w", cerr))
		}
	}()
	for e, err := range l.Scan(streamName, uint64(len(v.events))+1, 0) {
		if err != nil {
			return 0, fmt.Errorf("scan %s: %w", streamName, err)
		}
		if e.Seq != uint64(len(v.events))+1 {
			return 0, fmt.Errorf("scan %s: event %d after %d", streamName, e.Seq, len(v.events))
		}
		var d eventData
		if err := decodeStrict(e.Data, &d); err != nil {
			return 0, fmt.Errorf("event %d: data %s: %w", e.Seq, e.Data, err)
		}
		v.events = append(v.events, journalEvent{id: e.ID.String(), typ: e.Type, data: d, matched: matches(e.Type, d)})
	}
	committed, _, err = l.Offset(streamName, flowName)
	if err != nil {
		return 0, fmt.Errorf("read the flow's offset: %w", err)
	}
	dls, err := consumer.DeadLetters(l, streamName, flowName, consumer.Range{})
	if err != nil {
		return 0, fmt.Errorf("read the flow's dead letters: %w", err)
	}
	if len(dls) > 0 {
		return 0, fmt.Errorf("%d events dead-lettered, the first %d (%s); none may be", len(dls), dls[0].Seq, dls[0].LastError)
	}
	return committed, nil
}

// deliveryLine is a line of the sink file (runtime.Delivery.MarshalJSON).
type deliveryLine struct {
	ID     string `json:"id"`
	Flow   string `json:"flow"`
	Part   string `json:"part"`
	Source struct {
		Stream  string            `json:"stream"`
		Seq     uint64            `json:"seq"`
		ID      string            `json:"id"`
		Type    string            `json:"type"`
		Key     string            `json:"key"`
		Time    time.Time         `json:"time"`
		Headers map[string]string `json:"headers"`
	} `json:"source"`
	Data json.RawMessage `json:"data"`
}

// readSink returns the whole lines the file gained since the last call.
func (v *verifier) readSink() ([]deliveryLine, error) {
	b, err := readFrom(v.sink, v.fileOff)
	if err != nil {
		return nil, err
	}
	whole := bytes.LastIndexByte(b, '\n') + 1
	if tail := len(b) - whole; tail > 0 && (whole > 0 || tail != v.tail) {
		v.tornTails++ // a new cut line, not the last one still there
	}
	v.tail = len(b) - whole
	var out []deliveryLine
	for off := 0; off < whole; {
		n := bytes.IndexByte(b[off:], '\n')
		line := b[off : off+n]
		var d deliveryLine
		if err := decodeStrict(line, &d); err != nil {
			// A line cut by a kill and continued by the next run, for
			// example.
			return nil, fmt.Errorf("%s: the line at offset %d is not a whole delivery (%v): %.300q", v.sink, v.fileOff+int64(off), err, line)
		}
		out = append(out, d)
		off += n + 1
	}
	v.fileOff += int64(whole)
	v.lines += len(out)
	return out, nil
}

// readFrom returns the file's bytes from off on; a missing file is empty.
func readFrom(path string, off int64) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) && off == 0 {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() < off {
		return nil, fmt.Errorf("%s: the file shrank to %d bytes, below its %d bytes of whole lines", path, fi.Size(), off)
	}
	b := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

// checkLine checks a line against the journal.
func (v *verifier) checkLine(d deliveryLine) error {
	s := d.Source.Seq
	if s == 0 || s > uint64(len(v.events)) {
		return fmt.Errorf("a line delivers event %d, beyond the stream's last sequence %d", s, len(v.events))
	}
	e := v.events[s-1]
	var data eventData
	err := decodeStrict(d.Data, &data)
	switch {
	case d.Flow != flowName || d.Part != "" || d.Source.Stream != streamName:
		return fmt.Errorf("the line of event %d: flow %q, part %q, stream %q", s, d.Flow, d.Part, d.Source.Stream)
	case d.ID != e.id || d.Source.ID != e.id || d.Source.Type != e.typ:
		return fmt.Errorf("the line of event %d: id %q, source id %q, type %q; the journal has id %q, type %q", s, d.ID, d.Source.ID, d.Source.Type, e.id, e.typ)
	case err != nil || data != e.data:
		return fmt.Errorf("the line of event %d: data %s (%v); the journal has %+v", s, d.Data, err, e.data)
	case !e.matched:
		return fmt.Errorf("event %d (%s, amount %d) is in the file, but the flow does not match it", s, e.typ, e.data.Amount)
	}
	return nil
}

// complete checks the end state, after the final run: the flow committed
// the whole stream, every matched event is in the file, and the file ends
// with a whole line.
func (v *verifier) complete() error {
	last := uint64(len(v.events))
	if v.committed != last {
		return fmt.Errorf("the committed offset is %d, the stream's last sequence %d", v.committed, last)
	}
	if v.tail > 0 {
		return fmt.Errorf("%s ends with %d bytes of a line cut by a kill", v.sink, v.tail)
	}
	for s := uint64(1); s <= last; s++ {
		if v.events[s-1].matched && len(v.delivered[s]) == 0 {
			return fmt.Errorf("matched event %d (%+v) is not in the file", s, v.events[s-1].data)
		}
	}
	return nil
}

// summary is what the log reports.
type summary struct {
	matched, duplicates, maxCopies, noCommit int
}

func (v *verifier) summary() summary {
	var s summary
	for _, e := range v.events {
		if e.matched {
			s.matched++
		}
	}
	for _, runs := range v.delivered {
		if len(runs) > 1 {
			s.duplicates++
		}
		s.maxCopies = max(s.maxCopies, len(runs))
	}
	var prev uint64
	for _, r := range v.runs[:len(v.runs)-1] {
		if r.committed == prev {
			s.noCommit++
		}
		prev = r.committed
	}
	return s
}

// decodeStrict decodes JSON into v, refusing unknown fields and trailing
// data.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}
