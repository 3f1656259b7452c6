package crashdaemon_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/flowrt/flowrt/internal/server"
)

// buildTimeout bounds building the flowrt binary, cold cache included.
const buildTimeout = 5 * time.Minute

// built builds the flowrt binary once, for every test of the package,
// into a directory TestMain removes.
var built = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "crashdaemon-flowrt-")
	if err != nil {
		return "", err
	}
	builtDir.Store(&dir)
	return buildFlowrt(dir)
})

// builtDir is the directory built made, if it ran.
var builtDir atomic.Pointer[string]

func TestMain(m *testing.M) {
	code := m.Run()
	if dir := builtDir.Load(); dir != nil {
		os.RemoveAll(*dir)
	}
	os.Exit(code)
}

// flowrtBinary returns the flowrt binary, building it on the first call.
func flowrtBinary(t *testing.T) string {
	t.Helper()
	start := time.Now()
	bin, err := built()
	if err != nil {
		t.Fatalf("build flowrt: %v", err)
	}
	t.Logf("flowrt binary (race %v) ready in %v", raceEnabled, time.Since(start).Round(time.Millisecond))
	return bin
}

// buildFlowrt builds cmd/flowrt into dir with the go command that runs
// this test, with -race when this test binary has the race detector, and
// returns the binary's path.
func buildFlowrt(dir string) (string, error) {
	goCmd := "go"
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", "go"); fileExists(p) {
			goCmd = p
		}
	}
	if goCmd == "go" {
		p, err := exec.LookPath("go")
		if err != nil {
			return "", fmt.Errorf("find the go command: %w", err)
		}
		goCmd = p
	}
	bin := filepath.Join(dir, "flowrt")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "github.com/flowrt/flowrt/cmd/flowrt")
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, goCmd, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w\n%s", goCmd, strings.Join(args, " "), err, out)
	}
	return bin, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// raceExitSleep replaces the race detector's default 1 s sleep at the exit
// of a program built with -race (GORACE's atexit_sleep_ms), which would
// make every flowrt command take a second.
const raceExitSleep = "GORACE=atexit_sleep_ms=20"

// environ returns the environment of the flowrt processes.
func environ() []string {
	env := os.Environ()
	if raceEnabled {
		env = append(env, raceExitSleep) // the last value of a key counts
	}
	return env
}

// result is what one run of a flowrt command did.
type result struct {
	args           []string
	stdout, stderr []byte
	code           int   // the exit status; -1 when it did not exit normally
	err            error // starting or waiting failed, other than a non-zero exit
}

// String describes the run for a failure message.
func (r result) String() string {
	return fmt.Sprintf("flowrt %s: exit status %d (%v)\nstdout:\n%s\nstderr:\n%s",
		strings.Join(r.args, " "), r.code, r.err, tail(r.stdout), tail(r.stderr))
}

// ok reports whether the command exited 0.
func (r result) ok() bool { return r.err == nil && r.code == 0 }

// tail keeps the end of long command output for a message.
func tail(b []byte) []byte {
	const max = 8 << 10
	if len(b) > max {
		return append([]byte("[...]"), b[len(b)-max:]...)
	}
	return b
}

// flowrtCmd runs the flowrt binary bin with args and stdin, at most
// timeout, and waits for it.
func flowrtCmd(bin string, timeout time.Duration, stdin []byte, args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = environ()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	r := result{args: args, code: -1}
	var ee *exec.ExitError
	switch {
	case err == nil:
		r.code = 0
	case errors.As(err, &ee) && ee.Exited():
		r.code = ee.ExitCode()
	default:
		r.err = err
	}
	r.stdout, r.stderr = stdout.Bytes(), stderr.Bytes()
	return r
}

// problemMarkers are what a Go program writes to stderr when it panics,
// dies of a fatal runtime error or, built with -race, races.
var problemMarkers = []string{"panic:", "fatal error:", "DATA RACE"}

// problem returns the first marker of problemMarkers in s, or "".
func problem(s string) string {
	for _, m := range problemMarkers {
		if strings.Contains(s, m) {
			return m
		}
	}
	return ""
}

// daemon is one `flowrt run --http` process.
type daemon struct {
	cmd      *exec.Cmd
	running  chan struct{} // closed when it logs "running": the runtime started
	starting chan struct{} // closed when it logs its run's first state, starting
	run      string        // the run's ID, set before starting is closed
	exited   chan struct{} // closed once it exited and its stderr ended
	waitErr  error         // exec.Cmd.Wait's, set before exited is closed

	mu     sync.Mutex
	stderr bytes.Buffer // every line it logged
}

// startDaemon starts `flowrt run --http 127.0.0.1:0` over the journal db
// with config, logging JSON. Call kill on every path out.
func startDaemon(bin, db, config string) (*daemon, error) {
	d := &daemon{running: make(chan struct{}), starting: make(chan struct{}), exited: make(chan struct{})}
	d.cmd = exec.Command(bin, "run", "--db", db, "--config", config,
		"--http", "127.0.0.1:0", "--log-format", "json", "--log-level", "info")
	d.cmd.Env = environ()
	d.cmd.WaitDelay = time.Minute
	pipe, err := d.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start flowrt run: %w", err)
	}
	go func() {
		br := bufio.NewReader(pipe)
		var running, starting sync.Once
		for {
			line, err := br.ReadBytes('\n')
			d.mu.Lock()
			d.stderr.Write(line)
			d.mu.Unlock()
			var rec struct {
				Msg string `json:"msg"`
				Run string `json:"run"`
				To  string `json:"to"`
			}
			switch {
			case json.Unmarshal(line, &rec) != nil:
			case rec.Msg == "running":
				running.Do(func() { close(d.running) })
			case rec.Msg == "runtime state" && rec.To == "starting":
				starting.Do(func() {
					d.run = rec.Run
					close(d.starting)
				})
			}
			if err != nil {
				break
			}
		}
		_, _ = io.Copy(io.Discard, pipe)
		d.waitErr = d.cmd.Wait() // only now: Wait closes the pipe
		close(d.exited)
	}()
	return d, nil
}

// pid returns the daemon's process ID.
func (d *daemon) pid() int { return d.cmd.Process.Pid }

// logged returns what the daemon wrote to stderr so far.
func (d *daemon) logged() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stderr.String()
}

// diagnostics describes the daemon for a failure message.
func (d *daemon) diagnostics() string {
	status := "still running"
	select {
	case <-d.exited:
		status = fmt.Sprint(d.cmd.ProcessState)
	default:
	}
	return fmt.Sprintf("flowrt run (pid %d): %s; its stderr:\n%s", d.pid(), status, tail([]byte(d.logged())))
}

// awaitRunning waits at most timeout for the daemon to log "running",
// then reads its discovery file, which it wrote before, and checks that
// it names this process. It returns the address the file names.
func (d *daemon) awaitRunning(db string, timeout time.Duration) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-d.running:
	case <-d.exited:
		return "", errors.New("flowrt run exited before it was running")
	case <-t.C:
		return "", fmt.Errorf("flowrt run not running after %v", timeout)
	}
	disc, err := server.ReadDiscovery(server.DiscoveryPath(db))
	if err != nil {
		return "", fmt.Errorf("running, but: %w", err)
	}
	if disc.PID != d.pid() {
		return "", fmt.Errorf("running, but the discovery file names pid %d (%+v)", disc.PID, disc)
	}
	return disc.Addr, nil
}

// kill sends the daemon SIGKILL and waits at most timeout for its exit.
// It fails if the daemon had already exited, outlives timeout, was not
// ended by the signal, or reported a problem on stderr.
func (d *daemon) kill(timeout time.Duration) error {
	select {
	case <-d.exited:
		return errors.New("flowrt run exited on its own before the kill")
	default:
	}
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill flowrt run: %w", err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-d.exited:
	case <-t.C:
		return fmt.Errorf("flowrt run still running %v after SIGKILL", timeout)
	}
	if st := d.cmd.ProcessState; st == nil || st.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		return fmt.Errorf("flowrt run was not ended by the kill: %v", d.waitErr)
	}
	if m := problem(d.logged()); m != "" {
		return fmt.Errorf("flowrt run wrote %q to stderr before it was killed", m)
	}
	return nil
}

// stop kills the daemon if it still runs and waits at most timeout: for
// deferring after startDaemon.
func (d *daemon) stop(timeout time.Duration) {
	_ = d.cmd.Process.Kill()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-d.exited:
	case <-t.C:
	}
}

// getJSON GETs url and decodes a 200 answer's JSON body into v.
func getJSON(client *http.Client, url string, v any) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s: read the answer: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: decode %q: %w", url, body, err)
	}
	return nil
}
