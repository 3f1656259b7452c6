package crashconsumer_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
)

// The child process is this test binary run again by flowtest.StartChild:
// it opens the journal, runs a Reader whose handler makes each event it
// processes durable in the cycle's processed file, appends events
// meanwhile, prints readyLine once the Reader runs, and goes on until it is
// killed. Problems go to stderr and end the child with a non-zero status,
// which the parent reports.

// readyLine is the child's only output on stdout.
const readyLine = "running"

// childMaxLife bounds a child the parent failed to kill.
const childMaxLife = 2 * time.Minute

// childConfig is what the parent tells the child.
type childConfig struct {
	Journal        string
	Processed      string // the file this cycle's handler appends to
	Seed           uint64
	Produce        int           // events the child appends, in batches, while it consumes
	CommitInterval time.Duration // consumer.Options.CommitInterval
	CommitEvery    int           // consumer.Options.CommitEvery
	FailRate       float64       // share of attempts that fail, transiently
	SlowRate       float64       // share of attempts that work for up to MaxWork first
	MaxWork        time.Duration
}

var errTransient = errors.New("transient failure")

// runChild runs the child's workload. It returns only on failure.
func runChild(cfg childConfig) error {
	l, err := eventlog.Open(cfg.Journal, &eventlog.Options{LockTimeout: 10 * time.Second})
	if err != nil {
		return err
	}
	// Never closed: the parent kills the process.
	out, err := os.OpenFile(cfg.Processed, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	r, err := consumer.Open(l, streamName, consumerName, &consumer.Options{
		Workers:        4,
		CommitInterval: cfg.CommitInterval,
		CommitEvery:    cfg.CommitEvery,
		Retry:          consumer.Retry{MaxAttempts: 1000, Base: time.Millisecond, Max: 5 * time.Millisecond},
	})
	if err != nil {
		return err
	}

	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(cfg.Seed, 1))
	draw := func() (fail bool, work time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		if rng.Float64() < cfg.SlowRate {
			work = time.Duration(rng.Int64N(int64(cfg.MaxWork) + 1))
		}
		return rng.Float64() < cfg.FailRate, work
	}
	errc := make(chan error, 2)
	go func() {
		errc <- r.Run(context.Background(), func(_ context.Context, e eventlog.Event) error {
			fail, work := draw()
			if work > 0 {
				time.Sleep(work) // simulated work: keeps events in flight across commits
			}
			if fail {
				return errTransient // writes nothing: not processed
			}
			// One write of a whole line (O_APPEND keeps concurrent lines
			// whole), made durable before the ack.
			line := append(strconv.AppendUint(make([]byte, 0, 24), e.Seq, 10), '\n')
			if _, err := out.Write(line); err != nil {
				return err
			}
			return out.Sync()
		})
	}()
	go func() {
		prng := rand.New(rand.NewPCG(cfg.Seed, 2))
		for n := 0; n < cfg.Produce; {
			evs := make([]eventlog.Event, 1+prng.IntN(8))
			for i := range evs {
				evs[i] = eventlog.Event{Type: "crash.event"}
				if k := prng.IntN(16); k < 12 {
					evs[i].Key = "k" + strconv.Itoa(k)
				}
			}
			if _, err := l.Append(streamName, evs...); err != nil {
				errc <- fmt.Errorf("append: %w", err)
				return
			}
			n += len(evs)
		}
	}()
	fmt.Println(readyLine)
	err = <-errc
	return fmt.Errorf("consumer stopped: %w", err)
}
