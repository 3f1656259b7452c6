package supervisor

import "fmt"

// State is the runtime's lifecycle state.
type State uint8

// Runtime states. Their names are part of the $system event format.
const (
	Created    State = iota // built, not started
	Starting                // recording the run, checking the previous one
	Recovering              // the previous run crashed: recording the recovery
	Running                 // children run
	Draining                // stopping: no new deliveries, in-flight work finishes
	Stopped                 // stopped cleanly (terminal)
	Failed                  // failed or aborted (terminal)
)

var stateNames = [...]string{"created", "starting", "recovering", "running", "draining", "stopped", "failed"}

// String returns the state's name, as $system events record it.
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Terminal reports whether s ends a run.
func (s State) Terminal() bool { return s == Stopped || s == Failed }

// MarshalText writes the state's name, as $system events store it.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a state's name.
func (s *State) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if n == string(b) {
			*s = State(i)
			return nil
		}
	}
	return fmt.Errorf("flowrt/supervisor: unknown state %q", b)
}

// legal lists the runtime transitions. Anything else is a bug: it is
// refused with ErrIllegalTransition, never applied.
var legal = map[State][]State{
	Created:    {Starting, Stopped, Failed}, // Stop before Start is a clean stop
	Starting:   {Recovering, Running, Draining, Failed},
	Recovering: {Running, Draining, Failed},
	Running:    {Draining, Failed},
	Draining:   {Stopped, Failed},
}

// CanTransition reports whether the runtime may go from one state to the
// other.
func CanTransition(from, to State) bool {
	for _, s := range legal[from] {
		if s == to {
			return true
		}
	}
	return false
}

// ChildState is a supervised child's state.
type ChildState uint8

// Child states. Their names are part of the $system event format.
const (
	ChildIdle       ChildState = iota // added, not started
	ChildRunning                      // its Run is executing
	ChildBackingOff                   // it failed; waiting to restart
	ChildFailed                       // it failed too often: given up (terminal)
	ChildStopped                      // it stopped with the runtime (terminal)
)

var childStateNames = [...]string{"idle", "running", "backing_off", "failed", "stopped"}

// String returns the state's name, as $system events record it.
func (s ChildState) String() string {
	if int(s) < len(childStateNames) {
		return childStateNames[s]
	}
	return fmt.Sprintf("ChildState(%d)", uint8(s))
}

// MarshalText writes the state's name.
func (s ChildState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a child state's name.
func (s *ChildState) UnmarshalText(b []byte) error {
	for i, n := range childStateNames {
		if n == string(b) {
			*s = ChildState(i)
			return nil
		}
	}
	return fmt.Errorf("flowrt/supervisor: unknown child state %q", b)
}

var legalChild = map[ChildState][]ChildState{
	ChildIdle:       {ChildRunning, ChildStopped},
	ChildRunning:    {ChildBackingOff, ChildFailed, ChildStopped},
	ChildBackingOff: {ChildRunning, ChildFailed, ChildStopped},
}

// CanChildTransition reports whether a child may go from one state to the
// other.
func CanChildTransition(from, to ChildState) bool {
	for _, s := range legalChild[from] {
		if s == to {
			return true
		}
	}
	return false
}
