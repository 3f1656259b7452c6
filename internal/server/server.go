package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/eventjson"
	"github.com/flowrt/flowrt/runtime"
)

// DefaultMaxBody is the default limit on an ingest request's body, in
// bytes: 16 MiB.
const DefaultMaxBody = 16 << 20

// writeStall is how long one write of a response may block before the
// connection is given up: a client that stops reading does not hold a
// handler forever. Each write moves the deadline, so long responses and
// follow streams are not cut.
const writeStall = 30 * time.Second

// bodyReadTimeout bounds reading an ingest request's body.
const bodyReadTimeout = time.Minute

// Options configures the API. A nil *Options, and every zero field, means
// the default in the field's comment, except Runtime, which is required.
type Options struct {
	// Runtime is the runtime whose health, status, topology and metrics
	// are served. Required.
	Runtime *runtime.Runtime

	// Token, when not empty, is the bearer token every endpoint but
	// /healthz and /readyz requires. Default: none, no authentication.
	Token string

	// MaxBody is the largest ingest request body, in bytes; a larger one
	// is refused with 413. Default DefaultMaxBody (16 MiB).
	MaxBody int64

	// MaxEventBytes is the largest encoded event, as the journal's
	// eventlog.Options.MaxEventBytes. Default: eventlog's default (1 MiB).
	MaxEventBytes int

	// Logger receives request logs (debug) and failures. Default: discard.
	Logger *slog.Logger
}

// api holds the handlers' dependencies. It is safe for concurrent use.
type api struct {
	log     *eventlog.Log
	rt      *runtime.Runtime
	opts    Options
	token   [sha256.Size]byte // hash of the token, compared in constant time
	logger  *slog.Logger
	metrics http.Handler
}

// New returns the API over the open journal l. The handler reads the
// runtime at each request, so it may serve before the runtime starts
// (/readyz answers 503 until it runs) and after it stops; it must not be
// used once l is closed.
func New(l *eventlog.Log, opts *Options) (http.Handler, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	switch {
	case l == nil:
		return nil, errors.New("flowrt/server: no journal")
	case o.Runtime == nil:
		return nil, errors.New("flowrt/server: Options.Runtime is required")
	case o.MaxBody < 0:
		return nil, fmt.Errorf("flowrt/server: MaxBody must not be negative (got %d)", o.MaxBody)
	case o.MaxEventBytes < 0:
		return nil, fmt.Errorf("flowrt/server: MaxEventBytes must not be negative (got %d)", o.MaxEventBytes)
	}
	if o.MaxBody == 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.MaxEventBytes == 0 {
		o.MaxEventBytes = eventlog.DefaultOptions().MaxEventBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{
		o.Runtime.Collector(),
		NewJournalCollector(l),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("flowrt/server: register metrics: %w", err)
		}
	}
	a := &api{log: l, rt: o.Runtime, opts: o, logger: o.Logger}
	if o.Token != "" {
		a.token = sha256.Sum256([]byte(o.Token))
	}
	a.metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      promLogger{o.Logger},
		ErrorHandling: promhttp.ContinueOnError,
	})

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.HandleFunc("GET /metrics", a.serveMetrics)
	mux.HandleFunc("GET /v1/status", a.status)
	mux.HandleFunc("GET /v1/topology", a.topology)
	mux.HandleFunc("POST /v1/streams/{stream}/events", a.ingest)
	mux.HandleFunc("GET /v1/streams/{stream}/events", a.events)
	mux.HandleFunc("GET /v1/consumers", a.consumers)
	mux.HandleFunc("GET /v1/dlq", a.deadLetters)
	mux.HandleFunc("GET /v1/state/{flow}", a.state)
	mux.HandleFunc("GET /v1/system/runs", a.runs)
	mux.HandleFunc("POST /v1/backup", a.backup)
	return a.logRequests(a.authenticate(jsonErrors(mux))), nil
}

// open lists the endpoints served without a token: a load balancer or
// supervisor probes them.
var open = map[string]bool{"/healthz": true, "/readyz": true}

// authenticate refuses, with 401, a request without the configured bearer
// token, except to the open endpoints.
func (a *api) authenticate(next http.Handler) http.Handler {
	if a.opts.Token == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if open[r.URL.Path] || a.authorized(r) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="flowrt"`)
		writeError(w, http.StatusUnauthorized, "missing or wrong bearer token (Authorization: Bearer <token>)")
	})
}

// authorized reports whether r carries the token. The comparison takes
// the same time whatever the token sent.
func (a *api) authorized(r *http.Request) bool {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(got[:], a.token[:]) == 1
}

// jsonErrors answers a request no route takes (404, or 405 for a known
// path with another method) with a JSON error instead of ServeMux's text.
func jsonErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		rec := &headerRecorder{header: http.Header{}, code: http.StatusOK}
		h.ServeHTTP(rec, r)
		if allow := rec.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		msg := "no such endpoint: " + r.URL.Path
		if rec.code == http.StatusMethodNotAllowed {
			msg = fmt.Sprintf("method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, rec.header.Get("Allow"))
		}
		writeError(w, rec.code, msg)
	})
}

// headerRecorder keeps the status and headers a handler writes, and drops
// its body.
type headerRecorder struct {
	header http.Header
	code   int
}

func (h *headerRecorder) Header() http.Header         { return h.header }
func (h *headerRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (h *headerRecorder) WriteHeader(code int)        { h.code = code }

// logRequests logs each request at debug level, with its status and
// duration.
func (a *api) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		a.logger.LogAttrs(r.Context(), slog.LevelDebug, "http request",
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", sw.status()), slog.Duration("took", time.Since(start)),
			slog.String("remote", r.RemoteAddr))
	})
}

// statusWriter records the status a handler sends. Unwrap lets
// http.ResponseController reach the connection (Flush, deadlines).
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusWriter) status() int {
	if s.code == 0 {
		return http.StatusOK
	}
	return s.code
}

// errorBody is every error answer.
type errorBody struct {
	Error string `json:"error"`
}

// writeError answers with status and {"error": msg}.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}

// writeJSON answers with status and v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(errorBody{Error: "encode answer: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	extendWrite(w)
	_, _ = w.Write(append(b, '\n'))
}

// extendWrite moves the connection's write deadline writeStall ahead. A
// writer that cannot take deadlines (a test recorder) is left as it is.
func extendWrite(w http.ResponseWriter) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(writeStall))
}

// fail answers with an error from the journal or the runtime: 404 for
// eventlog.ErrNotFound, 503 when the journal is closed, 507 when the disk
// is full, 500 otherwise (logged).
func (a *api) fail(w http.ResponseWriter, r *http.Request, what string, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, eventlog.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, eventlog.ErrClosed):
		status = http.StatusServiceUnavailable
	case errors.Is(err, eventlog.ErrDiskFull):
		status = http.StatusInsufficientStorage
	}
	if status >= 500 {
		a.logger.Error("http request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeError(w, status, what+": "+eventjson.Message(err))
}

// promLogger passes promhttp's errors to the logger.
type promLogger struct{ l *slog.Logger }

func (p promLogger) Println(v ...any) { p.l.Warn("metrics: " + fmt.Sprint(v...)) }

func (a *api) serveMetrics(w http.ResponseWriter, r *http.Request) {
	extendWrite(w)
	a.metrics.ServeHTTP(w, r)
}
