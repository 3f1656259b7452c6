package crashsupervisor_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/flowrt/flowrt/supervisor"
)

// The child process is this test binary run again by flowtest.StartChild.
// It opens the journal, starts a Supervisor with a producer appending to
// streamName and one consumer Reader per name in consumerNames, and prints
// runningPrefix and its run's ID on stdout once Start has returned. In
// modeKill it then runs until it is killed; in modeStop it stops the
// supervisor cleanly after StopAfter, closes the journal, prints
// stoppedPrefix and the run's ID, and exits 0. Problems go to stderr and
// end the child with a non-zero status, which the parent reports.

const (
	runningPrefix = "running "
	stoppedPrefix = "stopped "
)

// Modes of the child.
const (
	modeKill = "kill" // run until killed
	modeStop = "stop" // stop cleanly and exit 0
)

const streamName = "orders"

var consumerNames = []string{"billing", "shipping"}

// childMaxLife bounds a child the parent failed to kill.
const childMaxLife = 2 * time.Minute

// childConfig is what the parent tells the child.
type childConfig struct {
	Journal   string
	Mode      string
	Cycle     int
	StopAfter time.Duration // modeStop: how long the supervisor runs
	KeepRuns  int           // supervisor.Options.KeepRuns: more than the test's runs
}

// runChild runs the child. It returns only on failure, or with nil after a
// clean stop in modeStop.
func runChild(cfg childConfig) error {
	l, err := eventlog.Open(cfg.Journal, &eventlog.Options{LockTimeout: 10 * time.Second})
	if err != nil {
		return err
	}
	s, err := supervisor.New(l, &supervisor.Options{
		KeepRuns: cfg.KeepRuns,
		Details:  map[string]string{"cycle": fmt.Sprint(cfg.Cycle), "mode": cfg.Mode},
		Restart:  supervisor.RestartPolicy{Base: time.Millisecond, Max: 10 * time.Millisecond},
	})
	if err != nil {
		return err
	}
	if err := s.Add("producer", producer{l: l}, nil); err != nil {
		return err
	}
	for _, name := range consumerNames {
		rc := &flowtest.ReaderChild{Log: l, Stream: streamName, Name: name, Options: &consumer.Options{Workers: 2, CommitInterval: 5 * time.Millisecond}}
		if err := s.Add(name, rc, nil); err != nil {
			return err
		}
	}
	if err := s.Start(context.Background()); err != nil {
		return err
	}
	if _, err := fmt.Fprintln(os.Stdout, runningPrefix+s.RunID()); err != nil {
		return err
	}
	if cfg.Mode == modeKill {
		<-s.Done() // never: the parent kills the process first
		return fmt.Errorf("the run ended on its own: %v", s.Wait())
	}

	t := time.NewTimer(cfg.StopAfter)
	select {
	case <-t.C:
	case <-s.Done():
		return fmt.Errorf("the run ended on its own: %v", s.Wait())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	if st := s.Status(); st.State != supervisor.Stopped || !st.Healthy() {
		return fmt.Errorf("after Stop: %+v", st)
	}
	if err := l.Close(); err != nil {
		return err
	}
	_, err = fmt.Fprintln(os.Stdout, stoppedPrefix+s.RunID())
	return err
}

// producer appends small batches to streamName until it is cancelled.
type producer struct{ l *eventlog.Log }

func (p producer) Run(ctx context.Context) error {
	for n := 0; ctx.Err() == nil; n++ {
		evs := make([]eventlog.Event, 1+n%4)
		for i := range evs {
			evs[i] = eventlog.Event{Type: "order.created", Key: fmt.Sprint("order-", n%7), Data: []byte(`{"n":` + fmt.Sprint(n) + `}`)}
		}
		if _, err := p.l.Append(streamName, evs...); err != nil {
			return err
		}
	}
	return nil
}
