package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

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
	if wr.Unit == "" {
		fmt.Fprintf(w, "   timed records %d per read; one timed read, no latency per record", wr.Records)
	} else {
		fmt.Fprintf(w, "   timed records %d after %d warm-up; latency per %s", wr.Records, wr.Warmup, wr.Unit)
	}
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
		p50, p99, ref := "–", "–", "–"
		if wr.Unit != "" {
			p50, p99 = fmt.Sprintf("%.0f", r.P50Micros), fmt.Sprintf("%.0f", r.P99Micros)
		}
		if r.VsReference > 0 {
			ref = fmt.Sprintf("%.3f", r.VsReference)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%s\t%s\t%.0f\t%.0f\t%s\t\n", r.Name, r.RecordsPerSec, r.MicrosPerOp,
			p50, p99, r.WriteBytesPerRecord, r.FileBytesPerRecord, ref)
	}
	tw.Flush()
	for i := 0; i < len(wr.Ratios); {
		f := wr.Ratios[i].Flowrt
		var parts []string
		for ; i < len(wr.Ratios) && wr.Ratios[i].Flowrt == f; i++ {
			parts = append(parts, fmt.Sprintf("%s %.3f×", wr.Ratios[i].Peer, wr.Ratios[i].Value))
		}
		fmt.Fprintf(w, "   %s records/s vs: %s\n", f, strings.Join(parts, ", "))
	}
	for _, t := range wr.Targets {
		label := "target"
		if t.Info {
			label = "info"
		}
		if t.Status == "n/a" {
			fmt.Fprintf(w, "   %s %s: n/a\n", label, t.Target)
			continue
		}
		if t.Unit != "" {
			fmt.Fprintf(w, "   %s %s: %.3f %s (limit %g %s) %s\n", label, t.Target, t.Value, t.Unit, t.Limit, t.Unit, t.Status)
			continue
		}
		fmt.Fprintf(w, "   %s %s: %.3f× (limit %.2f×) %s\n", label, t.Target, t.Value, t.Limit, t.Status)
	}
	for _, n := range wr.Notes {
		fmt.Fprintf(w, "   %s\n", n)
	}
}
