package consumer

import (
	"errors"

	"github.com/flowrt/flowrt/eventlog"
)

var (
	// ErrClosed is returned by Run after Shutdown or Close, as
	// http.Server.Serve returns http.ErrServerClosed, and by Run on a
	// Reader that already ran.
	ErrClosed = errors.New("flowrt/consumer: closed")

	// ErrRunning is returned by Run when the Reader already runs.
	ErrRunning = errors.New("flowrt/consumer: already running")

	// ErrInUse is returned by Open, wrapped, when another live Reader of the
	// same consumer name and stream exists on the journal, and by Reset
	// while one runs.
	ErrInUse = errors.New("flowrt/consumer: consumer is in use")

	// ErrInvalidOptions is returned by Open, wrapped, when Options.Validate
	// fails.
	ErrInvalidOptions = errors.New("flowrt/consumer: invalid options")
)

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as permanent: the event goes to the dead letters at
// once instead of being retried (for example, a validation error). A nil
// err stays nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or an error it wraps, was marked with
// Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

func isNotFound(err error) bool { return errors.Is(err, eventlog.ErrNotFound) }
