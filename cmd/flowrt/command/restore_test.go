package command

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/snapshot"
	"github.com/stretchr/testify/require"
)

// backupOf returns a backup of a fresh opsJournal, in its own directory.
func backupOf(t *testing.T) (db, backup string) {
	t.Helper()
	db = opsJournal(t)
	backup = filepath.Join(filepath.Dir(db), "b.db")
	run(t, "", "backup", "--db", db, "--to", backup).requireOK(t)
	return db, backup
}

func TestRestoreGolden(t *testing.T) {
	db, backup := backupOf(t)
	dir := filepath.Dir(db)
	defer requireDBNoChange(t, backup)()

	dest := filepath.Join(dir, "r.db")
	r := run(t, "", "restore", "--from", backup, "--db", dest).requireOK(t)
	golden(t, "restore_text", maskOps(r.stdout, dir))
	require.Empty(t, r.stderr)
	requireSameJournal(t, db, dest)

	dest = filepath.Join(dir, "r2.db")
	r = run(t, "", "restore", "--from", backup, "--db", dest, "--json").requireOK(t)
	golden(t, "restore_json", maskOps(r.stdout, dir))
	requireSameJournal(t, db, dest)

	// The restored journal is in service: it appends after its last event.
	l := openLog(t, dest, nil)
	res, err := l.Append("events", eventlog.Event{Type: "after.restore"})
	require.NoError(t, err)
	require.Equal(t, uint64(opsEvents+1), res[0].Seq)
}

func TestRestoreRefusals(t *testing.T) {
	t.Run("existing file", func(t *testing.T) {
		_, backup := backupOf(t)
		dest := filepath.Join(t.TempDir(), "r.db")
		require.NoError(t, os.WriteFile(dest, []byte("precious"), 0o644))
		r := run(t, "", "restore", "--from", backup, "--db", dest)
		require.Equal(t, ExitRuntime, r.code)
		require.ErrorIs(t, r.err, snapshot.ErrExists)
		require.Empty(t, r.stdout)
		require.Equal(t, "flowrt: restore refused: "+dest+" exists (restore never replaces a file: move it aside, or choose another --db); nothing was written\n", r.stderr)
		b, err := os.ReadFile(dest)
		require.NoError(t, err)
		require.Equal(t, "precious", string(b))
	})

	t.Run("existing journal", func(t *testing.T) {
		db, backup := backupOf(t)
		defer requireDBNoChange(t, db)()
		r := run(t, "", "restore", "--from", backup, "--db", db)
		require.Equal(t, ExitRuntime, r.code)
		require.ErrorIs(t, r.err, snapshot.ErrExists)
	})

	t.Run("live journal", func(t *testing.T) {
		db, backup := backupOf(t)
		openLog(t, db, nil) // held until cleanup, as by flowrt run
		r := run(t, "", "restore", "--from", backup, "--db", db)
		require.Equal(t, ExitRuntime, r.code)
		require.ErrorIs(t, r.err, snapshot.ErrInUse)
		require.Equal(t, "flowrt: restore refused: "+db+" is a journal in use (held open by a process such as flowrt run, or the journal itself); nothing was written\n", r.stderr)
	})

	t.Run("not a journal", func(t *testing.T) {
		dir := t.TempDir()
		backup := filepath.Join(dir, "b.db")
		require.NoError(t, os.WriteFile(backup, []byte(`{"not":"a journal"}`), 0o644))
		dest := filepath.Join(dir, "r.db")
		r := run(t, "", "restore", "--from", backup, "--db", dest)
		require.Equal(t, ExitRuntime, r.code)
		require.ErrorIs(t, r.err, snapshot.ErrVerify)
		require.ErrorIs(t, r.err, eventlog.ErrNotJournal)
		require.Contains(t, r.stderr, "flowrt: restore refused: "+backup+" is not a sound journal")
		require.Contains(t, r.stderr, "nothing was written")
		require.NoFileExists(t, dest)
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		require.Len(t, entries, 1, "restore left files behind")
	})
}
