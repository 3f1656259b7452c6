package crashflow_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path"
	"strconv"
	"sync"
	"time"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/runtime"
)

// The child process is this test binary run again by flowtest.StartChild.
// It opens the journal, starts a runtime with one flow (newFlow) delivering
// to the file sink, and meanwhile appends events from cfg.Writers
// goroutines. After each Append that returned nil it prints ackPrefix and
// the appended sequences on stdout; after the flow's first delivery it
// prints readyLine. It runs until it is killed. Problems go to stderr and
// end the child with a non-zero status, which the parent reports.

// Lines the child prints on stdout.
const (
	readyLine = "delivering" // after the first delivery to the file
	ackPrefix = "ack"        // followed by the sequences of one Append that returned nil
)

// The flow under test: it takes the events of streamName whose type
// matches flowTypes and keeps those whose amount is at least minAmount.
const (
	streamName = "shop"
	flowName   = "big-orders" // also its consumer's name
	flowTypes  = "order.*"
	minAmount  = 25
)

// eventTypes are the types the child appends: half match flowTypes.
var eventTypes = []string{"order.created", "order.paid", "user.signed_up", "invoice.sent"}

// childMaxLife bounds a child the parent failed to kill.
const childMaxLife = 2 * time.Minute

// childConfig is what the parent tells the child.
type childConfig struct {
	Journal        string
	Sink           string // the file sink's path
	Cycle          int
	Seed           uint64
	Writers        int           // goroutines appending
	Produce        int           // events each writer appends
	Pace           time.Duration // between one writer's appends
	Workers        int           // the flow's consumer.Options.Workers
	CommitInterval time.Duration // the flow's consumer.Options.CommitInterval
}

// String describes the cycle's workload, for failure messages.
func (c childConfig) String() string {
	return fmt.Sprintf("%d writers × %d events every %v, %d workers, commit interval %v",
		c.Writers, c.Produce, c.Pace.Round(time.Microsecond), c.Workers, c.CommitInterval)
}

// eventData is the data of every event the child appends. Cycle, Writer
// and N identify the event; Amount decides the flow's filter.
type eventData struct {
	Cycle  int `json:"cycle"`
	Writer int `json:"writer"`
	N      int `json:"n"`
	Amount int `json:"amount"`
}

// newFlow returns the flow under test, delivering to sink. The child and
// the parent's final run use it.
func newFlow(sink runtime.Sink, workers int, commitInterval time.Duration) runtime.Flow {
	return runtime.Flow{
		Name:  flowName,
		On:    runtime.Trigger{Stream: streamName, Types: []string{flowTypes}},
		Steps: []runtime.Step{runtime.Filter("data.amount >= " + strconv.Itoa(minAmount))},
		Sinks: []runtime.Sink{sink},
		Consumer: &consumer.Options{
			Workers:        workers,
			CommitInterval: commitInterval,
			Retry:          consumer.Retry{MaxAttempts: 1000, Base: time.Millisecond, Max: 10 * time.Millisecond},
		},
	}
}

// matches is the parent's own reading of the flow: whether it must
// deliver an event with this type and data.
func matches(typ string, d eventData) bool {
	ok, _ := path.Match(flowTypes, typ)
	return ok && d.Amount >= minAmount
}

// runChild runs the child's workload. It returns only on failure.
func runChild(cfg childConfig) error {
	l, err := eventlog.Open(cfg.Journal, &eventlog.Options{LockTimeout: 10 * time.Second})
	if err != nil {
		return fmt.Errorf("open journal: %w", err)
	}
	// Never closed: the parent kills the process.
	var out stdout
	var ready sync.Once
	file := runtime.FileSink(cfg.Sink)
	sink := runtime.SinkFunc(func(ctx context.Context, d runtime.Delivery) error {
		if err := file.Deliver(ctx, d); err != nil {
			return err
		}
		ready.Do(func() { out.println(readyLine) })
		return nil
	})
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	rt, err := runtime.New(l, &runtime.Options{Logger: logger})
	if err != nil {
		return fmt.Errorf("new runtime: %w", err)
	}
	if err := rt.Add(newFlow(sink, cfg.Workers, cfg.CommitInterval)); err != nil {
		return fmt.Errorf("add flow: %w", err)
	}
	if err := rt.Start(context.Background()); err != nil {
		return fmt.Errorf("start runtime: %w", err)
	}
	errc := make(chan error, cfg.Writers)
	for w := range cfg.Writers {
		go func() { errc <- produce(l, cfg, w, &out) }()
	}
	for {
		select {
		case err := <-errc:
			if err != nil {
				return err
			}
			// A writer is done; the flow goes on delivering until the kill.
		case <-rt.Done():
			return fmt.Errorf("the runtime ended on its own: %v", rt.Wait())
		}
	}
}

// produce appends cfg.Produce events in batches of one to four, one batch
// every cfg.Pace, and reports each batch on out once Append returned nil.
func produce(l *eventlog.Log, cfg childConfig, w int, out *stdout) error {
	rng := rand.New(rand.NewPCG(cfg.Seed, uint64(w)))
	tick := time.NewTicker(cfg.Pace)
	defer tick.Stop()
	for n := 0; n < cfg.Produce; {
		evs := make([]eventlog.Event, min(1+rng.IntN(4), cfg.Produce-n))
		for i := range evs {
			data, err := json.Marshal(eventData{Cycle: cfg.Cycle, Writer: w, N: n + i, Amount: rng.IntN(100)})
			if err != nil {
				return fmt.Errorf("writer %d: encode data: %w", w, err)
			}
			evs[i] = eventlog.Event{
				Type: eventTypes[rng.IntN(len(eventTypes))],
				Key:  "customer-" + strconv.Itoa(rng.IntN(8)),
				Data: data,
			}
		}
		res, err := l.Append(streamName, evs...)
		if err != nil {
			return fmt.Errorf("writer %d: append: %w", w, err)
		}
		line := []byte(ackPrefix)
		for _, r := range res {
			line = strconv.AppendUint(append(line, ' '), r.Seq, 10)
		}
		out.println(string(line))
		n += len(evs)
		<-tick.C
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
