package command

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/stretchr/testify/require"
)

// fatJournal returns a closed journal whose "events" held 300 events of
// 1 KiB and keeps the last 10: most of the file is free pages.
func fatJournal(t *testing.T) string {
	t.Helper()
	db := filepath.Join(t.TempDir(), "j.db")
	l, err := eventlog.Open(db, nil)
	require.NoError(t, err)
	data := []byte(`"` + strings.Repeat("x", 1024) + `"`)
	for batch := range 3 {
		events := make([]eventlog.Event, 100)
		for i := range events {
			events[i] = eventlog.Event{ID: eventlog.DeriveID("fat", fmt.Sprint(batch*100+i)), Type: "blob", Data: data}
		}
		_, err := l.Append("events", events...)
		require.NoError(t, err)
	}
	_, err = l.Truncate("events", 291, eventlog.Force)
	require.NoError(t, err)
	require.NoError(t, l.Close())
	return db
}

func TestCompactGolden(t *testing.T) {
	db := fatJournal(t)
	dir := filepath.Dir(db)
	before := opsFileSize(db)

	out := filepath.Join(dir, "c.db")
	func() {
		defer requireDBNoChange(t, db)()
		r := run(t, "", "compact", "--db", db, "--to", out).requireOK(t)
		golden(t, "compact_to", maskOps(r.stdout, dir))
		require.Empty(t, r.stderr)
	}()
	requireSameJournal(t, db, out)
	require.Less(t, opsFileSize(out), before)

	r := run(t, "", "compact", "--db", db).requireOK(t)
	golden(t, "compact_text", maskOps(r.stdout, dir))
	require.Less(t, opsFileSize(db), before)
	requireSameJournal(t, out, db)

	r = run(t, "", "compact", "--db", db, "--json").requireOK(t)
	golden(t, "compact_json", maskOps(r.stdout, dir))
	var got compactJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &got))
	require.Equal(t, opsFileSize(db), got.After)

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 2, "compact left files behind: %v", entries)
}

func TestCompactToRefusesExisting(t *testing.T) {
	db := fatJournal(t)
	defer requireDBNoChange(t, db)()
	out := filepath.Join(filepath.Dir(db), "c.db")
	require.NoError(t, os.WriteFile(out, []byte("precious"), 0o644))
	r := run(t, "", "compact", "--db", db, "--to", out)
	require.Equal(t, ExitRuntime, r.code)
	require.ErrorIs(t, r.err, os.ErrExist)
	require.Equal(t, "flowrt: compact refused: "+out+" exists (choose another --to); nothing was written\n", r.stderr)
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	require.Equal(t, "precious", string(b))
}
