package command

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flowrt/flowrt/eventlog"
)

// checkMarker is the data of one event of checkJournal, unique in the
// file, so that a test can find its record and damage it. It is large
// enough that the stream's bucket has pages of its own: a small bucket
// lives inline in its parent's page, which later commits copy.
var checkMarker = []byte(`"damage-me-` + strings.Repeat("x", 4000) + `"`)

// checkJournal writes a small healthy journal: five events in one commit
// (so each record is written once), the third holding checkMarker, and a
// consumer offset.
func checkJournal(t *testing.T) string {
	t.Helper()
	db := filepath.Join(t.TempDir(), "flowrt.db")
	l, err := eventlog.Open(db, nil)
	require.NoError(t, err)
	events := make([]eventlog.Event, 5)
	for i := range events {
		events[i] = eventlog.Event{Type: "order.created", Key: fmt.Sprintf("order-%d", i+1), Data: []byte(fmt.Sprintf(`{"n":%d}`, i+1))}
	}
	events[2].Data = checkMarker
	_, err = l.Append("events", events...)
	require.NoError(t, err)
	require.NoError(t, l.CommitOffset("events", "orders", 2))
	require.NoError(t, l.Close())
	return db
}

// damageRecord copies the journal and flips one bit in the middle of the
// record holding checkMarker, and returns the copy's path.
func damageRecord(t *testing.T, db string) string {
	t.Helper()
	raw, err := os.ReadFile(db)
	require.NoError(t, err)
	require.Equal(t, 1, bytes.Count(raw, checkMarker), "the marked record should be in the file once")
	raw[bytes.Index(raw, checkMarker)+len(checkMarker)/2] ^= 0x01
	damaged := filepath.Join(t.TempDir(), "damaged.db")
	require.NoError(t, os.WriteFile(damaged, raw, 0o644))
	return damaged
}

// crcRE matches the checksums of a CRC error, which change with the
// events' IDs and times.
var crcRE = regexp.MustCompile(`stored [0-9a-f]{8}, computed [0-9a-f]{8}`)

// maskCheck makes check's output the same from run to run.
func maskCheck(out, db string) string {
	out = strings.ReplaceAll(out, db, "$DB")
	return crcRE.ReplaceAllString(out, "stored XXXXXXXX, computed XXXXXXXX")
}

func TestCheck(t *testing.T) {
	healthy := checkJournal(t)
	damaged := damageRecord(t, healthy)
	tests := []struct {
		name   string
		db     string
		json   bool
		code   int
		golden string
	}{
		{"healthy", healthy, false, ExitOK, "check_ok"},
		{"healthy json", healthy, true, ExitOK, "check_ok_json"},
		{"damaged", damaged, false, ExitRuntime, "check_damaged"},
		{"damaged json", damaged, true, ExitRuntime, "check_damaged_json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer requireDBNoChange(t, tt.db)()
			args := []string{"check", "--db", tt.db}
			if tt.json {
				args = append(args, "--json")
			}
			r := run(t, "", args...)
			require.Equal(t, tt.code, r.code, "stderr: %s", r.stderr)
			golden(t, tt.golden, maskCheck(r.stdout, tt.db))
			if tt.code == ExitOK {
				require.Empty(t, r.stderr)
				return
			}
			require.Equal(t, "flowrt: "+tt.db+": 1 problem found; see 'Recovering from a corrupted file' in docs/OPERATIONS.md\n", r.stderr)
		})
	}
}

// TestCheckDamage damages a journal in other ways: what check reports,
// and its exit status.
func TestCheckDamage(t *testing.T) {
	healthy := checkJournal(t)
	tests := []struct {
		name   string
		damage func(raw []byte) []byte
		want   string // in the report
	}{
		{"not a journal", func(raw []byte) []byte { return bytes.Repeat([]byte("flowrt"), 2000) }, "PROBLEMS (1):"},
		{"marked record", func(raw []byte) []byte {
			raw[bytes.Index(raw, checkMarker)+3] ^= 0x80
			return raw
		}, `stream "events" seq 3: corrupt record: CRC32C mismatch`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := os.ReadFile(healthy)
			require.NoError(t, err)
			db := filepath.Join(t.TempDir(), "damaged.db")
			require.NoError(t, os.WriteFile(db, tt.damage(raw), 0o644))
			r := run(t, "", "check", "--db", db)
			require.Equal(t, ExitRuntime, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
			require.Contains(t, r.stdout, tt.want)
			require.Contains(t, r.stderr, "problem found")

			var rep checkJSON
			r = run(t, "", "check", "--db", db, "--json")
			require.Equal(t, ExitRuntime, r.code)
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &rep))
			require.False(t, rep.OK)
			require.NotEmpty(t, rep.Problems)
		})
	}
}

func TestCheckCannotRun(t *testing.T) {
	dir := t.TempDir()
	locked := checkJournal(t)
	openLog(t, locked, nil) // held, as flowrt run holds it
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no db", []string{"check"}, ExitUsage, "--db is required"},
		{"argument", []string{"check", "--db", locked, "x"}, ExitUsage, "takes no arguments"},
		{"bad lock timeout", []string{"check", "--db", locked, "--lock-timeout", "0s"}, ExitUsage, "--lock-timeout must be positive"},
		{"missing journal", []string{"check", "--db", filepath.Join(dir, "nope.db")}, ExitRuntime, "no journal at "},
		{"locked", []string{"check", "--db", locked, "--lock-timeout", "50ms"}, ExitRuntime,
			"journal " + locked + " is in use by another process (flowrt run?); check needs the journal at rest: stop that process and check again, or check a copy made with 'flowrt backup'"},
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
