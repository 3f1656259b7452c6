// Package crashconsumer_test kills a process running a consumer with
// SIGKILL at random moments and checks the consumer's promises across the
// crashes (docs/GUARANTEES.md): the committed floor never passes work not
// done, nothing at or below it is delivered again, and every event is
// processed at least once.
//
// The child's handler appends each event's sequence to a file and fsyncs
// it before acking, so "processed" survives the kill. After each kill the
// parent reopens the journal, reads the committed offset and checks it
// against everything processed so far. A final clean run catches up.
//
// The short run is part of `go test ./...`; FLOWRT_CRASH_CYCLES sets the
// number of cycles for a long run and FLOWRT_CRASH_SEED replays one.
package crashconsumer_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/stretchr/testify/require"
)

const (
	shortCycles  = 20 // the default run
	streamName   = "events"
	consumerName = "crash"

	readyTimeout = time.Minute      // from start to the child's readyLine
	exitTimeout  = 30 * time.Second // from SIGKILL to the child's exit
	maxKillDelay = 250 * time.Millisecond
	catchUp      = time.Minute // the final clean run
)

// TestChildProcess is the child the crash test starts; it is skipped in a
// normal run.
func TestChildProcess(t *testing.T) {
	flowtest.RunChild(t, childMaxLife, runChild)
}

// cycleReport is what one cycle did.
type cycleReport struct {
	delay       time.Duration // kill delay after the child was ready
	processed   int           // events the handler made durable
	redelivered int           // of those, events processed in an earlier cycle
	committed   uint64        // the offset after the kill
	last        uint64        // the stream's last sequence after the kill
}

func TestConsumerCrash(t *testing.T) {
	n := shortCycles
	if testing.Short() {
		n = shortCycles / 4
	}
	n = flowtest.Cycles(t, n)
	sd := flowtest.Seed(t)
	rng := rand.New(rand.NewPCG(uint64(sd), 0x636f6e73756d6572))
	dir := t.TempDir()
	path := filepath.Join(dir, "journal.db")

	processedIn := map[uint64][]int{} // seq -> cycles that processed it; n+1 is the final run
	var reports []cycleReport
	var offset uint64 // committed before the current cycle
	start := time.Now()
	for c := 1; c <= n; c++ {
		cfg := childConfig{
			Journal:        path,
			Processed:      filepath.Join(dir, fmt.Sprintf("processed-%04d", c)),
			Seed:           rng.Uint64(),
			Produce:        20 + rng.IntN(300),
			CommitInterval: []time.Duration{2 * time.Millisecond, 20 * time.Millisecond, 100 * time.Millisecond}[rng.IntN(3)],
			CommitEvery:    []int{0, 7, 50}[rng.IntN(3)],
			FailRate:       []float64{0, 0.05}[rng.IntN(2)],
			SlowRate:       []float64{0, 0.1, 0.5}[rng.IntN(3)],
			MaxWork:        20 * time.Millisecond,
		}
		delay := time.Duration(rng.Int64N(int64(maxKillDelay)))
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("seed %d (rerun with %s=%d), cycle %d of %d, kill %v after ready: %s",
				sd, flowtest.SeedEnv, sd, c, n, delay, fmt.Sprintf(format, args...))
		}
		runCycle(t, cfg, delay, fail)

		committed, last := readOffset(t, path)
		seqs, err := readProcessed(cfg.Processed)
		if err != nil {
			fail("%v", err)
		}
		rep := cycleReport{delay: delay, processed: len(seqs), committed: committed, last: last}
		if committed < offset {
			fail("committed offset moved back from %d to %d", offset, committed)
		}
		if committed > last {
			fail("committed offset %d beyond the stream's last sequence %d", committed, last)
		}
		seen := map[uint64]bool{}
		for _, s := range seqs {
			switch {
			case s <= offset:
				fail("event %d processed again, at or below the offset %d committed before this cycle (cycles %v before)", s, offset, processedIn[s])
			case s > last:
				fail("event %d processed, beyond the stream's last sequence %d", s, last)
			case seen[s]:
				fail("event %d processed twice in one run without a crash between", s)
			}
			seen[s] = true
			if len(processedIn[s]) > 0 {
				rep.redelivered++
			}
			processedIn[s] = append(processedIn[s], c)
		}
		// The floor never ran ahead of processed work.
		for s := uint64(1); s <= committed; s++ {
			if len(processedIn[s]) == 0 {
				fail("event %d is at or below the committed offset %d but was never processed", s, committed)
			}
		}
		reports = append(reports, rep)
		offset = committed
	}

	// A final clean run catches up: every event is then processed.
	l := flowtest.MustOpenLogAt(t, path, nil)
	si, err := l.Info(streamName)
	require.NoError(t, err)
	var mu sync.Mutex
	var final []uint64
	r, err := consumer.Open(l, streamName, consumerName, &consumer.Options{Workers: 4})
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() {
		errc <- r.Run(context.Background(), func(_ context.Context, e eventlog.Event) error {
			mu.Lock()
			final = append(final, e.Seq)
			mu.Unlock()
			return nil
		})
	}()
	deadline := time.Now().Add(catchUp)
	for r.Stats().Floor < si.Last {
		if time.Now().After(deadline) {
			_ = r.Close()
			t.Fatalf("seed %d: the final run did not catch up within %v: floor %d of %d", sd, catchUp, r.Stats().Floor, si.Last)
		}
		select {
		case err := <-errc:
			t.Fatalf("seed %d: the final run stopped: %v", sd, err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), catchUp)
	defer cancel()
	require.NoError(t, r.Shutdown(ctx))
	require.ErrorIs(t, <-errc, consumer.ErrClosed)
	committed, _, err := l.Offset(streamName, consumerName)
	require.NoError(t, err)
	require.Equal(t, si.Last, committed, "seed %d: offset after the final run", sd)
	dls, err := consumer.DeadLetters(l, streamName, consumerName, consumer.Range{})
	require.NoError(t, err)
	require.Empty(t, dls, "seed %d: no event may be dead-lettered", sd)

	slices.Sort(final)
	for i, s := range final {
		require.Greater(t, s, offset, "seed %d: the final run delivered event %d, at or below the offset %d", sd, s, offset)
		require.True(t, i == 0 || final[i-1] != s, "seed %d: the final run delivered event %d twice", sd, s)
		processedIn[s] = append(processedIn[s], n+1)
	}
	duplicates := 0
	for s := uint64(1); s <= si.Last; s++ {
		cs := processedIn[s]
		require.NotEmpty(t, cs, "seed %d: event %d of %d was never processed", sd, s, si.Last)
		// A repeat is allowed only above the offset committed at the kill
		// that ended the cycle before it.
		for i := 1; i < len(cs); i++ {
			require.Greater(t, s, reports[cs[i]-2].committed, "seed %d: event %d processed in cycles %v", sd, s, cs)
		}
		if len(cs) > 1 {
			duplicates++
		}
	}

	redeliveries := make([]int, len(reports))
	total := 0
	for i, rep := range reports {
		redeliveries[i] = rep.redelivered
		total += rep.processed
	}
	if len(redeliveries) > 50 {
		redeliveries = redeliveries[:50]
	}
	t.Logf("%d cycles in %v (seed %d): %d events, %d processed in the children, %d in the final run, %d processed more than once; redeliveries per cycle (first 50): %v",
		n, time.Since(start).Round(time.Millisecond), sd, si.Last, total, len(final), duplicates, redeliveries)
	if si.Last == 0 || total == 0 {
		t.Fatalf("seed %d: the children appended %d events and processed %d: nothing was tested", sd, si.Last, total)
	}
}

// readOffset opens the journal as a restarted process would and returns
// the consumer's committed offset and the stream's last sequence.
func readOffset(t *testing.T, path string) (committed, last uint64) {
	t.Helper()
	l, err := eventlog.Open(path, &eventlog.Options{LockTimeout: 10 * time.Second})
	require.NoError(t, err, "reopen after the kill")
	defer func() { require.NoError(t, l.Close()) }()
	committed, _, err = l.Offset(streamName, consumerName)
	require.NoError(t, err)
	if si, err := l.Info(streamName); err == nil {
		last = si.Last
	} else {
		require.ErrorIs(t, err, eventlog.ErrNotFound)
	}
	return committed, last
}

// readProcessed returns the sequences in a processed file, in order. A
// last line without its newline was cut by the kill: its handler had not
// returned, so it is dropped.
func readProcessed(path string) ([]uint64, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if i := bytes.LastIndexByte(b, '\n'); i < len(b)-1 {
		b = b[:i+1]
	}
	var out []uint64
	for line := range strings.SplitSeq(strings.TrimSuffix(string(b), "\n"), "\n") {
		if line == "" {
			continue
		}
		s, err := strconv.ParseUint(line, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: bad line %q", path, line)
		}
		out = append(out, s)
	}
	return out, nil
}

// runCycle starts a child, kills it delay after it is ready and waits for
// it to end. The child is killed on every path out.
func runCycle(t *testing.T, cfg childConfig, delay time.Duration, fail func(string, ...any)) {
	t.Helper()
	ready := make(chan struct{})
	var once sync.Once
	c, err := flowtest.StartChild("TestChildProcess", cfg, func(line []byte) {
		if string(line) == readyLine+"\n" {
			once.Do(func() { close(ready) })
		}
	})
	if err != nil {
		fail("start child: %v", err)
	}
	defer c.Stop(exitTimeout)
	if err := c.Await(ready, readyTimeout); err != nil {
		fail("%v\n%s", err, c.Diagnostics())
	}
	if err := c.KillAfter(delay, exitTimeout); err != nil {
		fail("%v\n%s", err, c.Diagnostics())
	}
}
