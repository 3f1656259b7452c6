package crashstate_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/runtime"
)

// The child process is this test binary run again by flowtest.StartChild.
// It opens the journal and prints startedLine, starts cfg.Writers
// goroutines appending events, and runs a runtime with the two stateful
// flows of newFlows. After the counting flow's first delivery it prints
// readyLine. It runs until it is killed, or, when cfg.StopAfter is set,
// that long after readyLine appends a burst of events, stops the runtime
// cleanly at once, prints stoppedLine and exits 0.
// Problems go to stderr and end the child with a non-zero status, which
// the parent reports.

// Lines the child prints on stdout.
const (
	startedLine = "started" // the journal is open; the runtime starts next
	readyLine   = "ready"   // the counting flow delivered its first event
	stoppedLine = "stopped" // a clean stop committed everything
)

// The stream and the flows under test.
const (
	streamName = "ticks"
	countsFlow = "counts" // count per key of the events matching flowTypes
	sumsFlow   = "sums"   // sum per key of data.amount, over the matching events with amount >= minAmount
	flowTypes  = "tick.*"
	minAmount  = 20
	numKeys    = 16
)

// eventTypes are the types the child appends: tock.skipped is not
// flowTypes, so neither flow counts it.
var eventTypes = []string{"tick.a", "tick.b", "tick.c", "tock.skipped"}

// childMaxLife bounds a child the parent failed to kill.
const childMaxLife = 2 * time.Minute

// flowConfig configures the flows of one run: a child's or the parent's
// final run.
type flowConfig struct {
	Seed           uint64
	CountsWorkers  int           // consumer.Options.Workers of countsFlow
	SumsWorkers    int           // consumer.Options.Workers of sumsFlow
	CommitInterval time.Duration // consumer.Options.CommitInterval of both
	CommitEvery    int           // consumer.Options.CommitEvery of both
	SumsVersion    int           // sumsFlow's StateVersion; a change rebuilds its state
	SnapshotEvery  time.Duration // sumsFlow's SnapshotEvery
	FailRate       float64       // share of sink deliveries (and, halved, of counting steps) that fail, transiently
	SlowRate       float64       // share of countsFlow's deliveries that work for up to MaxWork first
	MaxWork        time.Duration
}

// childConfig is what the parent tells the child.
type childConfig struct {
	Journal   string
	Flows     flowConfig
	Writers   int           // goroutines appending
	Produce   int           // events each writer appends at most
	Pace      time.Duration // between one writer's appends
	StopAfter time.Duration // > 0: stop cleanly this long after readyLine
}

// eventData is the data of every event the child appends.
type eventData struct {
	Amount int `json:"amount"`
}

var errTransient = errors.New("transient failure")

// flaky fails a share of calls at random. It is safe for concurrent use.
type flaky struct {
	mu   sync.Mutex
	rng  *rand.Rand
	rate float64
}

func newFlaky(seed, stream uint64, rate float64) *flaky {
	return &flaky{rng: rand.New(rand.NewPCG(seed, stream)), rate: rate}
}

func (f *flaky) fail() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rng.Float64() < f.rate
}

// work returns how long a call works: up to max for a share of calls.
func (f *flaky) work(max time.Duration) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	if max <= 0 || f.rng.Float64() >= f.rate {
		return 0
	}
	return time.Duration(f.rng.Int64N(int64(max)))
}

// newFlows returns the flows under test. delivered, unless nil, is called
// after each successful delivery of countsFlow.
//
// countsFlow counts the events per key; a step after the reduce and its
// sink fail at random (FailRate), so some attempts compute a new count
// and then fail: the retry must not count twice. Its sink works a while
// now and then, so that events of other keys overtake it. sumsFlow
// filters, then sums data.amount per key, with one worker or several,
// snapshots its state, and has a version that the parent changes now and
// then, so that its state is rebuilt (from a snapshot, when the version
// goes back to one that has snapshots).
func newFlows(fc flowConfig, delivered func()) []runtime.Flow {
	copts := func(workers int) *consumer.Options {
		return &consumer.Options{
			Workers:        workers,
			CommitInterval: fc.CommitInterval,
			CommitEvery:    fc.CommitEvery,
			Retry:          consumer.Retry{MaxAttempts: 1000, Base: time.Millisecond, Max: 5 * time.Millisecond},
		}
	}
	stepFails := newFlaky(fc.Seed, 1, fc.FailRate/2)
	countsSink := newFlaky(fc.Seed, 2, fc.FailRate)
	sumsSink := newFlaky(fc.Seed, 3, fc.FailRate)
	slow := newFlaky(fc.Seed, 4, fc.SlowRate)
	on := runtime.Trigger{Stream: streamName, Types: []string{flowTypes}}
	return []runtime.Flow{
		{
			Name: countsFlow,
			On:   on,
			Steps: []runtime.Step{
				runtime.Reduce(runtime.ReduceSpec{Func: "count", As: "n"}),
				runtime.Operator("flaky", func(_ context.Context, r runtime.Record) ([]runtime.Record, error) {
					if stepFails.fail() {
						return nil, errTransient
					}
					return []runtime.Record{r}, nil
				}),
			},
			Sinks: []runtime.Sink{runtime.SinkFunc(func(context.Context, runtime.Delivery) error {
				if d := slow.work(fc.MaxWork); d > 0 {
					time.Sleep(d) // simulated work: keeps events in flight across commits and stops
				}
				if countsSink.fail() {
					return errTransient
				}
				if delivered != nil {
					delivered()
				}
				return nil
			})},
			Consumer: copts(fc.CountsWorkers),
		},
		{
			Name: sumsFlow,
			On:   on,
			Steps: []runtime.Step{
				runtime.Filter("data.amount >= " + strconv.Itoa(minAmount)),
				runtime.Reduce(runtime.ReduceSpec{Func: "sum", Value: "data.amount"}),
			},
			Sinks: []runtime.Sink{runtime.SinkFunc(func(context.Context, runtime.Delivery) error {
				if sumsSink.fail() {
					return errTransient
				}
				return nil
			})},
			Consumer:      copts(fc.SumsWorkers),
			StateVersion:  fc.SumsVersion,
			SnapshotEvery: fc.SnapshotEvery,
		},
	}
}

// runChild runs the child's workload. It returns only on failure, or
// after a clean stop.
func runChild(cfg childConfig) error {
	l, err := eventlog.Open(cfg.Journal, &eventlog.Options{LockTimeout: 10 * time.Second})
	if err != nil {
		return fmt.Errorf("open journal: %w", err)
	}
	// Never closed unless the child stops cleanly: the parent kills it.
	var out stdout
	out.println(startedLine)

	wctx, stopWriters := context.WithCancel(context.Background())
	defer stopWriters()
	var writers sync.WaitGroup
	errc := make(chan error, cfg.Writers)
	for w := range cfg.Writers {
		writers.Add(1)
		go func() {
			defer writers.Done()
			errc <- produce(wctx, l, cfg, w)
		}()
	}

	ready := make(chan struct{})
	var once sync.Once
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	rt, err := runtime.New(l, &runtime.Options{Logger: logger})
	if err != nil {
		return fmt.Errorf("new runtime: %w", err)
	}
	err = rt.Add(newFlows(cfg.Flows, func() {
		once.Do(func() {
			out.println(readyLine)
			close(ready)
		})
	})...)
	if err != nil {
		return fmt.Errorf("add flows: %w", err)
	}
	if err := rt.Start(context.Background()); err != nil {
		return fmt.Errorf("start runtime: %w", err)
	}

	var stop <-chan time.Time
	for {
		select {
		case <-ready:
			ready = nil
			if cfg.StopAfter > 0 {
				stop = time.After(cfg.StopAfter)
			}
		case err := <-errc:
			if err != nil {
				return err
			}
			// A writer is done; the flows go on until the kill or the stop.
		case <-rt.Done():
			return fmt.Errorf("the runtime ended on its own: %v", rt.Wait())
		case <-stop:
			// The flows stop while the writers go on, just after a burst
			// of events: some are in flight, and some done above a gap.
			if _, err := l.Append(streamName, burst(cfg.Flows.Seed)...); err != nil {
				return fmt.Errorf("append the burst: %w", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := rt.Stop(ctx); err != nil {
				return fmt.Errorf("stop runtime: %w", err)
			}
			if err := rt.Wait(); err != nil {
				return fmt.Errorf("runtime after the stop: %w", err)
			}
			stopWriters()
			writers.Wait()
			close(errc)
			for err := range errc {
				if err != nil {
					return err
				}
			}
			if err := l.Close(); err != nil {
				return fmt.Errorf("close journal: %w", err)
			}
			out.println(stoppedLine)
			return nil
		}
	}
}

// burstSize is how many events a child appends at once before it stops
// cleanly.
const burstSize = 200

// burst returns burstSize events like those the writers append.
func burst(seed uint64) []eventlog.Event {
	rng := rand.New(rand.NewPCG(seed, 99))
	evs := make([]eventlog.Event, burstSize)
	for i := range evs {
		evs[i] = newEvent(rng)
	}
	return evs
}

// newEvent returns an event of a random type and key.
func newEvent(rng *rand.Rand) eventlog.Event {
	data, _ := json.Marshal(eventData{Amount: rng.IntN(100)}) // cannot fail
	return eventlog.Event{
		Type: eventTypes[rng.IntN(len(eventTypes))],
		Key:  "k" + strconv.Itoa(rng.IntN(numKeys)),
		Data: data,
	}
}

// produce appends up to cfg.Produce events, in batches of one to four,
// one batch every cfg.Pace, until ctx is cancelled.
func produce(ctx context.Context, l *eventlog.Log, cfg childConfig, w int) error {
	rng := rand.New(rand.NewPCG(cfg.Flows.Seed, 100+uint64(w)))
	tick := time.NewTicker(cfg.Pace)
	defer tick.Stop()
	for n := 0; n < cfg.Produce; {
		evs := make([]eventlog.Event, min(1+rng.IntN(4), cfg.Produce-n))
		for i := range evs {
			evs[i] = newEvent(rng)
		}
		if _, err := l.Append(streamName, evs...); err != nil {
			return fmt.Errorf("writer %d: append: %w", w, err)
		}
		n += len(evs)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
	return nil
}

// stdout writes whole lines to os.Stdout, one at a time. It is safe for
// concurrent use.
type stdout struct{ mu sync.Mutex }

func (s *stdout) println(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// An error means the parent is gone: RunChild ends the process then.
	_, _ = os.Stdout.WriteString(line + "\n")
}
