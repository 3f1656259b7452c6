package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
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
	ids, err := parseWorkloads("3, 1,3")
	if err != nil || len(ids) != 2 || ids[0] != 3 || ids[1] != 1 {
		t.Fatalf("parseWorkloads = %v, %v; want [3 1]", ids, err)
	}
	for _, bad := range []string{"", "0", "4", "x"} {
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

// TestRunSmoke runs every workload and variant at a tiny size and checks the
// JSON report, the cleanup of the directory and of goroutines.
func TestRunSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three NATS servers")
	}
	dir := t.TempDir()
	var out bytes.Buffer
	args := []string{"-json", "-dir", dir, "-n1", "10", "-writers", "4", "-n2", "3", "-n3", "2000", "-batch", "500", "-count", "2"}
	if err := run(context.Background(), args, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var rep runReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("decode report: %v\n%s", err, out.Bytes())
	}
	if len(rep.Workloads) != 3 {
		t.Fatalf("%d workloads, want 3", len(rep.Workloads))
	}
	for _, w := range rep.Workloads {
		if len(w.Results) < 3 {
			t.Errorf("W%d: %d results", w.ID, len(w.Results))
		}
		for _, r := range w.Results {
			if r.Error != "" || r.RecordsPerSec <= 0 || r.P50Micros <= 0 || r.FileBytesPerRecord < payloadSize {
				t.Errorf("W%d %s: %+v", w.ID, r.Key, r)
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
}
