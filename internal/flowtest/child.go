package flowtest

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Settings of the crash tests' long runs: the flags, where a test binary
// defines them, come before the environment variables.
const (
	CyclesEnv  = "FLOWRT_CRASH_CYCLES" // crash cycles per test
	SeedEnv    = "FLOWRT_CRASH_SEED"   // random seed
	CyclesFlag = "crash.cycles"
	SeedFlag   = "crash.seed"
)

// childEnv carries a child's configuration, as JSON, from StartChild to
// RunChild.
const childEnv = "FLOWRT_CHILD_CONFIG"

// stderrMax bounds what a Child keeps of its stderr: the first and the last
// half, so both the first problem and the end are there.
const stderrMax = 64 << 10

// Child is the test binary run again by StartChild, running one test
// function in a child process that a test can kill with SIGKILL.
type Child struct {
	cmd     *exec.Cmd
	stdin   io.Closer // held open: the child exits when it sees EOF
	stderr  stderrBuffer
	exited  chan struct{} // closed once the child exited and its stdout ended
	waitErr error         // exec.Cmd.Wait's, set before exited is closed
	readErr error         // from reading stdout, set before exited is closed
}

// StartChild runs the test binary again, running only the test function
// named test, which must call RunChild, with cfg as its JSON configuration.
// onLine, unless nil, gets each line of the child's stdout as
// bufio.Reader.ReadBytes returns it, newline included except on a last line
// cut off by the child's end; it is called from one goroutine and may keep
// the line. Call Stop when done with the child.
func StartChild(test string, cfg any, onLine func(line []byte)) (*Child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	conf, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	c := &Child{exited: make(chan struct{})}
	c.cmd = exec.Command(exe, "-test.run=^"+test+"$", "-test.count=1")
	c.cmd.Env = append(os.Environ(), childEnv+"="+string(conf))
	c.cmd.Stderr = &c.stderr
	c.cmd.WaitDelay = time.Minute // for stderr to close after the exit
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		br := bufio.NewReaderSize(out, 1<<16)
		for {
			line, err := br.ReadBytes('\n')
			if len(line) > 0 && onLine != nil {
				onLine(line)
			}
			if err != nil {
				if err != io.EOF {
					c.readErr = fmt.Errorf("reading the child's stdout: %w", err)
				}
				break
			}
		}
		c.waitErr = c.cmd.Wait() // only now: Wait closes stdout
		close(c.exited)
	}()
	return c, nil
}

// Exited is closed once the child has exited, its stdout has ended and
// onLine has returned for the last time.
func (c *Child) Exited() <-chan struct{} { return c.exited }

// Kill sends the child SIGKILL.
func (c *Child) Kill() error { return c.cmd.Process.Kill() }

// Wait waits at most d for Exited. It returns exec.Cmd.Wait's error (nil
// after exit status 0), or says that the child still runs.
func (c *Child) Wait(d time.Duration) error {
	if err := c.await(c.exited, d); err != nil {
		return err
	}
	return c.waitErr
}

func (c *Child) await(ch <-chan struct{}, d time.Duration) error {
	select {
	case <-ch:
		return nil
	case <-time.After(d):
		return fmt.Errorf("child still running after %v", d)
	}
}

// Await waits at most d for ready to be closed, typically by onLine. It
// fails if the child exits first.
func (c *Child) Await(ready <-chan struct{}, d time.Duration) error {
	select {
	case <-ready:
		return nil
	case <-c.exited:
		select {
		case <-ready:
			return nil // the caller sees the exit next
		default:
			return errors.New("child exited before it was ready")
		}
	case <-time.After(d):
		return fmt.Errorf("child not ready within %v", d)
	}
}

// KillAfter sends the child SIGKILL delay from now and waits at most d for
// its end, as Wait. It fails if the child exits before, outlives d, was
// not ended by the kill, or wrote a data race or a panic to stderr.
func (c *Child) KillAfter(delay, d time.Duration) error {
	if c.await(c.exited, delay) == nil {
		return errors.New("child exited on its own before the kill")
	}
	if err := c.Kill(); err != nil {
		return fmt.Errorf("kill child: %w", err)
	}
	if err := c.await(c.exited, d); err != nil {
		return fmt.Errorf("after SIGKILL: %w", err)
	}
	if st := c.cmd.ProcessState; st == nil || st.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		return errors.New("child was not ended by the kill")
	}
	if s := c.stderr.String(); strings.Contains(s, "DATA RACE") || strings.Contains(s, "panic:") {
		return errors.New("child reported a problem before it was killed")
	}
	return c.readErr
}

// Stop kills the child if it still runs, waits at most d for it and closes
// its stdin. Defer it after StartChild: the child is then ended on every
// way out of the test.
func (c *Child) Stop(d time.Duration) {
	_ = c.Kill() // os.ErrProcessDone if it has been waited for
	_ = c.Wait(d)
	c.stdin.Close()
}

// Diagnostics reports the child's exit status and its stderr.
func (c *Child) Diagnostics() string {
	status := "still running"
	select {
	case <-c.exited:
		status = "exit status 0"
		if c.waitErr != nil {
			status = c.waitErr.Error()
		}
	default:
	}
	return fmt.Sprintf("child: %s; its stderr:\n%s", status, c.stderr.String())
}

// stderrBuffer keeps the first and the last stderrMax/2 bytes written to
// it. It is safe for concurrent use.
type stderrBuffer struct {
	mu         sync.Mutex
	head, tail []byte
	cut        int // bytes dropped between head and tail
}

func (b *stderrBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	k := min(stderrMax/2-len(b.head), len(p))
	b.head, p = append(b.head, p[:k]...), p[k:]
	b.tail = append(b.tail, p...)
	if over := len(b.tail) - stderrMax/2; over > 0 {
		b.tail = append(b.tail[:0], b.tail[over:]...)
		b.cut += over
	}
	return n, nil
}

func (b *stderrBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cut > 0 {
		return fmt.Sprintf("%s\n[... %d bytes left out ...]\n%s", b.head, b.cut, b.tail)
	}
	return string(b.head) + string(b.tail)
}

// RunChild is the body of the test function StartChild names. Outside a
// child it skips the test. In a child it decodes the parent's config into
// a C and calls run: the process exits 0 if run returns nil, and 1 with the
// error on stderr if not. It also exits when its stdin closes (the parent
// is gone) and after maxLife, so a child its parent failed to kill does not
// run on.
func RunChild[C any](t *testing.T, maxLife time.Duration, run func(C) error) {
	t.Helper()
	conf, ok := os.LookupEnv(childEnv)
	if !ok {
		t.Skip("a child process of this package's tests; runs only when one of them starts it")
	}
	name := filepath.Base(os.Args[0]) + " child"
	var cfg C
	err := json.Unmarshal([]byte(conf), &cfg)
	if err == nil {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			fmt.Fprintln(os.Stderr, name+": stdin closed, parent gone; exiting")
			os.Exit(3)
		}()
		time.AfterFunc(maxLife, func() {
			fmt.Fprintf(os.Stderr, "%s: not done after %v; exiting\n", name, maxLife)
			os.Exit(4)
		})
		if err = run(cfg); err == nil {
			os.Exit(0)
		}
	}
	fmt.Fprintln(os.Stderr, name+":", err)
	os.Exit(1)
}

// Cycles returns the number of crash cycles a test runs: the -crash.cycles
// flag where the test binary defines one, else $FLOWRT_CRASH_CYCLES, else
// def.
func Cycles(t testing.TB, def int) int {
	t.Helper()
	name, v := setting(CyclesFlag, CyclesEnv)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive number of cycles", name, v)
	}
	return n
}

// Seed returns a randomised test's seed, the -crash.seed flag where the
// test binary defines one, else $FLOWRT_CRASH_SEED, else the clock, and
// prints it on stderr, as bbolt's quick_test does.
func Seed(t testing.TB) int64 {
	t.Helper()
	s := time.Now().UnixNano()
	if name, v := setting(SeedFlag, SeedEnv); v != "" {
		var err error
		if s, err = strconv.ParseInt(v, 10, 64); err != nil {
			t.Fatalf("%s=%q: %v", name, v, err)
		}
	}
	fmt.Fprintln(os.Stderr, "seed:", s)
	return s
}

// setting returns the value of the flag flagName, where the test binary
// defines it and it is not 0, else that of the environment variable env.
func setting(flagName, env string) (name, value string) {
	if f := flag.Lookup(flagName); f != nil && f.Value.String() != "0" {
		return "-" + flagName, f.Value.String()
	}
	return env, os.Getenv(env)
}
