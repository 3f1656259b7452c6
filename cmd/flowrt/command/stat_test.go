package command

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/server"
	"github.com/flowrt/flowrt/supervisor"
)

// statTime is the time recorded in the $system events statJournal writes.
var statTime = time.Date(2025, 11, 24, 8, 0, 0, 0, time.UTC)

// systemEvent is a supervisor transition, or with crashed set a recovery
// from that run, as statJournal records it in $system.
type systemEvent struct {
	run, from, to, reason, crashed string
}

// statJournal writes a journal for stat: two streams with events, two
// consumers, and the given $system records.
func statJournal(t *testing.T, system ...systemEvent) string {
	t.Helper()
	db := filepath.Join(t.TempDir(), "flowrt.db")
	l, err := eventlog.Open(db, nil)
	require.NoError(t, err)
	for i := range 3 {
		_, err := l.Append("events", eventlog.Event{Type: "order.created", Key: fmt.Sprintf("order-%d", i), Data: []byte(`{"total_cents":1598}`)})
		require.NoError(t, err)
	}
	_, err = l.Append("audit", eventlog.Event{Type: "audit.login", Key: "u-1"})
	require.NoError(t, err)
	require.NoError(t, l.CommitOffset("events", "orders", 2))
	require.NoError(t, l.CommitOffset("audit", "auditor", 1))
	for _, s := range system {
		var (
			typ = supervisor.TypeTransition
			v   any
		)
		if s.crashed != "" {
			typ = supervisor.TypeRecovery
			v = supervisor.Recovery{Run: s.run, CrashedRun: s.crashed, LastState: "running", LastTime: statTime, Time: statTime}
		} else {
			v = supervisor.Transition{Run: s.run, From: s.from, To: s.to, Reason: s.reason, Time: statTime}
		}
		data, err := json.Marshal(v)
		require.NoError(t, err)
		// $system is reserved: only a transaction appends to it, as the
		// supervisor does.
		require.NoError(t, l.Update(func(tx *eventlog.Tx) error {
			_, err := tx.Append(supervisor.SystemStream, eventlog.Event{Type: typ, Key: s.run, Data: data})
			return err
		}))
	}
	require.NoError(t, l.Close())
	return db
}

// A run's life in $system.
var (
	statStarted = []systemEvent{{run: "run-1", from: "created", to: "starting"}, {run: "run-1", from: "starting", to: "running"}}
	statStopped = append(statStarted[:2:2], systemEvent{run: "run-1", from: "running", to: "draining"}, systemEvent{run: "run-1", from: "draining", to: "stopped"})
	// run-1 crashed; run-2 recovered it, then failed.
	statRecovered = append(statStarted[:2:2],
		systemEvent{run: "run-2", from: "created", to: "starting"},
		systemEvent{run: "run-2", crashed: "run-1"},
		systemEvent{run: "run-2", from: "starting", to: "recovering"},
		systemEvent{run: "run-2", from: "recovering", to: "running"},
		systemEvent{run: "run-2", from: "running", to: "failed", reason: "flow orders gave up"},
	)
)

// statMasker returns a function that makes stat's output of the journal
// db the same from run to run: it masks the journal's path, ID and size,
// and the append times. Call it while the journal is at rest.
func statMasker(t *testing.T, db string) func(out string) string {
	t.Helper()
	l, err := eventlog.Open(db, &eventlog.Options{ReadOnly: true})
	require.NoError(t, err)
	id := l.ID().String()
	require.NoError(t, l.Close())
	return func(out string) string {
		fi, err := os.Stat(db)
		require.NoError(t, err)
		out = strings.ReplaceAll(out, db, "$DB")
		out = strings.ReplaceAll(out, id, "<journal id>")
		out = strings.ReplaceAll(out, fmt.Sprintf("%s (%d bytes)", opsSize(fi.Size()), fi.Size()), "<size>")
		out = strings.ReplaceAll(out, fmt.Sprintf(`"file_size": %d`, fi.Size()), `"file_size": "<size>"`)
		return maskTimes(out)
	}
}

func TestStat(t *testing.T) {
	tests := []struct {
		name   string
		system []systemEvent
		golden string
	}{
		{"stopped", statStopped, "stat"},
		{"recovered and failed", statRecovered, "stat_failed"},
		{"crashed", statStarted, "stat_crashed"},
		{"no runs", nil, "stat_no_runs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := statJournal(t, tt.system...)
			mask := statMasker(t, db)
			defer requireDBNoChange(t, db)()
			r := run(t, "", "stat", "--db", db).requireOK(t)
			require.Empty(t, r.stderr)
			golden(t, tt.golden, mask(r.stdout))
			r = run(t, "", "stat", "--db", db, "--json").requireOK(t)
			golden(t, tt.golden+"_json", mask(r.stdout))
		})
	}
}

func TestStatEmptyJournal(t *testing.T) {
	db := filepath.Join(t.TempDir(), "empty.db")
	l, err := eventlog.Open(db, nil)
	require.NoError(t, err)
	require.NoError(t, l.Close())
	mask := statMasker(t, db)
	defer requireDBNoChange(t, db)()
	r := run(t, "", "stat", "--db", db).requireOK(t)
	golden(t, "stat_empty", mask(r.stdout))

	var rep statJSON
	r = run(t, "", "stat", "--db", db, "--json").requireOK(t)
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rep))
	require.Equal(t, uint32(eventlog.FormatVersion), rep.FormatVersion)
	require.NotNil(t, rep.Streams)
	require.NotNil(t, rep.Consumers)
	require.Nil(t, rep.LastRun)
	require.Contains(t, r.stdout, `"last_run": null`)
}

// TestStatAfterRun reads a journal that flowrt run wrote: its run, and a
// dead letter from a sink that refuses the event.
func TestStatAfterRun(t *testing.T) {
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no", http.StatusBadRequest) // permanent: dead-lettered
	}))
	defer refuse.Close()
	dir := t.TempDir()
	db := filepath.Join(dir, "flowrt.db")
	config := filepath.Join(dir, "flows.yaml")
	require.NoError(t, os.WriteFile(config, []byte(`version: 1
flows:
  - name: hook
    sinks:
      - http: {url: "`+refuse.URL+`"}
    consumer:
      retry: {max_attempts: 1}
`), 0o644))
	run(t, `{"type":"order.created","key":"o-1"}`+"\n"+`{"type":"order.paid","key":"o-1"}`+"\n", "append", "--db", db).requireOK(t)
	run(t, "", "run", "--db", db, "--config", config, "--until-idle").requireOK(t)

	defer requireDBNoChange(t, db)()
	var rep statJSON
	r := run(t, "", "stat", "--db", db, "--json").requireOK(t)
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rep))
	require.Equal(t, []wireConsumer{{Stream: "events", Consumer: "hook", Offset: 2, Last: 2, Lag: 0,
		Updated: rep.Consumers[0].Updated, DeadLetters: 2}}, rep.Consumers)
	require.Equal(t, 1, rep.Runs)
	require.Zero(t, rep.CrashedRuns)
	require.NotNil(t, rep.LastRun)
	require.Equal(t, "stopped", rep.LastRun.State)
	require.True(t, rep.LastRun.Ended)
	require.False(t, rep.LastRun.Crashed)
	names := make([]string, len(rep.Streams))
	for i, s := range rep.Streams {
		names[i] = s.Name
	}
	require.Equal(t, []string{"$system", "events"}, names)

	r = run(t, "", "stat", "--db", db).requireOK(t)
	require.Contains(t, r.stdout, "last run   "+rep.LastRun.ID+" (stopped)\n")
	require.Contains(t, r.stdout, "runs       1 recorded in $system, 0 crashed\n")
}

// serveStatDaemon serves the read side stat uses, in the shapes of
// internal/server (in-flight counts are in /v1/status, not
// /v1/consumers), and writes the discovery file of db. It answers 401 to requests without
// the token, when one is given.
func serveStatDaemon(t *testing.T, db, token string) {
	t.Helper()
	answers := map[string]string{
		"/v1/status": `{"run":"run-2","state":"running","flows":[{"name":"orders","stream":"events","state":"running","in_flight":2}],
			"streams":[{"name":"$system","first":1,"last":9,"count":9,"bytes":1200},{"name":"events","first":1,"last":7,"count":7,"bytes":2048}]}`,
		"/v1/consumers": `[{"stream":"events","consumer":"orders","offset":5,"last":7,"lag":2,"updated":"2025-11-24T08:00:00.5Z","dead_letters":1}]`,
		"/v1/system/runs": `[{"id":"run-1","started":"2025-11-24T07:00:00Z","last":"2025-11-24T07:30:00Z","end":"running","crashed":true,"transitions":[]},
			{"id":"run-2","started":"2025-11-24T08:00:00Z","last":"2025-11-24T08:00:01Z","end":"running","crashed":false,"transitions":[]}]`,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token != "" && r.Header.Get("Authorization") != "Bearer "+token {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"missing or wrong bearer token"}`))
			return
		}
		body, ok := answers[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	require.NoError(t, server.WriteDiscovery(server.DiscoveryPath(db), server.Discovery{Addr: srv.Listener.Addr().String(), PID: 4242}))
}

func TestStatLive(t *testing.T) {
	db := statJournal(t, statStopped...)
	mask := statMasker(t, db)
	openLog(t, db, nil) // held, as flowrt run holds it
	serveStatDaemon(t, db, "s3cret")

	r := run(t, "", "stat", "--db", db, "--token", "s3cret").requireOK(t)
	addr := readAddr(t, db)
	golden(t, "stat_live", strings.ReplaceAll(mask(r.stdout), addr, "$ADDR"))
	r = run(t, "", "stat", "--db", db, "--token", "s3cret", "--json").requireOK(t)
	golden(t, "stat_live_json", strings.ReplaceAll(mask(r.stdout), addr, "$ADDR"))

	r = run(t, "", "stat", "--db", db)
	require.Equal(t, ExitRuntime, r.code)
	require.Contains(t, r.stderr, "401 Unauthorized")
	require.Contains(t, r.stderr, "--token")
}

// readAddr returns the address in db's discovery file.
func readAddr(t *testing.T, db string) string {
	t.Helper()
	f, err := readLiveFile(db)
	require.NoError(t, err)
	require.NotNil(t, f)
	return f.Addr
}

func TestStatErrors(t *testing.T) {
	dir := t.TempDir()
	locked := statJournal(t)
	openLog(t, locked, nil) // held by a process that serves no HTTP
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no db", []string{"stat"}, ExitUsage, "--db is required"},
		{"argument", []string{"stat", "--db", locked, "x"}, ExitUsage, "takes no arguments"},
		{"token and token file", []string{"stat", "--db", locked, "--token", "a", "--token-file", "b"}, ExitUsage, "exclusive"},
		{"missing journal", []string{"stat", "--db", filepath.Join(dir, "nope.db")}, ExitRuntime, "no journal at "},
		{"locked", []string{"stat", "--db", locked, "--lock-timeout", "50ms"}, ExitRuntime,
			"journal " + locked + " is in use by another process (flowrt run?); start that process with --http to read it while it runs, or stop it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, "", tt.args...)
			require.Equal(t, tt.code, r.code, "stderr: %s", r.stderr)
			require.Empty(t, r.stdout)
			require.Contains(t, r.stderr, tt.want)
		})
	}
	require.NoFileExists(t, filepath.Join(dir, "nope.db"))
}
