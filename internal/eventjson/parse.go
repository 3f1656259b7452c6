package eventjson

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/flowrt/flowrt/eventlog"
)

// MarkerKey is the only key of the object standing for non-JSON data
// bytes: {"$base64": "<standard base64>"}.
const MarkerKey = "$base64"

// MaxLineFactor bounds an input line at this many times the largest event:
// JSON escapes and base64 make a line longer than the event it holds.
const MaxLineFactor = 8

// MaxReportedLines is how many bad lines an InputError lists by default.
const MaxReportedLines = 10

// utf8BOM is skipped at the start of the input.
const utf8BOM = "\xEF\xBB\xBF"

// Line is an event parsed from an input line.
type Line struct {
	Line  int // 1-based line number
	Event eventlog.Event
}

// LineError reports why one input line was refused.
type LineError struct {
	Line int // 1-based
	Err  error
}

// Error names the input line and what is wrong with it.
func (e *LineError) Error() string {
	return fmt.Sprintf("line %d: %s", e.Line, e.Reason())
}

// Reason says what is wrong with the line, without its number.
func (e *LineError) Reason() string {
	cause := e.Err
	var ee *eventlog.EventError
	if errors.As(cause, &ee) { // "event 0: type: ..." means nothing here
		cause = ee.Err
	}
	return Message(cause)
}

// Unwrap returns the cause.
func (e *LineError) Unwrap() error { return e.Err }

// InputError lists the bad lines of an input. Lines holds the first of
// them (ParseOptions.MaxReported); Total counts them all.
type InputError struct {
	Name  string // the input: a file name, "stdin" or "body"
	Lines []*LineError
	Total int
}

// Error lists the bad lines of the input.
func (e *InputError) Error() string {
	if e.Total == 1 && len(e.Lines) == 1 {
		return fmt.Sprintf("%s: %v", e.Name, e.Lines[0])
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d bad lines:", e.Name, e.Total)
	for _, le := range e.Lines {
		fmt.Fprintf(&b, "\n  %v", le)
	}
	if n := e.Total - len(e.Lines); n > 0 {
		fmt.Fprintf(&b, "\n  ... and %d more", n)
	}
	return b.String()
}

// Unwrap returns the line errors, so errors.Is sees their causes.
func (e *InputError) Unwrap() []error {
	errs := make([]error, len(e.Lines))
	for i, le := range e.Lines {
		errs[i] = le
	}
	return errs
}

// ParseOptions configures ParseLines. A nil *ParseOptions, and every zero
// field, means the default in the field's comment.
type ParseOptions struct {
	// MaxEventBytes is the largest encoded event, as the journal's
	// eventlog.Options.MaxEventBytes. Default: eventlog's default (1 MiB).
	// A line may be MaxLineFactor times longer.
	MaxEventBytes int

	// MaxReported is how many bad lines an *InputError lists; it counts
	// them all. Default MaxReportedLines.
	MaxReported int
}

// ParseLines reads every line of r and returns the events for stream, in
// input order. name names r in messages. Blank lines are skipped, and a
// UTF-8 byte order mark at the start. Each event is checked as Append
// would check it (eventlog.ValidateEvents with MaxEventBytes). If any line
// is bad the result is an *InputError listing the bad lines and no events;
// an error reading r is returned wrapped, and takes precedence.
func ParseLines(r io.Reader, name, stream string, opts *ParseOptions) ([]Line, error) {
	var o ParseOptions
	if opts != nil {
		o = *opts
	}
	if o.MaxEventBytes <= 0 {
		o.MaxEventBytes = eventlog.DefaultOptions().MaxEventBytes
	}
	if o.MaxReported <= 0 {
		o.MaxReported = MaxReportedLines
	}
	sc := bufio.NewScanner(r)
	maxLine := MaxLineFactor * o.MaxEventBytes
	sc.Buffer(make([]byte, 0, min(64<<10, maxLine)), maxLine)
	var (
		events []Line
		bad    = &InputError{Name: name}
		n      int
	)
	fail := func(err error) {
		bad.Total++
		if len(bad.Lines) < o.MaxReported {
			bad.Lines = append(bad.Lines, &LineError{Line: n, Err: err})
		}
	}
	for sc.Scan() {
		n++
		line := sc.Bytes()
		if n == 1 {
			line = bytes.TrimPrefix(line, []byte(utf8BOM))
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		ev, err := ParseLine(line, stream)
		if err == nil {
			err = eventlog.ValidateEvents([]eventlog.Event{ev}, o.MaxEventBytes)
		}
		if err != nil {
			fail(err)
			continue
		}
		if bad.Total == 0 {
			events = append(events, Line{Line: n, Event: ev})
		}
	}
	if err := sc.Err(); errors.Is(err, bufio.ErrTooLong) {
		n++
		fail(fmt.Errorf("line is longer than %d bytes (an event is at most %d bytes); input not read further", maxLine, o.MaxEventBytes))
	} else if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if bad.Total > 0 {
		return nil, bad
	}
	return events, nil
}

// ParseLine parses one non-blank input line into an event for stream: the
// stream only matters for an idempotency_key, from which the ID is
// derived (eventlog.DeriveID(stream, key)). An event without id or
// idempotency_key has the zero ID: the journal assigns one.
func ParseLine(line []byte, stream string) (eventlog.Event, error) {
	var ev eventlog.Event
	fields, err := objectFields(line)
	if err != nil {
		return ev, err
	}
	var id, idemKey string
	var hasID, hasIdemKey bool
	for _, f := range fields {
		switch f.name {
		case "type":
			ev.Type, _, err = stringField(f)
		case "key":
			ev.Key, _, err = stringField(f)
		case "id":
			id, hasID, err = stringField(f)
		case "idempotency_key":
			idemKey, hasIdemKey, err = stringField(f)
		case "headers":
			ev.Headers, err = headersField(f)
		case "data":
			ev.Data, err = DecodeData(f.value)
		default:
			err = fmt.Errorf("unknown field %q (fields: type, key, id, idempotency_key, headers, data)", f.name)
		}
		if err != nil {
			return ev, err
		}
	}
	if ev.Type == "" {
		return ev, errors.New(`missing "type"`)
	}
	switch {
	case hasID && hasIdemKey:
		return ev, errors.New(`"id" and "idempotency_key" are exclusive: give one`)
	case hasID:
		if ev.ID, err = eventlog.ParseID(id); err != nil {
			return ev, err
		}
		if ev.ID.IsZero() {
			return ev, errors.New(`"id" is the zero ULID, which means "none": omit it to let the journal assign one`)
		}
	case hasIdemKey:
		if idemKey == "" {
			return ev, errors.New(`"idempotency_key" is empty`)
		}
		ev.ID = eventlog.DeriveID(stream, idemKey)
	}
	return ev, nil
}

// field is one member of a JSON object, its value as raw JSON text.
type field struct {
	name  string
	value json.RawMessage
}

// objectFields returns the members of the JSON object text b, in order. It
// refuses anything else, a repeated name, and trailing data.
func objectFields(b []byte) ([]field, error) {
	var raw json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("invalid JSON at column %d: %v", se.Offset, se)
		}
		return nil, fmt.Errorf("invalid JSON: %v", err)
	}
	if kind := jsonKind(raw); kind != "an object" {
		return nil, fmt.Errorf("want a JSON object, got %s", kind)
	}
	// b is valid JSON, so the decoder meets no syntax errors below.
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // '{'
		return nil, err
	}
	var fields []field
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, _ := tok.(string)
		if seen[name] {
			return nil, fmt.Errorf("field %q appears twice", name)
		}
		seen[name] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		fields = append(fields, field{name: name, value: v})
	}
	return fields, nil
}

// jsonKind names the kind of the valid JSON text b, for messages.
func jsonKind(b []byte) string {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

// stringField decodes a string member; null counts as absent.
func stringField(f field) (s string, present bool, err error) {
	switch jsonKind(f.value) {
	case "null":
		return "", false, nil
	case "a string":
		err = json.Unmarshal(f.value, &s)
		return s, true, err
	default:
		return "", false, fmt.Errorf("%q must be a string, got %s", f.name, jsonKind(f.value))
	}
}

// headersField decodes the headers member: an object of strings, or null.
func headersField(f field) (map[string]string, error) {
	if jsonKind(f.value) == "null" {
		return nil, nil
	}
	if kind := jsonKind(f.value); kind != "an object" {
		return nil, fmt.Errorf(`"headers" must be an object of strings, got %s`, kind)
	}
	members, err := objectFields(f.value)
	if err != nil {
		return nil, fmt.Errorf(`"headers": %w`, err)
	}
	if len(members) == 0 {
		return nil, nil
	}
	h := make(map[string]string, len(members))
	for _, m := range members {
		if jsonKind(m.value) != "a string" {
			return nil, fmt.Errorf(`"headers": %q must be a string, got %s`, m.name, jsonKind(m.value))
		}
		var v string
		if err := json.Unmarshal(m.value, &v); err != nil {
			return nil, err
		}
		h[m.name] = v
	}
	return h, nil
}

// DecodeData returns the bytes to store for a data member v: the compacted
// JSON text, or the bytes a {"$base64": ...} marker holds.
func DecodeData(v json.RawMessage) ([]byte, error) {
	if HasMarkerKey(v) {
		members, err := objectFields(v)
		if err != nil {
			return nil, fmt.Errorf(`"data": %w`, err)
		}
		if len(members) != 1 || jsonKind(members[0].value) != "a string" {
			return nil, fmt.Errorf(`"data": an object with a %q key must be exactly {%q: "<standard base64>"}`, MarkerKey, MarkerKey)
		}
		var s string
		if err := json.Unmarshal(members[0].value, &s); err != nil {
			return nil, err
		}
		b, err := base64.StdEncoding.Strict().DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf(`"data": %q: not standard padded base64: %v`, MarkerKey, err)
		}
		return b, nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, v); err != nil {
		return nil, fmt.Errorf(`"data": %v`, err)
	}
	return buf.Bytes(), nil
}

// HasMarkerKey reports whether b is a JSON object with a "$base64" key at
// its top level.
func HasMarkerKey(b []byte) bool {
	if jsonKind(b) != "an object" {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if _, err := dec.Token(); err != nil {
		return false
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		if tok == MarkerKey {
			return true
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return false
		}
	}
	return false
}

// Message returns err's message without the "flowrt/<package>: " prefixes
// the library puts on every error: a tool names itself once.
func Message(err error) string {
	return pkgPrefix.ReplaceAllString(err.Error(), "")
}

// pkgPrefix matches the package prefix of flowrt's error messages.
var pkgPrefix = regexp.MustCompile(`flowrt/[a-z]+: `)
