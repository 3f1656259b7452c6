package command

import (
	"bytes"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeTerminal makes every writer count as a terminal, and bars redraw at
// every update, until the test ends. Tests that use it must not run in
// parallel.
func fakeTerminal(t *testing.T) {
	t.Helper()
	savedTerminal, savedRedraw := isTerminal, progressRedraw
	isTerminal = func(io.Writer) bool { return true }
	progressRedraw = 0
	t.Cleanup(func() { isTerminal, progressRedraw = savedTerminal, savedRedraw })
}

func TestProgressOff(t *testing.T) {
	cmd := &cobra.Command{}
	var stderr bytes.Buffer
	cmd.SetErr(&stderr)
	require.False(t, showProgress(cmd, false), "a buffer is not a terminal")
	p := newProgressBar(cmd, false, "copy", 100, progressBytes)
	require.Nil(t, p)
	// A nil bar takes every call.
	p.Set(10, 100)
	p.Add(5)
	p.Describe("x")
	p.Done()
	require.Empty(t, stderr.String())
}

func TestProgressBar(t *testing.T) {
	fakeTerminal(t)
	tests := []struct {
		name  string
		total int64
		unit  progressUnit
		drive func(p *progressBar)
		want  []string
	}{
		{"bytes", 4 << 20, progressBytes, func(p *progressBar) { p.Set(1<<20, 4<<20) }, []string{"copy", "1.0/4.0 MiB"}},
		{"total raised", 100, progressBytes, func(p *progressBar) { p.Set(300, 0) }, []string{"copy", "300/301 B"}},
		{"add raises the total", 10, progressEvents, func(p *progressBar) { p.Add(4); p.Add(20) }, []string{"copy", "24/25"}},
		{"events", 1000, progressEvents, func(p *progressBar) { p.Add(250) }, []string{"copy", "250/1000", "25%"}},
		{"unknown total", 0, progressEvents, func(p *progressBar) { p.Add(7) }, []string{"copy", "7"}},
		{"new label", 100, progressBytes, func(p *progressBar) { p.Describe("compact"); p.Set(50, 0) }, []string{"compact", "50%"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := &cobra.Command{}
			var stderr bytes.Buffer
			cmd.SetErr(&stderr)
			p := newProgressBar(cmd, false, "copy", tt.total, tt.unit)
			require.NotNil(t, p)
			tt.drive(p)
			drawn := stderr.String()
			for _, w := range tt.want {
				require.Contains(t, drawn, w)
			}
			p.Done()
			p.Done() // idempotent
			require.True(t, strings.HasSuffix(stderr.String(), "\r"), "Done clears the line: %q", stderr.String())
			require.Nil(t, newProgressBar(cmd, true, "copy", tt.total, tt.unit), "--quiet")
		})
	}
}

// TestProgressCommands runs the long commands on a fake terminal: they draw
// on stderr, and nothing with --quiet.
func TestProgressCommands(t *testing.T) {
	fakeTerminal(t)
	db := fatJournal(t)
	dir := filepath.Dir(db)
	backup := filepath.Join(dir, "b.db")
	run(t, "", "backup", "--db", db, "--to", backup, "--quiet").requireOK(t)
	tests := []struct {
		name string
		args func(out string) []string // out: a new file's name
		desc string
	}{
		{"backup", func(out string) []string { return []string{"backup", "--db", db, "--to", out} }, "backup"},
		{"restore", func(out string) []string { return []string{"restore", "--from", backup, "--db", out} }, "restore"},
		{"compact --to", func(out string) []string { return []string{"compact", "--db", db, "--to", out} }, "copy"},
		{"compact", func(string) []string { return []string{"compact", "--db", db} }, "compact"},
	}
	n := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n++
			r := run(t, "", tt.args(filepath.Join(dir, fmt.Sprintf("out%d.db", n)))...).requireOK(t)
			require.Contains(t, r.stderr, tt.desc)
			require.True(t, strings.HasSuffix(r.stderr, "\r"), "the bar is cleared: %q", r.stderr)
			require.NotContains(t, r.stdout, "\r", "the bar stays off stdout")

			n++
			r = run(t, "", append(tt.args(filepath.Join(dir, fmt.Sprintf("out%d.db", n))), "--quiet")...).requireOK(t)
			require.Empty(t, r.stderr, "--quiet")
		})
	}
}

// TestProgressDump checks that a dump into a file or a pipe, watched from
// a terminal, draws its progress on stderr, and only then.
func TestProgressDump(t *testing.T) {
	db := fatJournal(t)
	dump := func(stdoutIsTerminal bool, args ...string) (stdout, stderr string) {
		root := NewRoot()
		var out, errb bytes.Buffer
		root.SetArgs(append([]string{"dump", "--db", db, "--json"}, args...))
		root.SetIn(strings.NewReader(""))
		root.SetOut(&out)
		root.SetErr(&errb)
		saved, savedRedraw := isTerminal, progressRedraw
		isTerminal = func(w io.Writer) bool { return w == io.Writer(&errb) || stdoutIsTerminal && w == io.Writer(&out) }
		progressRedraw = 0
		defer func() { isTerminal, progressRedraw = saved, savedRedraw }()
		require.NoError(t, Execute(root))
		return out.String(), errb.String()
	}
	out, errs := dump(false)
	assert.Contains(t, errs, "dump")
	assert.True(t, strings.HasSuffix(errs, "\r"), "the bar is cleared: %q", errs)
	assert.NotContains(t, out, "\r")
	_, errs = dump(false, "--quiet")
	assert.Empty(t, errs, "--quiet")
	_, errs = dump(true)
	assert.Empty(t, errs, "no bar when the output is on the terminal")
}
