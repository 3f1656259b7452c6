package supervisor

import (
	"github.com/flowrt/flowrt/eventlog"
)

// Status is a snapshot of the runtime and its children.
type Status struct {
	Run      string
	State    State
	Reason   string // why the runtime is in its state, when it says
	TimedOut bool   // the last stop timed out and cancelled in-flight work
	Children []ChildStatus
}

// ChildStatus is one child's state.
type ChildStatus struct {
	Name      string
	State     ChildState
	Restarts  int    // since the run started
	LastError string // the error of its last failure
}

// Ready reports whether the runtime is running: the /readyz answer.
func (s Status) Ready() bool { return s.State == Running }

// Healthy reports whether the runtime has not failed and no child has
// given up: the /healthz answer.
func (s Status) Healthy() bool {
	if s.State == Failed {
		return false
	}
	for _, c := range s.Children {
		if c.State == ChildFailed {
			return false
		}
	}
	return true
}

// Status returns the current state of the runtime and its children.
func (s *Supervisor) Status() Status {
	s.mu.Lock()
	st := Status{Run: s.run, State: s.state, Reason: s.reason, TimedOut: s.timedOut}
	children := s.children
	s.mu.Unlock()
	for _, ch := range children {
		ch.mu.Lock()
		st.Children = append(st.Children, ChildStatus{Name: ch.name, State: ch.state, Restarts: ch.total, LastError: ch.lastErr})
		ch.mu.Unlock()
	}
	return st
}

// Changed returns a channel closed at the next change of the runtime's or
// a child's state: read Status, then wait on the channel taken before.
func (s *Supervisor) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// applyRetention drops the oldest runs from $system beyond KeepRuns, and
// runs that ended longer ago than KeepFor; never the current run. Failing
// to apply it is logged, not fatal.
func (s *Supervisor) applyRetention() {
	runs, err := Runs(s.j)
	if err != nil {
		s.opts.Logger.Warn("reading $system for retention failed", "err", err)
		return
	}
	cutoff := s.opts.Clock.Now().Add(-s.opts.KeepFor)
	var below uint64
	for i, r := range runs {
		if r.ID == s.run {
			break
		}
		if len(runs)-i > s.opts.KeepRuns || r.Last.Before(cutoff) {
			if i+1 < len(runs) {
				below = runs[i+1].FirstSeq
			}
			continue
		}
		break
	}
	if below == 0 {
		return
	}
	if n, err := s.j.Truncate(SystemStream, below, eventlog.Force); err != nil {
		s.opts.Logger.Warn("$system retention failed", "err", err)
	} else if n > 0 {
		s.opts.Logger.Info("$system retention removed old runs", "events", n)
	}
}
