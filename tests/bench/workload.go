package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"syscall"
	"time"
)

// appender is what workloads 1 and 2 drive. Append returns once rec is
// committed as the variant defines it: fsynced for raw, bbolt and flowrt,
// acknowledged by the server for JetStream. Append is safe for concurrent use
// (workload 2 calls it from many goroutines) and does not keep rec. Close
// stops everything the appender started; no call may be in flight.
type appender interface {
	Append(rec []byte) error
	Close() error
}

// batchAppender is what workload 3 drives. AppendBatch returns once every
// record of recs is committed, with one commit for the call. It is called
// from one goroutine and does not keep recs.
type batchAppender interface {
	AppendBatch(recs [][]byte) error
	Close() error
}

// role says how a variant is used in the ratios.
type role int

const (
	roleReference role = iota // the disk's limit; targets are ratios to it
	rolePeer                  // another store, shown for comparison
	roleFlowrt                // the journal under test
	roleDetail                // another figure of a variant's run: in no ratio
)

func (r role) String() string {
	switch r {
	case roleReference:
		return "reference"
	case rolePeer:
		return "peer"
	case roleFlowrt:
		return "flowrt"
	case roleDetail:
		return "detail"
	default:
		return fmt.Sprintf("role(%d)", int(r))
	}
}

// variant is one store configured one way, opened in a fresh directory.
type variant[T io.Closer] struct {
	key  string // short name: -only filter, ratios, JSON
	name string // table name
	role role
	// open opens the store in dir, a fresh empty directory. On error the
	// returned T is not used, so a typed nil is fine.
	open func(dir string) (T, error)
}

// workload is one headline workload: its variants, how one is driven, and
// the targets flowrt is held to.
type workload[T io.Closer] struct {
	id    int
	title string
	unit  string // the blocking unit whose latency is measured
	// warm and size count drive units (appends, rounds or batches); each
	// unit is recordsPerUnit records.
	warm, size     int
	recordsPerUnit int
	variants       []variant[T]
	// drive runs n units against t, records every blocking unit's latency
	// and stops early when ctx is cancelled.
	drive   func(ctx context.Context, t T, n int, p *payloads) (*latencies, error)
	targets []target
}

// env is what every measurement shares.
type env struct {
	root     string          // every variant directory is created here
	payloads *payloads       // the same bytes for everyone
	seed     uint64          // -seed: the payloads', and workload 7's keys
	only     map[string]bool // variant keys to run; nil runs all
	rounds   int             // runs of each variant; the median is reported
	progress io.Writer       // one line per variant, to stderr
	settle   func()          // runs between warm-up and timed phase
}

// runner is a workload with its variant type erased.
type runner interface {
	run(ctx context.Context, e *env) (*workloadReport, error)
}

// run measures every selected variant e.rounds times, the variants in turn
// within each round, keeps each variant's median round and evaluates the
// targets.
func (w *workload[T]) run(ctx context.Context, e *env) (*workloadReport, error) {
	rep := &workloadReport{
		ID:      w.id,
		Title:   w.title,
		Unit:    w.unit,
		Records: w.size * w.recordsPerUnit,
		Warmup:  w.warm * w.recordsPerUnit,
		Rounds:  e.rounds,
	}
	rounds := make([][]result, len(w.variants))
	for round := range e.rounds {
		for i, v := range w.variants {
			if e.only != nil && !e.only[v.key] {
				continue
			}
			fmt.Fprintf(e.progress, "W%d round %d/%d %-18s ", w.id, round+1, e.rounds, v.key)
			res, err := w.measure(ctx, e, v)
			if err != nil {
				fmt.Fprintln(e.progress, "FAILED:", err)
				if ctx.Err() != nil {
					return nil, err
				}
				res = result{Key: v.key, Name: v.name, Role: v.role.String(), Error: err.Error()}
			} else {
				fmt.Fprintf(e.progress, "%10.0f records/s in %.1fs\n", res.RecordsPerSec, res.Seconds)
			}
			rounds[i] = append(rounds[i], res)
		}
	}
	for _, rs := range rounds {
		if len(rs) > 0 {
			rep.Results = append(rep.Results, median(rs))
		}
	}
	rep.evaluate(w.targets, len(e.payloads.recs[0]))
	return rep, nil
}

// median returns the round with the median records/s (the lower one of an
// even count), or a failed round if any failed.
func median(rs []result) result {
	for _, r := range rs {
		if r.Error != "" {
			return r
		}
	}
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b result) int { return cmp.Compare(a.RecordsPerSec, b.RecordsPerSec) })
	return rs[(len(rs)-1)/2]
}

// measure opens v in a fresh directory, warms it up, times the run, and
// removes the directory. The warm-up is excluded from the timing and the
// write counters; e.settle runs in between so that no earlier dirty page or
// garbage is paid for in the timed phase.
func (w *workload[T]) measure(ctx context.Context, e *env, v variant[T]) (res result, err error) {
	dir, err := os.MkdirTemp(e.root, fmt.Sprintf("w%d-%s-", w.id, v.key))
	if err != nil {
		return res, fmt.Errorf("bench: variant directory: %w", err)
	}
	defer os.RemoveAll(dir)
	t, err := v.open(dir)
	if err != nil {
		return res, fmt.Errorf("open %s: %w", v.key, err)
	}
	open := true
	defer func() {
		if open {
			t.Close()
		}
	}()
	if _, err := w.drive(ctx, t, w.warm, e.payloads); err != nil {
		return res, fmt.Errorf("warm-up: %w", err)
	}
	e.settle()
	var lat *latencies
	run, err := timeRun(dir,
		func() (err error) { lat, err = w.drive(ctx, t, w.size, e.payloads); return err },
		func() error { open = false; return t.Close() })
	if err != nil {
		return res, fmt.Errorf("%s: %w", v.key, err)
	}
	elapsed := run.elapsed
	records := w.size * w.recordsPerUnit
	return result{
		Key:                 v.key,
		Name:                v.name,
		Role:                v.role.String(),
		Seconds:             elapsed.Seconds(),
		RecordsPerSec:       float64(records) / elapsed.Seconds(),
		MicrosPerOp:         elapsed.Seconds() * 1e6 / float64(records),
		P50Micros:           micros(lat.percentile(50)),
		P99Micros:           micros(lat.percentile(99)),
		WriteBytesPerRecord: run.writeBytes / float64(records),
		FileBytesPerRecord:  float64(run.dirBytes) / float64(records+w.warm*w.recordsPerUnit),
	}, nil
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// payloads is a fixed set of random 256 B records drawn from the seed. Record
// i of every run is recs[i%len(recs)], for every variant alike.
type payloads struct {
	recs [][]byte
}

func newPayloads(seed uint64, count, size int) *payloads {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	buf := make([]byte, count*size)
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	p := &payloads{recs: make([][]byte, count)}
	for i := range p.recs {
		p.recs[i] = slices.Clip(buf[i*size : (i+1)*size])
	}
	return p
}

func (p *payloads) rec(i int) []byte { return p.recs[i%len(p.recs)] }

// settle collects garbage and flushes every dirty page of the machine to
// disk, so the timed phase starts from the same state for every variant.
func settle() {
	runtime.GC()
	syscall.Sync()
}
