// Package crashsupervisor_test kills a process running a supervisor with
// SIGKILL, interleaved with clean stops, and checks what the supervisor
// recorded in $system: exactly one recovery event per kill, naming the
// killed run and resuming each consumer at the offset the journal held when
// the process died, and none after a clean stop.
//
// The default run (10 kills and 5 clean stops) is part of `go test ./...`.
// FLOWRT_CRASH_CYCLES sets the number of cycles (a third of them clean
// stops) and FLOWRT_CRASH_SEED repeats a run's choices.
package crashsupervisor_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/supervisor"
	"github.com/stretchr/testify/require"
)

const (
	envCycles = "FLOWRT_CRASH_CYCLES" // total cycles; a third are clean stops
	envSeed   = "FLOWRT_CRASH_SEED"   // random seed
)

const (
	defaultCycles = 15 // 10 kills, 5 clean stops
	maxKillDelay  = 100 * time.Millisecond
	minStopAfter  = 10 * time.Millisecond
	maxStopAfter  = 60 * time.Millisecond
	childTimeout  = time.Minute // from start to "running", and from the kill or stop to the exit
)

// TestChildProcess is the child the crash test starts; it is skipped in a
// normal run.
func TestChildProcess(t *testing.T) {
	if os.Getenv(envChild) == "" {
		t.Skip("the supervisor crash test's child process; runs only when it starts it")
	}
	err := runChild()
	if err == nil {
		os.Exit(0)
	}
	fmt.Fprintln(os.Stderr, "supervisor crash child:", err)
	os.Exit(1)
}

// killed is what the parent saw of a run it killed, read from the journal
// after the process died and before the next one started.
type killed struct {
	offsets map[string]uint64 // consumer -> committed offset on streamName
	last    uint64            // streamName's last sequence
}

// cycle is one child process of the test.
type cycle struct {
	kill   bool
	run    string  // the child's run ID
	killed *killed // for a kill
}

func TestCrashRecovery(t *testing.T) {
	n := defaultCycles
	if v := os.Getenv(envCycles); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number of cycles", envCycles, v)
		}
	} else if testing.Short() {
		n = 6
	}
	seed := time.Now().UnixNano()
	if v := os.Getenv(envSeed); v != "" {
		var err error
		if seed, err = strconv.ParseInt(v, 10, 64); err != nil {
			t.Fatalf("%s=%q: %v", envSeed, v, err)
		}
	}
	fmt.Fprintln(os.Stderr, "seed:", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x73757076))
	stops := n / 3
	plan := make([]cycle, n)
	for i := range plan {
		plan[i].kill = i >= stops
	}
	rng.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })

	path := filepath.Join(t.TempDir(), "journal.db")
	keepRuns := n + 10
	start := time.Now()
	for i := range plan {
		c := &plan[i]
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("seed %d (%s=%d repeats the choices), cycle %d of %d (kill %v): %s", seed, envSeed, seed, i+1, n, c.kill, fmt.Sprintf(format, args...))
		}
		cfg := childConfig{Journal: path, Cycle: i + 1, KeepRuns: keepRuns, Mode: modeStop,
			StopAfter: minStopAfter + time.Duration(rng.Int64N(int64(maxStopAfter-minStopAfter)))}
		if c.kill {
			cfg.Mode = modeKill
		}
		delay := time.Duration(rng.Int64N(int64(maxKillDelay)))
		run, err := runCycle(cfg, delay)
		if err != nil {
			fail("%v", err)
		}
		c.run = run
		if c.kill {
			if c.killed, err = readKilled(path); err != nil {
				fail("after the kill: %v", err)
			}
		}
	}
	t.Logf("%d cycles (%d kills, %d clean stops) in %v, seed %d", n, n-stops, stops, time.Since(start).Round(time.Millisecond), seed)

	// One more start, in this process, recovers the last run if it was
	// killed.
	l, err := eventlog.Open(path, nil)
	require.NoError(t, err)
	defer l.Close()
	s, err := supervisor.New(l, &supervisor.Options{KeepRuns: keepRuns})
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background()))
	ctx, cancel := context.WithTimeout(context.Background(), childTimeout)
	defer cancel()
	require.NoError(t, s.Stop(ctx))
	verify(t, l, seed, plan, s.RunID())
}

// verify checks $system against the plan.
func verify(t *testing.T, l *eventlog.Log, seed int64, plan []cycle, final string) {
	t.Helper()
	runs, err := supervisor.Runs(l)
	require.NoError(t, err)
	ids := make([]string, len(runs))
	for i, r := range runs {
		ids[i] = r.ID
	}
	want := make([]string, 0, len(plan)+1)
	for _, c := range plan {
		want = append(want, c.run)
	}
	want = append(want, final)
	require.Equal(t, want, ids, "seed %d: one run per cycle, in order", seed)
	require.Nil(t, runs[0].Recovery, "seed %d: the first run found an empty journal", seed)

	kills, recoveries := 0, 0
	var resumes []string
	for _, e := range must(l.Read(supervisor.SystemStream, 1, 1<<20)) {
		if e.Type == supervisor.TypeRecovery {
			recoveries++
		}
	}
	for i, c := range plan {
		r, next := runs[i], runs[i+1]
		where := fmt.Sprintf("seed %d, cycle %d (run %s, kill %v)", seed, i+1, r.ID, c.kill)
		if !c.kill {
			require.Equal(t, supervisor.Stopped, r.End, where)
			require.False(t, r.Crashed, where)
			require.Nil(t, next.Recovery, "%s: a clean stop is not recovered", where)
			continue
		}
		kills++
		require.Equal(t, supervisor.Running, r.End, where)
		require.False(t, r.Ended(), where)
		require.True(t, r.Crashed, where)
		rec := next.Recovery
		require.NotNil(t, rec, "%s: the next start recorded no recovery", where)
		require.Equal(t, next.ID, rec.Run, where)
		require.Equal(t, r.ID, rec.CrashedRun, where)
		require.Equal(t, "running", rec.LastState, where)
		require.True(t, r.Last.Equal(rec.LastTime), "%s: last time %v, recovery says %v", where, r.Last, rec.LastTime)
		var wantResume []supervisor.Resume
		for _, name := range consumerNames {
			if off, ok := c.killed.offsets[name]; ok {
				wantResume = append(wantResume, supervisor.Resume{Stream: streamName, Consumer: name, Offset: off, Pending: c.killed.last - off})
			}
		}
		require.Equal(t, wantResume, rec.Consumers, "%s: resume points against the journal at the kill", where)
		resumes = append(resumes, fmt.Sprint(rec.Consumers))
	}
	require.Equal(t, kills, recoveries, "seed %d: one recovery event per kill", seed)
	t.Logf("resume points recorded after each kill: %s", strings.Join(resumes, " "))
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// readKilled opens the journal as the next process would, before it does,
// and reads what the recovery must report.
func readKilled(path string) (*killed, error) {
	l, err := eventlog.Open(path, &eventlog.Options{LockTimeout: 10 * time.Second})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	k := &killed{offsets: map[string]uint64{}}
	for _, name := range consumerNames {
		off, ok, err := l.Offset(streamName, name)
		if err != nil {
			return nil, err
		}
		if ok {
			k.offsets[name] = off
		}
	}
	si, err := l.Info(streamName)
	switch {
	case errors.Is(err, eventlog.ErrNotFound):
	case err != nil:
		return nil, err
	default:
		k.last = si.Last
	}
	return k, l.Close()
}

// runCycle runs one child: it waits for the child's run to be running,
// then kills it delay later, or waits for it to stop cleanly. It returns
// the child's run ID. The child is killed on every path out.
func runCycle(cfg childConfig, delay time.Duration) (string, error) {
	c, err := startChild(cfg)
	if err != nil {
		return "", fmt.Errorf("start child: %w", err)
	}
	defer c.stop()

	timeout := time.NewTimer(childTimeout)
	defer timeout.Stop()
	var run string
	select {
	case line, ok := <-c.lines:
		if !ok || !strings.HasPrefix(line, runningPrefix) {
			return "", fmt.Errorf("child did not report running (got %q): %v\n%s", line, c.waitExit(), c.stderr())
		}
		run = strings.TrimPrefix(line, runningPrefix)
	case <-timeout.C:
		return "", fmt.Errorf("child not running after %v\n%s", childTimeout, c.stderr())
	}

	if cfg.Mode == modeStop {
		select {
		case line := <-c.lines:
			if line != stoppedPrefix+run {
				return "", fmt.Errorf("child did not report its stop (got %q): %v\n%s", line, c.waitExit(), c.stderr())
			}
		case <-timeout.C:
			return "", fmt.Errorf("child not stopped after %v\n%s", childTimeout, c.stderr())
		}
		select {
		case <-c.exited:
		case <-timeout.C:
			return "", fmt.Errorf("child did not exit after stopping\n%s", c.stderr())
		}
		if c.waitErr != nil {
			return "", fmt.Errorf("child's clean stop: %v\n%s", c.waitErr, c.stderr())
		}
		return run, nil
	}

	kill := time.NewTimer(delay)
	defer kill.Stop()
	select {
	case <-kill.C:
	case <-c.exited:
		return "", fmt.Errorf("child exited before the kill: %v\n%s", c.waitErr, c.stderr())
	}
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return "", fmt.Errorf("kill: %w", err)
	}
	select {
	case <-c.exited:
	case <-timeout.C:
		return "", fmt.Errorf("child still running %v after SIGKILL\n%s", childTimeout, c.stderr())
	}
	ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		return "", fmt.Errorf("child was not ended by the kill: %v\n%s", c.waitErr, c.stderr())
	}
	if s := c.stderr(); strings.Contains(s, "DATA RACE") || strings.Contains(s, "panic:") {
		return "", fmt.Errorf("child reported a problem before it was killed:\n%s", s)
	}
	return run, nil
}

// child is one running child process.
type child struct {
	cmd    *exec.Cmd
	stdin  *os.File // held open: the child exits when it sees EOF
	lines  chan string
	exited chan struct{} // closed once the process has been waited for
	// waitErr is set before exited is closed.
	waitErr error

	mu  sync.Mutex
	err strings.Builder
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
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	// Our own pipe for stdout, not StdoutPipe: Wait must not close it
	// before the child's last line has been read.
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	c := &child{stdin: inW, lines: make(chan string, 4), exited: make(chan struct{})}
	c.cmd = exec.Command(exe, "-test.run=^TestChildProcess$", "-test.count=1")
	c.cmd.Env = append(os.Environ(), envChild+"="+string(conf))
	c.cmd.Stdin, c.cmd.Stdout, c.cmd.Stderr = inR, outW, (*lockedWriter)(c)
	c.cmd.WaitDelay = childTimeout
	err = c.cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, err
	}
	go func() {
		defer close(c.lines)
		defer outR.Close()
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, runningPrefix) || strings.HasPrefix(line, stoppedPrefix) {
				c.lines <- line
			}
		}
	}()
	go func() {
		c.waitErr = c.cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

// waitExit waits for the child's exit, at most childTimeout.
func (c *child) waitExit() error {
	t := time.NewTimer(childTimeout)
	defer t.Stop()
	select {
	case <-c.exited:
		return c.waitErr
	case <-t.C:
		return fmt.Errorf("child still running after %v", childTimeout)
	}
}

// lockedWriter collects the child's stderr.
type lockedWriter child

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err.Len() < 64<<10 {
		w.err.Write(p)
	}
	return len(p), nil
}

func (c *child) stderr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return "child stderr:\n" + c.err.String()
}

// stop kills the child if it still runs, and waits for it, boundedly.
func (c *child) stop() {
	defer c.stdin.Close()
	select {
	case <-c.exited:
		return
	default:
	}
	_ = c.cmd.Process.Kill()
	t := time.NewTimer(childTimeout)
	defer t.Stop()
	select {
	case <-c.exited:
	case <-t.C:
	}
}
