// Package eventjson is the JSON-lines form of flowrt events: what
// `flowrt append` and `POST /v1/streams/{stream}/events` read, and what
// `flowrt dump --json` and `GET /v1/streams/{stream}/events` write.
//
// # Basics
//
// Each input line is one event:
//
//	{"type": "order.created", "key": "order-1001", "id": "<ULID>",
//	 "idempotency_key": "...", "headers": {"k": "v"}, "data": <any JSON value>}
//
// Only type is required. Field names are case-sensitive; an unknown or
// repeated field is an error, and null means the same as an absent field,
// except for data, where null is the JSON value null. ParseLines reads a
// whole input and refuses it if any line is bad, listing the bad lines
// (an *InputError of *LineError); ParseLine reads one line.
//
// data is stored as the bytes of its compacted JSON text: {"a":1} is stored
// as those 7 bytes and a JSON string keeps its quotes, so what dump prints
// can be appended again unchanged. Bytes that are not JSON are written, and
// may be given, as the marker object {"$base64": "<standard base64>"}. An
// object with a "$base64" key at the top of data is always read as that
// marker, so JSON data that is itself such an object is written as a marker
// too: every stored value is printed in one form (EncodeData). Absent data
// is stored as no bytes, and the output omits the field for it.
//
// The output form (EncodeEvent) adds stream, seq and time (RFC 3339 in UTC
// with nine fraction digits, TimeLayout) to the input fields, and never
// writes idempotency_key.
//
// # Caveats
//
// ParseLines holds the whole input's events in memory; callers bound the
// input (the HTTP API limits the body size).
package eventjson
