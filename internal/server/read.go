package server

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strconv"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/eventjson"
)

// followBatch is how many events a follow stream writes per flush at most.
const followBatch = 512

// checkEvery is how often, in events, a long read checks that its client
// is still there.
const checkEvery = 1024

// eventsQuery is the query of GET /v1/streams/{stream}/events.
type eventsQuery struct {
	stream string
	from   uint64
	limit  int
	glob   string
	follow bool
}

func parseEventsQuery(r *http.Request) (eventsQuery, error) {
	q := eventsQuery{stream: r.PathValue("stream")}
	if err := eventlog.ValidateName(q.stream); err != nil {
		return q, fmt.Errorf("stream: %s", eventjson.Message(err))
	}
	v := r.URL.Query()
	var err error
	if s := v.Get("from"); s != "" {
		if q.from, err = strconv.ParseUint(s, 10, 64); err != nil {
			return q, fmt.Errorf("from=%q: want a sequence number", s)
		}
	}
	if s := v.Get("limit"); s != "" {
		if q.limit, err = strconv.Atoi(s); err != nil || q.limit < 0 {
			return q, fmt.Errorf("limit=%q: want a number of events, 0 or more (0: no limit)", s)
		}
	}
	q.glob = v.Get("type")
	if _, err := path.Match(q.glob, ""); err != nil {
		return q, fmt.Errorf("type=%q: %v", q.glob, err)
	}
	if s := v.Get("follow"); s != "" {
		if q.follow, err = strconv.ParseBool(s); err != nil {
			return q, fmt.Errorf("follow=%q: want 1 or 0", s)
		}
	}
	return q, nil
}

// events answers the stream's events as JSON lines in `flowrt dump
// --json`'s format, from from (default: the first retained) up to the
// stream's last event when the request came, or, with follow, then waits
// for new ones and writes them as they commit until the client goes away
// or the server shuts down. type keeps the events whose type matches a
// glob; limit stops after that many written events.
//
// An error after the first line is sent cannot change the status: the
// connection is then cut, so the client sees a truncated response rather
// than a clean end.
func (a *api) events(w http.ResponseWriter, r *http.Request) {
	q, err := parseEventsQuery(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	si, err := a.log.Info(q.stream)
	if err != nil {
		a.fail(w, r, fmt.Sprintf("stream %q", q.stream), err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	ew := &eventWriter{q: q, w: w, rc: http.NewResponseController(w)}
	ew.bw = bufio.NewWriterSize(sender{ew}, 64<<10)
	if q.follow {
		err = a.follow(r.Context(), ew)
	} else {
		err = a.scan(r.Context(), ew, si.Last)
	}
	switch {
	case err == nil || errors.Is(err, errLimit):
		if err := ew.flush(); err != nil {
			a.logger.Debug("http: write events", "path", r.URL.Path, "err", err)
		}
	case r.Context().Err() != nil || ew.writeErr != nil:
		// The client went away, or the server is shutting down.
		a.logger.Debug("http: events answer ended early", "path", r.URL.Path, "err", err)
	case !ew.sent:
		a.fail(w, r, fmt.Sprintf("read %q", q.stream), err)
	default:
		a.logger.Error("http: read events failed; cutting the response", "path", r.URL.Path, "err", err)
		panic(http.ErrAbortHandler)
	}
}

// errLimit ends a read that wrote its limit.
var errLimit = errors.New("limit reached")

// scan writes the events up to last.
func (a *api) scan(ctx context.Context, ew *eventWriter, last uint64) error {
	if last < max(ew.q.from, 1) {
		return nil
	}
	n := 0
	for ev, err := range a.log.Scan(ew.q.stream, ew.q.from, last) {
		if err != nil {
			return err
		}
		if n++; n%checkEvery == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if err := ew.write(ev); err != nil {
			return err
		}
	}
	return nil
}

// follow writes the events from the query's start on, as they commit,
// flushing after each batch, until ctx ends.
func (a *api) follow(ctx context.Context, ew *eventWriter) error {
	pos := eventlog.Earliest()
	if ew.q.from > 0 {
		pos = eventlog.AtSeq(ew.q.from)
	}
	sub, err := a.log.Subscribe(ew.q.stream, pos)
	if err != nil {
		return err
	}
	// Send the headers now: the client knows the stream is open before
	// the first event.
	ew.w.WriteHeader(http.StatusOK)
	if err := ew.flush(); err != nil {
		return err
	}
	batch := make([]eventlog.Event, 0, followBatch)
	for {
		batch, err = sub.NextBatch(ctx, batch[:0], followBatch)
		if err != nil {
			return err
		}
		for _, ev := range batch {
			if err := ew.write(ev); err != nil {
				return err
			}
		}
		if err := ew.flush(); err != nil {
			return err
		}
	}
}

// eventWriter writes the events a query selects as JSON lines.
type eventWriter struct {
	q        eventsQuery
	w        http.ResponseWriter
	rc       *http.ResponseController
	bw       *bufio.Writer // over sender
	written  int           // events written
	sent     bool          // the status and headers are sent
	writeErr error         // the first error writing to the client
}

// write writes ev if the query's type glob selects it, and returns
// errLimit once the query's limit is written.
func (ew *eventWriter) write(ev eventlog.Event) error {
	if ew.q.glob != "" {
		if ok, _ := path.Match(ew.q.glob, ev.Type); !ok {
			return nil
		}
	}
	line, err := eventjson.EncodeEvent(ev)
	if err != nil {
		return fmt.Errorf("encode event %d: %w", ev.Seq, err)
	}
	if _, err := ew.bw.Write(line); err != nil {
		return err
	}
	ew.written++
	if ew.q.limit > 0 && ew.written >= ew.q.limit {
		return errLimit
	}
	return nil
}

// flush sends what is buffered to the client.
func (ew *eventWriter) flush() error {
	if err := ew.bw.Flush(); err != nil {
		return err
	}
	ew.sent = true
	extendWrite(ew.w)
	if err := ew.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		ew.writeErr = cmp.Or(ew.writeErr, err)
		return err
	}
	return nil
}

// sender is the eventWriter's buffer's destination: it moves the write
// deadline before each write (see writeStall) and notes that the
// response has started.
type sender struct{ ew *eventWriter }

func (s sender) Write(b []byte) (int, error) {
	s.ew.sent = true
	_ = s.ew.rc.SetWriteDeadline(time.Now().Add(writeStall))
	n, err := s.ew.w.Write(b)
	if err != nil {
		s.ew.writeErr = cmp.Or(s.ew.writeErr, err)
	}
	return n, err
}

// consumers answers every registered consumer (Consumers).
func (a *api) consumers(w http.ResponseWriter, r *http.Request) {
	out, err := Consumers(a.log)
	if err != nil {
		a.fail(w, r, "consumers", err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// deadLetters answers the dead letters of the consumers stream= and
// consumer= select (DeadLetters); 404 when none is registered.
func (a *api) deadLetters(w http.ResponseWriter, r *http.Request) {
	stream, name := r.URL.Query().Get("stream"), r.URL.Query().Get("consumer")
	for what, v := range map[string]string{"stream": stream, "consumer": name} {
		if v == "" {
			continue
		}
		if err := eventlog.ValidateName(v); err != nil {
			writeError(w, http.StatusBadRequest, what+": "+eventjson.Message(err))
			return
		}
	}
	out, err := DeadLetters(a.log, stream, name)
	if err != nil {
		a.fail(w, r, "dead letters", err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// state answers a flow's committed state (State): key= selects one key,
// prefix= the keys starting with it; 404 for a flow without state.
func (a *api) state(w http.ResponseWriter, r *http.Request) {
	flow := r.PathValue("flow")
	if err := eventlog.ValidateName(flow); err != nil {
		writeError(w, http.StatusBadRequest, "flow: "+eventjson.Message(err))
		return
	}
	q := r.URL.Query()
	if q.Has("key") && q.Has("prefix") {
		writeError(w, http.StatusBadRequest, "key= and prefix= are exclusive: give one")
		return
	}
	out, err := State(a.log, flow, q.Get("key"), q.Get("prefix"))
	if err != nil {
		a.fail(w, r, "state", err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// runs answers the supervisor's runs from $system (Runs).
func (a *api) runs(w http.ResponseWriter, r *http.Request) {
	out, err := Runs(a.log)
	if err != nil {
		a.fail(w, r, "runs", err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}
