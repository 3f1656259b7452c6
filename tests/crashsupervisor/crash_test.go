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
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/flowrt/flowrt/supervisor"
	"github.com/stretchr/testify/require"
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
	flowtest.RunChild(t, childMaxLife, runChild)
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
	n := defaultCycles // total cycles; a third are clean stops
	if testing.Short() {
		n = 6
	}
	n = flowtest.Cycles(t, n)
	seed := flowtest.Seed(t)
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
			t.Fatalf("seed %d (%s=%d repeats the choices), cycle %d of %d (kill %v): %s", seed, flowtest.SeedEnv, seed, i+1, n, c.kill, fmt.Sprintf(format, args...))
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
	lines := make(chan string, 4)
	c, err := flowtest.StartChild("TestChildProcess", cfg, func(line []byte) {
		if s := string(line); strings.HasPrefix(s, runningPrefix) || strings.HasPrefix(s, stoppedPrefix) {
			lines <- strings.TrimSuffix(s, "\n")
		}
	})
	if err != nil {
		return "", fmt.Errorf("start child: %w", err)
	}
	defer c.Stop(childTimeout)
	go func() {
		<-c.Exited() // after the last line
		close(lines)
	}()

	timeout := time.NewTimer(childTimeout)
	defer timeout.Stop()
	var run string
	select {
	case line, ok := <-lines:
		if !ok || !strings.HasPrefix(line, runningPrefix) {
			_ = c.Wait(childTimeout)
			return "", fmt.Errorf("child did not report running (got %q)\n%s", line, c.Diagnostics())
		}
		run = strings.TrimPrefix(line, runningPrefix)
	case <-timeout.C:
		return "", fmt.Errorf("child not running after %v\n%s", childTimeout, c.Diagnostics())
	}

	if cfg.Mode == modeStop {
		select {
		case line := <-lines:
			if line != stoppedPrefix+run {
				_ = c.Wait(childTimeout)
				return "", fmt.Errorf("child did not report its stop (got %q)\n%s", line, c.Diagnostics())
			}
		case <-timeout.C:
			return "", fmt.Errorf("child not stopped after %v\n%s", childTimeout, c.Diagnostics())
		}
		if err := c.Wait(childTimeout); err != nil {
			return "", fmt.Errorf("child's clean stop: %v\n%s", err, c.Diagnostics())
		}
		return run, nil
	}
	if err := c.KillAfter(delay, childTimeout); err != nil {
		return "", fmt.Errorf("%v\n%s", err, c.Diagnostics())
	}
	return run, nil
}
