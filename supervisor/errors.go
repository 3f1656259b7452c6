package supervisor

import (
	"errors"

	"github.com/flowrt/flowrt/eventlog"
)

var (
	// ErrIllegalTransition is returned, wrapped, when code asks for a state
	// change the state machine does not allow. It is a bug in the caller;
	// the change is not applied.
	ErrIllegalTransition = errors.New("flowrt/supervisor: illegal transition")

	// ErrAborted is returned, wrapped with the reason, by Run and Wait after
	// Abort.
	ErrAborted = errors.New("flowrt/supervisor: aborted")

	// ErrFailed is returned, wrapped with the reason, by Run and Wait when
	// the runtime ended failed.
	ErrFailed = errors.New("flowrt/supervisor: runtime failed")

	// ErrStarted is returned by Add after Start, and by a second Start.
	ErrStarted = errors.New("flowrt/supervisor: already started")

	// ErrDuplicateChild is returned by Add for a name already added.
	ErrDuplicateChild = errors.New("flowrt/supervisor: duplicate child name")

	// ErrInvalidOptions is returned, wrapped, by New when Options.Validate
	// fails.
	ErrInvalidOptions = errors.New("flowrt/supervisor: invalid options")
)

func isNotFound(err error) bool { return errors.Is(err, eventlog.ErrNotFound) }
