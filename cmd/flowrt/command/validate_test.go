package command

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// exampleConfig is the sample flows file, from this package's directory.
const exampleConfig = "../../../examples/flows.yaml"

// badConfig has many problems, for validate's golden files.
const badConfig = "testdata/validate_bad.yaml"

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		code   int
		golden string
		stderr string // what stderr contains; empty means nothing
	}{
		{"ok", []string{"--config", exampleConfig}, ExitOK, "validate_ok", ""},
		{"ok json", []string{"--config", exampleConfig, "--json"}, ExitOK, "validate_ok_json", ""},
		{"bad", []string{"--config", badConfig}, ExitUsage, "validate_bad", "flowrt: testdata/validate_bad.yaml: "},
		{"bad json", []string{"--config", badConfig, "--json"}, ExitUsage, "validate_bad_json", "flowrt: testdata/validate_bad.yaml: "},
		{"unknown lookup and sink", []string{"--config", "testdata/validate_unknown.yaml"}, ExitUsage, "validate_unknown", "flowrt: testdata/validate_unknown.yaml: 2 problems\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, "", append([]string{"validate"}, tt.args...)...)
			require.Equal(t, tt.code, r.code, "stderr: %s", r.stderr)
			golden(t, tt.golden, r.stdout)
			if tt.stderr == "" {
				require.Empty(t, r.stderr)
			} else {
				require.Contains(t, r.stderr, tt.stderr)
				require.NotContains(t, r.stderr, "--help", "a bad config is not a command-line mistake")
			}
		})
	}
}

// TestValidateAgreesWithRun checks that validate reports what run reports,
// one problem per line, and that --json holds the same problems.
func TestValidateAgreesWithRun(t *testing.T) {
	text := run(t, "", "validate", "--config", badConfig)
	lines := strings.Split(strings.TrimSuffix(text.stdout, "\n"), "\n")
	require.Greater(t, len(lines), 5, "the bad config should have many problems")
	require.Contains(t, text.stderr, plural(len(lines), "problem"))

	db := filepath.Join(t.TempDir(), "j.db")
	ran := run(t, "", "run", "--db", db, "--config", badConfig, "--until-idle")
	require.Equal(t, ExitUsage, ran.code)
	for _, line := range lines {
		require.Contains(t, ran.stderr, line)
	}
	require.NoFileExists(t, db)

	var problems []jsonProblem
	js := run(t, "", "validate", "--config", badConfig, "--json")
	require.NoError(t, json.Unmarshal([]byte(js.stdout), &problems))
	require.Len(t, problems, len(lines))
	for i, p := range problems {
		require.Equal(t, badConfig, p.File)
		require.Positive(t, p.Line)
		require.Positive(t, p.Column)
		require.True(t, strings.HasPrefix(lines[i], badConfig+":"), lines[i])
		require.Contains(t, lines[i], p.Message)
	}
}

func TestValidateErrors(t *testing.T) {
	dir := t.TempDir()
	unreadable := filepath.Join(dir, "flows.yaml")
	require.NoError(t, os.Mkdir(unreadable, 0o755)) // a directory: it exists, and does not read
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no config", []string{}, ExitUsage, "--config is required"},
		{"argument", []string{"--config", exampleConfig, "x"}, ExitUsage, "takes no arguments"},
		{"missing file", []string{"--config", filepath.Join(dir, "nope.yaml")}, ExitUsage, "--config: no such file: "},
		{"unreadable file", []string{"--config", unreadable}, ExitRuntime, "is a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, "", append([]string{"validate"}, tt.args...)...)
			require.Equal(t, tt.code, r.code, "stderr: %s", r.stderr)
			require.Empty(t, r.stdout)
			require.Contains(t, r.stderr, tt.want)
		})
	}
}
