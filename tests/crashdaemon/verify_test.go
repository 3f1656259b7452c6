package crashdaemon_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/flowrt/flowrt/supervisor"
)

// keepRuns is how many runs $system keeps: supervisor.Options.KeepRuns's
// default, which flowrt run uses. A run of more kills sees only the last.
const keepRuns = 100

// retained returns how many of k runs $system keeps.
func retained(k int) int { return min(k, keepRuns) }

// drain sends the append batches the last kill cut with `flowrt append`
// on the journal at rest, counting them as acknowledged in cycle n+1, then
// runs `flowrt run --until-idle`, which recovers the last killed run and
// delivers every event left.
func (s *story) drain(n int) {
	s.t.Helper()
	s.ledger.mu.Lock()
	cut := s.ledger.retry[viaAppend]
	s.ledger.retry[viaAppend] = nil
	s.ledger.mu.Unlock()
	run := &cycleRun{bin: s.bin, db: s.db, ledger: s.ledger}
	for _, b := range cut {
		dups, err := run.appendRun(b)
		if err != nil {
			s.fatalf("append at rest: %v", err)
		}
		s.ledger.acked(b, n+1, true, dups)
	}
	r := flowrtCmd(s.bin, drainTimeout, nil, "run", "--db", s.db, "--config", s.config, "--until-idle", "--log-format", "json")
	if !r.ok() || problem(string(r.stderr)) != "" {
		s.fatalf("the final run: %s", r)
	}
}

// verify checks the journal, the sink file, $system and the journal's
// integrity after n kills and the final run.
func (s *story) verify(n int) {
	s.t.Helper()
	journal := s.verifyJournal()
	s.verifySink(journal)
	s.verifySystem(n)
	r := flowrtCmd(s.bin, cmdTimeout, nil, "check", "--db", s.db)
	if !r.ok() || !strings.Contains(string(r.stdout), "OK") {
		s.fatalf("check: %s", r)
	}
}

// journalEvent is one event of the stream as `flowrt dump --json` prints
// it.
type journalEvent struct {
	Stream string    `json:"stream"`
	Seq    uint64    `json:"seq"`
	ID     string    `json:"id"`
	Type   string    `json:"type"`
	Key    string    `json:"key"`
	Data   eventData `json:"data"`
}

// verifyJournal dumps the stream at rest and checks that its sequences
// are dense, that each event is one sent, once, as it was sent, and that
// every acknowledged event is there. It returns the events by ID.
func (s *story) verifyJournal() map[string]journalEvent {
	s.t.Helper()
	r := flowrtCmd(s.bin, cmdTimeout, nil, "dump", "--db", s.db, "--stream", streamName, "--json")
	if !r.ok() {
		s.fatalf("dump at rest: %s", r)
	}
	byID := map[string]journalEvent{}
	sc := bufio.NewScanner(bytes.NewReader(r.stdout))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev journalEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			s.fatalf("dump printed %q: %v", sc.Bytes(), err)
		}
		if want := uint64(len(byID) + 1); ev.Seq != want {
			s.fatalf("journal: seq %d where %d was next: %q", ev.Seq, want, sc.Bytes())
		}
		if _, dup := byID[ev.ID]; dup {
			s.fatalf("journal: ID %s appended twice (again at seq %d)", ev.ID, ev.Seq)
		}
		sent := s.ledger.lookup(ev.ID)
		if sent == nil || ev.Stream != streamName || ev.Type != sent.typ || ev.Key != sent.key ||
			ev.Data != (eventData{N: sent.n, Batch: sent.batch}) {
			s.fatalf("journal: %q, sent as %+v", sc.Bytes(), sent)
		}
		byID[ev.ID] = ev
	}
	if err := sc.Err(); err != nil {
		s.fatalf("read dump: %v", err)
	}
	s.ledger.mu.Lock()
	defer s.ledger.mu.Unlock()
	for id, ev := range s.ledger.byID {
		if _, ok := byID[id]; ev.acked > 0 && !ok {
			s.fatalf("journal: event %s (%+v), acknowledged by the daemon of cycle %d, is missing", id, *ev, ev.acked)
		}
	}
	return byID
}

// delivery is one line of the sink file: runtime.Delivery's JSON form,
// with the map step's payload.
type delivery struct {
	ID     string `json:"id"`
	Flow   string `json:"flow"`
	Source struct {
		Stream string `json:"stream"`
		Seq    uint64 `json:"seq"`
		ID     string `json:"id"`
		Type   string `json:"type"`
		Key    string `json:"key"`
	} `json:"source"`
	Data struct {
		Key   string `json:"key"`
		N     int    `json:"n"`
		Batch string `json:"batch"`
	} `json:"data"`
}

// verifySink checks that every line of the sink file is a whole delivery
// of an event of the journal that the flow matches, mapped, and that every
// such event is there at least once. All were delivered: the final run
// ran until idle; and every acknowledged one is in the journal.
func (s *story) verifySink(journal map[string]journalEvent) {
	s.t.Helper()
	b, err := os.ReadFile(s.sink)
	if err != nil {
		s.fatalf("read the sink file: %v", err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		s.fatalf("the sink file ends in a partial line: %q", tail(b))
	}
	copies := map[string]int{}
	lines := 0
	for line := range bytes.Lines(b) {
		lines++
		var d delivery
		if err := json.Unmarshal(line, &d); err != nil {
			s.fatalf("sink line %d: %q: %v", lines, line, err)
		}
		ev, ok := journal[d.Source.ID]
		if !ok || d.Flow != flowName || !matched(ev.Type) || d.Source.Stream != streamName || d.Source.Seq != ev.Seq ||
			d.Source.Type != ev.Type || d.Source.Key != ev.Key ||
			d.Data.Key != ev.Key || d.Data.N != ev.Data.N || d.Data.Batch != ev.Data.Batch {
			s.fatalf("sink line %d: %q, for the journal's event %+v (in the journal: %v)", lines, line, ev, ok)
		}
		copies[d.Source.ID]++
	}
	matchedEvents, again, maxCopies, ackedMatched := 0, 0, 0, 0
	for id, ev := range journal {
		if !matched(ev.Type) {
			continue
		}
		matchedEvents++
		k := copies[id]
		if k == 0 {
			s.fatalf("sink: event %+v, matched by the flow, is not in the sink file (acknowledged in cycle %d)", ev, s.ledger.lookup(id).acked)
		}
		if k > 1 {
			again++
		}
		maxCopies = max(maxCopies, k)
		if s.ledger.lookup(id).acked > 0 {
			ackedMatched++
		}
	}
	if ackedMatched == 0 {
		s.fatalf("no acknowledged event matched the flow: nothing was tested")
	}
	s.t.Logf("journal: %d events, %d matched by the flow (%d acknowledged); sink: %d lines, %d events delivered more than once (at most %d times)",
		len(journal), matchedEvents, ackedMatched, lines, again, maxCopies)
}

// wireRun is one line of `flowrt dump system --json`.
type wireRun struct {
	ID       string `json:"id"`
	End      string `json:"end"`
	Crashed  bool   `json:"crashed"`
	Recovery *struct {
		Run        string `json:"run"`
		CrashedRun string `json:"crashed_run"`
		LastState  string `json:"last_state"`
	} `json:"recovery"`
}

// dumpSystem runs `flowrt dump system --json` and returns its runs.
func (s *story) dumpSystem() ([]wireRun, error) {
	r := flowrtCmd(s.bin, cmdTimeout, nil, "dump", "system", "--db", s.db, "--json")
	if !r.ok() || problem(string(r.stderr)) != "" {
		return nil, fmt.Errorf("dump system: %s", r)
	}
	var runs []wireRun
	sc := bufio.NewScanner(bytes.NewReader(r.stdout))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var run wireRun
		if err := json.Unmarshal(sc.Bytes(), &run); err != nil {
			return nil, fmt.Errorf("dump system printed %q: %v", sc.Bytes(), err)
		}
		runs = append(runs, run)
	}
	return runs, sc.Err()
}

// verifySystem checks `flowrt dump system --json` after n kills and the
// final run: the runs of the cycles, in order, each crashed and recovered
// by the next, and the final run stopped; one recovery per kill; and as
// many supervisor.recovery events in $system.
func (s *story) verifySystem(n int) {
	s.t.Helper()
	runs, err := s.dumpSystem()
	if err != nil {
		s.fatalf("%v", err)
	}
	want := retained(n + 1)
	if len(runs) != want {
		s.fatalf("dump system: %d runs after %d kills and the final run, want %d", len(runs), n, want)
	}
	ids := slices.Concat(s.runs[len(s.runs)-(want-1):], []string{runs[want-1].ID})
	recoveries := 0
	for i, r := range runs {
		if r.ID != ids[i] {
			s.fatalf("dump system: run %d is %s, want %s", i+1, r.ID, ids[i])
		}
		if r.Recovery != nil {
			recoveries++
		}
		if i == len(runs)-1 {
			if r.End != "stopped" || r.Crashed || r.Recovery == nil || r.Recovery.CrashedRun != s.runs[n-1] {
				s.fatalf("dump system: the final run is %+v (recovery %+v), want stopped after recovering %s", r, r.Recovery, s.runs[n-1])
			}
			continue
		}
		// A run killed while starting has recorded its start and the
		// recovery of the run before it together: it ends recovering.
		if !r.Crashed || (r.End != "running" && r.End != "recovering") {
			s.fatalf("dump system: killed run %s is %+v, want crashed while running or recovering", r.ID, r)
		}
		if next := runs[i+1]; next.Recovery == nil || next.Recovery.CrashedRun != r.ID ||
			next.Recovery.Run != next.ID || next.Recovery.LastState != r.End {
			s.fatalf("dump system: run %s, after killed run %s, recovered %+v", next.ID, r.ID, next.Recovery)
		}
	}
	wantRecoveries := n // a kill per cycle, each recovered by the next run
	if n+1 > keepRuns {
		wantRecoveries = want // the first run, which recovered nothing, is gone
	}
	if recoveries != wantRecoveries {
		s.fatalf("dump system: %d recoveries after %d kills, want %d", recoveries, n, wantRecoveries)
	}

	r := flowrtCmd(s.bin, cmdTimeout, nil, "dump", "--db", s.db, "--stream", supervisor.SystemStream, "--type", supervisor.TypeRecovery, "--json")
	if !r.ok() {
		s.fatalf("dump $system: %s", r)
	}
	if events := bytes.Count(r.stdout, []byte("\n")); events != wantRecoveries {
		s.fatalf("$system holds %d %s events after %d kills, want %d", events, supervisor.TypeRecovery, n, wantRecoveries)
	}
}
