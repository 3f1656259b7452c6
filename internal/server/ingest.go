package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/eventjson"
)

// maxReportedLines is how many bad lines a 400 answer lists.
const maxReportedLines = 1000

// IngestResult is one event's result in an ingest answer.
type IngestResult struct {
	Seq       uint64 `json:"seq"` // for a duplicate, the original's
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate"`
}

// IngestAnswer is the answer of a successful ingest.
type IngestAnswer struct {
	Results []IngestResult `json:"results"`
}

// LineProblem is one bad line in a 400 ingest answer.
type LineProblem struct {
	Line  int    `json:"line"`
	Error string `json:"error"`
}

// IngestRefusal is the answer of an ingest refused for bad lines: nothing
// was appended. Lines lists at most 1000 of them; Total counts them all.
type IngestRefusal struct {
	Error string        `json:"error"`
	Lines []LineProblem `json:"lines"`
	Total int           `json:"total"`
}

// ingest appends the events of the body, one JSON object (which may span
// several lines) or JSON lines in `flowrt append`'s format, to the
// stream, all or none, and answers once
// they are on disk. With an Idempotency-Key header K, an event without an
// id gets eventlog.DeriveID(K, strconv.Itoa(i)), i its 0-based position
// among the request's events, so a retried request appends nothing again.
func (a *api) ingest(w http.ResponseWriter, r *http.Request) {
	stream := r.PathValue("stream")
	if err := eventlog.ValidateName(stream); err != nil {
		writeError(w, http.StatusBadRequest, "stream: "+eventjson.Message(err))
		return
	}
	if eventlog.IsReserved(stream) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("stream %q: names beginning with \"$\" are reserved for flowrt", stream))
		return
	}
	if r.ContentLength > a.opts.MaxBody {
		a.tooLarge(w)
		return
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyReadTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.opts.MaxBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		a.tooLarge(w)
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, "read body: "+err.Error())
		return
	}
	lines, err := eventjson.ParseLines(bytes.NewReader(oneLine(body)), "body", stream, &eventjson.ParseOptions{
		MaxEventBytes: a.opts.MaxEventBytes,
		MaxReported:   maxReportedLines,
	})
	var bad *eventjson.InputError
	switch {
	case errors.As(err, &bad):
		refusal := IngestRefusal{Error: bad.Error() + "\nnothing appended", Lines: make([]LineProblem, len(bad.Lines)), Total: bad.Total}
		for i, le := range bad.Lines {
			refusal.Lines[i] = LineProblem{Line: le.Line, Error: le.Reason()}
		}
		writeJSON(w, http.StatusBadRequest, refusal)
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, eventjson.Message(err))
		return
	}

	idemKey := r.Header.Get("Idempotency-Key")
	events := make([]eventlog.Event, len(lines))
	for i, ln := range lines {
		events[i] = ln.Event
		if idemKey != "" && events[i].ID.IsZero() {
			events[i].ID = eventlog.DeriveID(idemKey, strconv.Itoa(i))
		}
	}
	answer := IngestAnswer{Results: make([]IngestResult, 0, len(events))}
	if len(events) > 0 {
		res, err := a.log.Append(stream, events...)
		if err != nil {
			var ee *eventlog.EventError
			if errors.As(err, &ee) || errors.Is(err, eventlog.ErrInvalidEvent) || errors.Is(err, eventlog.ErrEventTooLarge) {
				writeError(w, http.StatusBadRequest, "nothing appended: "+eventjson.Message(err))
				return
			}
			a.fail(w, r, fmt.Sprintf("append to %q", stream), err)
			return
		}
		for _, res := range res {
			answer.Results = append(answer.Results, IngestResult{Seq: res.Seq, ID: res.ID.String(), Duplicate: res.Duplicate})
		}
	}
	writeJSON(w, http.StatusOK, answer)
}

// oneLine returns body as one line when it is a single JSON object
// written over several lines (pretty-printed), else body as it is: JSON
// lines.
func oneLine(body []byte) []byte {
	trimmed := bytes.TrimSpace(bytes.TrimPrefix(body, []byte(utf8BOM)))
	if len(trimmed) == 0 || trimmed[0] != '{' || !bytes.ContainsAny(trimmed, "\r\n") || !json.Valid(trimmed) {
		return body
	}
	var buf bytes.Buffer
	if json.Compact(&buf, trimmed) != nil {
		return body
	}
	return buf.Bytes()
}

// utf8BOM may start a body.
const utf8BOM = "\xEF\xBB\xBF"

func (a *api) tooLarge(w http.ResponseWriter) {
	// The rest of the body is not read: close the connection rather than
	// drain it.
	w.Header().Set("Connection", "close")
	writeError(w, http.StatusRequestEntityTooLarge,
		fmt.Sprintf("request body is larger than %d bytes (--max-body); nothing appended", a.opts.MaxBody))
}
