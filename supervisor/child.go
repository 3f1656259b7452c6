package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/flowrt/flowrt/eventlog"
)

// child is one supervised child and its own small state machine.
type child struct {
	name   string
	c      Child
	policy RestartPolicy

	mu       sync.Mutex
	state    ChildState
	restarts []time.Time // recent restarts, for MaxRestarts within Window
	total    int         // restarts since start
	lastErr  string
	cancel   context.CancelFunc // cancels the current Run
	stopping bool
	stopc    chan struct{} // closed when the child is asked to stop
	stopOnce sync.Once
}

// markStopping records that the child must not run again and wakes a
// child waiting out its backoff.
func (ch *child) markStopping() context.CancelFunc {
	ch.mu.Lock()
	ch.stopping = true
	cancel := ch.cancel
	ch.mu.Unlock()
	ch.stopOnce.Do(func() { close(ch.stopc) })
	return cancel
}

func (ch *child) stateNow() ChildState {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.state
}

// supervise runs the child, restarting it one-for-one with backoff until the
// runtime stops or the child fails too often.
func (s *Supervisor) supervise(ch *child) {
	defer s.wg.Done()
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithCancel(s.hard)
		ch.mu.Lock()
		if ch.stopping {
			ch.mu.Unlock()
			cancel()
			s.childTransition(ch, ChildStopped, "runtime stopping", nil)
			return
		}
		ch.cancel = cancel
		ch.mu.Unlock()
		details := map[string]string{"attempt": strconv.Itoa(attempt + 1)}
		if err := s.childTransition(ch, ChildRunning, "", details); err != nil {
			// The journal refused the record: the child does not run, and
			// says so rather than appear running.
			cancel()
			_ = s.childTransition(ch, ChildFailed, err.Error(), nil)
			return
		}
		err := s.runChild(ctx, ch)
		cancel()
		ch.mu.Lock()
		stopping := ch.stopping || s.hard.Err() != nil
		ch.mu.Unlock()
		if stopping || err == nil {
			reason := "runtime stopping"
			if !stopping {
				reason = "finished"
			}
			s.childTransition(ch, ChildStopped, reason, nil)
			return
		}
		now := s.opts.Clock.Now()
		ch.mu.Lock()
		ch.lastErr = err.Error()
		kept := ch.restarts[:0]
		for _, t := range ch.restarts {
			if now.Sub(t) < ch.policy.Window {
				kept = append(kept, t)
			}
		}
		ch.restarts = kept
		giveUp := len(ch.restarts) >= ch.policy.MaxRestarts
		if !giveUp {
			ch.restarts = append(ch.restarts, now)
			ch.total++
		}
		n := len(ch.restarts)
		ch.mu.Unlock()
		if giveUp {
			reason := fmt.Sprintf("gave up after %d restarts within %v: %v", ch.policy.MaxRestarts, ch.policy.Window, err)
			s.childTransition(ch, ChildFailed, reason, nil)
			return
		}
		delay := ch.policy.Delay(n)
		if err := s.childTransition(ch, ChildBackingOff, err.Error(), map[string]string{"restart": strconv.Itoa(n), "delay": delay.String()}); err != nil {
			_ = s.childTransition(ch, ChildFailed, err.Error(), nil)
			return
		}
		select {
		case <-s.opts.Clock.After(delay):
		case <-s.hard.Done():
		case <-ch.stopc:
		}
	}
}

// runChild runs the child once, turning a panic into an error.
func (s *Supervisor) runChild(ctx context.Context, ch *child) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("flowrt/supervisor: child %q panicked: %v", ch.name, r)
		}
	}()
	return ch.c.Run(ctx)
}

// stop asks the child to drain: Shutdown for a Drainer, else its context is
// cancelled.
func (ch *child) stop(ctx context.Context, wg *sync.WaitGroup, log *slog.Logger) {
	cancel := ch.markStopping()
	if d, ok := ch.c.(Drainer); ok {
		wg.Go(func() { // drain waits for it with the children
			if err := d.Shutdown(ctx); err != nil {
				log.Warn("child shutdown failed", "child", ch.name, "err", err)
			}
		})
		return
	}
	if cancel != nil {
		cancel()
	}
}

func (ch *child) cancelRun() {
	if cancel := ch.markStopping(); cancel != nil {
		cancel()
	}
}

// childTransition checks, records and applies a child state change.
func (s *Supervisor) childTransition(ch *child, to ChildState, reason string, details map[string]string) error {
	ch.mu.Lock()
	from := ch.state
	if !CanChildTransition(from, to) {
		ch.mu.Unlock()
		err := fmt.Errorf("%w: child %q %s -> %s", ErrIllegalTransition, ch.name, from, to)
		s.opts.Logger.Error("illegal transition refused", "err", err)
		return err
	}
	ch.mu.Unlock()
	t := Transition{Run: s.run, Child: ch.name, From: from.String(), To: to.String(), Reason: reason, Time: s.opts.Clock.Now().UTC(), Details: details}
	err := s.j.Update(func(tx *eventlog.Tx) error { return appendSystem(tx, s.run, TypeTransition, t) })
	if err != nil {
		s.opts.Logger.Error("recording a child transition failed", "child", ch.name, "to", to.String(), "err", err)
		if !errors.Is(err, eventlog.ErrClosed) {
			err = fmt.Errorf("flowrt/supervisor: record child %q %s -> %s: %w", ch.name, from, to, err)
		}
	}
	ch.mu.Lock()
	ch.state = to
	ch.mu.Unlock()
	s.mu.Lock()
	s.notifyLocked()
	s.mu.Unlock()
	return err
}
