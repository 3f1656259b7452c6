package eventjson

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"unicode/utf8"

	"github.com/flowrt/flowrt/eventlog"
)

// TimeLayout is the layout of an event's time in the output form: RFC 3339
// in UTC with all nine fraction digits, so that times sort as strings.
const TimeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// Event is the JSON form of an event. The input form (ParseLine) reads
// type, key, id, headers and data (and idempotency_key, which Event does
// not hold); the output form (EncodeEvent) writes every field but
// idempotency_key. Empty fields but type are omitted.
type Event struct {
	Stream  string            `json:"stream,omitempty"`
	Seq     uint64            `json:"seq,omitempty"`
	ID      string            `json:"id,omitempty"`
	Time    string            `json:"time,omitempty"`
	Type    string            `json:"type"`
	Key     string            `json:"key,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	Data    json.RawMessage   `json:"data,omitempty"`
}

// EncodeData returns the JSON form of stored data bytes: the bytes
// themselves (compacted) when they are UTF-8 JSON that cannot be mistaken
// for a marker, else the {"$base64": ...} marker. Empty data has no form
// (nil): the field is omitted.
func EncodeData(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	if utf8.Valid(b) && json.Valid(b) && !HasMarkerKey(b) {
		var buf bytes.Buffer
		if json.Compact(&buf, b) == nil {
			return buf.Bytes()
		}
	}
	m, _ := json.Marshal(map[string]string{MarkerKey: base64.StdEncoding.EncodeToString(b)})
	return m
}

// EncodeEvent returns ev in the output form, `flowrt dump --json`'s, as
// one line, newline included:
//
//	{"stream":"events","seq":1,"id":"01J...","time":"2025-01-02T03:04:05.123456789Z",
//	 "type":"order.created","key":"order-1001","headers":{"source":"shop-7"},
//	 "data":{"total_cents":1598}}
func EncodeEvent(ev eventlog.Event) ([]byte, error) {
	return MarshalLine(Event{
		Stream:  ev.Stream,
		Seq:     ev.Seq,
		ID:      ev.ID.String(),
		Time:    ev.Time.UTC().Format(TimeLayout),
		Type:    ev.Type,
		Key:     ev.Key,
		Headers: ev.Headers,
		Data:    EncodeData(ev.Data),
	})
}

// EncodeLine returns ev as an input line that ParseLine reads back as ev,
// newline included: the ID is given explicitly, so the stream does not
// matter.
func EncodeLine(ev eventlog.Event) ([]byte, error) {
	je := Event{Type: ev.Type, Key: ev.Key, Headers: ev.Headers, Data: EncodeData(ev.Data)}
	if !ev.ID.IsZero() {
		je.ID = ev.ID.String()
	}
	return MarshalLine(je)
}

// MarshalLine encodes v as one line of JSON without escaping HTML
// characters, newline included.
func MarshalLine(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
