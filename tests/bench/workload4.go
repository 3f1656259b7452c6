package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"time"
)

// prefillBatch is how many records workload 4 and the heap check append per
// commit when they prefill a store.
const prefillBatch = 1000

// coldSlowdown is how many times slower than the warm one the cold bbolt
// scan must be for the report to believe the cold reads were cold.
// BASELINE.md measured 19×.
const coldSlowdown = 2

// stallTimeout is how long a consumer read may go without delivering
// anything before it is abandoned as stuck.
const stallTimeout = 30 * time.Second

// readSeq numbers the durable consumers workload 4 and the heap check
// create, so that every read starts a new consumer at the stream's start.
var readSeq atomic.Uint64

// newReadName returns a consumer name not used before in this process.
func newReadName() string { return fmt.Sprintf("bench-%d", readSeq.Add(1)) }

// scanner is what workload 4 drives: a prefilled store, reopened for reading.
// Prepare sets up one read (a new durable consumer for flowrt and
// JetStream) and is not timed. Scan then reads every record from the start
// and returns once the read is complete as the variant defines it: for the
// consumers, once the ack of the last record is committed. Neither is safe
// for concurrent use. Close stops everything the scanner started.
type scanner interface {
	Prepare(ctx context.Context) error
	Scan(ctx context.Context) error
	Close() error
}

// cacheState says whether a read starts with the store's pages in the page
// cache.
type cacheState int

const (
	cacheWarm cacheState = iota // every file read once just before the read
	cacheCold                   // every file evicted from the page cache
)

func (c cacheState) String() string {
	switch c {
	case cacheWarm:
		return "warm"
	case cacheCold:
		return "cold"
	default:
		return fmt.Sprintf("cacheState(%d)", int(c))
	}
}

// catchUpStore is one store workload 4 prefills once and its variants read.
type catchUpStore struct {
	key string // flowrt, bbolt, jetstream: -only selects all its variants
	// open opens the store in dir, a fresh empty directory, for the
	// prefill.
	open func(dir string) (batchAppender, error)
}

// catchUpVariant is one way of reading a prefilled store.
type catchUpVariant struct {
	key   string // -only filter, ratios, targets, JSON
	name  string // table name
	role  role
	store *catchUpStore
	cache cacheState
	// open reopens the store prefilled in dir with n records, once closed
	// and warmed or evicted.
	open func(dir string, n int) (scanner, error)
}

// catchUp is workload 4: each store is prefilled once with n records, then
// every variant reads all of them from the start, e.rounds times.
type catchUp struct {
	n        int
	stores   []*catchUpStore
	variants []catchUpVariant
	targets  []target
}

func workload4(s sizes) runner {
	var (
		fl = &catchUpStore{key: "flowrt", open: func(d string) (batchAppender, error) { return openFlowrt(d) }}
		bo = &catchUpStore{key: "bbolt", open: func(d string) (batchAppender, error) { return openBolt(d, boltUpdate, 0) }}
		js = &catchUpStore{key: "jetstream", open: func(d string) (batchAppender, error) {
			return openJetStream(d, jsDefault, jsAsyncPublish)
		}}
		flowrtRead = func(d string, n int) (scanner, error) { return openFlowrtReader(d, n) }
	)
	c := &catchUp{
		n:      s.n4,
		stores: []*catchUpStore{bo, js},
		targets: []target{
			{kind: targetVariantsAtLeast, num: "flowrt-warm", den: "bbolt-warm", limit: 0.70,
				desc: "flowrt-warm records/s ≥ 0.70× bbolt-warm (cursor scan + msgpack decode)"},
			{kind: targetVariantsAtLeast, num: "flowrt-cold", den: "bbolt-cold", limit: 2,
				desc: "flowrt-cold records/s ≥ 2× bbolt-cold (cursor scan + msgpack decode)"},
			{kind: targetVariantsAtLeast, num: "flowrt-warm", den: "jetstream-consumer", limit: 6, info: true,
				desc: "flowrt-warm records/s vs jetstream-consumer (the issue expects ≥ 6×)"},
		},
	}
	if flowrtBuilt {
		c.stores = append([]*catchUpStore{fl}, c.stores...)
	}
	add := func(ok bool, v catchUpVariant) {
		if ok {
			c.variants = append(c.variants, v)
		}
	}
	// The cold reads come last in a round, in case drop_caches empties the
	// whole page cache.
	add(flowrtBuilt, catchUpVariant{key: "flowrt-warm", name: "flowrt consumer, warm", role: roleFlowrt,
		store: fl, cache: cacheWarm, open: flowrtRead})
	add(true, catchUpVariant{key: "bbolt-warm", name: "bbolt scan+decode, warm", role: rolePeer, store: bo, cache: cacheWarm,
		open: func(d string, n int) (scanner, error) { return openBoltReader(d, n, true) }})
	add(true, catchUpVariant{key: "bbolt-warm-nodecode", name: "bbolt scan, no decode, warm", role: rolePeer, store: bo,
		cache: cacheWarm, open: func(d string, n int) (scanner, error) { return openBoltReader(d, n, false) }})
	add(true, catchUpVariant{key: "jetstream-consumer", name: fmt.Sprintf("JetStream pull Fetch(%d)+Ack, warm", jsFetchBatch),
		role: rolePeer, store: js, cache: cacheWarm,
		open: func(d string, n int) (scanner, error) { return openJetStreamReader(d, n) }})
	add(flowrtBuilt, catchUpVariant{key: "flowrt-cold", name: "flowrt consumer, cold", role: roleFlowrt,
		store: fl, cache: cacheCold, open: flowrtRead})
	add(true, catchUpVariant{key: "bbolt-cold", name: "bbolt scan+decode, cold", role: rolePeer, store: bo, cache: cacheCold,
		open: func(d string, n int) (scanner, error) { return openBoltReader(d, n, true) }})
	return c
}

// selected reports whether -only selects v: by its key or its store's.
func (v *catchUpVariant) selected(e *env) bool {
	return e.only == nil || e.only[v.key] || e.only[v.store.key]
}

func (c *catchUp) run(ctx context.Context, e *env) (*workloadReport, error) {
	rep := &workloadReport{
		ID: 4,
		Title: fmt.Sprintf("consumer catch-up: %d records prefilled %d per commit, each read from the start, warm and cold cache",
			c.n, prefillBatch),
		Records: c.n,
		Rounds:  e.rounds,
	}
	// Prefill every store a selected variant reads; a failed prefill fails
	// its variants.
	dirs := make(map[*catchUpStore]string)
	failed := make(map[*catchUpStore]error)
	for _, st := range c.stores {
		wanted := false
		for i := range c.variants {
			wanted = wanted || (c.variants[i].store == st && c.variants[i].selected(e))
		}
		if !wanted {
			continue
		}
		dir, err := os.MkdirTemp(e.root, "w4-"+st.key+"-")
		if err != nil {
			return nil, fmt.Errorf("bench: store directory: %w", err)
		}
		defer os.RemoveAll(dir)
		fmt.Fprintf(e.progress, "W4 prefill        %-18s ", st.key)
		start := time.Now()
		if err := prefillStore(ctx, st.open, dir, c.n, e.payloads); err != nil {
			fmt.Fprintln(e.progress, "FAILED:", err)
			if ctx.Err() != nil {
				return nil, err
			}
			failed[st] = err
			continue
		}
		elapsed := time.Since(start)
		fmt.Fprintf(e.progress, "%10.0f records/s in %.1fs\n", float64(c.n)/elapsed.Seconds(), elapsed.Seconds())
		dirs[st] = dir
	}

	rounds := make([][]result, len(c.variants))
	for round := range e.rounds {
		for i := range c.variants {
			v := &c.variants[i]
			if !v.selected(e) {
				continue
			}
			fmt.Fprintf(e.progress, "W4 round %d/%d %-18s ", round+1, e.rounds, v.key)
			var res result
			err := failed[v.store]
			if err != nil {
				err = fmt.Errorf("prefill: %w", err)
			} else {
				res, err = c.measure(ctx, e, v, dirs[v.store])
			}
			if err != nil {
				fmt.Fprintln(e.progress, "FAILED:", err)
				if ctx.Err() != nil {
					return nil, err
				}
				res = result{Key: v.key, Name: v.name, Role: v.role.String(), Cache: v.cache.String(), Error: err.Error()}
			} else {
				fmt.Fprintf(e.progress, "%10.0f records/s in %.1fs, %.1f%% cached at start\n",
					res.RecordsPerSec, res.Seconds, *res.ResidentPercent)
			}
			rounds[i] = append(rounds[i], res)
		}
	}
	for _, rs := range rounds {
		if len(rs) > 0 {
			rep.Results = append(rep.Results, median(rs))
		}
	}
	rep.evaluate(c.targets, len(e.payloads.recs[0]))
	rep.Notes = coldNotes(rep)
	return rep, nil
}

// measure reads the store in dir once with v. A warm read first reads every
// file of the store, so its pages are all cached; a cold read first evicts
// them. The store is then opened and the read prepared (neither is timed),
// the page-cache residency is taken, and the read is timed.
func (c *catchUp) measure(ctx context.Context, e *env, v *catchUpVariant, dir string) (res result, err error) {
	e.settle()
	var ev eviction
	switch v.cache {
	case cacheWarm:
		if err := warmDir(dir); err != nil {
			return res, err
		}
	case cacheCold:
		if ev, err = evictDir(dir); err != nil {
			return res, err
		}
	}
	s, err := v.open(dir, c.n)
	if err != nil {
		return res, fmt.Errorf("open %s: %w", v.key, err)
	}
	open := true
	defer func() {
		if open {
			s.Close()
		}
	}()
	if err := s.Prepare(ctx); err != nil {
		return res, fmt.Errorf("prepare %s: %w", v.key, err)
	}
	runtime.GC()
	resident, err := dirResidency(dir)
	if err != nil {
		return res, err
	}
	run, err := timeRun(dir,
		func() error { return s.Scan(ctx) },
		func() error { open = false; return s.Close() })
	if err != nil {
		return res, fmt.Errorf("%s: %w", v.key, err)
	}
	elapsed := run.elapsed
	pct := 100 * resident.fraction()
	return result{
		Key:                 v.key,
		Name:                v.name,
		Role:                v.role.String(),
		Seconds:             elapsed.Seconds(),
		RecordsPerSec:       float64(c.n) / elapsed.Seconds(),
		MicrosPerOp:         elapsed.Seconds() * 1e6 / float64(c.n),
		WriteBytesPerRecord: run.writeBytes / float64(c.n),
		FileBytesPerRecord:  float64(run.dirBytes) / float64(c.n),
		Cache:               v.cache.String(),
		ResidentPercent:     &pct,
		Eviction:            ev.method,
	}, nil
}

// prefillStore opens a store in dir, appends n records prefillBatch per
// commit (record i is payload i) and closes it.
func prefillStore(ctx context.Context, open func(string) (batchAppender, error), dir string, n int, p *payloads) (err error) {
	b, err := open(dir)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := b.Close(); err == nil {
			err = cerr
		}
	}()
	recs := make([][]byte, 0, prefillBatch)
	for i := 0; i < n; i += prefillBatch {
		if err := ctx.Err(); err != nil {
			return err
		}
		recs = recs[:0]
		for j := i; j < min(i+prefillBatch, n); j++ {
			recs = append(recs, p.rec(j))
		}
		if err := b.AppendBatch(recs); err != nil {
			return fmt.Errorf("prefill at record %d: %w", i, err)
		}
	}
	return nil
}

// coldNotes says how the cold reads were made cold and whether they were:
// every cold read's page-cache residency at its start must be at most
// coldResidency, and the cold bbolt scan must be at least coldSlowdown
// times slower than the warm one.
func coldNotes(rep *workloadReport) []string {
	var notes []string
	for _, r := range rep.Results {
		if r.Error != "" || r.Cache != cacheCold.String() {
			continue
		}
		notes = append(notes, fmt.Sprintf("cold: %s evicted by %s; %.1f%% of its pages cached when the read started",
			r.Key, r.Eviction, *r.ResidentPercent))
		if *r.ResidentPercent > 100*coldResidency {
			notes = append(notes, fmt.Sprintf("WARNING: %s started with %.1f%% of its pages cached: it was not cold", r.Key, *r.ResidentPercent))
		}
	}
	warm, cold := rep.find("bbolt-warm"), rep.find("bbolt-cold")
	if warm == nil || cold == nil {
		return notes
	}
	slow := warm.RecordsPerSec / cold.RecordsPerSec
	if slow < coldSlowdown {
		notes = append(notes, fmt.Sprintf("WARNING: bbolt-cold is only %.1f× slower than bbolt-warm (BASELINE.md: 19×): "+
			"the cold reads may have been served from a cache (the host's, under a virtual disk)", slow))
	} else {
		notes = append(notes, fmt.Sprintf("cold check: bbolt-cold is %.1f× slower than bbolt-warm (BASELINE.md: 19×)", slow))
	}
	return notes
}
