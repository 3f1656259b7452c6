package eventlog

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers test for them with errors.Is; the typed errors
// below wrap them and carry the details.
var (
	// ErrClosed is returned by every call on a Log after Close.
	ErrClosed = errors.New("flowrt/eventlog: journal closed")

	// ErrNotJournal is returned by Open when the file is not a flowrt journal:
	// an empty file, random bytes, JSON, or a bbolt database without flowrt's
	// meta bucket.
	ErrNotJournal = errors.New("flowrt/eventlog: not a flowrt journal")

	// ErrTruncated is returned by Open when the file is shorter than its own
	// bbolt meta page says it is.
	ErrTruncated = errors.New("flowrt/eventlog: journal file is truncated")

	// ErrCorrupt is returned when a checksum does not match: a bbolt meta page,
	// flowrt's meta record or an event record. See CorruptError.
	ErrCorrupt = errors.New("flowrt/eventlog: journal is corrupt")

	// ErrVersion is returned by Open for a journal written by a newer format
	// version than this build understands. See VersionError.
	ErrVersion = errors.New("flowrt/eventlog: unsupported journal format version")

	// ErrLocked is returned by Open when another process holds the journal
	// open and Options.LockTimeout expired.
	ErrLocked = errors.New("flowrt/eventlog: journal is locked by another process")

	// ErrReadOnly is returned by writes on a Log opened with Options.ReadOnly
	// and by writes through a read-only Tx.
	ErrReadOnly = errors.New("flowrt/eventlog: journal is open read-only")

	// ErrInvalidEvent is returned, wrapped in an EventError, when an event
	// fails validation. Nothing of the call was written.
	ErrInvalidEvent = errors.New("flowrt/eventlog: invalid event")

	// ErrEventTooLarge is returned, wrapped in an EventError, when an encoded
	// event is larger than Options.MaxEventBytes. Nothing was written.
	ErrEventTooLarge = errors.New("flowrt/eventlog: event too large")

	// ErrInvalidName is returned for a stream, consumer or namespace name that
	// is empty, too long or has characters outside [A-Za-z0-9._-].
	ErrInvalidName = errors.New("flowrt/eventlog: invalid name")

	// ErrReservedStream is returned by Append for a stream whose name begins
	// with "$": those streams belong to flowrt itself and are written through
	// Tx.Append.
	ErrReservedStream = errors.New("flowrt/eventlog: stream name is reserved")

	// ErrNotFound is returned when an event, stream or consumer does not exist.
	ErrNotFound = errors.New("flowrt/eventlog: not found")

	// ErrDiskFull is returned, wrapped, when a commit failed because the disk
	// is full. Like every write error it is sticky: see Log.Append.
	ErrDiskFull = errors.New("flowrt/eventlog: disk full")

	// ErrOffsetBackward is returned when a consumer offset would move backward
	// outside ResetOffset.
	ErrOffsetBackward = errors.New("flowrt/eventlog: offset moves backward")

	// ErrOffsetBeyondHead is returned when a consumer offset would move past
	// the last sequence of its stream.
	ErrOffsetBeyondHead = errors.New("flowrt/eventlog: offset beyond the stream's last sequence")

	// ErrConsumerBehind is returned by Truncate when a registered consumer has
	// not acknowledged events that would be removed and the call is not forced.
	ErrConsumerBehind = errors.New("flowrt/eventlog: a consumer has not acknowledged the events to remove")

	// ErrClaimed is returned by Claim while another holder has the name.
	ErrClaimed = errors.New("flowrt/eventlog: already claimed")

	// ErrInvalidOptions is returned by Open, wrapped, when Options.Validate
	// fails.
	ErrInvalidOptions = errors.New("flowrt/eventlog: invalid options")
)

// CorruptError reports a record whose checksum or encoding is wrong. Stream
// and Seq name the record; both are empty for file-level corruption.
type CorruptError struct {
	Path   string
	Stream string
	Seq    uint64
	Err    error // what was wrong
}

// Error names the file, and the stream and sequence of a damaged record.
func (e *CorruptError) Error() string {
	if e.Stream == "" {
		return fmt.Sprintf("flowrt/eventlog: %s: corrupt: %v", e.Path, e.Err)
	}
	return fmt.Sprintf("flowrt/eventlog: %s: stream %q seq %d: corrupt record: %v", e.Path, e.Stream, e.Seq, e.Err)
}

// Unwrap returns the cause.
func (e *CorruptError) Unwrap() error { return e.Err }

// Is reports ErrCorrupt as the target, so errors.Is(err, ErrCorrupt) holds.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// VersionError reports a journal whose format version this build cannot read.
type VersionError struct {
	Path string
	Have uint32 // version found in the file
	Want uint32 // highest version this build reads
}

// Error says which version the file has and which this build reads.
func (e *VersionError) Error() string {
	return fmt.Sprintf("flowrt/eventlog: %s: format version %d is newer than this build supports (%d); upgrade flowrt", e.Path, e.Have, e.Want)
}

// Unwrap returns ErrVersion.
func (e *VersionError) Unwrap() error { return ErrVersion }

// EventError reports which event of an Append call was refused and why.
// Index is the event's position in the call.
type EventError struct {
	Index int
	Field string // "type", "key", "headers", "size", ...
	Err   error  // ErrInvalidEvent or ErrEventTooLarge, wrapped with the reason
}

// Error names the refused event by its index in the call.
func (e *EventError) Error() string {
	return fmt.Sprintf("flowrt/eventlog: event %d: %s: %v", e.Index, e.Field, e.Err)
}

// Unwrap returns the cause.
func (e *EventError) Unwrap() error { return e.Err }
