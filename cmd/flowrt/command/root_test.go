package command

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// result is what one in-process run of flowrt produced.
type result struct {
	stdout, stderr string
	code           int
	err            error
}

// run executes flowrt with args in-process, stdin as its input, the way
// main does.
func run(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	root := NewRoot()
	var stdout, stderr bytes.Buffer
	root.SetArgs(append([]string{}, args...))
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	err := Execute(root)
	return result{stdout: stdout.String(), stderr: stderr.String(), code: ExitCode(err), err: err}
}

// requireOK fails unless the run succeeded.
func (r result) requireOK(t *testing.T) result {
	t.Helper()
	require.NoError(t, r.err, "stderr: %s", r.stderr)
	require.Equal(t, ExitOK, r.code)
	return r
}

// Times vary from run to run; masks keep their width so tables stay aligned.
var timeRE = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.(\d{9}|\d{3})Z`)

func maskTimes(s string) string {
	return timeRE.ReplaceAllStringFunc(s, func(m string) string {
		if len(m) == len("2006-01-02T15:04:05.000Z") {
			return "YYYY-MM-DDThh:mm:ss.sssZ"
		}
		return "YYYY-MM-DDThh:mm:ss.sssssssssZ"
	})
}

// golden compares got with testdata/<name>.golden, or rewrites the file
// when the test runs with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run `go test ./cmd/flowrt/command -update` to create it")
	require.Equal(t, string(want), got, "golden file %s differs; rerun with -update if the change is intended", path)
}

// fileHash returns the SHA-256 of the file.
func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return sha256.Sum256(b)
}

// requireDBNoChange checks, when the calling test ends, that the file is
// byte for byte what it was when requireDBNoChange was called, like bbolt's
// helper of that name. Use as `defer requireDBNoChange(t, path)()`.
func requireDBNoChange(t *testing.T, path string) func() {
	t.Helper()
	before := fileHash(t, path)
	return func() {
		t.Helper()
		require.Equal(t, before, fileHash(t, path), "%s changed", path)
	}
}

// openLog opens a journal for the test and closes it at cleanup.
func openLog(t *testing.T, path string, opts *eventlog.Options) *eventlog.Log {
	t.Helper()
	l, err := eventlog.Open(path, opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, l.Close()) })
	return l
}

// streamLast returns the last sequence of the stream in the journal at
// path, 0 when the stream does not exist.
func streamLast(t *testing.T, path, stream string) uint64 {
	t.Helper()
	l, err := eventlog.Open(path, &eventlog.Options{ReadOnly: true})
	require.NoError(t, err)
	defer l.Close()
	si, err := l.Info(stream)
	if errors.Is(err, eventlog.ErrNotFound) {
		return 0
	}
	require.NoError(t, err)
	return si.Last
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, ExitOK},
		{"usage", usageErrorf("--db is required"), ExitUsage},
		{"wrapped usage", fmt.Errorf("ctx: %w", usageErrorf("x")), ExitUsage},
		{"bad input", &InputError{Name: "stdin", Lines: []*LineError{{Line: 1, Err: errors.New("x")}}, Total: 1}, ExitUsage},
		{"input error with status", &exitError{code: ExitUsage, err: errors.New("x")}, ExitUsage},
		{"locked", &LockedError{Path: "f", Err: eventlog.ErrLocked}, ExitRuntime},
		{"journal error", fmt.Errorf("open: %w", eventlog.ErrCorrupt), ExitRuntime},
		{"missing journal", fs.ErrNotExist, ExitRuntime},
		{"anything else", errors.New("boom"), ExitRuntime},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, ExitCode(tt.err))
		})
	}
}

// TestUsageErrors runs command lines that must fail before touching any
// file, with exit status 2, a "flowrt: " message and a pointer to --help.
func TestUsageErrors(t *testing.T) {
	db := filepath.Join(t.TempDir(), "j.db")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"apend"}, `unknown command "apend" for "flowrt" (did you mean append?)`},
		{"unknown flag", []string{"dump", "--db", db, "--bogus"}, "unknown flag: --bogus"},
		{"bad flag value", []string{"dump", "--db", db, "--limit", "ten"}, `invalid argument "ten" for "--limit"`},
		{"negative from", []string{"dump", "--db", db, "--from", "-1"}, `invalid argument "-1" for "--from"`},
		{"negative limit", []string{"dump", "--db", db, "--limit", "-1"}, "--limit must not be negative"},
		{"bad type glob", []string{"dump", "--db", db, "--type", "order.["}, `--type "order.[": syntax error in pattern`},
		{"dump argument", []string{"dump", "--db", db, "extra"}, `flowrt dump takes no arguments, got ["extra"]`},
		{"dump without db", []string{"dump"}, "--db is required"},
		{"append without db", []string{"append"}, "--db is required"},
		{"append argument", []string{"append", "--db", db, "x.jsonl"}, "takes no arguments"},
		{"bad stream name", []string{"append", "--db", db, "--stream", "a/b"}, `--stream: invalid name: "a/b"`},
		{"reserved stream", []string{"append", "--db", db, "--stream", "$system"}, "reserved for flowrt"},
		{"zero lock timeout", []string{"dump", "--db", db, "--lock-timeout", "0s"}, "--lock-timeout must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, "", tt.args...)
			require.Equal(t, ExitUsage, r.code, "err: %v", r.err)
			require.Empty(t, r.stdout)
			require.True(t, strings.HasPrefix(r.stderr, "flowrt: "), "stderr: %q", r.stderr)
			require.Contains(t, r.stderr, tt.want)
			require.Contains(t, r.stderr, "--help' for usage.")
			require.NoFileExists(t, db)
		})
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{}, {"--help"}, {"append", "--help"}, {"dump", "--help"}, {"help", "dump"}} {
		t.Run(strings.Join(append([]string{"flowrt"}, args...), " "), func(t *testing.T) {
			r := run(t, "", args...).requireOK(t)
			require.Contains(t, r.stdout, "Exit status:")
			require.Contains(t, r.stdout, "2  usage or input error")
			require.Contains(t, r.stdout, "Examples:")
			require.Empty(t, r.stderr)
		})
	}
	r := run(t, "", "dump", "--help")
	for _, f := range []string{"--db", "--stream", "--from", "--limit", "--type", "--json", "--width", "--lock-timeout"} {
		require.Contains(t, r.stdout, f)
	}
	r = run(t, "", "append", "--help")
	for _, f := range []string{"--db", "--stream", "--file", "--json", "--lock-timeout"} {
		require.Contains(t, r.stdout, f)
	}
}
