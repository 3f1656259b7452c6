package command

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"strconv"
	"testing"
	"time"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/eventjson"
	"github.com/flowrt/flowrt/internal/server"
	"github.com/flowrt/flowrt/snapshot"
	"github.com/flowrt/flowrt/supervisor"
	"github.com/stretchr/testify/require"
)

// fakeDaemon stands for `flowrt run --http`: it holds a journal open for
// writing and serves the read side of the HTTP API with the JSON shapes
// docs/CLI.md documents, written here independently of the dump code, and
// publishes itself in <db>.http. It reports flow "totals" with 3 events
// in flight.
type fakeDaemon struct {
	l      *eventlog.Log
	srv    *httptest.Server
	token  string
	closed bool // the journal is closed
}

// daemonOptions configures a fakeDaemon.
type daemonOptions struct {
	token     string // required bearer token, "" for none
	tokenFile string // token_file of the discovery file
}

// startDaemon locks the journal at db and serves it until the test ends.
func startDaemon(t *testing.T, db string, o daemonOptions) *fakeDaemon {
	t.Helper()
	l, err := eventlog.Open(db, nil)
	require.NoError(t, err)
	d := &fakeDaemon{l: l, token: o.token}
	t.Cleanup(func() { require.NoError(t, d.close()) })
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/streams/{stream}/events", d.events)
	mux.HandleFunc("GET /v1/consumers", d.consumers)
	mux.HandleFunc("GET /v1/dlq", d.deadLetters)
	mux.HandleFunc("GET /v1/state/{flow}", d.state)
	mux.HandleFunc("GET /v1/system/runs", d.runs)
	mux.HandleFunc("GET /v1/status", d.status)
	d.srv = httptest.NewServer(d.auth(mux))
	require.NoError(t, server.WriteDiscovery(server.DiscoveryPath(db),
		server.Discovery{Addr: d.srv.Listener.Addr().String(), PID: os.Getpid(), TokenFile: o.tokenFile}))
	return d
}

// close stops the daemon and releases the journal, as a daemon's exit
// does. It is idempotent.
func (d *fakeDaemon) close() error {
	d.stop()
	if d.closed {
		return nil
	}
	d.closed = true
	return d.l.Close()
}

// stop ends the server and every open answer, and removes <db>.http, as a
// daemon's clean stop does. It is idempotent.
func (d *fakeDaemon) stop() {
	d.srv.CloseClientConnections()
	d.srv.Close()
	_ = os.Remove(server.DiscoveryPath(d.l.Path()))
}

func (d *fakeDaemon) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d.token != "" && r.Header.Get("Authorization") != "Bearer "+d.token {
			d.fail(w, http.StatusUnauthorized, errors.New("missing or wrong bearer token"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (d *fakeDaemon) fail(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

func (d *fakeDaemon) reply(w http.ResponseWriter, v any, err error) {
	switch {
	case errors.Is(err, eventlog.ErrNotFound):
		d.fail(w, http.StatusNotFound, err)
	case err != nil:
		d.fail(w, http.StatusInternalServerError, err)
	default:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
}

// events serves GET /v1/streams/{stream}/events: JSON lines; follow=1
// streams new events, flushing each batch, until the client goes.
func (d *fakeDaemon) events(w http.ResponseWriter, r *http.Request) {
	stream, q := r.PathValue("stream"), r.URL.Query()
	si, err := d.l.Info(stream)
	if err != nil {
		d.reply(w, nil, err)
		return
	}
	from, _ := strconv.ParseUint(q.Get("from"), 10, 64)
	limit, _ := strconv.Atoi(q.Get("limit"))
	glob := q.Get("type")
	written := 0
	write := func(ev eventlog.Event) bool {
		if ok, _ := path.Match(glob, ev.Type); glob != "" && !ok {
			return true
		}
		line, err := eventjson.EncodeEvent(ev)
		if err != nil {
			return false
		}
		_, _ = w.Write(line)
		written++
		return limit == 0 || written < limit
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	if q.Get("follow") != "1" {
		if si.Last >= max(from, 1) {
			for ev, err := range d.l.Scan(stream, from, si.Last) {
				if err != nil || !write(ev) {
					break
				}
			}
		}
		return
	}
	sub, err := d.l.Subscribe(stream, eventlog.AtSeq(max(from, 1)))
	if err != nil {
		d.reply(w, nil, err)
		return
	}
	w.WriteHeader(http.StatusOK)
	http.NewResponseController(w).Flush()
	for {
		batch, err := sub.NextBatch(r.Context(), nil, 100)
		if err != nil {
			return
		}
		for _, ev := range batch {
			if !write(ev) {
				return
			}
		}
		if err := http.NewResponseController(w).Flush(); err != nil {
			return
		}
	}
}

// consumers serves GET /v1/consumers.
func (d *fakeDaemon) consumers(w http.ResponseWriter, _ *http.Request) {
	type row struct {
		Stream      string    `json:"stream"`
		Consumer    string    `json:"consumer"`
		Offset      uint64    `json:"offset"`
		Last        uint64    `json:"last"`
		Lag         uint64    `json:"lag"`
		Updated     time.Time `json:"updated"`
		DeadLetters int       `json:"dead_letters"`
	}
	infos, err := d.l.Consumers("")
	out := []row{}
	for _, ci := range infos {
		dls, derr := consumer.DeadLetters(d.l, ci.Stream, ci.Name, consumer.Range{})
		err = errors.Join(err, derr)
		out = append(out, row{ci.Stream, ci.Name, ci.Offset, ci.Offset + ci.Lag, ci.Lag, ci.Updated, len(dls)})
	}
	d.reply(w, out, err)
}

// deadLetters serves GET /v1/dlq?stream=S&consumer=C.
func (d *fakeDaemon) deadLetters(w http.ResponseWriter, r *http.Request) {
	type row struct {
		Stream       string    `json:"stream"`
		Consumer     string    `json:"consumer"`
		Seq          uint64    `json:"seq"`
		ID           string    `json:"id"`
		Type         string    `json:"type"`
		Key          string    `json:"key"`
		Attempts     int       `json:"attempts"`
		FirstFailure time.Time `json:"first_failure"`
		LastFailure  time.Time `json:"last_failure"`
		LastError    string    `json:"last_error"`
		Redeliver    bool      `json:"redeliver"`
	}
	stream, name := r.URL.Query().Get("stream"), r.URL.Query().Get("consumer")
	infos, err := d.l.Consumers(stream)
	out, matched := []row{}, false
	for _, ci := range infos {
		if name != "" && ci.Name != name {
			continue
		}
		matched = true
		dls, derr := consumer.DeadLetters(d.l, ci.Stream, ci.Name, consumer.Range{})
		err = errors.Join(err, derr)
		for _, dl := range dls {
			out = append(out, row{ci.Stream, ci.Name, dl.Seq, dl.ID.String(), dl.Type, dl.Key, dl.Attempts,
				dl.FirstFailure, dl.LastFailure, dl.LastError, dl.Redeliver})
		}
	}
	if err == nil && !matched {
		err = eventlog.ErrNotFound
	}
	d.reply(w, out, err)
}

// state serves GET /v1/state/{flow}?key=K&prefix=P.
func (d *fakeDaemon) state(w http.ResponseWriter, r *http.Request) {
	type row struct {
		Key   string          `json:"key"`
		Value json.RawMessage `json:"value"`
	}
	flow, key, prefix := r.PathValue("flow"), r.URL.Query().Get("key"), r.URL.Query().Get("prefix")
	if _, ok, err := snapshot.ReadMeta(d.l, flow); err != nil || !ok {
		d.reply(w, nil, errors.Join(err, eventlog.ErrNotFound))
		return
	}
	if key != "" {
		prefix = key
	}
	entries, err := snapshot.Read(d.l, flow, prefix)
	out := []row{}
	for _, e := range entries {
		if key == "" || e.Key == key {
			out = append(out, row{e.Key, eventjson.EncodeData(e.Value)})
		}
	}
	d.reply(w, out, err)
}

// runs serves GET /v1/system/runs: supervisor.Runs with snake_case keys,
// transitions and recovery as the supervisor's JSON writes them.
func (d *fakeDaemon) runs(w http.ResponseWriter, _ *http.Request) {
	type run struct {
		ID          string                  `json:"id"`
		FirstSeq    uint64                  `json:"first_seq"`
		Started     time.Time               `json:"started"`
		Last        time.Time               `json:"last"`
		End         string                  `json:"end"`
		Crashed     bool                    `json:"crashed"`
		Reason      string                  `json:"reason,omitempty"`
		Transitions []supervisor.Transition `json:"transitions"`
		Recovery    *supervisor.Recovery    `json:"recovery,omitempty"`
	}
	runs, err := supervisor.Runs(d.l)
	out := []run{}
	for _, r := range runs {
		out = append(out, run{r.ID, r.FirstSeq, r.Started, r.Last, r.End.String(), r.Crashed, r.Reason, r.Transitions, r.Recovery})
	}
	d.reply(w, out, err)
}

// status serves GET /v1/status.
func (d *fakeDaemon) status(w http.ResponseWriter, _ *http.Request) {
	type flow struct {
		Name      string `json:"name"`
		Stream    string `json:"stream"`
		State     string `json:"state"`
		Committed uint64 `json:"committed"`
		InFlight  int64  `json:"in_flight"`
	}
	type stream struct {
		Name  string `json:"name"`
		First uint64 `json:"first"`
		Last  uint64 `json:"last"`
		Count uint64 `json:"count"`
		Bytes uint64 `json:"bytes"`
	}
	infos, err := d.l.Streams()
	streams := []stream{}
	for _, si := range infos {
		streams = append(streams, stream{si.Name, si.First, si.Last, si.Count, si.Bytes})
	}
	d.reply(w, map[string]any{
		"run": "01JRUNNING0000000000000000", "state": "running",
		"flows":   []flow{{Name: "totals", Stream: "events", State: "running", Committed: 6, InFlight: 3}},
		"streams": streams,
	}, err)
}
