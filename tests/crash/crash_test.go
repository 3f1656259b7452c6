// Package crash_test kills a process appending to a journal with SIGKILL
// at random moments, reopens the journal and checks that nothing it
// acknowledged was lost. See README.md.
package crash_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
)

// Flags of the long run, read by flowtest.Cycles and flowtest.Seed; the
// environment variables FLOWRT_CRASH_CYCLES and FLOWRT_CRASH_SEED are read
// when they are not given.
func init() {
	flag.Int(flowtest.CyclesFlag, 0, "crash cycles per test (default: "+strconv.Itoa(shortCycles)+"; env "+flowtest.CyclesEnv+")")
	flag.Int64(flowtest.SeedFlag, 0, "random seed (default: from the clock; env "+flowtest.SeedEnv+")")
}

// envDir keeps the journals under this directory instead of a temporary one.
const envDir = "FLOWRT_CRASH_DIR"

// Cycles of the short run, part of `go test ./...`.
const (
	shortCycles      = 20
	shortSyncCycles  = 10
	testingShortDiv  = 4 // -short divides the short run by this
	defaultCapBytes  = 24 << 20
	firstAckTimeout  = time.Minute      // from start to the child's first acknowledgement
	exitTimeout      = 30 * time.Second // from SIGKILL to the child's exit and the end of its output
	minKillDelay     = 5 * time.Millisecond
	maxKillDelay     = 300 * time.Millisecond
	syncIntervalTest = time.Hour // never reached: a child lives well under a second
)

// TestCrashFsync is the crash test under the default durability policy:
// every commit is fsynced before Append returns.
func TestCrashFsync(t *testing.T) {
	runCrashTest(t, 0, shortCycles)
}

// TestCrashSyncInterval runs the child with Options.SyncInterval set far
// beyond its life, so no commit it acknowledged was fsynced: bbolt wrote
// the pages with write(2) and nothing more. SIGKILL ends the process, not
// the kernel, so the page cache keeps those writes and every acknowledged
// append must still be there. This is SyncInterval's promise: acknowledged
// appends survive a process crash; only a power loss or kernel crash can
// lose up to SyncInterval of them (not tested here).
func TestCrashSyncInterval(t *testing.T) {
	runCrashTest(t, syncIntervalTest, shortSyncCycles)
}

// TestChildProcess is the child the crash tests start; it is skipped in a
// normal run.
func TestChildProcess(t *testing.T) {
	flowtest.RunChild(t, childMaxLife, runChild)
}

func journalDir(t *testing.T) string {
	base := os.Getenv(envDir)
	if base == "" {
		return t.TempDir()
	}
	dir, err := os.MkdirTemp(base, t.Name()+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("journal kept in %s", dir)
	return dir
}

// runCrashTest runs n cycles of: start a child appending to one journal,
// kill it with SIGKILL at a random moment, reopen the journal and verify it
// against everything the child acknowledged.
func runCrashTest(t *testing.T, syncInterval time.Duration, short int) {
	if testing.Short() {
		short = max(short/testingShortDiv, 2)
	}
	n := flowtest.Cycles(t, short)
	sd := flowtest.Seed(t)
	rng := rand.New(rand.NewPCG(uint64(sd), 0x6372617368))
	path := filepath.Join(journalDir(t), "journal.db")
	m := newModel(defaultCapBytes)
	start := time.Now()
	for c := range n {
		cycle := uint32(c + 1)
		cfg := childConfig{Journal: path, Cycle: cycle, Seed: rng.Uint64(), SyncInterval: syncInterval}
		for i, sm := range m.streams {
			if sm.truncateBelow > 0 {
				if cfg.Truncate == nil {
					cfg.Truncate = make(map[string]uint64)
				}
				cfg.Truncate[streams[i]] = sm.truncateBelow
				sm.announced = max(sm.announced, sm.truncateBelow)
			}
		}
		delay := minKillDelay + time.Duration(rng.Int64N(int64(maxKillDelay-minKillDelay)+1))
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("seed %d (%s=%d repeats the choices, not the timing), cycle %d of %d, kill %v after the first ack: %s",
				sd, flowtest.SeedEnv, sd, cycle, n, delay, fmt.Sprintf(format, args...))
		}
		t0 := time.Now()
		lines, torn, firstAck := runCycle(t, cfg, delay, fail)
		m.stats.tornLines += torn
		m.stats.toFirstAck += firstAck
		m.stats.children += time.Since(t0)
		t0 = time.Now()
		if err := m.ingest(cycle, cfg, lines); err != nil {
			fail("acknowledgements:\n%v", err)
		}
		if err := reopenAndVerify(path, m); err != nil {
			fail("after the kill:\n%v", err)
		}
		m.stats.verifying += time.Since(t0)
		if c > 0 && (c+1)%100 == 0 {
			t.Logf("%d/%d cycles, %v, %d events acknowledged", c+1, n, time.Since(start).Round(time.Second), m.stats.events)
		}
	}
	st := m.stats
	t.Logf("%d cycles in %v (seed %d): %d acks, %d events, %d re-appends, %d offset updates, %d truncations, %d torn lines; file up to %d MiB; per cycle: %v to the first ack, %v in the child, %v verifying",
		n, time.Since(start).Round(time.Millisecond), sd, st.acks, st.events, st.reappends, st.updates, st.truncations, st.tornLines, st.maxFileSize>>20,
		(st.toFirstAck / time.Duration(n)).Round(time.Millisecond), (st.children / time.Duration(n)).Round(time.Millisecond), (st.verifying / time.Duration(n)).Round(time.Millisecond))
	if st.events == 0 {
		t.Fatalf("seed %d: no event was acknowledged in %d cycles", sd, n)
	}
}

// reopenAndVerify opens the journal as a restarted process would and checks
// it against the model.
func reopenAndVerify(path string, m *model) (err error) {
	l, err := eventlog.Open(path, &eventlog.Options{LockTimeout: 10 * time.Second})
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer func() {
		if cerr := l.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close: %w", cerr)
		}
	}()
	if fi, err := os.Stat(path); err == nil {
		m.stats.maxFileSize = max(m.stats.maxFileSize, fi.Size())
	}
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	return m.verify(ctx, l)
}

// runCycle starts a child, kills it delay after its first acknowledgement,
// waits for it and returns every complete line it reported, how many torn
// lines (at most one, cut by the kill) it dropped, and how long the first
// acknowledgement took. The child is killed on every path out, so a
// failing test leaves nothing running.
func runCycle(t *testing.T, cfg childConfig, delay time.Duration, fail func(string, ...any)) (lines []ackLine, torn int, toFirstAck time.Duration) {
	t.Helper()
	start := time.Now()
	firstAck := make(chan struct{})
	var other []string // stdout lines that are not acknowledgements
	var readErr error
	c, err := flowtest.StartChild("TestChildProcess", cfg, func(line []byte) {
		switch {
		case readErr != nil:
		case !bytes.HasSuffix(line, []byte("\n")):
			// Cut by the kill: dropped, as its call was acknowledged but
			// not fully reported.
			torn++
		case !bytes.HasPrefix(line, []byte(`{"op":`)):
			other = append(other, string(line))
		default:
			var a ackLine
			if err := json.Unmarshal(line, &a); err != nil {
				readErr = fmt.Errorf("line %d %q: %w", len(lines)+1, line, err)
				return
			}
			if lines = append(lines, a); len(lines) == 1 {
				close(firstAck)
			}
		}
	})
	if err != nil {
		fail("start child: %v", err)
	}
	defer c.Stop(exitTimeout)
	diagnostics := func() string {
		s := c.Diagnostics()
		select {
		case <-c.Exited():
			if len(other) > 0 {
				s += "\nchild stdout, other than acknowledgements:\n" + strings.Join(other, "")
			}
		default:
		}
		return s
	}

	if err := c.Await(firstAck, firstAckTimeout); err != nil {
		fail("waiting for the first acknowledgement: %v\n%s", err, diagnostics())
	}
	toFirstAck = time.Since(start)
	if err := c.KillAfter(delay, exitTimeout); err != nil {
		fail("%v\n%s", err, diagnostics())
	}
	if readErr != nil {
		fail("reading the child's acknowledgements: %v\n%s", readErr, diagnostics())
	}
	return lines, torn, toFirstAck
}
