package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/eventjson"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/flowrt/flowrt/internal/server"
	"github.com/flowrt/flowrt/runtime"
	"github.com/flowrt/flowrt/supervisor"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 10 * time.Second

// fixture is a journal with data for every read endpoint, a runtime over
// it (not started unless asked) and the API served by httptest.
//
// The journal holds, in stream "events", seed's five events; flow
// "counts" has counted them per key (state), and flow "picky" has
// dead-lettered the one with key "bad". One run is recorded in $system.
// A started fixture has a sixth event, order.created for key "o-3", that
// both flows have handled (their floors may not be committed yet).
type fixture struct {
	l     *eventlog.Log
	rt    *runtime.Runtime
	srv   *httptest.Server
	token string
}

type fixtureOptions struct {
	start   bool           // start the served runtime
	opts    server.Options // Runtime is filled in
	wrapped func(http.Handler) http.Handler
}

// seed is the fixture's events, appended before the flows run.
var seed = []eventlog.Event{
	{Type: "order.created", Key: "o-1", Data: []byte(`{"total":10}`)},
	{Type: "order.paid", Key: "o-1", Data: []byte(`{"total":10}`)},
	{Type: "order.created", Key: "bad"},
	{Type: "user.signed_up", Key: "u-1", Headers: map[string]string{"src": "web"}},
	{Type: "order.created", Key: "o-2", Data: []byte{0xff, 0x00}},
}

// addFlows adds the fixture's flows to rt. Each event a flow handles is
// sent to seen, if not nil, as the flow's name.
func addFlows(t *testing.T, rt *runtime.Runtime, seen chan<- string) {
	t.Helper()
	signal := func(flow string) {
		if seen != nil {
			select {
			case seen <- flow:
			default:
			}
		}
	}
	counter := runtime.SinkFunc(func(context.Context, runtime.Delivery) error { signal("counts"); return nil })
	// Commit floors often: the fixture's first run waits for them.
	fast := &consumer.Options{CommitInterval: 5 * time.Millisecond}
	require.NoError(t, rt.Add(runtime.Flow{
		Name:     "counts",
		On:       runtime.On("order.*"),
		Steps:    []runtime.Step{runtime.Reduce(runtime.ReduceSpec{Func: "count"})},
		Sinks:    []runtime.Sink{counter},
		Consumer: fast,
	}))
	require.NoError(t, rt.Handle("picky", runtime.On("order.*"), func(_ context.Context, e eventlog.Event) error {
		signal("picky")
		if e.Key == "bad" {
			return consumer.Permanent(errors.New("bad key"))
		}
		return nil
	}, fast))
}

func newFixture(t *testing.T, fo fixtureOptions) *fixture {
	t.Helper()
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, eventlog.DefaultStream, seed...)

	before, err := runtime.New(l, &runtime.Options{Supervisor: &supervisor.Options{IdlePoll: 5 * time.Millisecond}})
	require.NoError(t, err)
	addFlows(t, before, nil)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	require.NoError(t, before.RunUntilIdle(ctx))

	rt, err := runtime.New(l, nil)
	require.NoError(t, err)
	seen := make(chan string, 16)
	addFlows(t, rt, seen)
	if fo.start {
		require.NoError(t, rt.Start(ctx))
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			require.NoError(t, rt.Stop(ctx))
		})
		// One more event, which both flows handle: then both run.
		flowtest.MustAppend(t, l, eventlog.DefaultStream, eventlog.Event{Type: "order.created", Key: "o-3"})
		awaitFlows(t, seen, "counts", "picky")
	}
	opts := fo.opts
	opts.Runtime = rt
	h, err := server.New(l, &opts)
	require.NoError(t, err)
	if fo.wrapped != nil {
		h = fo.wrapped(h)
	}
	return &fixture{l: l, rt: rt, srv: newHTTPTest(t, h), token: opts.Token}
}

// newHTTPTest serves h until the test ends.
func newHTTPTest(t *testing.T, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// awaitFlows waits until each flow has handled an event.
func awaitFlows(t *testing.T, seen <-chan string, flows ...string) {
	t.Helper()
	want := map[string]bool{}
	for _, f := range flows {
		want[f] = true
	}
	deadline := time.After(testTimeout)
	for len(want) > 0 {
		select {
		case f := <-seen:
			delete(want, f)
		case <-deadline:
			t.Fatalf("flows %v handled no event", want)
		}
	}
}

// request is one HTTP request of a test.
type request struct {
	method, path string
	body         io.Reader
	header       map[string]string
}

// do sends req with the fixture's token, if any, and returns the status,
// the headers and the body.
func (f *fixture) do(t *testing.T, req request) (int, http.Header, []byte) {
	t.Helper()
	if req.method == "" {
		req.method = http.MethodGet
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	r, err := http.NewRequestWithContext(ctx, req.method, f.srv.URL+req.path, req.body)
	require.NoError(t, err)
	if f.token != "" {
		r.Header.Set("Authorization", "Bearer "+f.token)
	}
	for k, v := range req.header {
		if v == "" {
			r.Header.Del(k)
		} else {
			r.Header.Set(k, v)
		}
	}
	resp, err := f.srv.Client().Do(r)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, b
}

// get is do for a GET that must answer 200 with JSON, decoded into v.
func (f *fixture) get(t *testing.T, path string, v any) {
	t.Helper()
	code, h, b := f.do(t, request{path: path})
	require.Equal(t, http.StatusOK, code, "GET %s: %s", path, b)
	require.Equal(t, "application/json", h.Get("Content-Type"))
	require.NoError(t, json.Unmarshal(b, v), "GET %s: %s", path, b)
}

// errorOf decodes an error answer.
func errorOf(t *testing.T, b []byte) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	require.NoError(t, json.Unmarshal(b, &e), "not a JSON error: %s", b)
	require.NotEmpty(t, e.Error, "error answer without a message: %s", b)
	return e.Error
}

// streamLines returns the events of stream as `flowrt dump --json` lines.
func streamLines(t *testing.T, l *eventlog.Log, stream string) []string {
	t.Helper()
	events, err := l.Read(stream, 0, 1<<20)
	if errors.Is(err, eventlog.ErrNotFound) {
		return nil
	}
	require.NoError(t, err)
	var out []string
	for _, ev := range events {
		out = append(out, encode(t, ev))
	}
	return out
}

func encode(t *testing.T, ev eventlog.Event) string {
	t.Helper()
	line, err := eventjson.EncodeEvent(ev)
	require.NoError(t, err)
	return strings.TrimSuffix(string(line), "\n")
}

// splitLines splits a JSON-lines body.
func splitLines(b []byte) []string {
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}
