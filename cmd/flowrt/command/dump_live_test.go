package command

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowrt/flowrt/internal/server"
	"github.com/stretchr/testify/require"
)

// The tests of the dump commands on a journal that a daemon holds: they
// read through its HTTP read side (a fakeDaemon).

// liveModes are the command lines (without --db) whose output must be the
// same through the daemon as at rest.
var liveModes = [][]string{
	{"dump"},
	{"dump", "--json"},
	{"dump", "--json", "--type", "order.c*", "--from", "2", "--limit", "2"},
	{"dump", "--stream", "$system", "--json"},
	{"dump", "dlq"},
	{"dump", "dlq", "--json"},
	{"dump", "dlq", "--json", "--consumer", "billing", "--stream", "events"},
	{"dump", "dlq", "--consumer", "auditor"},
	{"dump", "dlq", "--consumer", "nobody"},
	{"dump", "state", "--flow", "totals"},
	{"dump", "state", "--flow", "totals", "--json"},
	{"dump", "state", "--flow", "totals", "--json", "--key", "c-2"},
	{"dump", "state", "--flow", "totals", "--json", "--key", "c"},
	{"dump", "state", "--flow", "totals", "--json", "--prefix", "c-1"},
	{"dump", "system"},
	{"dump", "consumers", "--stream", "nothing"},
}

// TestDumpLiveMatchesAtRest runs the dump commands on the inspection
// journal at rest, then while a daemon holds it: the outputs are the same
// but for what only the daemon knows (in flight) or only the journal
// (the sequences of $system records).
func TestDumpLiveMatchesAtRest(t *testing.T) {
	t.Parallel()
	db := inspectDB(t)
	atRest := map[string]result{}
	for _, args := range append(liveModes, []string{"dump", "system", "--json"}, []string{"dump", "consumers", "--json"}) {
		atRest[strings.Join(args, " ")] = run(t, "", append(args, "--db", db)...).requireOK(t)
	}
	startDaemon(t, db, daemonOptions{})

	for _, args := range liveModes {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			want := atRest[strings.Join(args, " ")]
			start := time.Now()
			r := run(t, "", append(args, "--db", db, "--lock-timeout", "5s")...).requireOK(t)
			require.Less(t, time.Since(start), 2500*time.Millisecond, "a discovery file cuts the lock wait short")
			require.Equal(t, want.stdout, r.stdout)
			require.Equal(t, want.stderr, r.stderr)
		})
	}

	t.Run("system --json", func(t *testing.T) {
		r := run(t, "", "dump", "system", "--db", db, "--json").requireOK(t)
		live, rest := decodeLines[wireRun](t, r.stdout), decodeLines[wireRun](t, atRest["dump system --json"].stdout)
		for i := range rest { // the daemon's answer has no sequences
			for j := range rest[i].Transitions {
				rest[i].Transitions[j].Seq = 0
			}
			if rest[i].Recovery != nil {
				rest[i].Recovery.Seq = 0
			}
		}
		require.Len(t, live, 3)
		require.Equal(t, rest, live)
	})
	t.Run("consumers --json", func(t *testing.T) {
		r := run(t, "", "dump", "consumers", "--db", db, "--json").requireOK(t)
		live, rest := decodeLines[wireConsumer](t, r.stdout), decodeLines[wireConsumer](t, atRest["dump consumers --json"].stdout)
		require.Len(t, live, 4)
		for i, c := range live {
			if c.Consumer == "totals" {
				require.NotNil(t, c.InFlight, "the daemon's flow")
				require.Equal(t, int64(3), *c.InFlight)
			} else {
				require.Nil(t, c.InFlight, "%s is not a flow of the daemon", c.Consumer)
			}
			live[i].InFlight = nil
		}
		require.Equal(t, rest, live)
	})
	t.Run("consumers table", func(t *testing.T) {
		r := run(t, "", "dump", "consumers", "--db", db).requireOK(t)
		golden(t, "dump_consumers_live", maskDump(r.stdout))
	})
	t.Run("system verbose", func(t *testing.T) {
		r := run(t, "", "dump", "system", "--db", db, "-v").requireOK(t)
		require.Contains(t, r.stdout, "  SEQ  TIME ")
		require.Contains(t, r.stdout, "\n  -    ", "no sequences through the daemon")
	})
	t.Run("snapshots", func(t *testing.T) {
		r := run(t, "", "dump", "state", "--db", db, "--flow", "totals", "--snapshots")
		require.Equal(t, ExitRuntime, r.code)
		require.Equal(t, "flowrt: "+errSnapshotsLive.Error()+"\n", r.stderr)
	})
	t.Run("missing stream", func(t *testing.T) {
		r := run(t, "", "dump", "--db", db, "--stream", "orders").requireOK(t)
		require.Empty(t, r.stdout)
		require.Equal(t, fmt.Sprintf("flowrt: note: %s has no stream \"orders\" (streams: \"$system\", \"audit\", \"events\")\n", db), r.stderr)
	})
	t.Run("unknown flow", func(t *testing.T) {
		r := run(t, "", "dump", "state", "--db", db, "--flow", "nothing").requireOK(t)
		require.Empty(t, r.stdout)
		require.Equal(t, "flowrt: note: "+db+" has no committed state for flow \"nothing\"\n", r.stderr)
	})
}

// decodeLines decodes JSON lines.
func decodeLines[T any](t *testing.T, s string) []T {
	t.Helper()
	var out []T
	for line := range strings.Lines(s) {
		var v T
		require.NoError(t, json.Unmarshal([]byte(line), &v), "line %q", line)
		out = append(out, v)
	}
	return out
}

// TestDumpLiveToken checks where the daemon's token comes from: --token,
// --token-file, or the token_file the daemon names; without it, 401.
func TestDumpLiveToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	daemonFile, otherFile := filepath.Join(dir, "daemon.token"), filepath.Join(dir, "other.token")
	require.NoError(t, os.WriteFile(daemonFile, []byte("s3cret\n"), 0o600))
	require.NoError(t, os.WriteFile(otherFile, []byte("other\n"), 0o600))

	for _, tt := range []struct {
		name      string
		tokenFile string // the discovery file's
		args      []string
		ok        bool
	}{
		{"token file of the daemon", daemonFile, nil, true},
		{"--token", "", []string{"--token", "s3cret"}, true},
		{"--token-file", "", []string{"--token-file", daemonFile}, true},
		{"--token overrides the daemon's file", otherFile, []string{"--token", "s3cret"}, true},
		{"no token", "", nil, false},
		{"wrong token", "", []string{"--token", "guess"}, false},
		{"wrong token file", otherFile, nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			db := inspectDB(t)
			d := startDaemon(t, db, daemonOptions{token: "s3cret", tokenFile: tt.tokenFile})
			for _, args := range [][]string{{"dump"}, {"dump", "consumers"}, {"dump", "system"}} {
				r := run(t, "", append(append(args, "--db", db), tt.args...)...)
				if tt.ok {
					r.requireOK(t)
					require.NotEmpty(t, r.stdout)
					continue
				}
				require.Equal(t, ExitRuntime, r.code)
				require.Empty(t, r.stdout)
				require.Contains(t, r.stderr, fmt.Sprintf("flowrt: daemon at %s: GET /v1/", d.srv.Listener.Addr()))
				require.Contains(t, r.stderr, ": 401 Unauthorized: missing or wrong bearer token (give the daemon's token with --token or --token-file)\n")
			}
		})
	}

	t.Run("unreadable token file", func(t *testing.T) {
		db := inspectDB(t)
		startDaemon(t, db, daemonOptions{token: "s3cret", tokenFile: filepath.Join(dir, "gone")})
		r := run(t, "", "dump", "--db", db)
		require.Equal(t, ExitRuntime, r.code)
		require.Contains(t, r.stderr, "flowrt: read the daemon's token: open "+filepath.Join(dir, "gone"))
	})
}

// TestDumpLiveStale leaves a discovery file naming an address where no
// daemon listens while a process holds the journal: the dump commands
// fail fast with exit status 1 and say what to do.
func TestDumpLiveStale(t *testing.T) {
	t.Parallel()
	db := inspectDB(t)
	openLog(t, db, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	require.NoError(t, os.WriteFile(server.DiscoveryPath(db), []byte(`{"addr":"`+addr+`","pid":4242,"token_file":""}`), 0o600))

	for _, args := range [][]string{{"dump"}, {"dump", "--follow"}, {"dump", "system"}, {"dump", "consumers"}, {"dump", "dlq"}, {"dump", "state", "--flow", "totals"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			start := time.Now()
			r := run(t, "", append(args, "--db", db)...)
			require.Less(t, time.Since(start), 5*time.Second)
			require.Equal(t, ExitRuntime, r.code)
			require.Empty(t, r.stdout)
			require.True(t, strings.HasPrefix(r.stderr, fmt.Sprintf("flowrt: journal %s is in use by another process, and the daemon address %s in %s.http (pid 4242) does not answer: ", db, addr, db)), r.stderr)
			require.True(t, strings.HasSuffix(r.stderr, fmt.Sprintf("; if that daemon is gone, remove %s.http\n", db)), r.stderr)
		})
	}

	t.Run("bad discovery file", func(t *testing.T) {
		require.NoError(t, os.WriteFile(server.DiscoveryPath(db), []byte(`{"pid":1}`), 0o600))
		r := run(t, "", "dump", "--db", db)
		require.Equal(t, ExitRuntime, r.code)
		require.Equal(t, fmt.Sprintf("flowrt: read daemon address from %s.http: no \"addr\"\n", db), r.stderr)
	})
}

// TestDumpStaleFileAtRest: a discovery file left behind by a daemon that
// died does not matter while the journal is at rest.
func TestDumpStaleFileAtRest(t *testing.T) {
	db := inspectDB(t)
	require.NoError(t, os.WriteFile(server.DiscoveryPath(db), []byte(`{"addr":"127.0.0.1:1","pid":1,"token_file":""}`), 0o600))
	for _, args := range dumpModes {
		run(t, "", append(args, "--db", db)...).requireOK(t)
	}
}

func TestLiveClientAddr(t *testing.T) {
	for _, tt := range []struct{ addr, want string }{
		{"127.0.0.1:7070", "http://127.0.0.1:7070"},
		{":7070", "http://127.0.0.1:7070"},
		{"0.0.0.0:7070", "http://127.0.0.1:7070"},
		{"[::]:7070", "http://[::1]:7070"},
		{"[::1]:7070", "http://[::1]:7070"},
		{"example.org:80", "http://example.org:80"},
	} {
		t.Run(tt.addr, func(t *testing.T) {
			lc, err := newLiveClient(&dumpCommon{db: "j.db"}, &server.Discovery{Addr: tt.addr})
			require.NoError(t, err)
			require.Equal(t, tt.want, lc.base)
		})
	}
	_, err := newLiveClient(&dumpCommon{db: "j.db"}, &server.Discovery{Addr: "7070"})
	require.ErrorContains(t, err, `daemon address "7070" in j.db.http`)
}
