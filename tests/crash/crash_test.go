// Package crash_test kills a process appending to a journal with SIGKILL
// at random moments, reopens the journal and checks that nothing it
// acknowledged was lost. See README.md.
package crash_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowrt/flowrt/eventlog"
)

// Settings of the long run. The environment variables are read when the
// flags are not given.
var (
	cyclesFlag = flag.Int("crash.cycles", 0, "crash cycles per test (default: "+strconv.Itoa(shortCycles)+"; env "+envCycles+")")
	seedFlag   = flag.Int64("crash.seed", 0, "random seed (default: from the clock; env "+envSeed+")")
)

const (
	envCycles = "FLOWRT_CRASH_CYCLES" // cycles per test
	envSeed   = "FLOWRT_CRASH_SEED"   // random seed
	envDir    = "FLOWRT_CRASH_DIR"    // keep the journals under this directory instead of a temporary one
)

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
	if os.Getenv(envChild) == "" {
		t.Skip("the crash tests' child process; runs only when they start it")
	}
	err := runChild()
	fmt.Fprintln(os.Stderr, "crash child:", err)
	os.Exit(1)
}

func cycles(t *testing.T, short int) int {
	n := *cyclesFlag
	if n == 0 {
		if v := os.Getenv(envCycles); v != "" {
			var err error
			if n, err = strconv.Atoi(v); err != nil || n <= 0 {
				t.Fatalf("%s=%q: want a positive number of cycles", envCycles, v)
			}
		}
	}
	if n == 0 {
		n = short
		if testing.Short() {
			n = max(n/testingShortDiv, 2)
		}
	}
	return n
}

func seed(t *testing.T) int64 {
	if *seedFlag != 0 {
		return *seedFlag
	}
	if v := os.Getenv(envSeed); v != "" {
		s, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", envSeed, v, err)
		}
		return s
	}
	return time.Now().UnixNano()
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
	n := cycles(t, short)
	sd := seed(t)
	fmt.Fprintln(os.Stderr, "seed:", sd)
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
				sd, envSeed, sd, cycle, n, delay, fmt.Sprintf(format, args...))
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
	c, err := startChild(cfg)
	if err != nil {
		fail("start child: %v", err)
	}
	defer c.stop()

	timeout := time.NewTimer(firstAckTimeout)
	defer timeout.Stop()
	select {
	case <-c.firstAck:
	case <-c.exited:
		c.drain()
		fail("child exited before acknowledging anything: %v\n%s", c.waitErr, c.diagnostics())
	case <-timeout.C:
		fail("no acknowledgement from the child within %v\n%s", firstAckTimeout, c.diagnostics())
	}

	toFirstAck = time.Since(start)
	kill := time.NewTimer(delay)
	defer kill.Stop()
	select {
	case <-kill.C:
	case <-c.exited:
		c.drain()
		fail("child exited on its own: %v\n%s", c.waitErr, c.diagnostics())
	}
	if err := c.cmd.Process.Kill(); err != nil {
		fail("kill child: %v", err)
	}
	timeout.Reset(exitTimeout)
	select {
	case <-c.exited:
	case <-timeout.C:
		fail("child still running %v after SIGKILL\n%s", exitTimeout, c.diagnostics())
	}
	select {
	case <-c.readDone:
	case <-timeout.C:
		fail("child's output still open %v after SIGKILL\n%s", exitTimeout, c.diagnostics())
	}
	if st := c.cmd.ProcessState; st == nil || st.Exited() {
		fail("child was not ended by the kill: %v\n%s", c.waitErr, c.diagnostics())
	}
	if c.readErr != nil {
		fail("reading the child's acknowledgements: %v\n%s", c.readErr, c.diagnostics())
	}
	if s := c.stderr.String(); strings.Contains(s, "DATA RACE") || strings.Contains(s, "panic:") {
		fail("child reported a problem before it was killed:\n%s", c.diagnostics())
	}
	return c.lines, c.torn, toFirstAck
}

// child is one running child process.
type child struct {
	cmd    *exec.Cmd
	stdin  *os.File // held open: the child exits when it sees EOF
	stderr *tailBuffer

	firstAck chan struct{} // closed at the first acknowledgement
	exited   chan struct{} // closed when the process has been waited for
	waitErr  error         // set before exited is closed
	readDone chan struct{} // closed when stdout reached EOF
	lines    []ackLine     // set before readDone is closed
	torn     int
	readErr  error
	other    []string // stdout lines that are not acknowledgements
}

func startChild(cfg childConfig) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	conf, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	c := &child{
		stdin:    inW,
		stderr:   &tailBuffer{max: 64 << 10},
		firstAck: make(chan struct{}),
		exited:   make(chan struct{}),
		readDone: make(chan struct{}),
	}
	c.cmd = exec.Command(exe, "-test.run=^TestChildProcess$", "-test.count=1")
	c.cmd.Env = append(os.Environ(), envChild+"=append", envChildConfig+"="+string(conf))
	c.cmd.Stdin, c.cmd.Stdout, c.cmd.Stderr = inR, outW, c.stderr
	c.cmd.WaitDelay = exitTimeout
	err = c.cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		outR.Close()
		inW.Close()
		return nil, err
	}
	go c.read(outR)
	go func() {
		c.waitErr = c.cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

// read collects the child's acknowledgements until its stdout closes. A
// last line without its newline was cut by the kill: it is dropped, as its
// call was acknowledged but not fully reported.
func (c *child) read(r *os.File) {
	defer close(c.readDone)
	defer r.Close()
	br := bufio.NewReaderSize(r, 1<<16)
	first := true
	for {
		line, err := br.ReadBytes('\n')
		if err == io.EOF {
			if len(line) > 0 {
				c.torn++
			}
			return
		}
		if err != nil {
			c.readErr = err
			return
		}
		if !bytes.HasPrefix(line, []byte(`{"op":`)) {
			c.other = append(c.other, string(line))
			continue
		}
		var a ackLine
		if err := json.Unmarshal(line, &a); err != nil {
			c.readErr = fmt.Errorf("line %d %q: %w", len(c.lines)+1, line, err)
			return
		}
		c.lines = append(c.lines, a)
		if first {
			first = false
			close(c.firstAck)
		}
	}
}

// drain waits, boundedly, for the output of a child that has exited.
func (c *child) drain() {
	t := time.NewTimer(exitTimeout)
	defer t.Stop()
	select {
	case <-c.readDone:
	case <-t.C:
	}
}

// stop kills the child if it is still running and waits, boundedly, for it.
func (c *child) stop() {
	defer c.stdin.Close()
	select {
	case <-c.exited:
		return
	default:
	}
	_ = c.cmd.Process.Kill()
	t := time.NewTimer(exitTimeout)
	defer t.Stop()
	select {
	case <-c.exited:
	case <-t.C:
	}
}

func (c *child) diagnostics() string {
	var b strings.Builder
	fmt.Fprintf(&b, "child stderr (last %d KiB):\n%s", c.stderr.max>>10, c.stderr.String())
	select {
	case <-c.readDone:
		if len(c.other) > 0 {
			fmt.Fprintf(&b, "\nchild stdout, other than acknowledgements:\n%s", strings.Join(c.other, ""))
		}
	default:
	}
	return b.String()
}

// tailBuffer keeps the last max bytes written to it. It is safe for
// concurrent use.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (w *tailBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b = append(w.b, p...)
	if over := len(w.b) - w.max; over > 0 {
		w.b = append(w.b[:0], w.b[over:]...)
	}
	return len(p), nil
}

func (w *tailBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.b)
}
