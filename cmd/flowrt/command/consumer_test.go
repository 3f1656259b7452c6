package command

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/stretchr/testify/require"
)

// This file holds the fixtures shared by the operations commands' tests.

// opsEvents is how many events opsJournal appends to "events".
const opsEvents = 8

// opsJournal returns a closed journal in a temporary directory holding:
// "events" with opsEvents events appended one by one (each its own append
// time); "audit" with 2 events; consumers "billing" at offset 6 and
// "shipping" at offset 2 on "events".
func opsJournal(t *testing.T) string {
	t.Helper()
	db := filepath.Join(t.TempDir(), "j.db")
	l, err := eventlog.Open(db, nil)
	require.NoError(t, err)
	for i := range opsEvents {
		_, err := l.Append("events", eventlog.Event{
			ID:   eventlog.DeriveID("ops", fmt.Sprint(i)),
			Type: "order.created", Key: fmt.Sprintf("order-%d", i%3),
			Data: fmt.Appendf(nil, `{"n":%d}`, i),
		})
		require.NoError(t, err)
	}
	_, err = l.Append("audit", eventlog.Event{ID: eventlog.DeriveID("audit", "1"), Type: "audit.login"},
		eventlog.Event{ID: eventlog.DeriveID("audit", "2"), Type: "audit.logout"})
	require.NoError(t, err)
	require.NoError(t, l.ResetOffset("events", "billing", 6))
	require.NoError(t, l.ResetOffset("events", "shipping", 2))
	require.NoError(t, l.Close())
	return db
}

// deadLetter runs consumer name on stream of the journal at db until it
// has handled every event, failing the events in dead permanently, so that
// they become its dead letters; the last event must not be in dead.
func deadLetter(t *testing.T, db, stream, name string, dead ...uint64) {
	t.Helper()
	l, err := eventlog.Open(db, nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, l.Close()) }()
	si, err := l.Info(stream)
	require.NoError(t, err)
	require.NotContains(t, dead, si.Last)

	r, err := consumer.Open(l, stream, name, nil)
	require.NoError(t, err)
	last := make(chan struct{})
	ran := make(chan error, 1)
	go func() {
		ran <- r.Run(context.Background(), func(_ context.Context, e eventlog.Event) error {
			for _, d := range dead {
				if e.Seq == d {
					return consumer.Permanent(errors.New("refused by the test"))
				}
			}
			if e.Seq == si.Last {
				close(last)
			}
			return nil
		})
	}()
	select {
	case <-last:
	case err := <-ran:
		t.Fatalf("the consumer stopped early: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the consumer did not reach the last event in 10s")
	}
	require.NoError(t, r.Shutdown(context.Background()))
	require.ErrorIs(t, <-ran, consumer.ErrClosed)
	dls, err := consumer.DeadLetters(l, stream, name, consumer.Range{})
	require.NoError(t, err)
	require.Len(t, dls, len(dead))
}

// offsetOf returns the consumer's offset in the journal at db.
func offsetOf(t *testing.T, db, stream, name string) uint64 {
	t.Helper()
	l := openLog(t, db, &eventlog.Options{ReadOnly: true})
	off, ok, err := l.Offset(stream, name)
	require.NoError(t, err)
	require.True(t, ok, "consumer %q is not registered", name)
	require.NoError(t, l.Close())
	return off
}

// Durations and temporary paths vary from run to run.
var (
	tookRE   = regexp.MustCompile(`\(took [^)]*\)`)
	tookMSRE = regexp.MustCompile(`"took_ms":\d+`)
)

// maskOps masks in s the directory dir and the durations.
func maskOps(s, dir string) string {
	s = strings.ReplaceAll(s, dir, "DIR")
	s = tookRE.ReplaceAllString(s, "(took T)")
	return tookMSRE.ReplaceAllString(s, `"took_ms":T`)
}

// requireLocked checks a run refused a journal another process holds, with
// the exact message, exit status 1, and nothing on stdout.
func requireLocked(t *testing.T, r result, db, why string) {
	t.Helper()
	require.Equal(t, ExitRuntime, r.code, "stderr: %s", r.stderr)
	require.ErrorIs(t, r.err, eventlog.ErrLocked)
	require.Empty(t, r.stdout)
	require.Equal(t, "flowrt: journal "+db+" is in use by another process (flowrt run?); stop it first: "+why+"\n", r.stderr)
}

func TestConsumerResetGolden(t *testing.T) {
	db := opsJournal(t)
	dir := filepath.Dir(db)

	r := run(t, "", "consumer", "reset", "billing", "--db", db, "--to", "3").requireOK(t)
	golden(t, "consumer_reset", maskOps(r.stdout, dir))
	require.Empty(t, r.stderr)
	require.Equal(t, uint64(2), offsetOf(t, db, "events", "billing"))

	r = run(t, "", "consumer", "reset", "billing", "--db", db, "--to", "latest", "--json").requireOK(t)
	golden(t, "consumer_reset_json", maskOps(r.stdout, dir))
	require.Equal(t, uint64(opsEvents), offsetOf(t, db, "events", "billing"))
}

func TestConsumerReset(t *testing.T) {
	db := opsJournal(t)
	l := openLog(t, db, &eventlog.Options{ReadOnly: true})
	ev4, err := l.Get("events", 4)
	require.NoError(t, err)
	require.NoError(t, l.Close())

	tests := []struct {
		name   string
		to     string
		offset uint64
		out    string
	}{
		{"earliest replays everything", "earliest", 0, "offset 6 -> 0, replays 6 events (seq 1..6), lag 8"},
		{"latest skips the backlog", "latest", opsEvents, "offset 6 -> 8, skips 2 events (seq 7..8), lag 0"},
		{"seq", "5", 4, "to seq 5: offset 6 -> 4, replays 2 events (seq 5..6), lag 4"},
		{"the next seq is no change", "7", 6, "offset 6 -> 6, unchanged, lag 2"},
		{"seq past the end is clamped", "100", opsEvents, "offset 6 -> 8, skips 2 events"},
		{"time", ev4.Time.Format(time.RFC3339Nano), 3, "offset 6 -> 3, replays 3 events (seq 4..6), lag 5"},
		{"time before every event", "2001-01-01T00:00:00Z", 0, "offset 6 -> 0"},
		{"time after every event", "2999-01-01T00:00:00+02:00", opsEvents, "offset 6 -> 8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.NoError(t, resetOffset(db, "events", "billing", 6))
			r := run(t, "", "consumer", "reset", "billing", "--db", db, "--to", tt.to).requireOK(t)
			require.Contains(t, r.stdout, tt.out)
			require.Equal(t, tt.offset, offsetOf(t, db, "events", "billing"))
		})
	}

	t.Run("json", func(t *testing.T) {
		require.NoError(t, resetOffset(db, "events", "shipping", 2))
		r := run(t, "", "consumer", "reset", "shipping", "--db", db, "--to", "earliest", "--json").requireOK(t)
		var got consumerResetJSON
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &got))
		require.Equal(t, consumerResetJSON{Stream: "events", Consumer: "shipping", To: eventlog.Earliest().String(), Before: 2, Offset: 0, Last: opsEvents, Lag: opsEvents}, got)
	})

	t.Run("dead letters are delivered again", func(t *testing.T) {
		db := opsJournal(t)
		deadLetter(t, db, "events", "flow", 3)
		run(t, "", "consumer", "reset", "flow", "--db", db, "--to", "2").requireOK(t)
		require.Equal(t, uint64(1), offsetOf(t, db, "events", "flow"))
	})
}

// resetOffset sets a consumer's offset through the journal's API.
func resetOffset(db, stream, name string, seq uint64) error {
	l, err := eventlog.Open(db, nil)
	if err != nil {
		return err
	}
	return errors.Join(l.ResetOffset(stream, name, seq), l.Close())
}

// TestOpsRefusals runs every operations command where it must refuse, with
// exit status 1, leaving the journal as it was.
func TestOpsRefusals(t *testing.T) {
	db := opsJournal(t)
	defer requireDBNoChange(t, db)()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"reset unknown consumer", []string{"consumer", "reset", "bill", "--db", db, "--to", "1"},
			`no consumer "bill" on stream "events" of ` + db + ` (consumers: "billing", "shipping"; see 'flowrt dump consumers')`},
		{"reset on another stream", []string{"consumer", "reset", "billing", "--db", db, "--stream", "audit", "--to", "1"},
			`no consumer "billing" on stream "audit" of ` + db + ` (it has none; see 'flowrt dump consumers')`},
		{"reset on a missing stream", []string{"consumer", "reset", "billing", "--db", db, "--stream", "nope", "--to", "1"},
			`no consumer "billing" on stream "nope"`},
		{"dlq retry unknown consumer", []string{"dlq", "retry", "--db", db, "--consumer", "bill"}, `no consumer "bill" on stream "events"`},
		{"dlq purge unknown consumer", []string{"dlq", "purge", "--db", db, "--consumer", "bill"}, `no consumer "bill" on stream "events"`},
		{"truncate missing stream", []string{"truncate", "--db", db, "--stream", "nope", "--below", "2"},
			db + ` has no stream "nope" (streams: "audit", "events")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, "", tt.args...)
			require.Equal(t, ExitRuntime, r.code, "err: %v", r.err)
			require.Empty(t, r.stdout)
			require.Contains(t, r.stderr, "flowrt: "+tt.want)
			require.NotContains(t, r.stderr, "--help")
		})
	}
}

// TestOpsMissingJournal checks that no operations command creates a
// journal: each fails with exit status 1.
func TestOpsMissingJournal(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "missing.db")
	for _, args := range [][]string{
		{"consumer", "reset", "billing", "--db", db, "--to", "1"},
		{"dlq", "retry", "--db", db, "--consumer", "billing"},
		{"dlq", "purge", "--db", db, "--consumer", "billing"},
		{"backup", "--db", db, "--to", filepath.Join(dir, "b.db")},
		{"compact", "--db", db},
		{"compact", "--db", db, "--to", filepath.Join(dir, "c.db")},
		{"truncate", "--db", db, "--stream", "events", "--below", "2"},
		{"restore", "--from", db, "--db", filepath.Join(dir, "r.db")},
	} {
		t.Run(strings.Join(args[:2], " "), func(t *testing.T) {
			r := run(t, "", args...)
			require.Equal(t, ExitRuntime, r.code, "err: %v", r.err)
			require.Contains(t, r.stderr, "flowrt: no ")
			require.Contains(t, r.stderr, " at "+db+" (file does not exist)")
			entries, err := filepath.Glob(filepath.Join(dir, "*"))
			require.NoError(t, err)
			require.Empty(t, entries, "the command left files behind")
		})
	}
}

// TestOpsLocked holds the journal open, as `flowrt run` does, and checks
// that every operations command that needs it refuses with the exact
// message.
func TestOpsLocked(t *testing.T) {
	db := opsJournal(t)
	dir := filepath.Dir(db)
	openLog(t, db, &eventlog.Options{LockTimeout: time.Second}) // held until cleanup
	const change = " changes the journal and needs it to itself"
	tests := []struct {
		name string
		args []string
		why  string
	}{
		{"consumer reset", []string{"consumer", "reset", "billing", "--to", "1"}, "consumer reset" + change},
		{"dlq retry", []string{"dlq", "retry", "--consumer", "billing"}, "dlq retry" + change},
		{"dlq purge", []string{"dlq", "purge", "--consumer", "billing"}, "dlq purge" + change},
		{"truncate", []string{"truncate", "--stream", "events", "--below", "2"}, "truncate" + change},
		{"compact", []string{"compact"}, "compact rewrites the journal and needs it to itself"},
		{"compact --to", []string{"compact", "--to", filepath.Join(dir, "c.db")},
			"compact --to opens the journal itself, and a journal that flowrt run holds open cannot be copied from outside yet"},
		{"backup", []string{"backup", "--to", filepath.Join(dir, "b.db")},
			"backup opens the journal itself unless flowrt run serves --http, which it then asks for a hot backup"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			r := run(t, "", append(tt.args, "--db", db, "--lock-timeout", "50ms")...)
			require.Less(t, time.Since(start), 5*time.Second)
			requireLocked(t, r, db, tt.why)
			entries, err := filepath.Glob(filepath.Join(dir, "*"))
			require.NoError(t, err)
			require.Equal(t, []string{db}, entries, "the command left files behind")
		})
	}
}

// TestOpsUsageErrors runs command lines that must fail before touching any
// file, with exit status 2 and a pointer to --help.
func TestOpsUsageErrors(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "j.db")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"consumer unknown subcommand", []string{"consumer", "rest"}, `unknown command "rest" for "flowrt consumer" (did you mean reset?)`},
		{"reset without name", []string{"consumer", "reset", "--db", db, "--to", "1"}, "takes one argument, the consumer's name, got 0"},
		{"reset two names", []string{"consumer", "reset", "a", "b", "--db", db, "--to", "1"}, "got 2"},
		{"reset bad name", []string{"consumer", "reset", "a/b", "--db", db, "--to", "1"}, `consumer name "a/b"`},
		{"reset without db", []string{"consumer", "reset", "a", "--to", "1"}, "--db is required"},
		{"reset without to", []string{"consumer", "reset", "a", "--db", db}, "--to is required"},
		{"reset to zero", []string{"consumer", "reset", "a", "--db", db, "--to", "0"}, "--to 0: sequences start at 1"},
		{"reset bad to", []string{"consumer", "reset", "a", "--db", db, "--to", "yesterday"}, `--to "yesterday": want a sequence`},
		{"reset bad stream", []string{"consumer", "reset", "a", "--db", db, "--to", "1", "--stream", "a b"}, `--stream "a b": invalid name`},
		{"dlq unknown subcommand", []string{"dlq", "purg"}, `unknown command "purg" for "flowrt dlq" (did you mean purge?)`},
		{"dlq without consumer", []string{"dlq", "retry", "--db", db}, "--consumer is required"},
		{"dlq without db", []string{"dlq", "purge", "--consumer", "c"}, "--db is required"},
		{"dlq from above to", []string{"dlq", "retry", "--db", db, "--consumer", "c", "--from", "5", "--to", "2"}, "--from 5 is above --to 2"},
		{"dlq argument", []string{"dlq", "retry", "--db", db, "--consumer", "c", "x"}, "takes no arguments"},
		{"backup without to", []string{"backup", "--db", db}, "--to is required"},
		{"backup without db", []string{"backup", "--to", db}, "--db is required"},
		{"restore without from", []string{"restore", "--db", db}, "--from is required"},
		{"restore without db", []string{"restore", "--from", db}, "--db is required"},
		{"compact onto itself", []string{"compact", "--db", db, "--to", db}, "is the journal itself"},
		{"compact zero lock timeout", []string{"compact", "--db", db, "--lock-timeout", "0s"}, "--lock-timeout must be positive"},
		{"truncate without stream", []string{"truncate", "--db", db, "--below", "3"}, "--stream is required"},
		{"truncate without below", []string{"truncate", "--db", db, "--stream", "events"}, "--below is required"},
		{"truncate negative below", []string{"truncate", "--db", db, "--stream", "events", "--below", "-1"}, `invalid argument "-1" for "--below"`},
		{"completion without shell", []string{"completion"}, "takes one argument, the shell: bash, zsh, fish"},
		{"completion unknown shell", []string{"completion", "tcsh"}, `unknown shell "tcsh": want bash, zsh, fish`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, "", tt.args...)
			require.Equal(t, ExitUsage, r.code, "err: %v", r.err)
			require.Empty(t, r.stdout)
			require.True(t, strings.HasPrefix(r.stderr, "flowrt: "), "stderr: %q", r.stderr)
			require.Contains(t, r.stderr, tt.want)
			require.Contains(t, r.stderr, "--help' for usage.")
			entries, err := filepath.Glob(filepath.Join(dir, "*"))
			require.NoError(t, err)
			require.Empty(t, entries)
		})
	}
}

func TestOpsHelp(t *testing.T) {
	for _, args := range [][]string{
		{"consumer"}, {"consumer", "--help"}, {"consumer", "reset", "--help"},
		{"dlq"}, {"dlq", "retry", "--help"}, {"dlq", "purge", "--help"},
		{"backup", "--help"}, {"restore", "--help"}, {"compact", "--help"}, {"truncate", "--help"},
		{"completion", "--help"}, {"help", "truncate"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := run(t, "", args...).requireOK(t)
			require.Contains(t, r.stdout, "Exit status:")
			require.Contains(t, r.stdout, "Examples:")
			require.Empty(t, r.stderr)
		})
	}
	r := run(t, "", "--help").requireOK(t)
	for _, c := range []string{"consumer reset", "dlq retry|purge", "backup", "restore", "compact", "truncate", "completion"} {
		require.Contains(t, r.stdout, "  flowrt "+c+" ")
	}
	flags := map[string][]string{
		"consumer reset": {"--db", "--stream", "--to", "--json", "--lock-timeout"},
		"dlq retry":      {"--db", "--consumer", "--stream", "--from", "--to", "--json", "--lock-timeout"},
		"backup":         {"--db", "--to", "--overwrite", "--json", "--quiet", "--lock-timeout"},
		"restore":        {"--from", "--db", "--json", "--quiet"},
		"compact":        {"--db", "--to", "--json", "--quiet", "--lock-timeout"},
		"truncate":       {"--db", "--stream", "--below", "--force", "--json", "--lock-timeout"},
	}
	for c, fs := range flags {
		r := run(t, "", append(strings.Fields(c), "--help")...).requireOK(t)
		for _, f := range fs {
			require.Contains(t, r.stdout, f, "flowrt %s --help", c)
		}
	}
}
