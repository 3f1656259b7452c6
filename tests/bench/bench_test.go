package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	l := newLatencies(100)
	if got := l.percentile(50); got != 0 {
		t.Fatalf("empty p50 = %v, want 0", got)
	}
	for i := 100; i >= 1; i-- {
		l.record(time.Duration(i))
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{1, 1}, {50, 50}, {99, 99}, {99.9, 100}, {100, 100}} {
		if got := l.percentile(c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
}

func TestParseWorkloads(t *testing.T) {
	ids, err := parseWorkloads("3, 1,3,4,7")
	if err != nil || !slices.Equal(ids, []int{3, 1, 4, 7}) {
		t.Fatalf("parseWorkloads = %v, %v; want [3 1 4 7]", ids, err)
	}
	for _, bad := range []string{"", "0", "6", "8", "x"} {
		if _, err := parseWorkloads(bad); err == nil {
			t.Errorf("parseWorkloads(%q) = nil error", bad)
		}
	}
}

func TestReadIO(t *testing.T) {
	if _, err := readIO(); err != nil {
		t.Skip(err)
	}
}

func TestResidency(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := warmDir(dir); err != nil {
		t.Fatal(err)
	}
	r, err := dirResidency(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.total != int64((1<<20)/os.Getpagesize()) || r.resident == 0 {
		t.Fatalf("after warmDir: %d of %d pages resident", r.resident, r.total)
	}
	ev, err := evictDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Some file systems (tmpfs) cannot drop their pages: only log it.
	t.Logf("after evictDir: %d of %d pages resident (%s)", ev.after.resident, ev.after.total, ev.method)
}

// TestRunSmoke runs every variant of workloads 1–4, and the heap check, at
// a tiny size and checks the JSON report, the cleanup of the directory and
// of goroutines.
func TestRunSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts several NATS servers")
	}
	rep := smokeRun(t, "-n1", "10", "-writers", "4", "-n2", "3", "-n3", "2000", "-batch", "500", "-count", "2",
		"-workloads", "1,2,3,4", "-n4", "2500", "-heap", "-heapn", "5000")
	if len(rep.Workloads) != 4 {
		t.Fatalf("%d workloads, want 4", len(rep.Workloads))
	}
	if h := rep.Heap; h == nil || (len(h.Runs) == 2) != rep.FlowrtBuilt {
		t.Errorf("heap report: %+v", h)
	} else if rep.FlowrtBuilt {
		for _, r := range h.Runs {
			if r.Error != "" || r.PeakMiB <= 0 || r.Samples < 2 {
				t.Errorf("heap run %+v", r)
			}
		}
		if h.Target.Status != "PASS" && h.Target.Status != "MISS" {
			t.Errorf("heap target %+v", h.Target)
		}
	}
}

// TestRunSmokeEndToEnd runs every variant of workload 5 at a tiny size:
// each pipeline's three rows, the paced phase, and both targets.
func TestRunSmokeEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a NATS server")
	}
	rep := smokeRun(t, "-writers", "4", "-n5", "5", "-n5paced", "8", "-workloads", "5")
	if len(rep.Workloads) != 1 {
		t.Fatalf("%d workloads, want 1", len(rep.Workloads))
	}
	w := rep.Workloads[0]
	want := 4 // raw, and JetStream's three rows
	if rep.FlowrtBuilt {
		want += 3
	}
	if len(w.Results) != want || len(w.Targets) != 2 {
		t.Fatalf("W5: %d results, %d targets; want %d, 2", len(w.Results), len(w.Targets), want)
	}
	for _, r := range w.Results {
		paced := strings.HasSuffix(r.Key, pacedSuffix)
		if r.Latency == "" || paced != (r.PacedRate > 0) || paced != (r.Events > 0) {
			t.Errorf("W5 %s: latency %q, paced at %v, %d events", r.Key, r.Latency, r.PacedRate, r.Events)
		}
	}
}

// TestRunSmokeFlowState runs every variant of workload 7 at a tiny size,
// two rounds: each flow over the prefilled journal, the counting flows'
// state check, both targets and the per-round ratios.
func TestRunSmokeFlowState(t *testing.T) {
	if !flowrtBuilt {
		t.Skip("workload 7 measures flowrt alone")
	}
	rep := smokeRun(t, "-workloads", "7", "-n7", "3000", "-keys7", "50", "-count", "2")
	if len(rep.Workloads) != 1 {
		t.Fatalf("%d workloads, want 1", len(rep.Workloads))
	}
	w := rep.Workloads[0]
	if len(w.Results) != 4 || len(w.Targets) != 2 {
		t.Fatalf("W7: %d results, %d targets; want 4, 2", len(w.Results), len(w.Targets))
	}
	for _, r := range w.Results {
		if r.FloorSeconds <= 0 || r.FloorSeconds > r.Seconds || r.AllocsPerRecord <= 0 {
			t.Errorf("W7 %s: floor after %v s of %v s, %v allocations per event", r.Key, r.FloorSeconds, r.Seconds, r.AllocsPerRecord)
		}
	}
	if ref := w.Results[0]; ref.Key != "plain" || ref.VsReference != 1 {
		t.Errorf("W7 reference: %s at %v× ref", ref.Key, ref.VsReference)
	}
	var ratios int
	for _, n := range w.Notes {
		if strings.Contains(n, " by round: ") && strings.Count(n, ",") == 2 {
			ratios++
		}
	}
	if ratios != 2 {
		t.Errorf("W7 notes: %d lines of per-round ratios, want 2:\n%s", ratios, strings.Join(w.Notes, "\n"))
	}
}

// smokeRun runs the benchmark with args and -json in a temporary
// directory, checks every workload's results and targets, that the
// directory is left empty and that no goroutine is left running, and
// returns the report.
func smokeRun(t *testing.T, args ...string) *runReport {
	t.Helper()
	dir := t.TempDir()
	var out bytes.Buffer
	if err := run(context.Background(), append([]string{"-json", "-dir", dir}, args...), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var rep runReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("decode report: %v\n%s", err, out.Bytes())
	}
	for _, w := range rep.Workloads {
		if len(w.Results) < 3 {
			t.Errorf("W%d: %d results", w.ID, len(w.Results))
		}
		for _, r := range w.Results {
			if r.Error != "" || r.RecordsPerSec <= 0 || r.FileBytesPerRecord < payloadSize {
				t.Errorf("W%d %s: %+v", w.ID, r.Key, r)
			}
			if latency := w.Unit != ""; latency != (r.P50Micros > 0) || (w.ID == 4) != (r.ResidentPercent != nil) {
				t.Errorf("W%d %s: unit %q, p50 %v µs, resident %v", w.ID, r.Key, w.Unit, r.P50Micros, r.ResidentPercent)
			}
		}
		for _, tr := range w.Targets {
			if rep.FlowrtBuilt && tr.Status != "PASS" && tr.Status != "MISS" {
				t.Errorf("W%d target %q: status %q", w.ID, tr.Target, tr.Status)
			}
		}
	}
	if rep.Goroutines[1] > rep.Goroutines[0] {
		t.Errorf("goroutines: %d at start, %d at end", rep.Goroutines[0], rep.Goroutines[1])
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Errorf("dir after run: %v entries, err %v", len(ents), err)
	}
	return &rep
}
