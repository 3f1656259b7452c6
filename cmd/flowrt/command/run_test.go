package command

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/server"
	"github.com/flowrt/flowrt/supervisor"
)

// lines returns the lines of a file, none when it does not exist.
func lines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	require.NoError(t, sc.Err())
	return out
}

const runConfig = `version: 1
flows:
  - name: created
    on: {types: order.created}
    steps:
      - map: '{"order": key}'
    sinks:
      - file: {path: out/created.jsonl}
`

func TestRunUntilIdleResumes(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "flowrt.db")
	config := filepath.Join(dir, "flows.yaml")
	require.NoError(t, os.WriteFile(config, []byte(runConfig), 0o644))
	out := filepath.Join(dir, "out", "created.jsonl")

	events := `{"type":"order.created","key":"o-1"}
{"type":"order.paid","key":"o-1"}
{"type":"order.created","key":"o-2"}
`
	run(t, events, "append", "--db", db).requireOK(t)
	r := run(t, "", "run", "--db", db, "--config", config, "--until-idle").requireOK(t)
	assert.Contains(t, r.stderr, "flow=created")
	got := lines(t, out)
	require.Len(t, got, 2)
	assert.Contains(t, got[0], `"data":{"order":"o-1"}`)

	// A second run resumes after the committed floor: only the new event.
	run(t, `{"type":"order.created","key":"o-3"}`+"\n", "append", "--db", db).requireOK(t)
	run(t, "", "run", "--db", db, "--config", config, "--until-idle", "--log-format", "json").requireOK(t)
	got = lines(t, out)
	require.Len(t, got, 3)
	assert.Contains(t, got[2], `"data":{"order":"o-3"}`)

	// The lifecycle is in $system: two runs, each stopped cleanly.
	l, err := eventlog.Open(db, &eventlog.Options{ReadOnly: true})
	require.NoError(t, err)
	defer l.Close()
	runs, err := supervisor.Runs(l)
	require.NoError(t, err)
	require.Len(t, runs, 2)
	for _, r := range runs {
		assert.Equal(t, supervisor.Stopped, r.End)
		assert.Equal(t, config, r.Transitions[0].Details["config"])
	}
}

func TestRunRefusesABadConfig(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "flows.yaml")
	require.NoError(t, os.WriteFile(config, []byte("version: 1\nflows:\n  - name: x\n    sinks: [{nope: {}}]\n    filter: 'dta.x'\n"), 0o644))
	r := run(t, "", "run", "--db", filepath.Join(dir, "flowrt.db"), "--config", config, "--until-idle")
	require.Equal(t, ExitUsage, r.code, r.stderr)
	assert.Contains(t, r.stderr, "flows.yaml:4:")
	assert.Contains(t, r.stderr, "flows.yaml:5:")
	_, err := os.Stat(filepath.Join(dir, "flowrt.db"))
	assert.True(t, os.IsNotExist(err), "a config that does not validate never opens the journal")
}

func TestRunFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no config", []string{"run", "--db", "x.db"}, "needs --db and --config"},
		{"bad log format", []string{"run", "--db", "x.db", "--config", "c.yaml", "--log-format", "xml"}, "--log-format"},
		{"bad stop timeout", []string{"run", "--db", "x.db", "--config", "c.yaml", "--stop-timeout", "0s"}, "--stop-timeout"},
		{"token without http", []string{"run", "--db", "x.db", "--config", "c.yaml", "--token", "t"}, "--token needs --http"},
		{"max body without http", []string{"run", "--db", "x.db", "--config", "c.yaml", "--max-body", "10"}, "--max-body needs --http"},
		{"beyond loopback without token", []string{"run", "--db", "x.db", "--config", "c.yaml", "--http", "0.0.0.0:7070"}, "listens beyond loopback"},
		{"every interface without token", []string{"run", "--db", "x.db", "--config", "c.yaml", "--http", ":7070"}, "listens beyond loopback"},
		{"a host name without token", []string{"run", "--db", "x.db", "--config", "c.yaml", "--http", "example.com:7070"}, "listens beyond loopback"},
		{"token and token file", []string{"run", "--db", "x.db", "--config", "c.yaml", "--http", "127.0.0.1:0", "--token", "t", "--token-file", "f"}, "exclusive"},
		{"empty token", []string{"run", "--db", "x.db", "--config", "c.yaml", "--http", "127.0.0.1:0", "--token", ""}, "--token is empty"},
		{"missing token file", []string{"run", "--db", "x.db", "--config", "c.yaml", "--http", "127.0.0.1:0", "--token-file", "/no/such/token"}, "--token-file"},
		{"no port", []string{"run", "--db", "x.db", "--config", "c.yaml", "--http", "7070"}, "want HOST:PORT"},
		{"bad port", []string{"run", "--db", "x.db", "--config", "c.yaml", "--http", "127.0.0.1:http"}, "not a port number"},
		{"bad max body", []string{"run", "--db", "x.db", "--config", "c.yaml", "--http", "127.0.0.1:0", "--max-body", "0"}, "--max-body must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, "", tt.args...)
			assert.Equal(t, ExitUsage, r.code)
			assert.Contains(t, r.stderr, tt.want)
		})
	}
}

// lineWatch is a log writer that closes found once a line containing
// want has been written. It is safe for concurrent use.
type lineWatch struct {
	want  string
	found chan struct{}

	mu   sync.Mutex
	buf  bytes.Buffer
	once sync.Once
}

func newLineWatch(want string) *lineWatch { return &lineWatch{want: want, found: make(chan struct{})} }

func (w *lineWatch) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(b)
	if strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.found) })
	}
	return len(b), nil
}

func (w *lineWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestRunServesHTTP runs the daemon in-process with --http on a free
// port: it advertises itself in <db>.http, takes events over HTTP and
// serves them back, and removes the file when it stops.
func TestRunServesHTTP(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "flowrt.db")
	config := filepath.Join(dir, "flows.yaml")
	require.NoError(t, os.WriteFile(config, []byte(runConfig), 0o644))
	tokenFile := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600))

	root := NewRoot()
	stderr := newLineWatch("http: listening")
	root.SetArgs([]string{"run", "--db", db, "--config", config, "--http", "127.0.0.1:0", "--token-file", tokenFile})
	root.SetIn(strings.NewReader(""))
	root.SetOut(io.Discard)
	root.SetErr(stderr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	root.SetContext(ctx)
	done := make(chan error, 1)
	go func() { done <- Execute(root) }()
	deadline := time.After(10 * time.Second)
	select {
	case <-stderr.found:
	case err := <-done:
		t.Fatalf("run ended before listening: %v\n%s", err, stderr)
	case <-deadline:
		t.Fatalf("run did not listen:\n%s", stderr)
	}

	disc := server.DiscoveryPath(db)
	fi, err := os.Stat(disc)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	d, err := server.ReadDiscovery(disc)
	require.NoError(t, err)
	assert.Equal(t, os.Getpid(), d.PID)
	assert.Equal(t, tokenFile, d.TokenFile)
	assert.True(t, strings.HasPrefix(d.Addr, "127.0.0.1:") && d.Addr != "127.0.0.1:0", d.Addr)

	call := func(method, path, token, body string) (int, string) {
		t.Helper()
		reqCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(reqCtx, method, "http://"+d.Addr+path, strings.NewReader(body))
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	code, _ := call("GET", "/healthz", "", "")
	assert.Equal(t, http.StatusOK, code)
	code, _ = call("GET", "/v1/status", "", "")
	assert.Equal(t, http.StatusUnauthorized, code)
	code, body := call("POST", "/v1/streams/events/events", "s3cret", "{\"type\":\"order.created\",\"key\":\"o-1\"}\n{\"type\":\"order.paid\",\"key\":\"o-1\"}\n")
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, `{"seq":2,`)
	code, body = call("GET", "/v1/streams/events/events", "s3cret", "")
	require.Equal(t, http.StatusOK, code, body)
	assert.Len(t, strings.Split(strings.TrimSpace(body), "\n"), 2)

	// append and dump go through the daemon that holds the journal.
	r := run(t, `{"type":"order.created","key":"o-9","idempotency_key":"k9"}`+"\n", "append", "--db", db).requireOK(t)
	assert.Contains(t, r.stdout, "appended 1 event")
	r = run(t, `{"type":"order.created","key":"o-9","idempotency_key":"k9"}`+"\n", "append", "--db", db, "--json").requireOK(t)
	assert.Contains(t, r.stdout, `"duplicate":true`)
	r = run(t, "", "dump", "--db", db, "--json").requireOK(t)
	assert.Len(t, strings.Split(strings.TrimSpace(r.stdout), "\n"), 3)

	// backup asks the daemon for a hot backup, which then checks clean.
	hot := filepath.Join(dir, "hot.db")
	r = run(t, "", "backup", "--db", db, "--to", hot).requireOK(t)
	assert.Contains(t, r.stdout, "hot, through the daemon")
	run(t, "", "check", "--db", hot).requireOK(t)
	r = run(t, "", "backup", "--db", db, "--to", hot)
	assert.Equal(t, ExitRuntime, r.code, "an existing backup is not replaced: %s", r.stderr)
	assert.Contains(t, r.stderr, "409")

	cancel() // as SIGTERM would
	select {
	case err := <-done:
		require.NoError(t, err, "stderr:\n%s", stderr)
	case <-time.After(10 * time.Second):
		t.Fatalf("run did not stop:\n%s", stderr)
	}
	_, err = os.Stat(disc)
	assert.True(t, errors.Is(err, fs.ErrNotExist), "the discovery file is removed on a clean stop: %v", err)
	assert.Contains(t, stderr.String(), "http: stopped")

	l, err := eventlog.Open(db, &eventlog.Options{ReadOnly: true})
	require.NoError(t, err)
	defer l.Close()
	si, err := l.Info("events")
	require.NoError(t, err)
	assert.Equal(t, uint64(3), si.Last)
}

// TestRunUntilIdleWithHTTP checks that a batch run with --http serves
// while it runs and removes the discovery file when it ends.
func TestRunUntilIdleWithHTTP(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "flowrt.db")
	config := filepath.Join(dir, "flows.yaml")
	require.NoError(t, os.WriteFile(config, []byte(runConfig), 0o644))
	run(t, `{"type":"order.created","key":"o-1"}`+"\n", "append", "--db", db).requireOK(t)
	r := run(t, "", "run", "--db", db, "--config", config, "--until-idle", "--http", "localhost:0").requireOK(t)
	assert.Contains(t, r.stderr, "http: listening")
	assert.Contains(t, r.stderr, "http: stopped")
	_, err := os.Stat(server.DiscoveryPath(db))
	assert.True(t, errors.Is(err, fs.ErrNotExist), "discovery file left behind: %v", err)
	require.Len(t, lines(t, filepath.Join(dir, "out", "created.jsonl")), 1)
}

// TestRunHTTPListenFails checks that an address in use is a runtime
// error, before any flow runs.
func TestRunHTTPListenFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	dir := t.TempDir()
	db := filepath.Join(dir, "flowrt.db")
	config := filepath.Join(dir, "flows.yaml")
	require.NoError(t, os.WriteFile(config, []byte(runConfig), 0o644))
	r := run(t, "", "run", "--db", db, "--config", config, "--until-idle", "--http", ln.Addr().String())
	require.Equal(t, ExitRuntime, r.code, r.stderr)
	assert.Contains(t, r.stderr, "--http")
	_, err = os.Stat(server.DiscoveryPath(db))
	assert.True(t, errors.Is(err, fs.ErrNotExist))
}
