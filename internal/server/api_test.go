package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/flowrt/flowrt/internal/server"
	"github.com/flowrt/flowrt/runtime"
)

func TestAuth(t *testing.T) {
	f := newFixture(t, fixtureOptions{opts: server.Options{Token: "s3cret"}})
	tests := []struct {
		name   string
		method string
		path   string
		auth   string // the Authorization header; "-" for none
		code   int
	}{
		{"no token", "GET", "/v1/status", "-", 401},
		{"wrong token", "GET", "/v1/status", "Bearer nope", 401},
		{"token as basic auth", "GET", "/v1/status", "Basic s3cret", 401},
		{"right token", "GET", "/v1/status", "Bearer s3cret", 200},
		{"scheme in any case", "GET", "/v1/status", "bearer s3cret", 200},
		{"ingest without token", "POST", "/v1/streams/in/events", "-", 401},
		{"metrics without token", "GET", "/metrics", "-", 401},
		{"read side without token", "GET", "/v1/streams/events/events", "-", 401},
		{"unknown path without token", "GET", "/nope", "-", 401},
		{"healthz is open", "GET", "/healthz", "-", 200},
		{"readyz is open", "GET", "/readyz", "-", 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]string{"Authorization": tt.auth}
			if tt.auth == "-" {
				h["Authorization"] = ""
			}
			code, hdr, b := f.do(t, request{method: tt.method, path: tt.path, header: h, body: strings.NewReader(`{"type":"a"}`)})
			require.Equal(t, tt.code, code, "%s", b)
			if code == http.StatusUnauthorized {
				assert.Contains(t, errorOf(t, b), "bearer token")
				assert.Equal(t, `Bearer realm="flowrt"`, hdr.Get("WWW-Authenticate"))
			}
		})
	}
	require.Nil(t, streamLines(t, f.l, "in"), "an unauthorised ingest appends nothing")
}

func TestUnknownRoutes(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	tests := []struct {
		name, method, path string
		code               int
		allow              string
	}{
		{"unknown path", "GET", "/v2/nope", 404, ""},
		{"wrong method", "DELETE", "/v1/streams/events/events", 405, "GET, HEAD, POST"},
		{"read-only endpoint", "POST", "/v1/status", 405, "GET, HEAD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, h, b := f.do(t, request{method: tt.method, path: tt.path})
			require.Equal(t, tt.code, code)
			require.Equal(t, "application/json", h.Get("Content-Type"))
			errorOf(t, b)
			assert.Equal(t, tt.allow, h.Get("Allow"))
		})
	}
}

func TestMetrics(t *testing.T) {
	f := newFixture(t, fixtureOptions{start: true})
	code, h, b := f.do(t, request{path: "/metrics"})
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, h.Get("Content-Type"), "text/plain")
	body := string(b)
	for _, want := range []string{
		`flowrt_flow_processed_total{flow="counts",stream="events"} `,
		`flowrt_runtime_state{state="running"} 1`,
		`flowrt_flow_state{flow="picky",state="running"} 1`,
		`flowrt_stream_last_seq{stream="events"} 6`,
		`flowrt_stream_events{stream="events"} 6`,
		`flowrt_stream_bytes{stream="events"} `,
		`flowrt_stream_last_seq{stream="$system"} `,
		`flowrt_consumer_offset{consumer="counts",stream="events"} `,
		`flowrt_consumer_lag_events{consumer="picky",stream="events"} `,
		`flowrt_consumer_dead_letters{consumer="picky",stream="events"} 1`,
		`flowrt_consumer_dead_letters{consumer="counts",stream="events"} 0`,
		"go_goroutines ",
	} {
		assert.Contains(t, body, want)
	}
}

func TestHealth(t *testing.T) {
	t.Run("before start", func(t *testing.T) {
		f := newFixture(t, fixtureOptions{})
		var h server.Health
		code, _, b := f.do(t, request{path: "/healthz"})
		require.Equal(t, http.StatusOK, code)
		require.NoError(t, json.Unmarshal(b, &h))
		assert.Equal(t, "ok", h.Status)
		assert.Equal(t, "created", h.State)

		code, _, b = f.do(t, request{path: "/readyz"})
		require.Equal(t, http.StatusServiceUnavailable, code)
		require.NoError(t, json.Unmarshal(b, &h))
		assert.Equal(t, server.Health{Status: "not ready", State: "created"}, h)
	})
	t.Run("running", func(t *testing.T) {
		f := newFixture(t, fixtureOptions{start: true})
		var h server.Health
		f.get(t, "/readyz", &h)
		assert.Equal(t, "ready", h.Status)
		assert.Equal(t, "running", h.State)
		assert.Len(t, h.Run, 26)
		f.get(t, "/healthz", &h)
		assert.Equal(t, "ok", h.Status)
		require.Len(t, h.Flows, 2)
		assert.Equal(t, server.FlowHealth{Name: "counts", State: "running"}, h.Flows[0])
	})
	t.Run("failed", func(t *testing.T) {
		l := flowtest.MustOpenLog(t, nil)
		rt, err := runtime.New(l, nil)
		require.NoError(t, err)
		// A runtime that fails to start, its journal closed, has failed.
		require.NoError(t, l.Close())
		h, err := server.New(l, &server.Options{Runtime: rt})
		require.NoError(t, err)
		require.Error(t, rt.Start(t.Context()))
		f := &fixture{l: l, rt: rt, srv: newHTTPTest(t, h)}
		code, _, b := f.do(t, request{path: "/healthz"})
		var hl server.Health
		require.NoError(t, json.Unmarshal(b, &hl))
		require.Equal(t, http.StatusServiceUnavailable, code, "%s", b)
		assert.Equal(t, "unhealthy", hl.Status)
		assert.Equal(t, "failed", hl.State)
	})
}

func TestStatus(t *testing.T) {
	f := newFixture(t, fixtureOptions{start: true})
	var st server.Status
	f.get(t, "/v1/status", &st)
	assert.Equal(t, "running", st.State)
	assert.Len(t, st.Run, 26)
	require.Len(t, st.Flows, 2)
	counts := st.Flows[0]
	assert.Equal(t, "counts", counts.Name)
	assert.Equal(t, "events", counts.Stream)
	assert.Equal(t, "running", counts.State)
	assert.GreaterOrEqual(t, counts.Committed, uint64(5), "the floor the first run committed, or the next")
	assert.GreaterOrEqual(t, counts.Matched, uint64(1))
	assert.Equal(t, "picky", st.Flows[1].Name)

	names := map[string]server.StreamStatus{}
	for _, s := range st.Streams {
		names[s.Name] = s
	}
	require.Contains(t, names, "$system")
	ev := names["events"]
	assert.Equal(t, uint64(1), ev.First)
	assert.Equal(t, uint64(6), ev.Last)
	assert.Equal(t, uint64(6), ev.Count)
	assert.Positive(t, ev.Bytes)
	assert.False(t, ev.LastTime.IsZero())

	// The keys are the documented snake_case ones.
	_, _, b := f.do(t, request{path: "/v1/status"})
	var raw struct {
		Flows   []map[string]any `json:"flows"`
		Streams []map[string]any `json:"streams"`
	}
	require.NoError(t, json.Unmarshal(b, &raw))
	for _, k := range []string{"name", "stream", "state", "matched", "processed", "failed", "dead_lettered", "committed", "last", "lag", "in_flight"} {
		assert.Contains(t, raw.Flows[0], k)
	}
	for _, k := range []string{"name", "first", "last", "count", "bytes"} {
		assert.Contains(t, raw.Streams[0], k)
	}
}

func TestTopology(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	var topo runtime.Topology
	f.get(t, "/v1/topology", &topo)
	assert.Equal(t, runtime.TopologyOf(f.rt.Flows()), topo)
	assert.Equal(t, []string{"events"}, topo.Streams)
	require.Len(t, topo.Flows, 2)
	assert.True(t, topo.Flows[0].State)
	assert.Equal(t, []string{"handler"}, topo.Flows[1].Sinks)
}

func TestNewRefuses(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	rt, err := runtime.New(l, nil)
	require.NoError(t, err)
	tests := []struct {
		name string
		opts *server.Options
		want string
	}{
		{"nil options", nil, "Runtime is required"},
		{"no runtime", &server.Options{}, "Runtime is required"},
		{"negative body limit", &server.Options{Runtime: rt, MaxBody: -1}, "MaxBody"},
		{"negative event size", &server.Options{Runtime: rt, MaxEventBytes: -1}, "MaxEventBytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := server.New(l, tt.opts)
			require.ErrorContains(t, err, tt.want)
		})
	}
	_, err = server.New(nil, &server.Options{Runtime: rt})
	require.ErrorContains(t, err, "no journal")
}
