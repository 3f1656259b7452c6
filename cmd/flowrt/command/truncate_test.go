package command

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/stretchr/testify/require"
)

// streamInfo returns the stream's summary in the journal at db.
func streamInfo(t *testing.T, db, stream string) eventlog.StreamInfo {
	t.Helper()
	l := openLog(t, db, &eventlog.Options{ReadOnly: true})
	si, err := l.Info(stream)
	require.NoError(t, err)
	require.NoError(t, l.Close())
	return si
}

func TestTruncateGolden(t *testing.T) {
	db := opsJournal(t) // billing at 6, shipping at 2
	dir := filepath.Dir(db)

	r := run(t, "", "truncate", "--db", db, "--stream", "events", "--below", "3").requireOK(t)
	golden(t, "truncate_text", maskOps(r.stdout, dir))
	require.Empty(t, r.stderr)

	r = run(t, "", "truncate", "--db", db, "--stream", "events", "--below", "3", "--json").requireOK(t)
	golden(t, "truncate_json", maskOps(r.stdout, dir))

	r = run(t, "", "truncate", "--db", db, "--stream", "events", "--below", "8", "--force").requireOK(t)
	golden(t, "truncate_force", maskOps(r.stdout, dir))

	r = run(t, "", "truncate", "--db", db, "--stream", "audit", "--below", "10", "--force", "--json").requireOK(t)
	golden(t, "truncate_force_json", maskOps(r.stdout, dir))
}

// TestTruncateConsumersBehind checks that truncate without --force
// refuses, names every consumer behind, and removes nothing.
func TestTruncateConsumersBehind(t *testing.T) {
	tests := []struct {
		name  string
		below string
		want  string
	}{
		{"one behind", "4",
			`truncate refused, nothing removed: 1 consumer of stream "events" has not acknowledged the events below seq 4: "shipping" at offset 2; ` +
				`let them catch up, move them with 'flowrt consumer reset NAME --stream events --to 4', or use --force`},
		{"two behind", "8",
			`truncate refused, nothing removed: 2 consumers of stream "events" have not acknowledged the events below seq 8: "billing" at offset 6, "shipping" at offset 2; ` +
				`let them catch up, move them with 'flowrt consumer reset NAME --stream events --to 8', or use --force`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := opsJournal(t)
			defer requireDBNoChange(t, db)()
			for _, json := range []bool{false, true} {
				args := []string{"truncate", "--db", db, "--stream", "events", "--below", tt.below}
				if json {
					args = append(args, "--json")
				}
				r := run(t, "", args...)
				require.Equal(t, ExitRuntime, r.code, "err: %v", r.err)
				require.ErrorIs(t, r.err, eventlog.ErrConsumerBehind)
				require.Empty(t, r.stdout)
				require.Equal(t, "flowrt: "+tt.want+"\n", r.stderr)
			}
		})
	}
}

func TestTruncateCommand(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		removed uint64
		first   uint64
		behind  []consumerBehindJSON
	}{
		{"below the first removes nothing", []string{"--below", "1"}, 0, 1, []consumerBehindJSON{}},
		{"up to the slowest consumer", []string{"--below", "3"}, 2, 3, []consumerBehindJSON{}},
		{"forced past consumers", []string{"--below", "8", "--force"}, 7, 8,
			[]consumerBehindJSON{{"billing", 6}, {"shipping", 2}}},
		{"forced past the end empties the stream", []string{"--below", "100", "--force"}, opsEvents, opsEvents + 1,
			[]consumerBehindJSON{{"billing", 6}, {"shipping", 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := opsJournal(t)
			args := append([]string{"truncate", "--db", db, "--stream", "events", "--json"}, tt.args...)
			r := run(t, "", args...).requireOK(t)
			var got truncateJSON
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &got))
			require.Equal(t, tt.removed, got.Removed)
			require.Equal(t, tt.first, got.First)
			require.Equal(t, tt.behind, got.ConsumersBehind)
			si := streamInfo(t, db, "events")
			require.Equal(t, tt.first, si.First)
			require.Equal(t, uint64(opsEvents), si.Last, "sequences are never reused")
		})
	}
}
