// Command bench runs flowrt's headline workloads (BASELINE.md, workloads
// 1–5, and 7: a flow with state against the same flow without) against the disk's limit and the peer stores side by side in one
// run, and prints per workload a table of records/s, µs/op, p50/p99 latency
// of the blocking unit, disk bytes written and stored per record, and the
// ratios of flowrt to every peer and to its targets. With -heap it also
// measures the peak heap of a flowrt consumer catching up with a large
// backlog. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// moduleOrder is the order the header lists module versions in.
var moduleOrder = []string{
	"github.com/flowrt/flowrt",
	"go.etcd.io/bbolt",
	"github.com/vmihailenco/msgpack/v5",
	"github.com/oklog/ulid/v2",
	"github.com/nats-io/nats-server/v2",
	"github.com/nats-io/nats.go",
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// onlyUsage is the help of -only.
const onlyUsage = "comma-separated variant keys to run (raw, bbolt, bbolt-batch, bbolt-batch-1ms, jetstream, jetstream-default, flowrt; " +
	"workload 4: flowrt-warm, flowrt-cold, bbolt-warm, bbolt-warm-nodecode, bbolt-cold, jetstream-consumer, or a store: flowrt, bbolt, jetstream; " +
	"workload 5: raw, jetstream, flowrt; workload 7: plain, count, plain-w4, count-w4)"

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		list    = fs.String("workloads", "1,2,3", "comma-separated workloads to run")
		quick   = fs.Bool("quick", false, "10× smaller workloads (2,000 / 64×100 / 100,000 / 100,000 / 64×100 + 2,000 / 20,000 records; heap check 1,000,000)")
		n1      = fs.Int("n1", 0, "workload 1: appends (default 20,000)")
		writers = fs.Int("writers", 0, "workloads 2 and 5: concurrent writers (producers), and the raw reference's batch size (default 64)")
		n2      = fs.Int("n2", 0, "workload 2: appends per writer (default 1,000)")
		n3      = fs.Int("n3", 0, "workload 3: records (default 1,000,000)")
		batch   = fs.Int("batch", 0, "workload 3: records per batch (default 1,000)")
		n4      = fs.Int("n4", 0, "workload 4: records prefilled and read (default 1,000,000); also the heap check's small backlog")
		n5      = fs.Int("n5", 0, "workload 5: appends per producer in the sustained phase (default 1,000)")
		n5paced = fs.Int("n5paced", 0, "workload 5: events of the paced phase, at most (default 20,000; fewer if over 5 s at the paced rate)")
		n7      = fs.Int("n7", 0, "workload 7: events prefilled, which every flow reads (default 200,000)")
		keys7   = fs.Int("keys7", 0, "workload 7: keys the events are spread over (default 10,000)")
		heap    = fs.Bool("heap", false, "after the workloads, measure a flowrt consumer's peak heap catching up -n4 and -heapn events (minutes, ~4 GB of disk)")
		heapN   = fs.Int("heapn", 0, "heap check: the large backlog (default 10,000,000)")
		dir     = fs.String("dir", os.TempDir(), "directory for the variants' temporary directories (disk-backed)")
		seed    = fs.Uint64("seed", 1, "seed of the payload bytes, and of workload 7's keys")
		only    = fs.String("only", "", onlyUsage)
		rounds  = fs.Int("count", 1, "rounds: each workload runs its variants in turn this many times and reports each one's median")
		asJSON  = fs.Bool("json", false, "print one JSON document instead of tables")
		cpuProf = fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof)")
		memProf = fs.String("memprofile", "", "write a heap profile (allocations since the start) to this file at the end of the run (go tool pprof -sample_index=alloc_objects)")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	s := defaultSizes(*quick)
	for _, o := range []struct{ flag, dst *int }{{n1, &s.n1}, {writers, &s.writers}, {n2, &s.n2}, {n3, &s.n3}, {batch, &s.batch}, {n4, &s.n4}, {heapN, &s.heapN}, {n5, &s.n5}, {n5paced, &s.n5paced}, {n7, &s.n7}, {keys7, &s.keys7}} {
		if *o.flag < 0 {
			return errors.New("sizes must be positive")
		}
		if *o.flag > 0 {
			*o.dst = *o.flag
		}
	}
	if *rounds < 1 {
		return errors.New("-count must be at least 1")
	}
	if s.n3 < s.batch {
		return fmt.Errorf("-n3 %d is smaller than one batch of %d", s.n3, s.batch)
	}
	ids, err := parseWorkloads(*list)
	if err != nil {
		return err
	}
	if *cpuProf != "" {
		stop, err := startCPUProfile(*cpuProf)
		if err != nil {
			return err
		}
		defer stop()
	}
	if *memProf != "" {
		defer func() {
			if perr := writeHeapProfile(*memProf); perr != nil && err == nil {
				err = perr
			}
		}()
	}
	root, err := os.MkdirTemp(*dir, "flowrt-bench-")
	if err != nil {
		return fmt.Errorf("temporary directory: %w", err)
	}
	defer os.RemoveAll(root)

	p := newPayloads(*seed, 1024, payloadSize)
	rep := &runReport{
		Seed:           *seed,
		Dir:            *dir,
		FileSystem:     fsKind(root),
		GoVersion:      runtime.Version(),
		CPUs:           runtime.NumCPU(),
		PayloadBytes:   payloadSize,
		BoltValueBytes: boltValueSize(p.rec(0)),
		FlowrtBuilt:    flowrtBuilt,
		Modules:        moduleVersions(),
	}
	e := &env{root: root, payloads: p, seed: *seed, progress: stderr, settle: settle, rounds: *rounds}
	if *only != "" {
		e.only = make(map[string]bool)
		for k := range strings.SplitSeq(*only, ",") {
			e.only[strings.TrimSpace(k)] = true
		}
	}
	if !*asJSON {
		rep.writeHeader(stdout)
	}
	rep.Goroutines[0] = runtime.NumGoroutine()
	all := workloads(s)
	for _, id := range ids {
		wr, err := all[id].run(ctx, e)
		if err != nil {
			return fmt.Errorf("workload %d: %w", id, err)
		}
		rep.Workloads = append(rep.Workloads, wr)
		if !*asJSON {
			wr.writeTable(stdout)
		}
	}
	if *heap {
		if rep.Heap, err = runHeapCheck(ctx, e, []int{s.n4, s.heapN}); err != nil {
			return fmt.Errorf("heap check: %w", err)
		}
		if !*asJSON {
			rep.Heap.write(stdout)
		}
	}
	rep.Goroutines[1] = settledGoroutines(rep.Goroutines[0], 5*time.Second)
	if *asJSON {
		return rep.writeJSON(stdout)
	}
	fmt.Fprintf(stdout, "\ngoroutines: %d at start, %d at end\n", rep.Goroutines[0], rep.Goroutines[1])
	return nil
}

// parseWorkloads parses -workloads: distinct numbers among 1–5 and 7, in
// order.
func parseWorkloads(list string) ([]int, error) {
	var ids []int
	for f := range strings.SplitSeq(list, ",") {
		id, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || id < 1 || id > 7 || id == 6 {
			return nil, fmt.Errorf("-workloads: %q is not one of 1, 2, 3, 4, 5, 7 (6 is not written yet)", f)
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// startCPUProfile starts profiling the process's CPU into path, and
// returns the function that stops it and closes the file.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// writeHeapProfile writes the heap profile, with every allocation since the
// start, to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("-memprofile: %w", err)
	}
	runtime.GC() // the profile then includes the last allocations
	err = pprof.Lookup("allocs").WriteTo(f, 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("-memprofile: %w", err)
	}
	return nil
}

// settledGoroutines waits up to wait for the goroutine count to fall back to
// want, and returns the count: more than want means a variant left one
// running.
func settledGoroutines(want int, wait time.Duration) int {
	deadline := time.Now().Add(wait)
	for {
		n := runtime.NumGoroutine()
		if n <= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// moduleVersions returns the versions this binary was built with.
func moduleVersions() map[string]string {
	m := make(map[string]string)
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return m
	}
	for _, d := range info.Deps {
		v := d.Version
		if d.Replace != nil {
			v = "=> " + d.Replace.Path
		}
		m[d.Path] = v
	}
	return m
}
