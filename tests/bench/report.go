package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// result is one variant's measurement: with several rounds, the round with
// the median records/s. Per-record figures count the timed records only; FileBytesPerRecord divides the final size of the variant's
// files by every record written, warm-up included.
type result struct {
	Key                 string  `json:"key"`
	Name                string  `json:"name"`
	Role                string  `json:"role"`
	Seconds             float64 `json:"seconds"`
	RecordsPerSec       float64 `json:"records_per_sec"`
	MicrosPerOp         float64 `json:"us_per_op"`
	P50Micros           float64 `json:"p50_us"`
	P99Micros           float64 `json:"p99_us"`
	WriteBytesPerRecord float64 `json:"write_bytes_per_record"`
	FileBytesPerRecord  float64 `json:"file_bytes_per_record"`
	VsReference         float64 `json:"vs_reference,omitempty"` // records/s ÷ the reference's
	Error               string  `json:"error,omitempty"`
}

// ratio is flowrt's records/s divided by one peer's.
type ratio struct {
	Peer  string  `json:"peer"`
	Value float64 `json:"value"`
}

// targetKind says what a target compares.
type targetKind int

const (
	targetRatioAtLeast targetKind = iota // flowrt records/s ÷ the reference's ≥ limit
	targetBytesAtMost                    // flowrt write bytes/record ÷ payload size ≤ limit
)

// target is a goal flowrt is held to in one workload.
type target struct {
	kind  targetKind
	limit float64
	desc  string
}

// targetResult is a target evaluated on one run. Status is PASS, MISS, or
// n/a when flowrt or the reference did not run.
type targetResult struct {
	Target string  `json:"target"`
	Limit  float64 `json:"limit"`
	Value  float64 `json:"value"`
	Status string  `json:"status"`
}

// workloadReport is one workload's results, ratios and targets.
type workloadReport struct {
	ID      int            `json:"id"`
	Title   string         `json:"title"`
	Unit    string         `json:"unit"`
	Records int            `json:"records"`
	Warmup  int            `json:"warmup_records"`
	Rounds  int            `json:"rounds"`
	Results []result       `json:"results"`
	Ratios  []ratio        `json:"flowrt_vs_peer,omitempty"`
	Targets []targetResult `json:"targets"`
}

// evaluate fills VsReference, the flowrt ratios and the targets.
func (w *workloadReport) evaluate(targets []target, payload int) {
	var ref, fl *result
	for i := range w.Results {
		r := &w.Results[i]
		if r.Error != "" {
			continue
		}
		switch r.Role {
		case roleReference.String():
			ref = r
		case roleFlowrt.String():
			fl = r
		}
	}
	for i := range w.Results {
		if r := &w.Results[i]; ref != nil && r.Error == "" {
			r.VsReference = r.RecordsPerSec / ref.RecordsPerSec
		}
	}
	if fl != nil {
		for _, r := range w.Results {
			if r.Role != roleFlowrt.String() && r.Error == "" {
				w.Ratios = append(w.Ratios, ratio{Peer: r.Key, Value: fl.RecordsPerSec / r.RecordsPerSec})
			}
		}
	}
	for _, t := range targets {
		tr := targetResult{Target: t.desc, Limit: t.limit, Status: "n/a"}
		switch {
		case fl == nil:
		case t.kind == targetBytesAtMost:
			tr.Value = fl.WriteBytesPerRecord / float64(payload)
			tr.Status = passMiss(tr.Value <= t.limit)
		case ref != nil:
			tr.Value = fl.RecordsPerSec / ref.RecordsPerSec
			tr.Status = passMiss(tr.Value >= t.limit)
		}
		w.Targets = append(w.Targets, tr)
	}
}

func passMiss(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

// runReport is the whole run, as -json prints it.
type runReport struct {
	Seed           uint64            `json:"seed"`
	Dir            string            `json:"dir"`
	FileSystem     string            `json:"file_system"`
	GoVersion      string            `json:"go_version"`
	CPUs           int               `json:"cpus"`
	PayloadBytes   int               `json:"payload_bytes"`
	BoltValueBytes int               `json:"bbolt_value_bytes"`
	FlowrtBuilt    bool              `json:"flowrt_built"`
	Modules        map[string]string `json:"modules"`
	Workloads      []*workloadReport `json:"workloads"`
	Goroutines     [2]int            `json:"goroutines_start_end"`
}

func (r *runReport) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(r)
}

// writeHeader prints what the run measures, before any workload.
func (r *runReport) writeHeader(w io.Writer) {
	fmt.Fprintf(w, "flowrt bench: seed %d, %d B payloads (bbolt value %d B), dir %s (%s), %s, %d CPUs\n",
		r.Seed, r.PayloadBytes, r.BoltValueBytes, r.Dir, r.FileSystem, r.GoVersion, r.CPUs)
	var mods []string
	for _, m := range moduleOrder {
		if v, ok := r.Modules[m]; ok {
			mods = append(mods, m+" "+v)
		}
	}
	fmt.Fprintf(w, "modules: %s\n", strings.Join(mods, ", "))
	if !r.FlowrtBuilt {
		fmt.Fprintln(w, "flowrt: left out (built with -tags noflowrt); flowrt ratios and targets are n/a")
	}
	if r.FileSystem == "tmpfs" {
		fmt.Fprintln(w, "WARNING: -dir is on tmpfs, where fsync costs nothing; use a disk-backed directory")
	}
}

// writeTable prints one workload as a table, its ratios and its targets.
func (wr *workloadReport) writeTable(w io.Writer) {
	fmt.Fprintf(w, "\nW%d %s\n", wr.ID, wr.Title)
	fmt.Fprintf(w, "   timed records %d after %d warm-up; latency per %s", wr.Records, wr.Warmup, wr.Unit)
	if wr.Rounds > 1 {
		fmt.Fprintf(w, "; median of %d rounds", wr.Rounds)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "variant\trecords/s\tµs/op\tp50 µs\tp99 µs\twritten B/rec\tfile B/rec\t× ref\t")
	for _, r := range wr.Results {
		if r.Error != "" {
			fmt.Fprintf(tw, "%s\tFAILED: %s\t\t\t\t\t\t\t\n", r.Name, r.Error)
			continue
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.0f\t%.0f\t%.0f\t%.0f\t%.3f\t\n", r.Name, r.RecordsPerSec, r.MicrosPerOp,
			r.P50Micros, r.P99Micros, r.WriteBytesPerRecord, r.FileBytesPerRecord, r.VsReference)
	}
	tw.Flush()
	if len(wr.Ratios) > 0 {
		parts := make([]string, len(wr.Ratios))
		for i, r := range wr.Ratios {
			parts[i] = fmt.Sprintf("%s %.3f×", r.Peer, r.Value)
		}
		fmt.Fprintf(w, "   flowrt records/s vs: %s\n", strings.Join(parts, ", "))
	}
	for _, t := range wr.Targets {
		if t.Status == "n/a" {
			fmt.Fprintf(w, "   target %s: n/a\n", t.Target)
			continue
		}
		fmt.Fprintf(w, "   target %s: %.3f× (limit %.2f×) %s\n", t.Target, t.Value, t.Limit, t.Status)
	}
}
