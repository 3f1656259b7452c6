package runtime

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/flowrt/flowrt/eventlog"
)

// Record is what flows through a flow's steps: the source event, the
// payload built so far and the variables earlier steps added. Steps
// receive a Record by value and return new ones; the Event, the Payload
// and the Vars' values may be shared between records and must not be
// modified in place.
type Record struct {
	// Event is the source event, as read from the journal.
	Event eventlog.Event

	// Part identifies a fan-out part: "" for the whole event, "2" for the
	// third element of a fan_out, "2/0" for a part of a part. Together
	// with the flow and the event ID it is the record's stable identity.
	Part string

	// Payload is the record's current value. It starts as the event's
	// Data decoded from JSON (numbers as float64; a string when Data is
	// not JSON; nil when it is empty), and a map step replaces it.
	Payload any

	// Vars holds the values enrich and fan_out steps stored, by name.
	// Expressions see them as top-level names.
	Vars map[string]any

	data any           // the source event's decoded data, shared by every part
	att  *attemptState // the attempt's state changes, for a stateful flow
}

// ID returns the record's stable identity: the source event's ID, followed
// by "/" and the part for a fan-out part. A retried event yields the same
// IDs, so a sink can deduplicate.
func (r Record) ID() string {
	if r.Part == "" {
		return r.Event.ID.String()
	}
	return r.Event.ID.String() + "/" + r.Part
}

// part returns a child record for fan-out element i, with its own Vars.
func (r Record) part(i int, payload any) Record {
	p := strconv.Itoa(i)
	if r.Part != "" {
		p = r.Part + "/" + p
	}
	return Record{Event: r.Event, Part: p, Payload: payload, Vars: r.withVar("", nil), data: r.data, att: r.att}
}

// withVar returns a copy of r.Vars with name set (or just a copy when name
// is empty), so parts never share a map.
func (r Record) withVar(name string, v any) map[string]any {
	out := make(map[string]any, len(r.Vars)+1)
	for k, x := range r.Vars {
		out[k] = x
	}
	if name != "" {
		out[name] = v
	}
	return out
}

// decodePayload turns event data into a payload: JSON decoded, a string
// when it is not JSON, nil when it is empty.
func decodePayload(data []byte) any {
	if len(data) == 0 {
		return nil
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return string(data)
	}
	return v
}

// rawPayload is the payload of a record no step touched: the data as it
// is when it is JSON, so sinks re-encode nothing.
func rawPayload(data []byte) any {
	if len(data) == 0 {
		return nil
	}
	if json.Valid(data) {
		return json.RawMessage(data)
	}
	return string(data)
}

// Delivery is what a sink receives: one record of one flow, with the
// identity a downstream system needs to deduplicate.
type Delivery struct {
	// ID is the record's stable identity (Record.ID): a retry of the same
	// event delivers the same IDs.
	ID string
	// Flow is the flow that produced the record.
	Flow string
	// Part is the fan-out part, "" for the whole event.
	Part string
	// Event is the source event; Event.Seq and Event.ID locate it.
	Event eventlog.Event
	// Payload is the record's payload: json.RawMessage of the event's data
	// when no step changed it.
	Payload any

	rec Record // the record delivered, for sinks that evaluate expressions
}

// Source describes a delivery's source event in its JSON form.
type Source struct {
	Stream  string            `json:"stream"`
	Seq     uint64            `json:"seq"`
	ID      string            `json:"id"`
	Type    string            `json:"type"`
	Key     string            `json:"key,omitempty"`
	Time    time.Time         `json:"time"`
	Headers map[string]string `json:"headers,omitempty"`
}

// deliveryJSON is the JSON form of a Delivery, written by the file, stdout
// and http sinks.
type deliveryJSON struct {
	ID     string `json:"id"`
	Flow   string `json:"flow"`
	Part   string `json:"part,omitempty"`
	Source Source `json:"source"`
	Data   any    `json:"data"`
}

// MarshalJSON encodes the delivery as the sinks write it:
//
//	{"id":"01J…/2","flow":"ship","part":"2",
//	 "source":{"stream":"events","seq":7,"id":"01J…","type":"order.created","key":"c-1","time":"…"},
//	 "data":{…}}
func (d Delivery) MarshalJSON() ([]byte, error) {
	return json.Marshal(deliveryJSON{
		ID:   d.ID,
		Flow: d.Flow,
		Part: d.Part,
		Source: Source{
			Stream:  d.Event.Stream,
			Seq:     d.Event.Seq,
			ID:      d.Event.ID.String(),
			Type:    d.Event.Type,
			Key:     d.Event.Key,
			Time:    d.Event.Time,
			Headers: d.Event.Headers,
		},
		Data: d.Payload,
	})
}
