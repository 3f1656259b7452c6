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

const inputFile = "testdata/input.jsonl"

// TestAppendGolden appends testdata/input.jsonl twice, then into a second
// journal with --json, and compares the outputs with golden files.
func TestAppendGolden(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "j.db")

	r := run(t, "", "append", "--db", db, "--file", inputFile).requireOK(t)
	golden(t, "append", r.stdout)
	require.Empty(t, r.stderr)

	r = run(t, "", "append", "--db", db, "--file", inputFile).requireOK(t)
	golden(t, "append_again", r.stdout)

	in, err := os.ReadFile(inputFile)
	require.NoError(t, err)
	r = run(t, string(in), "append", "--db", filepath.Join(dir, "k.db"), "--stream", "orders", "--json").requireOK(t)
	golden(t, "append_json", r.stdout)
}

func TestAppendStoresEvents(t *testing.T) {
	db := filepath.Join(t.TempDir(), "j.db")
	require.NoFileExists(t, db)
	run(t, "", "append", "--db", db, "--file", inputFile).requireOK(t)

	l := openLog(t, db, &eventlog.Options{ReadOnly: true})
	var got []eventlog.Event
	for ev, err := range l.Scan(eventlog.DefaultStream, 0, 0) {
		require.NoError(t, err)
		got = append(got, ev)
	}
	require.Len(t, got, 8)
	id, err := eventlog.ParseID(testID)
	require.NoError(t, err)
	require.Equal(t, id, got[0].ID)
	require.Equal(t, map[string]string{"source": "shop-7", "trace": "t-1"}, got[0].Headers)
	require.Equal(t, eventlog.DeriveID(eventlog.DefaultStream, "pay-1001"), got[1].ID)
	for _, tt := range []struct {
		i    int
		data string
	}{
		{0, `{"customer":"c-42","total_cents":1598}`}, // compacted
		{2, `"shipped via <DHL> & co"`},               // a string keeps its quotes
		{3, `42.50`},                                  // numbers keep their text
		{4, `null`},
		{5, ``},
		{6, "\x00\x01\x02\x03"}, // from the $base64 marker
	} {
		require.Equal(t, tt.data, string(got[tt.i].Data), "event %d", tt.i)
	}
	require.Equal(t, "customer 42", got[3].Key)
	require.Equal(t, "", got[5].Key)
}

// TestAppendBadLines checks that one bad line anywhere refuses the whole
// input: exit status 2, a message naming the line, nothing appended.
func TestAppendBadLines(t *testing.T) {
	good := `{"type":"order.created","key":"order-1"}`
	tests := []struct {
		name string
		line string
		want string
	}{
		{"bad JSON", `{"type":"order.paid",`, "line 3: invalid JSON at column 21"},
		{"unknown field", `{"type":"order.paid","amount":5}`, `line 3: unknown field "amount"`},
		{"missing type", `{"key":"order-1","data":{}}`, `line 3: missing "type"`},
		{"bad type", `{"type":"Order Paid"}`, `line 3: invalid event: type "Order Paid" has character ' '`},
		{"type with empty segment", `{"type":"order..paid"}`, `line 3: invalid event: type "order..paid" has an empty segment`},
		{"bad id", `{"type":"order.paid","id":"not-a-ulid"}`, `line 3: invalid event: id "not-a-ulid" is not a ULID`},
		{"id and idempotency_key", `{"type":"order.paid","id":"` + testID + `","idempotency_key":"k"}`, `line 3: "id" and "idempotency_key" are exclusive`},
		{"empty header name", `{"type":"order.paid","headers":{"":"x"}}`, "line 3: invalid event: empty header name"},
		{"key too long", `{"type":"order.paid","key":"` + strings.Repeat("k", eventlog.MaxKeyLen+1) + `"}`, "line 3: invalid event: key is 1025 bytes"},
		{"oversized event", `{"type":"order.paid","data":"` + strings.Repeat("x", 1<<20) + `"}`, "line 3: event too large: 1048"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "j.db")
			run(t, good+"\n", "append", "--db", db).requireOK(t)
			require.Equal(t, uint64(1), streamLast(t, db, eventlog.DefaultStream))

			in := good + "\n\n" + tt.line + "\n" + good + "\n"
			r := run(t, in, "append", "--db", db)
			require.Equal(t, ExitUsage, r.code, "err: %v", r.err)
			require.Empty(t, r.stdout)
			require.Equal(t, "flowrt: stdin: "+tt.want, r.stderr[:min(len(r.stderr), len("flowrt: stdin: "+tt.want))])
			require.True(t, strings.HasSuffix(r.stderr, "; nothing appended\n"), "stderr: %q", r.stderr)
			require.NotContains(t, r.stderr, "--help", "bad input is not a command-line mistake")
			require.Equal(t, uint64(1), streamLast(t, db, eventlog.DefaultStream), "something was appended")
		})
	}

	t.Run("journal not created", func(t *testing.T) {
		db := filepath.Join(t.TempDir(), "j.db")
		r := run(t, "{\"type\":\"a\"}\nnot json\n", "append", "--db", db)
		require.Equal(t, ExitUsage, r.code)
		require.Contains(t, r.stderr, "line 2:")
		require.NoFileExists(t, db)
	})
	t.Run("several bad lines", func(t *testing.T) {
		db := filepath.Join(t.TempDir(), "j.db")
		r := run(t, "{}\n{\"type\":\"a\"}\n[]\n", "append", "--db", db)
		require.Equal(t, ExitUsage, r.code)
		require.Equal(t, "flowrt: stdin: 2 bad lines:\n  line 1: missing \"type\"\n  line 3: want a JSON object, got an array\nnothing appended\n", r.stderr)
	})
	t.Run("missing file", func(t *testing.T) {
		db := filepath.Join(t.TempDir(), "j.db")
		r := run(t, "", "append", "--db", db, "--file", "testdata/nope.jsonl")
		require.Equal(t, ExitUsage, r.code)
		require.Contains(t, r.stderr, "flowrt: --file: open testdata/nope.jsonl: no such file or directory")
		require.NoFileExists(t, db)
	})
}

func TestAppendDuplicatesAcrossRuns(t *testing.T) {
	db := filepath.Join(t.TempDir(), "j.db")
	in := `{"type":"order.created","key":"order-1","idempotency_key":"a"}
{"type":"order.created","key":"order-2","idempotency_key":"b"}
`
	r := run(t, in, "append", "--db", db).requireOK(t)
	require.Equal(t, "appended 2 events to \"events\": seq 1..2 (0 duplicates)\n", r.stdout)

	r = run(t, in+`{"type":"order.created","key":"order-3","idempotency_key":"c"}`, "append", "--db", db).requireOK(t)
	require.Equal(t, "appended 1 event to \"events\": seq 3..3 (2 duplicates)\n", r.stdout)

	r = run(t, in, "append", "--db", db).requireOK(t)
	require.Equal(t, "appended 0 events to \"events\" (2 duplicates)\n", r.stdout)

	r = run(t, in, "append", "--db", db, "--json").requireOK(t)
	var res appendResultJSON
	require.NoError(t, json.Unmarshal([]byte(strings.SplitN(r.stdout, "\n", 2)[0]), &res))
	require.Equal(t, appendResultJSON{Line: 1, Stream: "events", Seq: 1, ID: eventlog.DeriveID("events", "a").String(), Duplicate: true}, res)

	// The same idempotency key in another stream is another event.
	r = run(t, in, "append", "--db", db, "--stream", "other").requireOK(t)
	require.Equal(t, "appended 2 events to \"other\": seq 1..2 (0 duplicates)\n", r.stdout)
	require.Equal(t, uint64(3), streamLast(t, db, eventlog.DefaultStream))
}

// TestAppendChunks appends more events than one commit holds.
func TestAppendChunks(t *testing.T) {
	db := filepath.Join(t.TempDir(), "j.db")
	n := 2*appendChunk + 500
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "{\"type\":\"tick\",\"idempotency_key\":\"%d\",\"data\":%d}\n", i, i)
	}
	r := run(t, b.String(), "append", "--db", db).requireOK(t)
	require.Equal(t, fmt.Sprintf("appended %d events to \"events\": seq 1..%d (0 duplicates)\n", n, n), r.stdout)

	l := openLog(t, db, &eventlog.Options{ReadOnly: true})
	i := 0
	for ev, err := range l.Scan(eventlog.DefaultStream, 0, 0) {
		require.NoError(t, err)
		require.Equal(t, uint64(i+1), ev.Seq)
		require.Equal(t, fmt.Sprint(i), string(ev.Data))
		i++
	}
	require.Equal(t, n, i)
}

func TestAppendEmptyInput(t *testing.T) {
	db := filepath.Join(t.TempDir(), "j.db")
	r := run(t, "\n  \n", "append", "--db", db).requireOK(t)
	require.Equal(t, "appended 0 events to \"events\" (0 duplicates)\n", r.stdout)
	require.FileExists(t, db, "append creates the journal even with no events")
}

// TestExampleEvents runs the append of the README's first command
// in-process: the sample events append, and appending them again is
// idempotent; runtime's TestExampleFlows runs the flows of its second
// half.
func TestExampleEvents(t *testing.T) {
	db := filepath.Join(t.TempDir(), "flowrt.db")
	example := filepath.Join("..", "..", "..", "examples", "events.jsonl")
	r := run(t, "", "append", "--db", db, "--file", example).requireOK(t)
	require.Equal(t, "appended 6 events to \"events\": seq 1..6 (0 duplicates)\n", r.stdout)
	r = run(t, "", "append", "--db", db, "--file", example).requireOK(t)
	require.Equal(t, "appended 0 events to \"events\" (6 duplicates)\n", r.stdout)

	r = run(t, "", "dump", "--db", db).requireOK(t)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	require.Len(t, lines, 7)
	require.Regexp(t, `^SEQ +TIME +TYPE +KEY +ID +DATA$`, lines[0])
	require.Regexp(t, `^6 .* order\.created +order-1003 `, lines[6])
}

// TestAppendLocked checks that append gives up on a journal another process
// holds, after --lock-timeout, with exit status 1.
func TestAppendLocked(t *testing.T) {
	db := filepath.Join(t.TempDir(), "j.db")
	openLog(t, db, &eventlog.Options{LockTimeout: time.Second}) // holds the lock until cleanup

	start := time.Now()
	r := run(t, `{"type":"a"}`, "append", "--db", db, "--lock-timeout", "100ms")
	require.Less(t, time.Since(start), 5*time.Second)
	require.Equal(t, ExitRuntime, r.code)
	require.ErrorIs(t, r.err, eventlog.ErrLocked)
	require.Contains(t, r.stderr, "flowrt: journal "+db+" is in use by another process (flowrt run?)")
}
