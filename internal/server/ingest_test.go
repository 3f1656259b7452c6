package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/server"
)

const testID = "01JGZ5W9V4XJ3Q8N6T2R1M0ABC"

// hideLength makes a body of unknown length: sent chunked, it reaches the
// handler's body limit instead of the Content-Length check.
func hideLength(s string) io.Reader { return io.MultiReader(strings.NewReader(s)) }

func TestIngest(t *testing.T) {
	f := newFixture(t, fixtureOptions{opts: server.Options{MaxBody: 4096, MaxEventBytes: 1024}})
	big := `{"type":"a.b","data":"` + strings.Repeat("x", 5000) + `"}`
	tests := []struct {
		name   string
		stream string
		body   io.Reader
		header map[string]string
		code   int
		want   int      // events appended
		lines  []int    // bad lines reported, for 400
		errs   []string // in the error message
	}{
		{name: "one object", stream: "in", body: strings.NewReader(`{"type":"order.created","key":"o-9","data":{"total":1}}`), code: 200, want: 1},
		{name: "one pretty-printed object", stream: "in", body: strings.NewReader("{\n  \"type\": \"a.b\",\n  \"data\": {\"x\": 1}\n}\n"), code: 200, want: 1},
		{name: "objects over several lines", stream: "in",
			body: strings.NewReader("{\"type\":\n\"a\"}\n{\"type\":\"b\"}"), code: 400, lines: []int{1, 2}},
		{name: "JSON lines", stream: "in", body: strings.NewReader("\xEF\xBB\xBF{\"type\":\"a.b\"}\r\n\n{\"type\":\"a.c\",\"headers\":{\"h\":\"v\"}}\n{\"type\":\"a.d\",\"data\":{\"$base64\":\"/wA=\"}}"), code: 200, want: 3},
		{name: "empty body", stream: "in", body: strings.NewReader(""), code: 200},
		{name: "malformed lines", stream: "in",
			body: strings.NewReader("{\"type\":\"a.b\"}\n{\"type\":\n\n{\"key\":\"k\"}\n{\"type\":\"bad type\"}\n{\"type\":\"a\",\"extra\":1}\n{\"type\":\"ok\"}\n"),
			code: 400, lines: []int{2, 4, 5, 6}, errs: []string{"body: 4 bad lines", "nothing appended"}},
		{name: "oversized event", stream: "in", body: strings.NewReader(`{"type":"a","data":"` + strings.Repeat("x", 2000) + `"}`),
			code: 400, lines: []int{1}, errs: []string{"event too large"}},
		{name: "oversized body with length", stream: "in", body: strings.NewReader(big), code: 413, errs: []string{"larger than 4096 bytes"}},
		{name: "oversized body chunked", stream: "in", body: hideLength(big), code: 413},
		{name: "body at the limit", stream: "in", body: hideLength(strings.Repeat(`{"type":"a"}`+"\n", 315) + " "), code: 200, want: 315},
		{name: "reserved stream", stream: "$system", body: strings.NewReader(`{"type":"a"}`), code: 400, errs: []string{"reserved"}},
		{name: "bad stream name", stream: "a%20b", body: strings.NewReader(`{"type":"a"}`), code: 400, errs: []string{"stream:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := streamLines(t, f.l, "in")
			code, _, b := f.do(t, request{method: http.MethodPost, path: "/v1/streams/" + tt.stream + "/events", body: tt.body, header: tt.header})
			require.Equal(t, tt.code, code, "%s", b)
			after := streamLines(t, f.l, "in")
			if tt.code != http.StatusOK {
				msg := errorOf(t, b)
				for _, e := range tt.errs {
					assert.Contains(t, msg, e)
				}
				require.Equal(t, before, after, "a refused request appends nothing")
			}
			if len(tt.lines) > 0 {
				var refusal server.IngestRefusal
				require.NoError(t, json.Unmarshal(b, &refusal))
				var got []int
				for _, lp := range refusal.Lines {
					got = append(got, lp.Line)
					assert.NotEmpty(t, lp.Error)
					assert.NotContains(t, lp.Error, "line ", "the line number is a field, not in the message")
				}
				require.Equal(t, tt.lines, got)
				require.Equal(t, len(tt.lines), refusal.Total)
			}
			if tt.code == http.StatusOK {
				var ans server.IngestAnswer
				require.NoError(t, json.Unmarshal(b, &ans))
				require.Len(t, ans.Results, tt.want)
				require.Len(t, after, len(before)+tt.want)
				for i, r := range ans.Results {
					assert.False(t, r.Duplicate)
					assert.Equal(t, uint64(len(before)+i+1), r.Seq)
					assert.Len(t, r.ID, 26)
				}
			}
		})
	}
}

func TestIngestReportsEveryBadLine(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	body := strings.Repeat("{\"type\":\"ok\"}\nnot json\n", 30)
	code, _, b := f.do(t, request{method: http.MethodPost, path: "/v1/streams/in/events", body: strings.NewReader(body)})
	require.Equal(t, http.StatusBadRequest, code)
	var refusal server.IngestRefusal
	require.NoError(t, json.Unmarshal(b, &refusal))
	require.Len(t, refusal.Lines, 30)
	require.Equal(t, 30, refusal.Total)
	require.Equal(t, 60, refusal.Lines[29].Line)
	require.Contains(t, refusal.Lines[0].Error, "invalid JSON")
	require.Nil(t, streamLines(t, f.l, "in"))
}

func TestIngestRetries(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		header map[string]string
	}{
		{"event id", `{"type":"a.b","id":"` + testID + `"}`, nil},
		{"idempotency_key field", "{\"type\":\"a.b\",\"idempotency_key\":\"k1\"}\n{\"type\":\"a.c\",\"idempotency_key\":\"k2\"}", nil},
		{"Idempotency-Key header", "{\"type\":\"a.b\"}\n\n{\"type\":\"a.c\"}", map[string]string{"Idempotency-Key": "batch-7"}},
		{"header and an id", "{\"type\":\"a.b\",\"id\":\"" + testID + "\"}\n{\"type\":\"a.c\"}", map[string]string{"Idempotency-Key": "batch-8"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, fixtureOptions{})
			post := func() server.IngestAnswer {
				code, _, b := f.do(t, request{method: http.MethodPost, path: "/v1/streams/in/events", body: strings.NewReader(tt.body), header: tt.header})
				require.Equal(t, http.StatusOK, code, "%s", b)
				var ans server.IngestAnswer
				require.NoError(t, json.Unmarshal(b, &ans))
				return ans
			}
			first, again := post(), post()
			require.Len(t, again.Results, len(first.Results))
			for i := range first.Results {
				assert.False(t, first.Results[i].Duplicate)
				assert.True(t, again.Results[i].Duplicate, "result %d of the retry", i)
				assert.Equal(t, first.Results[i].Seq, again.Results[i].Seq)
				assert.Equal(t, first.Results[i].ID, again.Results[i].ID)
			}
			require.Len(t, streamLines(t, f.l, "in"), len(first.Results), "the retry appended nothing")
			if k := tt.header["Idempotency-Key"]; k != "" {
				assert.Equal(t, eventlog.DeriveID(k, "1").String(), first.Results[1].ID, "the second event's id is derived from the key and its index")
			}
		})
	}
}
