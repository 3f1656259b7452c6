package crashdaemon_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// startupKills is how many daemons TestKillDuringStart kills.
const startupKills = 4

// TestKillDuringStart kills `flowrt run` during its start, right after it
// recorded its run as starting and before it recorded the recovery of the
// run killed before it, several times; then `flowrt run --until-idle`
// ends the story. `flowrt dump system` must still show one recovery per
// kill, each run but the last crashed.
//
// It used to fail: the recovery of run k-1 was recorded after run k's
// "starting" transition, in a later transaction, and run k+1 recovers run
// k alone, so run k-1's crash went unrecorded. A start now records
// starting, recovering and the recovery in one transaction.
func TestKillDuringStart(t *testing.T) {
	bin := flowrtBinary(t)
	dir := t.TempDir()
	s := &story{t: t, bin: bin, db: filepath.Join(dir, "journal.db"), config: filepath.Join(dir, "flows.yaml")}
	if err := os.WriteFile(s.config, []byte(flowsConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	for c := 1; c <= startupKills; c++ {
		d, err := startDaemon(bin, s.db, s.config)
		if err != nil {
			t.Fatal(err)
		}
		defer d.stop(exitTimeout)
		// The first run has no run to recover: kill it running. Kill the
		// others as soon as they say they are starting.
		ready, what := d.starting, "starting"
		if c == 1 {
			ready, what = d.running, "running"
		}
		timeout := time.NewTimer(readyTimeout)
		select {
		case <-ready:
		case <-d.exited:
			t.Fatalf("cycle %d: exited before it was %s\n%s", c, what, d.diagnostics())
		case <-timeout.C:
			t.Fatalf("cycle %d: not %s after %v\n%s", c, what, readyTimeout, d.diagnostics())
		}
		timeout.Stop()
		if err := d.kill(exitTimeout); err != nil {
			t.Fatalf("cycle %d: %v\n%s", c, err, d.diagnostics())
		}
		<-d.starting // closed before the first "running" too
		s.runs = append(s.runs, d.run)
	}
	r := flowrtCmd(bin, drainTimeout, nil, "run", "--db", s.db, "--config", s.config, "--until-idle", "--log-format", "json")
	if !r.ok() {
		t.Fatalf("the final run: %s", r)
	}
	runs, err := s.dumpSystem()
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range runs {
		t.Logf("run %d: %s end %s crashed %v recovery %+v", i+1, r.ID, r.End, r.Crashed, r.Recovery)
	}
	s.verifySystem(startupKills)
}
