package command

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/flowrt/flowrt/eventlog"
)

// The JSON-lines format read by `flowrt append` and written by
// `flowrt dump --json`. Each line is one event:
//
//	{"type": "order.created", "key": "order-1001", "id": "<ULID>",
//	 "idempotency_key": "...", "headers": {"k": "v"}, "data": <any JSON value>}
//
// Only type is required. Field names are case-sensitive; an unknown or
// repeated field is an error, and null means the same as an absent field,
// except for data, where null is the JSON value null.
//
// data is stored as the bytes of its compacted JSON text: {"a":1} is stored
// as those 7 bytes and a JSON string keeps its quotes, so what dump prints
// can be appended again unchanged. Bytes that are not JSON are written, and
// may be given, as the marker object {"$base64": "<standard base64>"}. An
// object with a "$base64" key at the top of data is always read as that
// marker, so JSON data that is itself such an object is written as a marker
// too: every stored value is printed in one form (JSON compacted). Absent
// data is stored as no
// bytes, and dump omits the field for it.

// markerKey is the only key of the object standing for non-JSON data bytes.
const markerKey = "$base64"

// maxLineFactor bounds an input line at this many times the largest event:
// JSON escapes and base64 make a line longer than the event it holds.
const maxLineFactor = 8

// utf8BOM is skipped at the start of the input.
const utf8BOM = "\xEF\xBB\xBF"

// maxReportedLines bounds how many bad lines an InputError lists.
const maxReportedLines = 10

// lineEvent is an event parsed from an input line.
type lineEvent struct {
	line  int // 1-based line number
	event eventlog.Event
}

// jsonEvent is the JSON form of an event. append reads the fields type, key,
// id, headers and data (and idempotency_key, see parseLine); dump --json
// writes all but idempotency_key.
type jsonEvent struct {
	Stream  string            `json:"stream,omitempty"`
	Seq     uint64            `json:"seq,omitempty"`
	ID      string            `json:"id,omitempty"`
	Time    string            `json:"time,omitempty"`
	Type    string            `json:"type"`
	Key     string            `json:"key,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	Data    json.RawMessage   `json:"data,omitempty"`
}

// LineError reports why one input line was refused.
type LineError struct {
	Line int // 1-based
	Err  error
}

// Error names the input line and what is wrong with it.
func (e *LineError) Error() string {
	cause := e.Err
	var ee *eventlog.EventError
	if errors.As(cause, &ee) { // "event 0: type: ..." means nothing here
		cause = ee.Err
	}
	return fmt.Sprintf("line %d: %s", e.Line, cliMessage(cause))
}

// Unwrap returns the cause.
func (e *LineError) Unwrap() error { return e.Err }

// InputError lists the bad lines of an input. Lines holds the first
// maxReportedLines of them; Total counts them all.
type InputError struct {
	Name  string // the input: a file name or "stdin"
	Lines []*LineError
	Total int
}

// Error lists the bad lines of the input.
func (e *InputError) Error() string {
	if e.Total == 1 {
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

// parseLines reads every line of r and returns the events for stream, in
// input order. Blank lines are skipped. Each event is checked as Append would
// check it (eventlog.ValidateEvents with maxEventBytes). If any line is bad
// the result is an *InputError listing the bad lines and no events; an error
// reading r is returned as is.
func parseLines(r io.Reader, name, stream string, maxEventBytes int) ([]lineEvent, error) {
	if maxEventBytes <= 0 {
		maxEventBytes = eventlog.DefaultOptions().MaxEventBytes
	}
	sc := bufio.NewScanner(r)
	maxLine := maxLineFactor * maxEventBytes
	sc.Buffer(make([]byte, 0, min(64<<10, maxLine)), maxLine)
	var (
		events []lineEvent
		bad    = &InputError{Name: name}
		n      int
	)
	fail := func(err error) {
		bad.Total++
		if len(bad.Lines) < maxReportedLines {
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
		ev, err := parseLine(line, stream)
		if err == nil {
			err = eventlog.ValidateEvents([]eventlog.Event{ev}, maxEventBytes)
		}
		if err != nil {
			fail(err)
			continue
		}
		if bad.Total == 0 {
			events = append(events, lineEvent{line: n, event: ev})
		}
	}
	if err := sc.Err(); errors.Is(err, bufio.ErrTooLong) {
		n++
		fail(fmt.Errorf("line is longer than %d bytes (an event is at most %d bytes); input not read further", maxLine, maxEventBytes))
	} else if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if bad.Total > 0 {
		return nil, bad
	}
	return events, nil
}

// parseLine parses one non-blank input line into an event for stream.
func parseLine(line []byte, stream string) (eventlog.Event, error) {
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
			ev.Data, err = decodeData(f.value)
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

// decodeData returns the bytes to store for the data member v: the
// compacted JSON text, or the bytes a {"$base64": ...} marker holds.
func decodeData(v json.RawMessage) ([]byte, error) {
	if hasMarkerKey(v) {
		members, err := objectFields(v)
		if err != nil {
			return nil, fmt.Errorf(`"data": %w`, err)
		}
		if len(members) != 1 || jsonKind(members[0].value) != "a string" {
			return nil, fmt.Errorf(`"data": an object with a %q key must be exactly {%q: "<standard base64>"}`, markerKey, markerKey)
		}
		var s string
		if err := json.Unmarshal(members[0].value, &s); err != nil {
			return nil, err
		}
		b, err := base64.StdEncoding.Strict().DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf(`"data": %q: not standard padded base64: %v`, markerKey, err)
		}
		return b, nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, v); err != nil {
		return nil, fmt.Errorf(`"data": %v`, err)
	}
	return buf.Bytes(), nil
}

// hasMarkerKey reports whether b is a JSON object with a "$base64" key at its
// top level.
func hasMarkerKey(b []byte) bool {
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
		if tok == markerKey {
			return true
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return false
		}
	}
	return false
}

// encodeData returns the JSON form of stored data bytes: the bytes
// themselves (compacted) when they are UTF-8 JSON that cannot be mistaken
// for a marker, else the {"$base64": ...} marker. Empty data has no form
// (nil): the field is omitted.
func encodeData(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	if utf8.Valid(b) && json.Valid(b) && !hasMarkerKey(b) {
		var buf bytes.Buffer
		if json.Compact(&buf, b) == nil {
			return buf.Bytes()
		}
	}
	m, _ := json.Marshal(map[string]string{markerKey: base64.StdEncoding.EncodeToString(b)})
	return m
}

// encodeLine returns ev as an input line that parseLine reads back as ev:
// the ID is given explicitly, so the stream does not matter.
func encodeLine(ev eventlog.Event) ([]byte, error) {
	je := jsonEvent{Type: ev.Type, Key: ev.Key, Headers: ev.Headers, Data: encodeData(ev.Data)}
	if !ev.ID.IsZero() {
		je.ID = ev.ID.String()
	}
	return marshalLine(je)
}

// marshalLine encodes v as one line of JSON without escaping HTML
// characters, newline included.
func marshalLine(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// cliMessage returns err's message without the "flowrt/eventlog: " prefixes
// the library puts on every error: the CLI names itself once.
func cliMessage(err error) string {
	return strings.ReplaceAll(err.Error(), "flowrt/eventlog: ", "")
}
