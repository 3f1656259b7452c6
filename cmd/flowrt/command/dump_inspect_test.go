package command

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/stretchr/testify/require"
)

// The tests of the dump subcommands on a journal at rest. The journal is
// described by buildInspectJournal.

// runIDs returns the IDs of the inspection journal's runs, oldest first.
func runIDs(t *testing.T, db string) []string {
	t.Helper()
	r := run(t, "", "dump", "system", "--db", db, "--json").requireOK(t)
	var ids []string
	for line := range strings.Lines(r.stdout) {
		ids = append(ids, line[len(`{"id":"`):len(`{"id":"`)+26])
	}
	return ids
}

func TestDumpSystemGolden(t *testing.T) {
	db := inspectDB(t)
	defer requireDBNoChange(t, db)()

	r := run(t, "", "dump", "system", "--db", db).requireOK(t)
	golden(t, "dump_system", maskDump(r.stdout))
	require.Empty(t, r.stderr)

	r = run(t, "", "dump", "system", "--db", db, "-v").requireOK(t)
	golden(t, "dump_system_verbose", maskDump(r.stdout))

	r = run(t, "", "dump", "system", "--db", db, "--json").requireOK(t)
	golden(t, "dump_system_json", maskDump(r.stdout))

	ids := runIDs(t, db)
	require.Len(t, ids, 3)
	t.Run("one run by prefix", func(t *testing.T) {
		r := run(t, "", "dump", "system", "--db", db, "--run", strings.ToLower(ids[1][:20])).requireOK(t)
		require.True(t, strings.HasPrefix(r.stdout, "run "+ids[1]+"\n  started "), r.stdout)
		require.Contains(t, r.stdout, "end running, crashed yes")
		require.Equal(t, 1, strings.Count(r.stdout, "run "+ids[1]+"\n"), "one run printed")
		require.NotContains(t, r.stdout, ids[0])
		require.NotContains(t, r.stdout, ids[2])
	})
	t.Run("one run as JSON", func(t *testing.T) {
		r := run(t, "", "dump", "system", "--db", db, "--run", ids[2], "--json").requireOK(t)
		require.Equal(t, 1, countLines(r.stdout))
		require.Contains(t, r.stdout, `"crashed_run":"`+ids[1]+`"`)
	})
	for _, tt := range []struct{ name, run, want string }{
		{"unknown run", "01ZZZ", `no run "01ZZZ" in $system (3 runs recorded; see flowrt dump system)`},
		{"ambiguous prefix", ids[0][:2], fmt.Sprintf("--run %q matches 3 runs: %s", ids[0][:2], strings.Join(ids, ", "))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, "", "dump", "system", "--db", db, "--run", tt.run)
			require.Equal(t, ExitRuntime, r.code)
			require.Empty(t, r.stdout)
			require.Contains(t, r.stderr, tt.want)
		})
	}
}

func TestDumpSystemEmpty(t *testing.T) {
	db := goldenDB(t)
	r := run(t, "", "dump", "system", "--db", db).requireOK(t)
	require.Empty(t, r.stdout)
	require.Equal(t, "flowrt: note: "+db+" has no recorded runs ($system is empty; flowrt run records each run there)\n", r.stderr)
}

func TestDumpConsumersGolden(t *testing.T) {
	db := inspectDB(t)
	defer requireDBNoChange(t, db)()

	r := run(t, "", "dump", "consumers", "--db", db).requireOK(t)
	golden(t, "dump_consumers", maskDump(r.stdout))
	require.Empty(t, r.stderr)

	r = run(t, "", "dump", "consumers", "--db", db, "--json").requireOK(t)
	golden(t, "dump_consumers_json", maskDump(r.stdout))

	r = run(t, "", "dump", "consumers", "--db", db, "--stream", "audit", "--json").requireOK(t)
	require.Equal(t, 1, countLines(r.stdout))
	require.True(t, strings.HasPrefix(r.stdout, `{"stream":"audit","consumer":"auditor","offset":1,"last":2,"lag":1,`), r.stdout)

	r = run(t, "", "dump", "consumers", "--db", db, "--stream", "orders").requireOK(t)
	require.Empty(t, r.stdout)
	require.Equal(t, "flowrt: note: "+db+" has no consumers on stream \"orders\"\n", r.stderr)
}

func TestDumpDLQGolden(t *testing.T) {
	db := inspectDB(t)
	defer requireDBNoChange(t, db)()

	r := run(t, "", "dump", "dlq", "--db", db).requireOK(t)
	golden(t, "dump_dlq", maskDump(r.stdout))
	require.Empty(t, r.stderr)

	r = run(t, "", "dump", "dlq", "--db", db, "--json").requireOK(t)
	golden(t, "dump_dlq_json", maskDump(r.stdout))

	tests := []struct {
		name       string
		args       []string
		rows       int
		wantStderr string
	}{
		{"consumer", []string{"--consumer", "billing"}, 2, ""},
		{"stream and consumer", []string{"--stream", "events", "--consumer", "billing"}, 2, ""},
		{"stream", []string{"--stream", "events"}, 2, ""},
		{"consumer without dead letters", []string{"--consumer", "auditor"}, 0, `flowrt: note: no dead letters for consumer "auditor"` + "\n"},
		{"stream without dead letters", []string{"--stream", "audit"}, 0, `flowrt: note: no dead letters on stream "audit"` + "\n"},
		{"unknown consumer", []string{"--consumer", "nobody"}, 0, "flowrt: note: " + db + ` has no consumer "nobody" (see flowrt dump consumers)` + "\n"},
		{"consumer on another stream", []string{"--stream", "audit", "--consumer", "billing"}, 0, "flowrt: note: " + db + ` has no consumer "billing" on stream "audit" (see flowrt dump consumers)` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, "", append([]string{"dump", "dlq", "--db", db, "--json"}, tt.args...)...).requireOK(t)
			require.Equal(t, tt.rows, countLines(r.stdout))
			require.Equal(t, tt.wantStderr, r.stderr)
		})
	}

	t.Run("width cuts the error", func(t *testing.T) {
		r := run(t, "", "dump", "dlq", "--db", db, "--width", "10").requireOK(t)
		require.Contains(t, r.stdout, "  card de...\n")
	})
}

func TestDumpStateGolden(t *testing.T) {
	db := inspectDB(t)
	defer requireDBNoChange(t, db)()

	r := run(t, "", "dump", "state", "--db", db, "--flow", "totals").requireOK(t)
	golden(t, "dump_state", r.stdout)
	require.Empty(t, r.stderr)

	r = run(t, "", "dump", "state", "--db", db, "--flow", "totals", "--json").requireOK(t)
	golden(t, "dump_state_json", r.stdout)

	r = run(t, "", "dump", "state", "--db", db, "--flow", "totals", "--snapshots").requireOK(t)
	golden(t, "dump_state_snapshots", maskDump(r.stdout))

	r = run(t, "", "dump", "state", "--db", db, "--flow", "totals", "--snapshots", "--json").requireOK(t)
	golden(t, "dump_state_snapshots_json", maskDump(r.stdout))

	tests := []struct {
		name       string
		args       []string
		want       string
		wantStderr string
	}{
		{"key", []string{"--key", "c-2"}, `{"key":"c-2","value":25}` + "\n", ""},
		{"key is exact", []string{"--key", "c"}, "", `flowrt: note: flow "totals" has no key "c"` + "\n"},
		{"prefix", []string{"--prefix", "c-1"}, `{"key":"c-1","value":15}` + "\n", ""},
		{"prefix without keys", []string{"--prefix", "x"}, "", `flowrt: note: flow "totals" has no keys beginning with "x"` + "\n"},
		{"flow without state", []string{"--flow", "billing"}, "", "flowrt: note: " + db + ` has no committed state for flow "billing" (flows with state: "totals")` + "\n"},
		{"flow without snapshots", []string{"--flow", "billing", "--snapshots"}, "", `flowrt: note: flow "billing" has no snapshots` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, "", append([]string{"dump", "state", "--db", db, "--flow", "totals", "--json"}, tt.args...)...).requireOK(t)
			require.Equal(t, tt.want, r.stdout)
			require.Equal(t, tt.wantStderr, r.stderr)
		})
	}
}

// dumpModes lists a command line of every dump command and mode, without
// --db.
var dumpModes = [][]string{
	{"dump"},
	{"dump", "--json", "--stream", "$system"},
	{"dump", "--stream", "missing"},
	{"dump", "system"},
	{"dump", "system", "-v"},
	{"dump", "system", "--json"},
	{"dump", "consumers"},
	{"dump", "consumers", "--json"},
	{"dump", "dlq"},
	{"dump", "dlq", "--json", "--consumer", "nobody"},
	{"dump", "state", "--flow", "totals"},
	{"dump", "state", "--flow", "totals", "--json", "--key", "c-1"},
	{"dump", "state", "--flow", "totals", "--snapshots"},
	{"dump", "state", "--flow", "nothing"},
}

// TestDumpSubcommandsLeaveFileUnchanged runs every dump command on the
// inspection journal and checks that the file is byte for byte unchanged
// and nothing was left beside it.
func TestDumpSubcommandsLeaveFileUnchanged(t *testing.T) {
	db := inspectDB(t)
	defer requireDBNoChange(t, db)()
	info, err := os.Stat(db)
	require.NoError(t, err)
	for _, args := range dumpModes {
		run(t, "", append(args, "--db", db)...).requireOK(t)
	}
	after, err := os.Stat(db)
	require.NoError(t, err)
	require.Equal(t, info.ModTime(), after.ModTime())
	entries, err := os.ReadDir(filepath.Dir(db))
	require.NoError(t, err)
	require.Len(t, entries, 1, "dump left files behind: %v", entries)
}

func TestDumpSubcommandsMissingJournal(t *testing.T) {
	db := filepath.Join(t.TempDir(), "nope.db")
	for _, args := range dumpModes {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := run(t, "", append(args, "--db", db)...)
			require.Equal(t, ExitRuntime, r.code)
			require.Empty(t, r.stdout)
			require.Equal(t, "flowrt: no journal at "+db+" (file does not exist)\n", r.stderr)
			require.NoFileExists(t, db)
		})
	}
}

// TestDumpSubcommandsLocked holds the journal as a daemon without --http
// would: every dump command fails with exit status 1 and says what to do,
// after the lock timeout and well within 5s.
func TestDumpSubcommandsLocked(t *testing.T) {
	t.Parallel()
	db := inspectDB(t)
	openLog(t, db, nil) // holds the lock until cleanup
	want := fmt.Sprintf("flowrt: journal %s is in use by another process (flowrt run?); start that process with --http to read it while it runs, or stop it\n", db)
	for _, args := range append(dumpModes, []string{"dump", "--follow"}) {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			start := time.Now()
			r := run(t, "", append(args, "--db", db, "--lock-timeout", "100ms")...)
			elapsed := time.Since(start)
			require.Less(t, elapsed, 5*time.Second)
			require.GreaterOrEqual(t, elapsed, 40*time.Millisecond, "bbolt gives up at most 50ms early")
			require.Equal(t, ExitRuntime, r.code)
			require.ErrorIs(t, r.err, eventlog.ErrLocked)
			require.Empty(t, r.stdout)
			require.Equal(t, want, r.stderr)
		})
	}
}

func TestDumpSubcommandsUsage(t *testing.T) {
	db := filepath.Join(t.TempDir(), "j.db")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"system argument", []string{"dump", "system", "extra"}, `flowrt dump system takes no arguments, got ["extra"]`},
		{"unknown subcommand", []string{"dump", "sytem"}, `takes no arguments, got ["sytem"] (subcommands: system, consumers, dlq, state; flags start with --); did you mean system?`},
		{"system without db", []string{"dump", "system"}, "--db is required"},
		{"token and token file", []string{"dump", "consumers", "--token", "a", "--token-file", "f"}, "--token and --token-file are exclusive"},
		{"consumers bad stream", []string{"dump", "consumers", "--stream", "a/b"}, `--stream: invalid name: "a/b"`},
		{"dlq bad consumer", []string{"dump", "dlq", "--consumer", "a b"}, `--consumer: invalid name: "a b"`},
		{"dlq negative width", []string{"dump", "dlq", "--width", "-1"}, "--width must not be negative"},
		{"state without flow", []string{"dump", "state"}, "--flow is required"},
		{"state bad flow", []string{"dump", "state", "--flow", "a/b"}, `--flow: invalid name: "a/b"`},
		{"state key and prefix", []string{"dump", "state", "--flow", "f", "--key", "k", "--prefix", "p"}, "--key and --prefix are exclusive"},
		{"state snapshots and key", []string{"dump", "state", "--flow", "f", "--snapshots", "--key", "k"}, "--snapshots lists whole snapshots"},
		{"state zero lock timeout", []string{"dump", "state", "--flow", "f", "--lock-timeout", "0s"}, "--lock-timeout must be positive"},
		{"follow bad flag", []string{"dump", "--follow=maybe"}, `invalid argument "maybe" for "-f, --follow"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.name != "system without db" {
				args = append(args, "--db", db)
			}
			r := run(t, "", args...)
			require.Equal(t, ExitUsage, r.code, "err: %v", r.err)
			require.Empty(t, r.stdout)
			require.True(t, strings.HasPrefix(r.stderr, "flowrt: "), "stderr: %q", r.stderr)
			require.Contains(t, r.stderr, tt.want)
			require.Contains(t, r.stderr, "--help' for usage.")
			require.NoFileExists(t, db)
		})
	}
}

func TestDumpSubcommandsHelp(t *testing.T) {
	for _, tt := range []struct {
		cmd   string
		flags []string
	}{
		{"system", []string{"--run", "--verbose", "--json", "--db", "--lock-timeout", "--token", "--token-file"}},
		{"consumers", []string{"--stream", "--json", "--db"}},
		{"dlq", []string{"--stream", "--consumer", "--width", "--json"}},
		{"state", []string{"--flow", "--key", "--prefix", "--snapshots", "--width", "--json"}},
	} {
		t.Run(tt.cmd, func(t *testing.T) {
			r := run(t, "", "dump", tt.cmd, "--help").requireOK(t)
			require.Contains(t, r.stdout, "Exit status:")
			require.Contains(t, r.stdout, "Examples:")
			require.Contains(t, r.stdout, "--http")
			for _, f := range tt.flags {
				require.Contains(t, r.stdout, f)
			}
		})
	}
	r := run(t, "", "dump", "--help").requireOK(t)
	for _, s := range []string{"--follow", "system", "consumers", "dlq", "state", "--token"} {
		require.Contains(t, r.stdout, s)
	}
}
