package command

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/snapshot"
	"github.com/stretchr/testify/require"
)

// requireSameJournal checks that the journals at a and b hold the same
// streams, events and consumer offsets.
func requireSameJournal(t *testing.T, a, b string) {
	t.Helper()
	la, err := eventlog.Open(a, &eventlog.Options{ReadOnly: true})
	require.NoError(t, err)
	defer la.Close()
	lb, err := eventlog.Open(b, &eventlog.Options{ReadOnly: true})
	require.NoError(t, err)
	defer lb.Close()
	require.Equal(t, la.ID(), lb.ID())
	sa, err := la.Streams()
	require.NoError(t, err)
	sb, err := lb.Streams()
	require.NoError(t, err)
	require.Equal(t, sa, sb)
	for _, si := range sa {
		ea, err := la.Read(si.Name, 0, 1000)
		require.NoError(t, err)
		eb, err := lb.Read(si.Name, 0, 1000)
		require.NoError(t, err)
		require.Equal(t, ea, eb)
	}
	ca, err := la.Consumers("")
	require.NoError(t, err)
	cb, err := lb.Consumers("")
	require.NoError(t, err)
	require.Equal(t, ca, cb)
	rep, err := lb.Check(t.Context())
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Problems)
}

func TestBackupGolden(t *testing.T) {
	db := opsJournal(t)
	dir := filepath.Dir(db)
	defer requireDBNoChange(t, db)()

	out := filepath.Join(dir, "b.db")
	r := run(t, "", "backup", "--db", db, "--to", out).requireOK(t)
	golden(t, "backup_text", maskOps(r.stdout, dir))
	require.Empty(t, r.stderr, "no progress bar when stderr is not a terminal")
	requireSameJournal(t, db, out)

	out = filepath.Join(dir, "b2.db")
	r = run(t, "", "backup", "--db", db, "--to", out, "--json").requireOK(t)
	golden(t, "backup_json", maskOps(r.stdout, dir))
	var got copyJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &got))
	require.Equal(t, opsFileSize(out), got.Bytes)
	require.Equal(t, uint64(opsEvents+2), got.Checked.Events)
	require.Equal(t, 2, got.Checked.Consumers)
}

func TestBackup(t *testing.T) {
	t.Run("refuses an existing file", func(t *testing.T) {
		db := opsJournal(t)
		out := filepath.Join(filepath.Dir(db), "b.db")
		require.NoError(t, os.WriteFile(out, []byte("precious"), 0o644))
		r := run(t, "", "backup", "--db", db, "--to", out)
		require.Equal(t, ExitRuntime, r.code)
		require.ErrorIs(t, r.err, snapshot.ErrExists)
		require.Equal(t, "flowrt: backup refused: "+out+" exists (--overwrite replaces it, or choose another --to); nothing was written\n", r.stderr)
		b, err := os.ReadFile(out)
		require.NoError(t, err)
		require.Equal(t, "precious", string(b))

		run(t, "", "backup", "--db", db, "--to", out, "--overwrite").requireOK(t)
		requireSameJournal(t, db, out)
	})

	t.Run("refuses a journal in use", func(t *testing.T) {
		db := opsJournal(t)
		other := opsJournal(t)
		openLog(t, other, nil) // held until cleanup
		r := run(t, "", "backup", "--db", db, "--to", other, "--overwrite")
		require.Equal(t, ExitRuntime, r.code)
		require.ErrorIs(t, r.err, snapshot.ErrInUse)
		require.Contains(t, r.stderr, "flowrt: backup refused: "+other+" is a journal in use")
	})

	t.Run("refuses the journal itself", func(t *testing.T) {
		db := opsJournal(t)
		defer requireDBNoChange(t, db)()
		r := run(t, "", "backup", "--db", db, "--to", db, "--overwrite")
		require.Equal(t, ExitRuntime, r.code)
		require.ErrorIs(t, r.err, snapshot.ErrInUse)
	})

	t.Run("runs next to a reader", func(t *testing.T) {
		db := opsJournal(t)
		openLog(t, db, &eventlog.Options{ReadOnly: true}) // a dump, say
		out := filepath.Join(t.TempDir(), "b.db")
		run(t, "", "backup", "--db", db, "--to", out).requireOK(t)
		requireSameJournal(t, db, out)
	})
}
