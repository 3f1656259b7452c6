package command

import (
	"bufio"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/supervisor"
)

// lines returns the lines of a file, none when it does not exist.
func lines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	require.NoError(t, sc.Err())
	return out
}

const runConfig = `version: 1
flows:
  - name: created
    on: {types: order.created}
    steps:
      - map: '{"order": key}'
    sinks:
      - file: {path: out/created.jsonl}
`

func TestRunUntilIdleResumes(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "flowrt.db")
	config := filepath.Join(dir, "flows.yaml")
	require.NoError(t, os.WriteFile(config, []byte(runConfig), 0o644))
	out := filepath.Join(dir, "out", "created.jsonl")

	events := `{"type":"order.created","key":"o-1"}
{"type":"order.paid","key":"o-1"}
{"type":"order.created","key":"o-2"}
`
	run(t, events, "append", "--db", db).requireOK(t)
	r := run(t, "", "run", "--db", db, "--config", config, "--until-idle").requireOK(t)
	assert.Contains(t, r.stderr, "flow=created")
	got := lines(t, out)
	require.Len(t, got, 2)
	assert.Contains(t, got[0], `"data":{"order":"o-1"}`)

	// A second run resumes after the committed floor: only the new event.
	run(t, `{"type":"order.created","key":"o-3"}`+"\n", "append", "--db", db).requireOK(t)
	run(t, "", "run", "--db", db, "--config", config, "--until-idle", "--log-format", "json").requireOK(t)
	got = lines(t, out)
	require.Len(t, got, 3)
	assert.Contains(t, got[2], `"data":{"order":"o-3"}`)

	// The lifecycle is in $system: two runs, each stopped cleanly.
	l, err := eventlog.Open(db, &eventlog.Options{ReadOnly: true})
	require.NoError(t, err)
	defer l.Close()
	runs, err := supervisor.Runs(l)
	require.NoError(t, err)
	require.Len(t, runs, 2)
	for _, r := range runs {
		assert.Equal(t, supervisor.Stopped, r.End)
		assert.Equal(t, config, r.Transitions[0].Details["config"])
	}
}

func TestRunRefusesABadConfig(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "flows.yaml")
	require.NoError(t, os.WriteFile(config, []byte("version: 1\nflows:\n  - name: x\n    sinks: [{nope: {}}]\n    filter: 'dta.x'\n"), 0o644))
	r := run(t, "", "run", "--db", filepath.Join(dir, "flowrt.db"), "--config", config, "--until-idle")
	require.Equal(t, ExitUsage, r.code, r.stderr)
	assert.Contains(t, r.stderr, "flows.yaml:4:")
	assert.Contains(t, r.stderr, "flows.yaml:5:")
	_, err := os.Stat(filepath.Join(dir, "flowrt.db"))
	assert.True(t, os.IsNotExist(err), "a config that does not validate never opens the journal")
}

func TestRunFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no config", []string{"run", "--db", "x.db"}, "needs --db and --config"},
		{"bad log format", []string{"run", "--db", "x.db", "--config", "c.yaml", "--log-format", "xml"}, "--log-format"},
		{"bad stop timeout", []string{"run", "--db", "x.db", "--config", "c.yaml", "--stop-timeout", "0s"}, "--stop-timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, "", tt.args...)
			assert.Equal(t, ExitUsage, r.code)
			assert.Contains(t, r.stderr, tt.want)
		})
	}
}
