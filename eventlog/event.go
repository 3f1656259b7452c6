package eventlog

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"
)

// Limits on event fields. Together with Options.MaxEventBytes they bound what
// one record can hold.
const (
	// MaxTypeLen is the longest event type, in bytes.
	MaxTypeLen = 255
	// MaxKeyLen is the longest ordering key, in bytes.
	MaxKeyLen = 1024
	// MaxNameLen is the longest stream, consumer or namespace name, in bytes.
	MaxNameLen = 128
)

// DefaultStream is the stream events go to when none is named.
const DefaultStream = "events"

// Event is one record of a stream.
//
// Seq, Stream and Time are assigned by Append; values the caller sets are
// ignored. A zero ID is replaced by a new ULID. Data is opaque to the journal
// (usually JSON).
//
// A read returns Data as it was appended, nil and empty told apart, and
// Headers as they were appended, except that an empty map reads back as
// nil. Neither aliases the caller's buffers or the journal's.
type Event struct {
	Seq     uint64            // dense from 1 within the stream
	ID      ulid.ULID         // unique within the stream's dedup window
	Stream  string            // the stream the event was read from
	Type    string            // dotted name such as "order.created"
	Key     string            // optional ordering key
	Time    time.Time         // append time, UTC, never decreasing within a stream
	Headers map[string]string // optional metadata
	Data    []byte            // opaque payload
}

// ParseID parses the canonical 26-character ULID form of an event ID.
func ParseID(s string) (ulid.ULID, error) {
	id, err := ulid.ParseStrict(s)
	if err != nil {
		return ulid.ULID{}, fmt.Errorf("%w: id %q is not a ULID: %v", ErrInvalidEvent, s, err)
	}
	return id, nil
}

// DeriveID returns a deterministic event ID for producers whose natural
// identifiers are not ULIDs: an order number, an HTTP Idempotency-Key, or a
// source event ID joined with a flow name. The same parts always give the
// same ID, so a retried append is recognised as a duplicate. The ID is the
// first 16 bytes of SHA-256 over the length-prefixed parts; its ULID
// timestamp carries no meaning.
func DeriveID(parts ...string) ulid.ULID {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, p := range parts {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(p)))])
		h.Write([]byte(p))
	}
	var id ulid.ULID
	copy(id[:], h.Sum(nil))
	return id
}

// validateType checks a dotted event type: segments of [A-Za-z0-9_-]
// separated by single dots, at most MaxTypeLen bytes.
func validateType(t string) error {
	if t == "" {
		return fmt.Errorf("%w: type is empty", ErrInvalidEvent)
	}
	if len(t) > MaxTypeLen {
		return fmt.Errorf("%w: type is %d bytes, longer than %d", ErrInvalidEvent, len(t), MaxTypeLen)
	}
	prev := byte('.')
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c == '.':
			if prev == '.' {
				return fmt.Errorf("%w: type %q has an empty segment", ErrInvalidEvent, t)
			}
		case isNameByte(c) && c != '.':
		default:
			return fmt.Errorf("%w: type %q has character %q (allowed: letters, digits, '_', '-', '.')", ErrInvalidEvent, t, c)
		}
		prev = c
	}
	if prev == '.' {
		return fmt.Errorf("%w: type %q ends with a dot", ErrInvalidEvent, t)
	}
	return nil
}

// validateEvent checks the caller-set fields of e.
func validateEvent(i int, e *Event) error {
	if err := validateType(e.Type); err != nil {
		return &EventError{Index: i, Field: "type", Err: err}
	}
	if len(e.Key) > MaxKeyLen {
		return &EventError{Index: i, Field: "key", Err: fmt.Errorf("%w: key is %d bytes, longer than %d", ErrInvalidEvent, len(e.Key), MaxKeyLen)}
	}
	if !utf8.ValidString(e.Key) {
		return &EventError{Index: i, Field: "key", Err: fmt.Errorf("%w: key is not valid UTF-8", ErrInvalidEvent)}
	}
	for k := range e.Headers {
		if k == "" {
			return &EventError{Index: i, Field: "headers", Err: fmt.Errorf("%w: empty header name", ErrInvalidEvent)}
		}
	}
	return nil
}

func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.'
}

// ValidateName checks a stream, consumer or namespace name: 1 to MaxNameLen
// bytes of [A-Za-z0-9._-], optionally after a leading "$" that marks a
// system stream.
func ValidateName(name string) error {
	s := name
	if len(s) > 0 && s[0] == '$' {
		s = s[1:]
	}
	if s == "" || len(name) > MaxNameLen {
		return fmt.Errorf("%w: %q must be 1 to %d bytes", ErrInvalidName, name, MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i]) {
			return fmt.Errorf("%w: %q has character %q (allowed: letters, digits, '_', '-', '.')", ErrInvalidName, name, s[i])
		}
	}
	return nil
}

// IsReserved reports whether a stream name belongs to flowrt itself.
func IsReserved(stream string) bool { return len(stream) > 0 && stream[0] == '$' }
