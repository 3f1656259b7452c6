package command

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/stretchr/testify/require"
)

// goldenDB returns a journal holding testdata/input.jsonl in "events".
func goldenDB(t *testing.T) string {
	t.Helper()
	db := filepath.Join(t.TempDir(), "j.db")
	run(t, "", "append", "--db", db, "--file", inputFile).requireOK(t)
	return db
}

func TestDumpGolden(t *testing.T) {
	db := goldenDB(t)
	defer requireDBNoChange(t, db)()

	r := run(t, "", "dump", "--db", db).requireOK(t)
	golden(t, "dump", maskTimes(r.stdout))
	require.Empty(t, r.stderr)

	r = run(t, "", "dump", "--db", db, "--json").requireOK(t)
	golden(t, "dump_json", maskTimes(r.stdout))

	r = run(t, "", "dump", "--db", db, "--type", "order.*", "--from", "2", "--limit", "3", "--width", "0").requireOK(t)
	golden(t, "dump_filtered", maskTimes(r.stdout))
}

// dumpSeqs runs dump --json with args and returns the printed sequences.
func dumpSeqs(t *testing.T, args ...string) []uint64 {
	t.Helper()
	r := run(t, "", append([]string{"dump", "--json"}, args...)...).requireOK(t)
	seqs := []uint64{}
	for line := range strings.Lines(r.stdout) {
		var je jsonEvent
		require.NoError(t, json.Unmarshal([]byte(line), &je))
		seqs = append(seqs, je.Seq)
	}
	return seqs
}

func TestDumpFilters(t *testing.T) {
	db := filepath.Join(t.TempDir(), "j.db")
	l, err := eventlog.Open(db, nil)
	require.NoError(t, err)
	types := []string{"order.created", "order.paid", "user.created", "order.created", "order.shipped", "order.paid.refund", "user.deleted", "order.created"}
	for _, typ := range types { // seq 1..8
		_, err := l.Append("events", eventlog.Event{Type: typ})
		require.NoError(t, err)
	}
	_, err = l.Append("audit", eventlog.Event{Type: "audit.login"}, eventlog.Event{Type: "audit.logout"})
	require.NoError(t, err)
	_, err = l.Truncate("events", 2, eventlog.Force) // retention removed seq 1
	require.NoError(t, err)
	require.NoError(t, l.Close())
	defer requireDBNoChange(t, db)()

	tests := []struct {
		name string
		args []string
		want []uint64
	}{
		{"all retained", nil, []uint64{2, 3, 4, 5, 6, 7, 8}},
		{"type glob", []string{"--type", "order.*"}, []uint64{2, 4, 5, 6, 8}},
		{"star matches across dots", []string{"--type", "order.paid*"}, []uint64{2, 6}},
		{"exact type", []string{"--type", "user.deleted"}, []uint64{7}},
		{"character class", []string{"--type", "[ou]*.created"}, []uint64{3, 4, 8}},
		{"no match", []string{"--type", "nothing"}, []uint64{}},
		{"from", []string{"--from", "6"}, []uint64{6, 7, 8}},
		{"from before the first retained", []string{"--from", "1"}, []uint64{2, 3, 4, 5, 6, 7, 8}},
		{"from past the end", []string{"--from", "9"}, []uint64{}},
		{"limit", []string{"--limit", "2"}, []uint64{2, 3}},
		{"limit counts printed events", []string{"--type", "order.created", "--limit", "2"}, []uint64{4, 8}},
		{"from, type and limit", []string{"--from", "3", "--type", "order.*", "--limit", "2"}, []uint64{4, 5}},
		{"limit above count", []string{"--limit", "100"}, []uint64{2, 3, 4, 5, 6, 7, 8}},
		{"stream", []string{"--stream", "audit"}, []uint64{1, 2}},
		{"stream and type", []string{"--stream", "audit", "--type", "*.logout"}, []uint64{2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, dumpSeqs(t, append([]string{"--db", db}, tt.args...)...))
		})
	}

	t.Run("table obeys the same filters", func(t *testing.T) {
		r := run(t, "", "dump", "--db", db, "--type", "order.*", "--limit", "3").requireOK(t)
		lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		require.Len(t, lines, 4)
		for i, seq := range []string{"2", "4", "5"} { // 3 is a user event
			require.True(t, strings.HasPrefix(lines[i+1], seq+" "), "row %q", lines[i+1])
		}
	})
}

// TestDumpDataMarker appends data through the API, bytes that are not JSON
// among them, and checks how dump --json writes each, then that append reads
// dump's output back to the same bytes.
func TestDumpDataMarker(t *testing.T) {
	db := filepath.Join(t.TempDir(), "j.db")
	datas := [][]byte{
		[]byte(`{"a":1}`),
		[]byte("not json"),
		{0xde, 0xad, 0xbe, 0xef},
		nil,
		[]byte(`"text"`),
		[]byte(`{"$base64":"AA=="}`),
		[]byte("{\n  \"pretty\": true\n}"),
	}
	want := []string{
		`"data":{"a":1}}`,
		`"data":{"$base64":"bm90IGpzb24="}}`,
		`"data":{"$base64":"3q2+7w=="}}`,
		`"type":"blob"}`, // no data: the field is omitted
		`"data":"text"}`,
		`"data":{"$base64":"eyIkYmFzZTY0IjoiQUE9PSJ9"}}`,
		`"data":{"pretty":true}}`,
	}
	l, err := eventlog.Open(db, nil)
	require.NoError(t, err)
	for _, d := range datas {
		_, err := l.Append("events", eventlog.Event{Type: "blob", Data: d})
		require.NoError(t, err)
	}
	require.NoError(t, l.Close())

	r := run(t, "", "dump", "--db", db, "--json").requireOK(t)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	require.Len(t, lines, len(datas))
	for i, line := range lines {
		require.True(t, strings.HasSuffix(line, want[i]), "line %d: %s", i+1, line)
	}

	// Round trip: dump's lines, less the fields append does not take, append
	// to another journal with the same IDs and the same bytes.
	var in strings.Builder
	for _, line := range lines {
		var m map[string]json.RawMessage
		require.NoError(t, json.Unmarshal([]byte(line), &m))
		delete(m, "seq")
		delete(m, "time")
		delete(m, "stream")
		b, err := json.Marshal(m)
		require.NoError(t, err)
		in.Write(append(b, '\n'))
	}
	copyDB := filepath.Join(t.TempDir(), "copy.db")
	run(t, in.String(), "append", "--db", copyDB).requireOK(t)
	src, dst := openLog(t, db, &eventlog.Options{ReadOnly: true}), openLog(t, copyDB, &eventlog.Options{ReadOnly: true})
	for i := range datas {
		a, err := src.Get("events", uint64(i+1))
		require.NoError(t, err)
		b, err := dst.Get("events", uint64(i+1))
		require.NoError(t, err)
		require.Equal(t, a.ID, b.ID)
		if i == len(datas)-1 {
			require.Equal(t, `{"pretty":true}`, string(b.Data), "inline JSON is compacted")
			continue
		}
		require.Equal(t, a.Data, b.Data, "event %d", i+1)
	}
}

// TestDumpLeavesFileUnchanged runs dump in every mode, failing ones too, on
// a journal and checks that the file is byte for byte unchanged.
func TestDumpLeavesFileUnchanged(t *testing.T) {
	db := goldenDB(t)
	defer requireDBNoChange(t, db)()
	info, err := os.Stat(db)
	require.NoError(t, err)
	for _, args := range [][]string{
		{},
		{"--json"},
		{"--type", "order.*", "--from", "3", "--limit", "2"},
		{"--stream", "missing"},
		{"--stream", "$system"},
	} {
		run(t, "", append([]string{"dump", "--db", db}, args...)...).requireOK(t)
	}
	after, err := os.Stat(db)
	require.NoError(t, err)
	require.Equal(t, info.Size(), after.Size())
	require.Equal(t, info.ModTime(), after.ModTime())
	entries, err := os.ReadDir(filepath.Dir(db))
	require.NoError(t, err)
	require.Len(t, entries, 1, "dump left files behind: %v", entries)
}

func TestDumpMissingStream(t *testing.T) {
	db := goldenDB(t)
	r := run(t, "", "dump", "--db", db, "--stream", "orders").requireOK(t)
	require.Empty(t, r.stdout)
	require.Equal(t, fmt.Sprintf("flowrt: note: %s has no stream \"orders\" (streams: \"events\")\n", db), r.stderr)
}

func TestDumpMissingJournal(t *testing.T) {
	db := filepath.Join(t.TempDir(), "nope.db")
	r := run(t, "", "dump", "--db", db)
	require.Equal(t, ExitRuntime, r.code)
	require.Equal(t, "flowrt: no journal at "+db+" (file does not exist)\n", r.stderr)
	require.NoFileExists(t, db, "dump must not create a journal")
}

func TestDumpNotAJournal(t *testing.T) {
	db := filepath.Join(t.TempDir(), "j.db")
	require.NoError(t, os.WriteFile(db, []byte(`{"not":"a journal"}`), 0o644))
	defer requireDBNoChange(t, db)()
	r := run(t, "", "dump", "--db", db)
	require.Equal(t, ExitRuntime, r.code)
	require.ErrorIs(t, r.err, eventlog.ErrNotJournal)
	require.True(t, strings.HasPrefix(r.stderr, "flowrt: not a flowrt journal"), "stderr: %q", r.stderr)
}

// TestDumpLocked holds the journal open as `flowrt run` without --http
// would: dump must give up after the lock timeout, well before 5s, with
// exit status 1, and say what to do.
func TestDumpLocked(t *testing.T) {
	db := goldenDB(t)
	openLog(t, db, &eventlog.Options{LockTimeout: time.Second}) // holds the lock until cleanup

	for _, tt := range []struct {
		name string
		args []string
		wait time.Duration
	}{
		{"default timeout", nil, defaultLockTimeout},
		{"short timeout", []string{"--lock-timeout", "50ms"}, 50 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			r := run(t, "", append([]string{"dump", "--db", db}, tt.args...)...)
			elapsed := time.Since(start)
			require.Less(t, elapsed, 5*time.Second)
			// bbolt polls the lock every 50ms and gives up up to 50ms early.
			require.GreaterOrEqual(t, elapsed, tt.wait-60*time.Millisecond)
			require.Equal(t, ExitRuntime, r.code)
			require.ErrorIs(t, r.err, eventlog.ErrLocked)
			var lerr *LockedError
			require.ErrorAs(t, r.err, &lerr)
			require.Equal(t, tt.wait, lerr.Timeout)
			require.Empty(t, r.stdout)
			require.Equal(t, fmt.Sprintf("flowrt: journal %s is in use by another process (flowrt run?); start that process with --http to read it while it runs, or stop it\n", db), r.stderr)
		})
	}
}

func TestTruncate(t *testing.T) {
	for _, tt := range []struct {
		s     string
		width int
		want  string
	}{
		{"abcdef", 0, "abcdef"},
		{"abcdef", 6, "abcdef"},
		{"abcdefg", 6, "abc..."},
		{"äöüäöüä", 6, "äöü..."},
		{"abcdef", 2, ".."},
	} {
		require.Equal(t, tt.want, truncate(tt.s, tt.width), "%q/%d", tt.s, tt.width)
	}
}

func TestTableKey(t *testing.T) {
	require.Equal(t, "-", tableKey(""))
	require.Equal(t, "order 1", tableKey("order 1"))
	require.Equal(t, `"-"`, tableKey("-"))
	require.Equal(t, `"a\tb\n"`, tableKey("a\tb\n"))
}
