//go:build unix

package eventlog_test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/stretchr/testify/require"
)

// TestLockHolderProcess is not a test: it is the child process of
// TestLockedByOtherProcess, which re-executes the test binary with
// lockHolderEnv set to "path,mode". It opens the journal, says "ready" and
// holds it until its stdin closes.
func TestLockHolderProcess(t *testing.T) {
	spec := os.Getenv(lockHolderEnv)
	if spec == "" {
		t.Skip("helper process for TestLockedByOtherProcess")
	}
	path, mode, _ := strings.Cut(spec, ",")
	l, err := eventlog.Open(path, &eventlog.Options{ReadOnly: mode == "ro"})
	if err != nil {
		fmt.Println("error:", err)
		t.Fatal(err)
	}
	fmt.Println("ready")
	_, _ = os.Stdin.Read(make([]byte, 1)) // EOF when the parent closes it
	require.NoError(t, l.Close())
}

// lockedCases lists who holds the journal and how the second Open asks.
var lockedCases = []struct {
	holder, opener string
}{{"rw", "rw"}, {"rw", "ro"}, {"ro", "rw"}}

func requireLocked(t *testing.T, path, opener string, sum [32]byte, holderSeesNoChange func()) {
	t.Helper()
	const timeout = 300 * time.Millisecond
	var l *eventlog.Log
	var err error
	start := time.Now()
	noPanic(t, "Open", func() {
		l, err = eventlog.Open(path, &eventlog.Options{ReadOnly: opener == "ro", LockTimeout: timeout})
	})
	took := time.Since(start)
	require.Nil(t, l)
	require.ErrorIs(t, err, eventlog.ErrLocked)
	// bbolt stops retrying (every 50 ms) once another retry would overshoot.
	require.GreaterOrEqual(t, took, timeout-60*time.Millisecond, "gave up well before LockTimeout")
	require.Less(t, took, timeout+2*time.Second, "waited far beyond LockTimeout")
	require.Contains(t, err.Error(), path)
	require.Equal(t, sum, fileDigest(t, path), "the file's bytes changed")
	holderSeesNoChange()

	// Compact needs the journal to itself too.
	_, err = eventlog.Compact(path, &eventlog.Options{LockTimeout: timeout})
	require.ErrorIs(t, err, eventlog.ErrLocked)
	require.Equal(t, sum, fileDigest(t, path), "the file's bytes changed")
	_, err = os.Stat(path + ".compact")
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestLockedByOtherLog(t *testing.T) {
	base := buildCorruptBase(t)
	for _, c := range lockedCases {
		t.Run(c.holder+"-held/"+c.opener, func(t *testing.T) {
			path := base.copyTo(t)
			sum := fileDigest(t, path)
			holder, err := eventlog.Open(path, &eventlog.Options{ReadOnly: c.holder == "ro"})
			require.NoError(t, err)
			requireLocked(t, path, c.opener, sum, func() {
				si, err := holder.Info(corruptStream)
				require.NoError(t, err)
				require.Equal(t, uint64(corruptEvents), si.Last)
			})
			require.NoError(t, holder.Close())
			// Once released, it opens.
			l, err := eventlog.Open(path, &eventlog.Options{ReadOnly: c.opener == "ro", LockTimeout: 300 * time.Millisecond})
			require.NoError(t, err)
			require.NoError(t, l.Close())
		})
	}
}

func TestLockedByOtherProcess(t *testing.T) {
	if os.Getenv(lockHolderEnv) != "" {
		t.Skip("inside the helper process")
	}
	exe, err := os.Executable()
	require.NoError(t, err)
	base := buildCorruptBase(t)
	for _, c := range lockedCases {
		t.Run(c.holder+"-held/"+c.opener, func(t *testing.T) {
			path := base.copyTo(t)
			sum := fileDigest(t, path)
			cmd := exec.Command(exe, "-test.run=^TestLockHolderProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), lockHolderEnv+"="+path+","+c.holder)
			stdin, err := cmd.StdinPipe()
			require.NoError(t, err)
			stdout, err := cmd.StdoutPipe()
			require.NoError(t, err)
			cmd.Stderr = os.Stderr
			require.NoError(t, cmd.Start())
			t.Cleanup(func() {
				stdin.Close()
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					_ = cmd.Process.Kill()
					<-done
				}
			})
			ready := make(chan string, 1)
			go func() {
				buf := make([]byte, 256)
				n, _ := stdout.Read(buf)
				ready <- string(buf[:n])
			}()
			select {
			case line := <-ready:
				require.Equal(t, "ready\n", line, "lock holder did not start")
			case <-time.After(30 * time.Second):
				t.Fatal("lock holder did not report ready within 30s")
			}
			requireLocked(t, path, c.opener, sum, func() {})
			stdin.Close()
			require.NoError(t, cmd.Wait())
			l, err := eventlog.Open(path, &eventlog.Options{ReadOnly: c.opener == "ro", LockTimeout: time.Second})
			require.NoError(t, err)
			require.NoError(t, l.Close())
		})
	}
}
