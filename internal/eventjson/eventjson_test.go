package eventjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/stretchr/testify/require"
)

const testID = "01JGZ5W9V4XJ3Q8N6T2R1M0ABC"

func TestParseLine(t *testing.T) {
	id, err := eventlog.ParseID(testID)
	require.NoError(t, err)
	tests := []struct {
		name string
		line string
		want eventlog.Event
	}{
		{"type only", `{"type":"a.b"}`, eventlog.Event{Type: "a.b"}},
		{"every field", `{"type":"a","key":"k","id":"` + testID + `","headers":{"h":"v"},"data":{"x":1}}`,
			eventlog.Event{Type: "a", Key: "k", ID: id, Headers: map[string]string{"h": "v"}, Data: []byte(`{"x":1}`)}},
		{"lowercase id", `{"type":"a","id":"` + strings.ToLower(testID) + `"}`, eventlog.Event{Type: "a", ID: id}},
		{"idempotency key derives the id", `{"type":"a","idempotency_key":"k-1"}`,
			eventlog.Event{Type: "a", ID: eventlog.DeriveID("s", "k-1")}},
		{"data is compacted", `{"type":"a","data": { "x" : [1, 2.50, "y z"] } }`, eventlog.Event{Type: "a", Data: []byte(`{"x":[1,2.50,"y z"]}`)}},
		{"string data keeps its quotes", `{"type":"a","data":"hi <b>"}`, eventlog.Event{Type: "a", Data: []byte(`"hi <b>"`)}},
		{"number data", `{"type":"a","data":-1e3}`, eventlog.Event{Type: "a", Data: []byte(`-1e3`)}},
		{"null data is the JSON null", `{"type":"a","data":null}`, eventlog.Event{Type: "a", Data: []byte(`null`)}},
		{"base64 marker", `{"type":"a","data":{"$base64":"/wAB"}}`, eventlog.Event{Type: "a", Data: []byte{0xff, 0, 1}}},
		{"empty base64 marker", `{"type":"a","data":{"$base64":""}}`, eventlog.Event{Type: "a", Data: []byte{}}},
		{"null fields are absent", `{"type":"a","key":null,"id":null,"idempotency_key":null,"headers":null}`, eventlog.Event{Type: "a"}},
		{"empty headers", `{"type":"a","headers":{}}`, eventlog.Event{Type: "a"}},
		{"surrounding space", " \t{\"type\":\"a\"}\t ", eventlog.Event{Type: "a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseLine([]byte(tt.line), "s")
			require.NoError(t, err)
			requireSameEvent(t, tt.want, got)
		})
	}
}

func TestParseLineErrors(t *testing.T) {
	tests := []struct {
		name string
		line string
		want string // in the message
	}{
		{"bad JSON", `{"type":`, "invalid JSON at column 8"},
		{"not an object", `["type"]`, "want a JSON object, got an array"},
		{"trailing data", `{"type":"a"} {"type":"b"}`, "invalid JSON"},
		{"unknown field", `{"type":"a","Data":1}`, `unknown field "Data"`},
		{"repeated field", `{"type":"a","key":"x","key":"y"}`, `field "key" appears twice`},
		{"missing type", `{"key":"x"}`, `missing "type"`},
		{"null type", `{"type":null}`, `missing "type"`},
		{"type not a string", `{"type":7}`, `"type" must be a string, got a number`},
		{"bad id", `{"type":"a","id":"order-1"}`, `id "order-1" is not a ULID`},
		{"zero id", `{"type":"a","id":"00000000000000000000000000"}`, "zero ULID"},
		{"id and idempotency key", `{"type":"a","id":"` + testID + `","idempotency_key":"k"}`, "exclusive"},
		{"empty idempotency key", `{"type":"a","idempotency_key":""}`, `"idempotency_key" is empty`},
		{"headers not an object", `{"type":"a","headers":["x"]}`, `"headers" must be an object of strings`},
		{"header not a string", `{"type":"a","headers":{"n":1}}`, `"n" must be a string, got a number`},
		{"repeated header", `{"type":"a","headers":{"n":"1","n":"2"}}`, `field "n" appears twice`},
		{"marker with another key", `{"type":"a","data":{"$base64":"AA==","x":1}}`, "must be exactly"},
		{"marker not a string", `{"type":"a","data":{"$base64":1}}`, "must be exactly"},
		{"marker not base64", `{"type":"a","data":{"$base64":"%%"}}`, "not standard padded base64"},
		{"marker unpadded", `{"type":"a","data":{"$base64":"AA"}}`, "not standard padded base64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseLine([]byte(tt.line), "s")
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestParseLines(t *testing.T) {
	in := utf8BOM + "{\"type\":\"a\"}\r\n\n   \n{\"type\":\"b\"}"
	got, err := ParseLines(strings.NewReader(in), "in", "s", nil)
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Equal(t, 1, got[0].Line)
	require.Equal(t, "a", got[0].Event.Type)
	require.Equal(t, 4, got[1].Line)
	require.Equal(t, "b", got[1].Event.Type)

	t.Run("reports every bad line", func(t *testing.T) {
		var b strings.Builder
		for i := range 25 {
			if i%2 == 0 {
				b.WriteString("{\"type\":\"bad type\"}\n")
			} else {
				b.WriteString("{\"type\":\"ok\"}\n")
			}
		}
		_, err := ParseLines(strings.NewReader(b.String()), "in", "s", nil)
		var ie *InputError
		require.ErrorAs(t, err, &ie)
		require.Equal(t, 13, ie.Total)
		require.Len(t, ie.Lines, MaxReportedLines)
		require.Equal(t, 19, ie.Lines[9].Line)
		require.ErrorIs(t, err, eventlog.ErrInvalidEvent)
		require.Contains(t, err.Error(), "in: 13 bad lines:\n  line 1: invalid event: type \"bad type\"")
	})
	t.Run("MaxReported lists more lines", func(t *testing.T) {
		in := strings.Repeat("{\"type\":\"bad type\"}\n", 15)
		_, err := ParseLines(strings.NewReader(in), "body", "s", &ParseOptions{MaxReported: 100})
		var ie *InputError
		require.ErrorAs(t, err, &ie)
		require.Equal(t, 15, ie.Total)
		require.Len(t, ie.Lines, 15)
		require.Equal(t, 15, ie.Lines[14].Line)
		require.NotContains(t, err.Error(), "more")
		require.True(t, strings.HasPrefix(ie.Lines[0].Reason(), `invalid event: type "bad type"`), ie.Lines[0].Reason())
	})
	t.Run("read error", func(t *testing.T) {
		_, err := ParseLines(io.MultiReader(strings.NewReader("{\"type\":\"a\"}\n"), iotest.ErrReader(errBoom)), "body", "s", nil)
		require.ErrorIs(t, err, errBoom)
		var ie *InputError
		require.False(t, errors.As(err, &ie))
	})
	t.Run("line too long", func(t *testing.T) {
		in := "{\"type\":\"a\"}\n" + strings.Repeat(" ", MaxLineFactor*1024+1) + "\n"
		_, err := ParseLines(strings.NewReader(in), "in", "s", &ParseOptions{MaxEventBytes: 1024})
		var ie *InputError
		require.ErrorAs(t, err, &ie)
		require.Equal(t, 2, ie.Lines[0].Line)
		require.Contains(t, err.Error(), "longer than")
	})
	t.Run("oversized event", func(t *testing.T) {
		in := `{"type":"a","data":"` + strings.Repeat("x", 2000) + `"}`
		_, err := ParseLines(strings.NewReader(in), "in", "s", &ParseOptions{MaxEventBytes: 1024})
		require.ErrorIs(t, err, eventlog.ErrEventTooLarge)
		require.Contains(t, err.Error(), "in: line 1: event too large")
	})
}

// TestDataForms checks that every stored value has one JSON form that
// parses back to the same bytes.
func TestDataForms(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want string // EncodeData's output
	}{
		{"empty", nil, ""},
		{"object", []byte(`{"a":1}`), `{"a":1}`},
		{"spaced JSON is compacted", []byte(` [1, 2] `), `[1,2]`},
		{"string", []byte(`"x"`), `"x"`},
		{"null", []byte(`null`), `null`},
		{"not JSON", []byte("plain text"), `{"$base64":"cGxhaW4gdGV4dA=="}`},
		{"binary", []byte{0xff, 0}, `{"$base64":"/wA="}`},
		{"JSON that is not UTF-8", []byte("\"\xff\""), `{"$base64":"Iv8i"}`},
		{"JSON that looks like a marker", []byte(`{"$base64":"AA=="}`), `{"$base64":"eyIkYmFzZTY0IjoiQUE9PSJ9"}`},
		{"marker key among others", []byte(`{"a":1,"$base64":2}`), `{"$base64":"eyJhIjoxLCIkYmFzZTY0IjoyfQ=="}`},
		{"nested marker stays inline", []byte(`[{"$base64":"AA=="}]`), `[{"$base64":"AA=="}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := EncodeData(tt.data)
			require.Equal(t, tt.want, string(enc))
			if len(enc) == 0 {
				return
			}
			back, err := DecodeData(enc)
			require.NoError(t, err)
			var compact bytes.Buffer
			if json.Compact(&compact, tt.data) == nil && !HasMarkerKey(tt.data) {
				require.Equal(t, compact.Bytes(), back)
			} else {
				require.Equal(t, tt.data, back)
			}
		})
	}
}

// FuzzParseLines feeds arbitrary input to the parser: it must never panic,
// every line it accepts must be valid JSON, and every accepted event must
// re-encode to a line that parses back to the same event and the same line.
func FuzzParseLines(f *testing.F) {
	for _, name := range []string{"testdata/input.jsonl", "../../examples/events.jsonl"} {
		b, err := os.ReadFile(name)
		require.NoError(f, err)
		f.Add(b)
	}
	for _, s := range []string{
		`{"type":"a","data":{"$base64":"AAEC"}}`,
		`{"type":"a","data":{"$base64":"AAEC","x":1}}`,
		`{"type":"a","headers":{"":"x"}}`,
		`{"type":"a","id":"7ZZZZZZZZZZZZZZZZZZZZZZZZZ"}` + "\n" + `{"type":"a","id":"8ZZZZZZZZZZZZZZZZZZZZZZZZZ"}`,
		`{"type":"a","key":"\u0000\ud800","data":"\ud800"}`,
		"{\"type\":\"a\",\"data\":\"\xff\"}",
		`{"type":"a"}{}`,
		"\xEF\xBB\xBF{\"type\":\"a\"}\r\n\r\n",
		`{"type":"a.b..c"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, line := range bytes.Split(in, []byte("\n")) {
			line = bytes.TrimSuffix(line, []byte("\r"))
			if _, err := ParseLine(line, "s"); err == nil && !json.Valid(line) {
				t.Fatalf("accepted invalid JSON %q", line)
			}
		}
		events, err := ParseLines(bytes.NewReader(in), "fuzz", "s", &ParseOptions{MaxEventBytes: 1 << 16})
		if err != nil {
			var ie *InputError
			if !errors.As(err, &ie) || ie.Total == 0 || len(ie.Lines) == 0 {
				t.Fatalf("error is not an InputError with lines: %v", err)
			}
			return
		}
		for _, le := range events {
			line, err := EncodeLine(le.Event)
			if err != nil {
				t.Fatalf("line %d: encode: %v", le.Line, err)
			}
			back, err := ParseLine(bytes.TrimSuffix(line, []byte("\n")), "other")
			if err != nil {
				t.Fatalf("line %d: re-encoded line %q does not parse: %v", le.Line, line, err)
			}
			requireSameEvent(t, le.Event, back)
			again, err := EncodeLine(back)
			if err != nil || !bytes.Equal(line, again) {
				t.Fatalf("line %d: encoding is not stable: %q then %q (%v)", le.Line, line, again, err)
			}
			if err := eventlog.ValidateEvents([]eventlog.Event{back}, 0); err != nil {
				t.Fatalf("line %d: re-parsed event is invalid: %v", le.Line, err)
			}
		}
	})
}

// requireSameEvent compares the fields an input line sets, with empty and
// nil maps and slices equal.
func requireSameEvent(t testing.TB, want, got eventlog.Event) {
	t.Helper()
	if want.Type != got.Type || want.Key != got.Key || want.ID != got.ID ||
		!bytes.Equal(want.Data, got.Data) || len(want.Headers) != len(got.Headers) {
		t.Fatalf("events differ:\nwant %+v\ngot  %+v", want, got)
	}
	for k, v := range want.Headers {
		if gv, ok := got.Headers[k]; !ok || gv != v {
			t.Fatalf("header %q: want %q, got %q", k, v, gv)
		}
	}
}

var errBoom = errors.New("boom")

func TestEncodeEvent(t *testing.T) {
	id, err := eventlog.ParseID(testID)
	require.NoError(t, err)
	at := time.Date(2025, 1, 2, 3, 4, 5, 123456789, time.FixedZone("x", 3600))
	tests := []struct {
		name string
		ev   eventlog.Event
		want string
	}{
		{"every field", eventlog.Event{Stream: "events", Seq: 7, ID: id, Time: at, Type: "a.b", Key: "k<&>", Headers: map[string]string{"h": "v"}, Data: []byte(`{ "x": 1 }`)},
			`{"stream":"events","seq":7,"id":"` + testID + `","time":"2025-01-02T02:04:05.123456789Z","type":"a.b","key":"k<&>","headers":{"h":"v"},"data":{"x":1}}` + "\n"},
		{"no key, headers or data", eventlog.Event{Stream: "s", Seq: 1, ID: id, Time: at.Truncate(time.Second), Type: "a"},
			`{"stream":"s","seq":1,"id":"` + testID + `","time":"2025-01-02T02:04:05.000000000Z","type":"a"}` + "\n"},
		{"binary data", eventlog.Event{Stream: "s", Seq: 2, ID: id, Time: at, Type: "a", Data: []byte{0xff}},
			`{"stream":"s","seq":2,"id":"` + testID + `","time":"2025-01-02T02:04:05.123456789Z","type":"a","data":{"$base64":"/w=="}}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := EncodeEvent(tt.ev)
			require.NoError(t, err)
			require.Equal(t, tt.want, string(got))
		})
	}
}
