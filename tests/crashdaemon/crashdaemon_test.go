// Package crashdaemon_test tells the whole story through the flowrt
// binary: `flowrt run --http` runs a flow delivering into a file sink,
// events arrive over HTTP and through `flowrt append`, and the daemon is
// killed with SIGKILL at random moments and started again, many times.
//
// Each cycle starts `flowrt run --http 127.0.0.1:0 --log-format json`,
// waits for it to log "running" and for its discovery file (<db>.http) to
// name it, reads its run ID from /readyz, and starts two producers: one
// POSTs batches to /v1/streams/events/events with an Idempotency-Key, the
// other runs `flowrt append --json`, which finds the journal locked and
// appends through the daemon. Once the daemon acknowledged a batch, the
// cycle runs `flowrt dump --json --limit 5` and `flowrt dump system
// --json`, which also go through the daemon, and checks their output; then
// it kills the daemon a random moment later. A batch the kill cut is sent
// again, with the same idempotency keys, to the next daemon. After each
// kill `flowrt stat --json` reads the journal at rest, past the dead
// daemon's discovery file, and must see the killed run as crashed.
//
// At the end `flowrt run --until-idle` drains the flow, and the test
// checks that every acknowledged event is in the journal once, that every
// acknowledged event the flow matches is in the sink file at least once
// (and nothing else is), that `flowrt dump system --json` shows one
// recovery per kill, each naming the run killed before it, and that
// `flowrt check` passes. No flowrt process may write a panic, a fatal
// error or (built with -race, as it is when this test runs under -race) a
// data race to stderr.
//
// Every kill lands after the daemon is running: TestKillDuringStart kills
// daemons during their start, which today loses recoveries (see there).
//
// The default run (10 kills) is part of `go test ./...`; FLOWRT_CRASH_CYCLES
// sets the number of kills for a long run and FLOWRT_CRASH_SEED replays
// one's random choices (the timing of processes still varies):
//
//	FLOWRT_CRASH_CYCLES=100 go test -run TestCrashDaemon -count=1 -timeout 0 ./tests/crashdaemon/
package crashdaemon_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/flowrt/flowrt/internal/server"
)

const (
	defaultCycles = 10
	shortCycles   = 3
	maxKillDelay  = 400 * time.Millisecond // after the live dumps
	readyTimeout  = time.Minute            // from start to "running"
	ackTimeout    = time.Minute            // from "running" to the first acknowledged batch
	exitTimeout   = 30 * time.Second       // from SIGKILL to the exit; for the producers to stop
	drainTimeout  = 2 * time.Minute        // the final run --until-idle
	flowName      = "orders"
)

// flowsConfig is the flows config: one flow over "order.*" with a map
// step and a file sink, whose path is relative to the config's directory.
const flowsConfig = `version: 1
flows:
  - name: ` + flowName + `
    on:
      stream: ` + streamName + `
      types: "order.*"
    steps:
      - map: '{"key": key, "n": data.n, "batch": data.batch}'
    sinks:
      - file: {path: out/orders.jsonl}
    consumer: {workers: 4, commit_interval: 20ms}
`

// story is the state of one test run.
type story struct {
	t       *testing.T
	seed    int64 // the random choices' seed; 0 when the story makes none
	bin     string
	db      string
	config  string
	sink    string
	client  *http.Client
	ledger  *ledger
	runs    []string // the run ID of each cycle's daemon, from /readyz
	dumps   int      // live dumps checked
	started time.Time
}

func TestCrashDaemon(t *testing.T) {
	n := defaultCycles
	if testing.Short() {
		n = shortCycles
	}
	n = flowtest.Cycles(t, n)
	seed := flowtest.Seed(t)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6461656d6f6e))

	dir := t.TempDir()
	bin := flowrtBinary(t)
	s := &story{
		t:       t,
		seed:    seed,
		bin:     bin,
		db:      filepath.Join(dir, "journal.db"),
		config:  filepath.Join(dir, "flows.yaml"),
		sink:    filepath.Join(dir, "out", "orders.jsonl"),
		client:  &http.Client{Timeout: exitTimeout},
		ledger:  newLedger(),
		started: time.Now(),
	}
	defer s.client.CloseIdleConnections()
	if err := os.WriteFile(s.config, []byte(flowsConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	for c := 1; c <= n; c++ {
		delay := time.Duration(rng.Int64N(int64(maxKillDelay)))
		s.cycle(c, n, delay, rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64())))
	}
	cyclesTook := time.Since(s.started)
	s.drain(n)
	s.verify(n)
	st := s.ledger.stats
	t.Logf("%d kills in %v (seed %d): acknowledged %d POSTs (%d events) and %d appends (%d events); "+
		"%d batches cut by a kill, %d of them acknowledged by a later daemon (%d events the cut attempt had appended); %d live dumps",
		n, cyclesTook.Round(time.Millisecond), seed, st.posts, st.ackedHTTP, st.appends, st.ackedAppend,
		st.cut, st.retried, st.retriedDuplicates, s.dumps)
}

// fatalf fails the test, saying how to repeat the run.
func (s *story) fatalf(format string, args ...any) {
	s.t.Helper()
	if s.seed == 0 {
		s.t.Fatalf(format, args...)
	}
	s.t.Fatalf("seed %d (%s=%d repeats the choices): %s", s.seed, flowtest.SeedEnv, s.seed, fmt.Sprintf(format, args...))
}

// cycle runs one daemon: it starts it, produces into it, dumps through
// it, and kills it delay after the dumps.
func (s *story) cycle(c, n int, delay time.Duration, rng *rand.Rand) {
	s.t.Helper()
	where := fmt.Sprintf("cycle %d of %d (kill %v after the dumps)", c, n, delay)
	d, err := startDaemon(s.bin, s.db, s.config)
	if err != nil {
		s.fatalf("%s: %v", where, err)
	}
	defer d.stop(exitTimeout)
	addr, err := d.awaitRunning(s.db, readyTimeout)
	if err != nil {
		s.fatalf("%s: %v\n%s", where, err, d.diagnostics())
	}
	base := "http://" + addr
	var ready server.Health
	if err := getJSON(s.client, base+"/readyz", &ready); err != nil || ready.Run == "" {
		s.fatalf("%s: /readyz: %+v, %v\n%s", where, ready, err, d.diagnostics())
	}
	s.runs = append(s.runs, ready.Run)

	run := &cycleRun{
		cycle: c, bin: s.bin, db: s.db, base: base, client: s.client, ledger: s.ledger,
		stopping: make(chan struct{}), firstAck: make(chan struct{}),
	}
	var wg sync.WaitGroup
	for _, via := range []string{viaHTTP, viaAppend} {
		prng := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
		wg.Go(func() { run.produce(prng, via) })
	}
	producersDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(producersDone)
	}()
	// stopProducers stops the producers and waits for them, on every path
	// out: they end once their request or append run is answered.
	stopProducers := sync.OnceValue(func() error {
		close(run.stopping)
		t := time.NewTimer(exitTimeout)
		defer t.Stop()
		select {
		case <-producersDone:
			return nil
		case <-t.C:
			return fmt.Errorf("the producers did not stop within %v", exitTimeout)
		}
	})
	defer stopProducers() // before d.stop: the daemon answers meanwhile

	ackWait := time.NewTimer(ackTimeout)
	defer ackWait.Stop()
	select {
	case <-run.firstAck:
	case <-producersDone:
		s.fatalf("%s: the producers stopped before the daemon acknowledged anything: %v\n%s", where, run.failure(), d.diagnostics())
	case <-ackWait.C:
		s.fatalf("%s: nothing acknowledged within %v: %v\n%s", where, ackTimeout, run.failure(), d.diagnostics())
	}
	if err := s.liveDumps(c, ready.Run); err != nil {
		s.fatalf("%s: while the daemon ran: %v\n%s", where, err, d.diagnostics())
	}

	kill := time.NewTimer(delay)
	defer kill.Stop()
	select {
	case <-kill.C:
	case <-producersDone:
		s.fatalf("%s: the producers stopped before the kill: %v\n%s", where, run.failure(), d.diagnostics())
	}
	run.killed.Store(true)
	killErr := d.kill(exitTimeout)
	if err := errors.Join(killErr, stopProducers()); err != nil {
		s.fatalf("%s: %v\n%s", where, err, d.diagnostics())
	}
	if err := run.failure(); err != nil {
		s.fatalf("%s: %v\n%s", where, err, d.diagnostics())
	}
	if err := s.statAtRest(c, ready.Run); err != nil {
		s.fatalf("%s: after the kill: %v", where, err)
	}
}

// liveDumps runs `flowrt dump` and `flowrt dump system` against the
// journal the daemon of cycle c, run run, holds, and checks what they
// print: the stream's first events, and every run so far, the last this
// one, unended, recovering the one before.
func (s *story) liveDumps(c int, run string) error {
	r := flowrtCmd(s.bin, cmdTimeout, nil, "dump", "--db", s.db, "--stream", streamName, "--json", "--limit", "5")
	if !r.ok() || problem(string(r.stderr)) != "" {
		return fmt.Errorf("dump: %s", r)
	}
	lines := 0
	sc := bufio.NewScanner(bytes.NewReader(r.stdout))
	for sc.Scan() {
		lines++
		var ev struct {
			Stream string    `json:"stream"`
			Seq    uint64    `json:"seq"`
			ID     string    `json:"id"`
			Type   string    `json:"type"`
			Key    string    `json:"key"`
			Data   eventData `json:"data"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("dump printed %q: %v", sc.Bytes(), err)
		}
		sent := s.ledger.lookup(ev.ID)
		if ev.Stream != streamName || ev.Seq != uint64(lines) || sent == nil || sent.typ != ev.Type || sent.key != ev.Key ||
			ev.Data != (eventData{N: sent.n, Batch: sent.batch}) {
			return fmt.Errorf("dump printed %q as event %d; sent %+v", sc.Bytes(), lines, sent)
		}
	}
	if lines == 0 || lines > 5 {
		return fmt.Errorf("dump --limit 5 printed %d events after an acknowledged one: %s", lines, r)
	}
	s.dumps++

	runs, err := s.dumpSystem()
	if err != nil {
		return err
	}
	if len(runs) != retained(c) {
		return fmt.Errorf("dump system shows %d runs in cycle %d", len(runs), c)
	}
	last := runs[len(runs)-1]
	if last.ID != run || last.End != "running" || last.Crashed {
		return fmt.Errorf("dump system shows the running run as %+v, want %s running and not crashed", last, run)
	}
	if c > 1 && (last.Recovery == nil || last.Recovery.CrashedRun != s.runs[c-2]) {
		return fmt.Errorf("dump system: run %s recovered %+v, want the run killed before, %s", run, last.Recovery, s.runs[c-2])
	}
	s.dumps++
	return nil
}

// statAtRest runs `flowrt stat --json` after the kill of cycle c: the
// dead daemon's discovery file is still there, the journal is not locked,
// so stat reads it at rest, and sees the killed run as crashed.
func (s *story) statAtRest(c int, run string) error {
	r := flowrtCmd(s.bin, cmdTimeout, nil, "stat", "--db", s.db, "--json")
	if !r.ok() || problem(string(r.stderr)) != "" {
		return fmt.Errorf("stat: %s", r)
	}
	var st struct {
		Live        *json.RawMessage `json:"live"`
		Runs        int              `json:"runs"`
		CrashedRuns int              `json:"crashed_runs"`
		LastRun     *struct {
			ID      string `json:"id"`
			Ended   bool   `json:"ended"`
			Crashed bool   `json:"crashed"`
		} `json:"last_run"`
	}
	if err := json.Unmarshal(r.stdout, &st); err != nil {
		return fmt.Errorf("stat --json: %v: %s", err, r)
	}
	if st.Live != nil || st.Runs != retained(c) || st.CrashedRuns != retained(c) || st.LastRun == nil ||
		st.LastRun.ID != run || st.LastRun.Ended || !st.LastRun.Crashed {
		return fmt.Errorf("stat --json after kill %d of run %s: %s", c, run, r.stdout)
	}
	return nil
}

// lookup returns the event sent with ID id, or nil.
func (l *ledger) lookup(id string) *sentEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byID[id]
}
