package command

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/stretchr/testify/require"
)

// dlqState returns the consumer's dead letters as seq -> queued for
// redelivery.
func dlqState(t *testing.T, db, stream, name string) map[uint64]bool {
	t.Helper()
	l := openLog(t, db, &eventlog.Options{ReadOnly: true})
	dls, err := consumer.DeadLetters(l, stream, name, consumer.Range{})
	require.NoError(t, err)
	require.NoError(t, l.Close())
	out := map[uint64]bool{}
	for _, d := range dls {
		out[d.Seq] = d.Redeliver
	}
	return out
}

func TestDLQGolden(t *testing.T) {
	db := opsJournal(t)
	dir := filepath.Dir(db)
	deadLetter(t, db, "events", "flow", 2, 4, 5)

	r := run(t, "", "dlq", "retry", "--db", db, "--consumer", "flow", "--from", "3").requireOK(t)
	golden(t, "dlq_retry", maskOps(r.stdout, dir))
	require.Empty(t, r.stderr)
	r = run(t, "", "dlq", "retry", "--db", db, "--consumer", "flow", "--json").requireOK(t)
	golden(t, "dlq_retry_json", maskOps(r.stdout, dir))

	r = run(t, "", "dlq", "purge", "--db", db, "--consumer", "flow", "--to", "4").requireOK(t)
	golden(t, "dlq_purge", maskOps(r.stdout, dir))
	r = run(t, "", "dlq", "purge", "--db", db, "--consumer", "flow", "--json").requireOK(t)
	golden(t, "dlq_purge_json", maskOps(r.stdout, dir))
}

func TestDLQ(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		count int
		want  map[uint64]bool // dead letters afterwards: seq -> queued
	}{
		{"retry all", []string{"retry"}, 3, map[uint64]bool{2: true, 4: true, 5: true}},
		{"retry from", []string{"retry", "--from", "4"}, 2, map[uint64]bool{2: false, 4: true, 5: true}},
		{"retry to", []string{"retry", "--to", "4"}, 2, map[uint64]bool{2: true, 4: true, 5: false}},
		{"retry one", []string{"retry", "--from", "4", "--to", "4"}, 1, map[uint64]bool{2: false, 4: true, 5: false}},
		{"retry none in range", []string{"retry", "--from", "6"}, 0, map[uint64]bool{2: false, 4: false, 5: false}},
		{"purge all", []string{"purge"}, 3, map[uint64]bool{}},
		{"purge range", []string{"purge", "--from", "3", "--to", "4"}, 1, map[uint64]bool{2: false, 5: false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := opsJournal(t)
			deadLetter(t, db, "events", "flow", 2, 4, 5)
			args := append([]string{"dlq"}, tt.args...)
			args = append(args, "--db", db, "--consumer", "flow", "--json")
			r := run(t, "", args...).requireOK(t)
			var got dlqJSON
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &got))
			require.Equal(t, tt.count, got.Count)
			require.Equal(t, tt.want, dlqState(t, db, "events", "flow"))
			// The events stay in the stream whatever happens to the dead letters.
			require.Equal(t, uint64(opsEvents), streamLast(t, db, "events"))
		})
	}
}
