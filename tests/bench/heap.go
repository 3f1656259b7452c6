package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"text/tabwriter"
	"time"
)

const (
	// heapSampleEvery is how often the heap check reads HeapInuse.
	heapSampleEvery = 50 * time.Millisecond
	// heapLimitMiB is the bound on the consumer's peak heap.
	heapLimitMiB = 64
)

// heapRun is one catch-up of the heap check.
type heapRun struct {
	Records        int     `json:"records"`
	PrefillSeconds float64 `json:"prefill_seconds"`
	Seconds        float64 `json:"seconds"`
	RecordsPerSec  float64 `json:"records_per_sec"`
	StartMiB       float64 `json:"heap_inuse_start_mib"` // after Open and a GC
	PeakMiB        float64 `json:"heap_inuse_peak_mib"`
	Samples        int     `json:"samples"`
	Error          string  `json:"error,omitempty"`
}

// heapReport is the heap check: catch-ups of growing backlogs, the growth of
// the peak heap between the smallest and the largest, and the target on the
// largest.
type heapReport struct {
	SampleMillis int64        `json:"sample_ms"`
	Runs         []heapRun    `json:"runs"`
	Growth       float64      `json:"peak_growth,omitempty"` // largest backlog's peak ÷ smallest's
	Target       targetResult `json:"target"`
}

// runHeapCheck prefills a fresh flowrt journal with each backlog of sizes,
// reopens it, and measures the peak HeapInuse of one consumer catching up
// with it, as workload 4's flowrt variant does.
func runHeapCheck(ctx context.Context, e *env, sizes []int) (*heapReport, error) {
	sizes = slices.Compact(slices.Sorted(slices.Values(sizes)))
	largest := sizes[len(sizes)-1]
	rep := &heapReport{
		SampleMillis: heapSampleEvery.Milliseconds(),
		Target: targetResult{
			Target: fmt.Sprintf("flowrt consumer peak HeapInuse < %d MiB catching up %d events", heapLimitMiB, largest),
			Limit:  heapLimitMiB,
			Status: "n/a",
		},
	}
	if !flowrtBuilt {
		return rep, nil
	}
	for _, n := range sizes {
		fmt.Fprintf(e.progress, "heap %-10d ", n)
		run, err := measureHeap(ctx, e, n)
		if err != nil {
			fmt.Fprintln(e.progress, "FAILED:", err)
			if ctx.Err() != nil {
				return nil, err
			}
			run.Error = err.Error()
		} else {
			fmt.Fprintf(e.progress, "prefill %.1fs, catch-up %.1fs, peak HeapInuse %.1f MiB\n",
				run.PrefillSeconds, run.Seconds, run.PeakMiB)
		}
		rep.Runs = append(rep.Runs, run)
	}
	first, last := rep.Runs[0], rep.Runs[len(rep.Runs)-1]
	if len(rep.Runs) > 1 && first.Error == "" && last.Error == "" {
		rep.Growth = last.PeakMiB / first.PeakMiB
	}
	if last.Error == "" {
		rep.Target.Value = last.PeakMiB
		rep.Target.Status = passMiss(last.PeakMiB < heapLimitMiB)
	}
	return rep, nil
}

// measureHeap prefills n events in a fresh directory, reopens the journal,
// prepares a consumer, collects garbage, and runs the catch-up while a
// heapSampler watches.
func measureHeap(ctx context.Context, e *env, n int) (heapRun, error) {
	run := heapRun{Records: n}
	dir, err := os.MkdirTemp(e.root, "heap-")
	if err != nil {
		return run, fmt.Errorf("bench: heap directory: %w", err)
	}
	defer os.RemoveAll(dir)
	start := time.Now()
	err = prefillStore(ctx, func(d string) (batchAppender, error) { return openFlowrt(d) }, dir, n, e.payloads)
	if err != nil {
		return run, err
	}
	run.PrefillSeconds = time.Since(start).Seconds()
	e.settle()
	s, err := openFlowrtReader(dir, n)
	if err != nil {
		return run, err
	}
	open := true
	defer func() {
		if open {
			s.Close()
		}
	}()
	if err := s.Prepare(ctx); err != nil {
		return run, err
	}
	runtime.GC()
	run.StartMiB = mib(heapInuse())
	smp := startHeapSampler(heapSampleEvery)
	start = time.Now()
	err = s.Scan(ctx)
	elapsed := time.Since(start)
	peak, samples := smp.stop()
	if err != nil {
		return run, err
	}
	run.Seconds = elapsed.Seconds()
	run.RecordsPerSec = float64(n) / elapsed.Seconds()
	run.PeakMiB = mib(peak)
	run.Samples = samples
	open = false
	return run, s.Close()
}

func heapInuse() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// heapSampler reads runtime.MemStats.HeapInuse when started, every interval
// in its own goroutine, and when stopped, and keeps the peak. stop must be
// called once; it stops the goroutine and waits for it.
type heapSampler struct {
	stopc, done chan struct{}
	peak        uint64
	samples     int
}

func startHeapSampler(every time.Duration) *heapSampler {
	h := &heapSampler{stopc: make(chan struct{}), done: make(chan struct{})}
	h.sample()
	go h.run(every)
	return h
}

func (h *heapSampler) run(every time.Duration) {
	defer close(h.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-h.stopc:
			h.sample()
			return
		case <-t.C:
			h.sample()
		}
	}
}

func (h *heapSampler) sample() {
	h.peak = max(h.peak, heapInuse())
	h.samples++
}

// stop stops the sampling and returns the peak HeapInuse in bytes and the
// number of samples.
func (h *heapSampler) stop() (peak uint64, samples int) {
	close(h.stopc)
	<-h.done
	return h.peak, h.samples
}

// write prints the heap check.
func (r *heapReport) write(w io.Writer) {
	fmt.Fprintf(w, "\nHeap: one flowrt consumer (default options, no-op handler) catching up from the start; "+
		"runtime HeapInuse sampled every %d ms\n", r.SampleMillis)
	if !flowrtBuilt {
		fmt.Fprintf(w, "   target %s: n/a\n", r.Target.Target)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "backlog\tprefill s\tcatch-up s\trecords/s\tHeapInuse at start MiB\tpeak MiB\tsamples\t")
	for _, run := range r.Runs {
		if run.Error != "" {
			fmt.Fprintf(tw, "%d\tFAILED: %s\t\t\t\t\t\t\n", run.Records, run.Error)
			continue
		}
		fmt.Fprintf(tw, "%d\t%.1f\t%.2f\t%.0f\t%.1f\t%.1f\t%d\t\n", run.Records, run.PrefillSeconds, run.Seconds,
			run.RecordsPerSec, run.StartMiB, run.PeakMiB, run.Samples)
	}
	tw.Flush()
	if r.Growth > 0 {
		fmt.Fprintf(w, "   peak HeapInuse with %d events ÷ with %d: %.2f×\n",
			r.Runs[len(r.Runs)-1].Records, r.Runs[0].Records, r.Growth)
	}
	if r.Target.Status == "n/a" {
		fmt.Fprintf(w, "   target %s: n/a\n", r.Target.Target)
		return
	}
	fmt.Fprintf(w, "   target %s: %.1f MiB (limit %.0f MiB) %s\n", r.Target.Target, r.Target.Value, r.Target.Limit, r.Target.Status)
}
