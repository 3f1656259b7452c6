package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/flowrt/flowrt/internal/server"
)

func TestReadEvents(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	all := streamLines(t, f.l, "events")
	require.Len(t, all, 5)
	system := streamLines(t, f.l, "$system")
	tests := []struct {
		name  string
		query string
		code  int
		want  []string // the lines, for 200
		err   string   // in the error, otherwise
	}{
		{name: "all", query: "events/events", code: 200, want: all},
		{name: "from", query: "events/events?from=3", code: 200, want: all[2:]},
		{name: "from zero", query: "events/events?from=0", code: 200, want: all},
		{name: "from beyond the end", query: "events/events?from=9", code: 200},
		{name: "limit", query: "events/events?limit=2", code: 200, want: all[:2]},
		{name: "limit zero is no limit", query: "events/events?limit=0", code: 200, want: all},
		{name: "type glob", query: "events/events?type=order.created", code: 200, want: []string{all[0], all[2], all[4]}},
		{name: "type glob, from and limit", query: "events/events?type=order.*&from=2&limit=2", code: 200, want: []string{all[1], all[2]}},
		{name: "follow=0 is a plain read", query: "events/events?follow=0", code: 200, want: all},
		{name: "a reserved stream", query: "$system/events", code: 200, want: system},
		{name: "missing stream", query: "nope/events", code: 404, err: `stream "nope": not found`},
		{name: "bad from", query: "events/events?from=x", code: 400, err: `from="x"`},
		{name: "negative limit", query: "events/events?limit=-1", code: 400, err: `limit="-1"`},
		{name: "bad glob", query: "events/events?type=[", code: 400, err: `type="["`},
		{name: "bad follow", query: "events/events?follow=maybe", code: 400, err: `follow="maybe"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, h, b := f.do(t, request{path: "/v1/streams/" + tt.query})
			require.Equal(t, tt.code, code, "%s", b)
			if code != http.StatusOK {
				assert.Contains(t, errorOf(t, b), tt.err)
				return
			}
			assert.Equal(t, "application/x-ndjson", h.Get("Content-Type"))
			assert.Equal(t, tt.want, splitLines(b))
		})
	}
}

// TestFollow tails a stream: the events there, then those appended while
// the request is open; the handler returns when the client goes away.
func TestFollow(t *testing.T) {
	tests := []struct {
		name  string
		query string
		skip  int // existing events not sent
		limit int // the server ends the response after this many
	}{
		{name: "from the start", query: ""},
		{name: "from a sequence", query: "&from=4", skip: 3},
		{name: "with a limit", query: "&limit=9", limit: 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			returned := make(chan struct{}, 1)
			f := newFixture(t, fixtureOptions{wrapped: func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					h.ServeHTTP(w, r)
					if r.URL.Query().Get("follow") != "" {
						returned <- struct{}{}
					}
				})
			}})
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.srv.URL+"/v1/streams/events/events?follow=1"+tt.query, nil)
			require.NoError(t, err)
			resp, err := f.srv.Client().Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
			require.Equal(t, "application/x-ndjson", resp.Header.Get("Content-Type"))
			sc := bufio.NewScanner(resp.Body)
			next := func() string {
				t.Helper()
				require.True(t, sc.Scan(), "stream ended: %v", sc.Err())
				return sc.Text()
			}

			want := streamLines(t, f.l, "events")[tt.skip:]
			for _, w := range want {
				require.Equal(t, w, next())
			}
			// New events arrive as they commit, one batch at a time.
			for i := range 2 {
				res := flowtest.MustAppend(t, f.l, "events", flowtest.Event("later.event", `{"n":1}`), flowtest.Event("later.event", `{"n":2}`))
				for _, r := range res {
					ev, err := f.l.Get("events", r.Seq)
					require.NoError(t, err)
					require.Equal(t, encode(t, ev), next(), "batch %d", i)
				}
			}
			if tt.limit > 0 {
				require.False(t, sc.Scan(), "the response ends at the limit")
				require.NoError(t, sc.Err())
			} else {
				cancel() // the client goes away
			}
			select {
			case <-returned:
			case <-time.After(testTimeout):
				t.Fatal("the follow handler did not return")
			}
		})
	}
}

func TestConsumers(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	var got []server.Consumer
	f.get(t, "/v1/consumers", &got)
	byName := map[string]server.Consumer{}
	for _, c := range got {
		assert.Equal(t, "events", c.Stream)
		byName[c.Consumer] = c
	}
	require.Contains(t, byName, "counts")
	require.Contains(t, byName, "picky")
	picky := byName["picky"]
	assert.Equal(t, uint64(5), picky.Offset)
	assert.Equal(t, uint64(5), picky.Last)
	assert.Equal(t, uint64(0), picky.Lag)
	assert.Equal(t, 1, picky.DeadLetters)
	assert.False(t, picky.Updated.IsZero())
	assert.Equal(t, 0, byName["counts"].DeadLetters)

	_, _, b := f.do(t, request{path: "/v1/consumers"})
	var raw []map[string]any
	require.NoError(t, json.Unmarshal(b, &raw))
	for _, k := range []string{"stream", "consumer", "offset", "last", "lag", "updated", "dead_letters"} {
		assert.Contains(t, raw[0], k)
	}
}

func TestDeadLetters(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	tests := []struct {
		name  string
		query string
		code  int
		want  int // dead letters
		err   string
	}{
		{"all", "", 200, 1, ""},
		{"stream and consumer", "?stream=events&consumer=picky", 200, 1, ""},
		{"consumer only", "?consumer=picky", 200, 1, ""},
		{"a consumer without any", "?stream=events&consumer=counts", 200, 0, ""},
		{"unknown consumer", "?consumer=nope", 404, 0, `no consumer named "nope"`},
		{"unknown stream", "?stream=nope", 404, 0, `on stream "nope"`},
		{"bad name", "?consumer=a%20b", 400, 0, "consumer:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, b := f.do(t, request{path: "/v1/dlq" + tt.query})
			require.Equal(t, tt.code, code, "%s", b)
			if code != http.StatusOK {
				assert.Contains(t, errorOf(t, b), tt.err)
				return
			}
			var got []server.DeadLetter
			require.NoError(t, json.Unmarshal(b, &got))
			require.Len(t, got, tt.want)
			if tt.want == 0 {
				assert.Equal(t, "[]\n", string(b))
				return
			}
			d := got[0]
			assert.Equal(t, server.DeadLetter{
				Stream: "events", Consumer: "picky", Seq: 3, ID: d.ID, Type: "order.created", Key: "bad",
				Attempts: 1, FirstFailure: d.FirstFailure, LastFailure: d.LastFailure, LastError: "bad key",
			}, d)
			assert.False(t, d.FirstFailure.IsZero())
			var raw []map[string]any
			require.NoError(t, json.Unmarshal(b, &raw))
			for _, k := range []string{"seq", "id", "type", "key", "attempts", "first_failure", "last_failure", "last_error", "redeliver"} {
				assert.Contains(t, raw[0], k)
			}
		})
	}
}

func TestState(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	tests := []struct {
		name  string
		query string
		code  int
		want  []server.StateEntry
		err   string
	}{
		{name: "every key", query: "counts", code: 200, want: []server.StateEntry{
			{Key: "bad", Value: json.RawMessage("1")}, {Key: "o-1", Value: json.RawMessage("2")}, {Key: "o-2", Value: json.RawMessage("1")},
		}},
		{name: "one key", query: "counts?key=o-1", code: 200, want: []server.StateEntry{{Key: "o-1", Value: json.RawMessage("2")}}},
		{name: "a key that is a prefix of others", query: "counts?key=o-", code: 200, want: []server.StateEntry{}},
		{name: "prefix", query: "counts?prefix=o-", code: 200, want: []server.StateEntry{
			{Key: "o-1", Value: json.RawMessage("2")}, {Key: "o-2", Value: json.RawMessage("1")},
		}},
		{name: "a flow without state", query: "picky", code: 404, err: `flow "picky" has no state`},
		{name: "an unknown flow", query: "nope", code: 404, err: `flow "nope" has no state`},
		{name: "key and prefix", query: "counts?key=a&prefix=b", code: 400, err: "exclusive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, b := f.do(t, request{path: "/v1/state/" + tt.query})
			require.Equal(t, tt.code, code, "%s", b)
			if code != http.StatusOK {
				assert.Contains(t, errorOf(t, b), tt.err)
				return
			}
			var got []server.StateEntry
			require.NoError(t, json.Unmarshal(b, &got))
			require.Equal(t, tt.want, got)
		})
	}
}

func TestRuns(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	var runs []server.Run
	f.get(t, "/v1/system/runs", &runs)
	require.Len(t, runs, 1)
	r := runs[0]
	assert.Len(t, r.ID, 26)
	assert.Equal(t, "stopped", r.End)
	assert.False(t, r.Crashed)
	assert.Nil(t, r.Recovery)
	require.NotEmpty(t, r.Transitions)
	assert.Equal(t, "starting", r.Transitions[0].To)
	assert.Equal(t, uint64(1), r.FirstSeq)
	assert.Equal(t, uint64(1), r.Transitions[0].Seq)

	_, _, b := f.do(t, request{path: "/v1/system/runs"})
	var raw []map[string]any
	require.NoError(t, json.Unmarshal(b, &raw))
	for _, k := range []string{"id", "first_seq", "started", "last", "end", "crashed", "transitions"} {
		assert.Contains(t, raw[0], k)
	}
	tr := raw[0]["transitions"].([]any)[0].(map[string]any)
	for _, k := range []string{"seq", "run", "from", "to", "time"} {
		assert.Contains(t, tr, k)
	}
}

// TestReadSideAtRest checks that the read-side views work on a journal
// opened read-only, so that a tool prints at rest what the daemon serves.
func TestReadSideAtRest(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	var live []server.Consumer
	f.get(t, "/v1/consumers", &live)
	path := f.l.Path()
	require.NoError(t, f.l.Close())
	l, err := eventlog.Open(path, &eventlog.Options{ReadOnly: true})
	require.NoError(t, err)
	defer l.Close()
	rest, err := server.Consumers(l)
	require.NoError(t, err)
	require.Len(t, rest, len(live))
	for i := range live {
		assert.True(t, live[i].Updated.Equal(rest[i].Updated))
		live[i].Updated = rest[i].Updated
	}
	assert.Equal(t, live, rest)
	_, err = server.State(l, "counts", "", "")
	require.NoError(t, err)
	_, err = server.DeadLetters(l, "", "")
	require.NoError(t, err)
	_, err = server.Runs(l)
	require.NoError(t, err)
}
