// Package crashstate_test kills a process running stateful flows with
// SIGKILL at random moments and checks that flow state is effectively once
// (docs/STATE.md): after every kill, each key's committed state is exactly
// one application of every event at or below the flow's committed floor.
//
// The child process appends events with keys k0..k15 to a stream from
// several goroutines while a runtime runs two flows over it: counts
// (runtime.Reduce count per key, four workers, a step after the reduce
// and a sink that can fail at random, so retries must not count twice) and
// sums (a filter, then a sum of data.amount per key, one or four workers,
// scheduled snapshots, and a state version that changes now and then, so
// the state is rebuilt). The parent kills the child a random moment after
// its first delivery, or early, while it starts (and perhaps rebuilds);
// some runs instead stop cleanly, perhaps killed in the middle of the
// stop. After each run the parent opens the journal read-only, as the
// next process would, and compares each flow's committed state with the
// events at or below its committed offset (plus those a clean stop
// recorded done above it), key by key, exactly; and every snapshot with
// the events at or below its floor. A final clean run in the parent, with
// failures, processes everything: every key's count then equals the
// number of its events, exactly.
//
// The short run is part of `go test ./...`; FLOWRT_CRASH_CYCLES sets the
// number of cycles for a long run and FLOWRT_CRASH_SEED replays one:
//
//	FLOWRT_CRASH_CYCLES=300 go test -run TestCrashState -count=1 -timeout 0 ./tests/crashstate/
//
// The children fail at random (retry records carried over a crash or a
// clean stop), state versions go back and forth (1, 2, 1, …, rebuilds
// from snapshots), and snapshots are taken around clean stops:
// regressions_test.go holds a deterministic test of each bug these found.
package crashstate_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/flowrt/flowrt/runtime"
	"github.com/flowrt/flowrt/supervisor"
)

const (
	shortCycles  = 20               // the default run
	readyTimeout = time.Minute      // from start to the child's line awaited
	exitTimeout  = 30 * time.Second // from SIGKILL (or a clean stop) to the child's exit
	maxKillDelay = 300 * time.Millisecond
	maxEarlyKill = 40 * time.Millisecond  // kill delay after startedLine
	maxStopAfter = 150 * time.Millisecond // clean stop delay after readyLine
	catchUp      = time.Minute            // the final run

)

// ending is how a child's run ends.
type ending int

const (
	killRunning ending = iota // SIGKILL a random moment after the first delivery
	killEarly                 // SIGKILL a random moment after the journal opened
	cleanStop                 // the child stops cleanly
	killStop                  // the child stops cleanly, and is killed a random moment after the stop began
	numEndings
)

func (e ending) String() string {
	return [...]string{"kill while running", "kill while starting", "clean stop", "kill while stopping"}[e]
}

// TestChildProcess is the child the crash test starts; it is skipped in a
// normal run.
func TestChildProcess(t *testing.T) {
	flowtest.RunChild(t, childMaxLife, runChild)
}

func TestCrashState(t *testing.T) {
	n := shortCycles
	if testing.Short() {
		n = shortCycles / 3
	}
	n = flowtest.Cycles(t, n)
	sd := flowtest.Seed(t)
	rng := rand.New(rand.NewPCG(uint64(sd), 0x7374617465))
	v := newVerifier(filepath.Join(t.TempDir(), "journal.db"))

	var endings [numEndings]int
	version := 1
	start := time.Now()
	for c := 1; c <= n; c++ {
		if rng.IntN(5) == 0 {
			version = 3 - version // back and forth: rebuilds from snapshots
		}
		end := []ending{killRunning, killRunning, killRunning, killRunning, killRunning, killRunning, killEarly, killEarly, cleanStop, killStop}[rng.IntN(10)]
		fc := flowConfig{
			Seed:           rng.Uint64(),
			CountsWorkers:  4,
			SumsWorkers:    []int{1, 4}[rng.IntN(2)],
			CommitInterval: []time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond}[rng.IntN(3)],
			CommitEvery:    []int{0, 7, 50}[rng.IntN(3)],
			SumsVersion:    version,
			SnapshotEvery:  []time.Duration{0, 15 * time.Millisecond, 40 * time.Millisecond}[rng.IntN(3)],
			FailRate:       []float64{0, 0.05, 0.05}[rng.IntN(3)],
			SlowRate:       []float64{0, 0.05, 0.2}[rng.IntN(3)],
			MaxWork:        5 * time.Millisecond,
		}
		cfg := childConfig{
			Journal: v.journal,
			Flows:   fc,
			Writers: 1 + rng.IntN(3),
			Produce: 150 + rng.IntN(250),
			Pace:    time.Millisecond + time.Duration(rng.Int64N(int64(4*time.Millisecond))),
		}
		var delay time.Duration
		switch end {
		case killRunning:
			delay = time.Duration(rng.Int64N(int64(maxKillDelay)))
		case killEarly:
			delay = time.Duration(rng.Int64N(int64(maxEarlyKill)))
		case cleanStop, killStop:
			cfg.StopAfter = time.Duration(rng.Int64N(int64(maxStopAfter)))
			delay = cfg.StopAfter + time.Duration(rng.Int64N(int64(20*time.Millisecond)))
		}
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("seed %d (rerun with %s=%d), cycle %d of %d (%v after %v; %+v): %s",
				sd, flowtest.SeedEnv, sd, c, n, end, delay, cfg, fmt.Sprintf(format, args...))
		}
		diag := runCycle(cfg, end, delay, fail)
		if err := v.afterRun(fc); err != nil {
			fail("%v\nthe runs before (cycle: ending; counts' offset; sums' offset, version):\n%s\nthis run's %s", err, v.history(8), diag)
		}
		v.record(fmt.Sprintf("%d: %v; %d; %d, %d", c, end, v.committed[countsFlow], v.committed[sumsFlow], fc.SumsVersion))
		endings[end]++
	}

	// The final run, in this process, processes every event.
	fc := flowConfig{Seed: rng.Uint64(), CountsWorkers: 4, SumsWorkers: 4, CommitInterval: 10 * time.Millisecond, SumsVersion: version, FailRate: 0.05}
	if err := finalRun(v.journal, fc); err != nil {
		t.Fatalf("seed %d: the final run: %v", sd, err)
	}
	if err := v.afterRun(fc); err != nil {
		t.Fatalf("seed %d: after the final run: %v", sd, err)
	}
	last := uint64(len(v.events))
	for _, flow := range []string{countsFlow, sumsFlow} {
		if v.committed[flow] != last {
			t.Fatalf("seed %d: after the final run %s committed %d of %d events", sd, flow, v.committed[flow], last)
		}
	}
	flowtest.MustCheck(t, v.journal)

	matching, total := 0, 0.0
	for _, e := range v.events {
		if e.match {
			matching++
		}
	}
	for _, n := range v.expected(countsFlow, last, nil) {
		total += n
	}
	vc := v.counts
	t.Logf("%d cycles in %v (seed %d; %v): %d events appended, %d of them counted (the final counts add up to %v); "+
		"%d exact state checks (%d with done markers above the floor), %d snapshots checked, %d rebuilds of sums, %d runs ended mid-rebuild, "+
		"%d runs left counts' offset where it was, at most %d counted events above counts' offset after a run",
		n, time.Since(start).Round(time.Millisecond), sd, endingSummary(endings), last, matching, total,
		vc.checks, vc.doneAbove, vc.snapshots, vc.rebuilds, vc.interrupted, vc.stalled, vc.maxAboveAtTheKill)
	if matching == 0 || vc.checks < n {
		t.Fatalf("seed %d: %d events counted, %d checks: nothing was tested", sd, matching, vc.checks)
	}
}

func endingSummary(endings [numEndings]int) string {
	var parts []string
	for e, k := range endings {
		parts = append(parts, fmt.Sprintf("%s %d", ending(e), k))
	}
	return strings.Join(parts, ", ")
}

// runCycle starts a child and ends it as end says, delay after the line
// it waits for, and returns the child's diagnostics. The child is killed
// on every path out.
func runCycle(cfg childConfig, end ending, delay time.Duration, fail func(string, ...any)) string {
	started, ready, stopped := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var once [3]sync.Once
	c, err := flowtest.StartChild("TestChildProcess", cfg, func(line []byte) {
		switch string(line) {
		case startedLine + "\n":
			once[0].Do(func() { close(started) })
		case readyLine + "\n":
			once[1].Do(func() { close(ready) })
		case stoppedLine + "\n":
			once[2].Do(func() { close(stopped) })
		}
	})
	if err != nil {
		fail("start child: %v", err)
	}
	defer c.Stop(exitTimeout)
	awaited := ready
	if end == killEarly {
		awaited = started
	}
	if err := c.Await(awaited, readyTimeout); err != nil {
		_ = c.Wait(exitTimeout)
		fail("%v\n%s", err, c.Diagnostics())
	}
	switch end {
	case killRunning, killEarly:
		if err := c.KillAfter(delay, exitTimeout); err != nil {
			fail("%v\n%s", err, c.Diagnostics())
		}
	case cleanStop:
		if err := c.Wait(exitTimeout); err != nil {
			fail("the clean stop: %v\n%s", err, c.Diagnostics())
		}
		select {
		case <-stopped:
		default:
			fail("the child exited without reporting its clean stop\n%s", c.Diagnostics())
		}
	case killStop:
		select {
		case <-c.Exited():
			if err := c.Wait(exitTimeout); err != nil {
				fail("the clean stop: %v\n%s", err, c.Diagnostics())
			}
		case <-time.After(delay):
			if err := c.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
				fail("kill child: %v", err)
			}
			// Killed, or exited on its own just before: either is fine,
			// anything else is not.
			if err := c.Wait(exitTimeout); err != nil && !strings.Contains(err.Error(), "killed") {
				fail("the stop: %v\n%s", err, c.Diagnostics())
			}
		}
	}
	return c.Diagnostics()
}

// finalRun runs the flows in this process until every event is
// committed.
func finalRun(journal string, fc flowConfig) error {
	l, err := eventlog.Open(journal, &eventlog.Options{LockTimeout: 10 * time.Second})
	if err != nil {
		return fmt.Errorf("open journal: %w", err)
	}
	run := func() error {
		rt, err := runtime.New(l, nil)
		if err != nil {
			return err
		}
		if err := rt.Add(newFlows(fc, nil)...); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), catchUp)
		defer cancel()
		if err := rt.RunUntilIdle(ctx); err != nil {
			return fmt.Errorf("run until idle: %w", err)
		}
		// RunUntilIdle counts a flow that failed for good as idle.
		for _, ch := range rt.Status().Children {
			if ch.State != supervisor.ChildStopped || ch.LastError != "" {
				return fmt.Errorf("flow %s ended %v, restarted %d times (last error: %q)", ch.Name, ch.State, ch.Restarts, ch.LastError)
			}
		}
		return nil
	}
	err = run()
	if cerr := l.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close journal: %w", cerr))
	}
	return err
}
