package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/stretchr/testify/require"
)

// TestMain lets the test binary stand in for flowrt: run with
// FLOWRT_TEST_MAIN=1 it is main, so the tests below check the real process
// exit status and streams without building a separate binary.
func TestMain(m *testing.M) {
	if os.Getenv("FLOWRT_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// flowrt runs main in a child process and returns its exit status, stdout
// and stderr.
func flowrt(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "FLOWRT_TEST_MAIN=1")
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), stdout.String(), stderr.String()
	}
	require.NoError(t, err)
	return 0, stdout.String(), stderr.String()
}

// TestExitStatus checks the documented exit statuses end to end: 0 ok,
// 1 journal errors, 2 usage and input errors.
func TestExitStatus(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "j.db")
	notJournal := filepath.Join(dir, "events.jsonl")
	require.NoError(t, os.WriteFile(notJournal, []byte(`{"type":"a"}`), 0o644))
	tests := []struct {
		name   string
		stdin  string
		args   []string
		code   int
		stderr string // prefix
	}{
		{"append", `{"type":"order.created","key":"order-1"}`, []string{"append", "--db", db}, 0, ""},
		{"dump", "", []string{"dump", "--db", db}, 0, ""},
		{"help", "", []string{"--help"}, 0, ""},
		{"bad line", `{"type":"order created"}`, []string{"append", "--db", db}, 2, "flowrt: stdin: line 1: "},
		{"unknown flag", "", []string{"dump", "--db", db, "--nope"}, 2, "flowrt: unknown flag: --nope"},
		{"unknown command", "", []string{"nope"}, 2, `flowrt: unknown command "nope"`},
		{"missing journal", "", []string{"dump", "--db", db + ".missing"}, 1, "flowrt: no journal at "},
		{"not a journal", "", []string{"dump", "--db", notJournal}, 1, "flowrt: not a flowrt journal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := flowrt(t, tt.stdin, tt.args...)
			require.Equal(t, tt.code, code, "stderr: %s", stderr)
			require.True(t, strings.HasPrefix(stderr, tt.stderr), "stderr: %q", stderr)
		})
	}

	t.Run("locked", func(t *testing.T) {
		l, err := eventlog.Open(db, nil)
		require.NoError(t, err)
		defer l.Close()
		code, stdout, stderr := flowrt(t, "", "dump", "--db", db, "--lock-timeout", "100ms")
		require.Equal(t, 1, code)
		require.Empty(t, stdout)
		require.Contains(t, stderr, "is in use by another process (flowrt run?)")
	})
}
