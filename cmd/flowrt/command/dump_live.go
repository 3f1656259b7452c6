package command

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/eventjson"
	"github.com/flowrt/flowrt/internal/server"
)

// How the dump commands find and reach a daemon that holds the journal.
const (
	// quickLockTimeout bounds the first open when a discovery file exists:
	// a daemon probably holds the journal, so waiting the whole
	// --lock-timeout would only delay the answer.
	quickLockTimeout = 50 * time.Millisecond
	// liveDialTimeout and liveHeaderTimeout bound how long a request waits
	// for the daemon to accept it and to start answering.
	liveDialTimeout   = 5 * time.Second
	liveHeaderTimeout = 30 * time.Second
	// maxErrorBody bounds how much of an error answer is read.
	maxErrorBody = 64 << 10
)

// readLiveFile reads the discovery file of the journal db. It returns nil
// and no error when there is none.
func readLiveFile(db string) (*server.Discovery, error) {
	path := server.DiscoveryPath(db)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read daemon address: %w", err)
	}
	var f server.Discovery
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("read daemon address from %s: %w", path, err)
	}
	if f.Addr == "" {
		return nil, fmt.Errorf("read daemon address from %s: no \"addr\"", path)
	}
	return &f, nil
}

// InUseError reports that another process holds the journal and has not
// published an HTTP address to read it through. It wraps the *LockedError,
// so errors.Is(err, eventlog.ErrLocked) holds.
type InUseError struct {
	Path string
	Err  error
}

// Error says what holds the journal and what to do.
func (e *InUseError) Error() string {
	return fmt.Sprintf("journal %s is in use by another process (flowrt run?); start that process with --http to read it while it runs, or stop it", e.Path)
}

// Unwrap returns the lock error.
func (e *InUseError) Unwrap() error { return e.Err }

// source is where a dump command reads: the journal itself, opened
// read-only, or the daemon that holds it open. Exactly one is set.
type source struct {
	log  *eventlog.Log
	live *liveClient
}

// Close closes the journal, if the source is one.
func (s *source) Close() error {
	if s.log != nil {
		return s.log.Close()
	}
	return nil
}

// openSource opens the journal read-only or, when a daemon holds it and
// published its address, connects to that daemon. A journal held by a
// process that published none is an *InUseError. The lock wait is bounded
// by --lock-timeout.
func openSource(c *dumpCommon) (*source, error) {
	l, info, err := openOrFindDaemon(c.db, eventlog.Options{ReadOnly: true, LockTimeout: c.lockTimeout})
	switch {
	case err != nil:
		return nil, err
	case l != nil:
		return &source{log: l}, nil
	}
	lc, err := newLiveClient(c, info)
	if err != nil {
		return nil, err
	}
	return &source{live: lc}, nil
}

// openOrFindDaemon opens the journal or, when a daemon holds it and has
// published its address in the discovery file, returns that file instead
// (and a nil journal). A journal held by a process that published none is
// an *InUseError. With a discovery file present the lock wait is short:
// the holder is most likely that daemon.
func openOrFindDaemon(db string, opts eventlog.Options) (*eventlog.Log, *server.Discovery, error) {
	info, err := readLiveFile(db)
	if err != nil {
		return nil, nil, err
	}
	if info != nil {
		opts.LockTimeout = min(opts.LockTimeout, quickLockTimeout)
	}
	l, lockErr := openJournal(db, &opts)
	if lockErr == nil {
		return l, nil, nil
	}
	if !errors.Is(lockErr, eventlog.ErrLocked) {
		return nil, nil, lockErr
	}
	if info == nil { // the daemon may have written it while we waited
		if info, err = readLiveFile(db); err != nil {
			return nil, nil, err
		}
	}
	if info == nil {
		return nil, nil, &InUseError{Path: db, Err: lockErr}
	}
	return nil, info, nil
}

// liveClient reads a journal through the HTTP read side of the daemon
// that holds it (`flowrt run --http`). It is safe for concurrent use.
type liveClient struct {
	db    string
	file  server.Discovery
	base  string // http://host:port
	token string
	http  *http.Client
}

// newLiveClient returns a client for the daemon described by f. The token
// is --token, else the contents of --token-file, else those of the file
// the daemon named.
func newLiveClient(c *dumpCommon, f *server.Discovery) (*liveClient, error) {
	token := c.token
	tokenFile := c.tokenFile
	if token == "" && tokenFile == "" {
		tokenFile = f.TokenFile
	}
	if token == "" && tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("read the daemon's token: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	host, port, err := net.SplitHostPort(f.Addr)
	if err != nil {
		return nil, fmt.Errorf("daemon address %q in %s: %w", f.Addr, server.DiscoveryPath(c.db), err)
	}
	// A daemon listening on every interface is reached on loopback.
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	tr := &http.Transport{
		Proxy:                 nil, // a daemon of a local journal is never behind a proxy
		DialContext:           (&net.Dialer{Timeout: liveDialTimeout}).DialContext,
		ResponseHeaderTimeout: liveHeaderTimeout,
	}
	return &liveClient{
		db:    c.db,
		file:  *f,
		base:  "http://" + net.JoinHostPort(host, port),
		token: token,
		http:  &http.Client{Transport: tr},
	}, nil
}

// liveStatusError is an error answer from the daemon.
type liveStatusError struct {
	Addr    string
	Method  string // GET when empty
	Path    string
	Status  int
	Message string // the "error" of the answer's JSON body, or its text
}

// Error names the daemon, the request and the answer.
func (e *liveStatusError) Error() string {
	method := e.Method
	if method == "" {
		method = http.MethodGet
	}
	msg := fmt.Sprintf("daemon at %s: %s %s: %d %s", e.Addr, method, e.Path, e.Status, http.StatusText(e.Status))
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.Status == http.StatusUnauthorized {
		msg += " (give the daemon's token with --token or --token-file)"
	}
	return msg
}

// liveConnError reports that the daemon named by the discovery file did
// not answer.
type liveConnError struct {
	DB   string
	File server.Discovery
	Err  error
}

// Error names the daemon and says what to do about a stale address.
func (e *liveConnError) Error() string {
	return fmt.Sprintf("journal %s is in use by another process, and the daemon address %s in %s (pid %d) does not answer: %v; if that daemon is gone, remove %s",
		e.DB, e.File.Addr, server.DiscoveryPath(e.DB), e.File.PID, e.Err, server.DiscoveryPath(e.DB))
}

// Unwrap returns the transport error.
func (e *liveConnError) Unwrap() error { return e.Err }

// get sends GET path?query and returns the response of a 2xx answer, to be
// closed by the caller. Other answers are a *liveStatusError; a daemon
// that does not answer is a *liveConnError.
func (c *liveClient) get(ctx context.Context, path string, query url.Values) (*http.Response, error) {
	return c.do(ctx, http.MethodGet, path, query, "", nil)
}

// do sends a request to the daemon and returns its 2xx answer. Other
// answers are a *liveStatusError; a daemon that does not answer is a
// *liveConnError.
func (c *liveClient) do(ctx context.Context, method, path string, query url.Values, contentType string, body io.Reader) (*http.Response, error) {
	target := c.base + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, fmt.Errorf("daemon request: %w", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &liveConnError{DB: c.db, File: c.file, Err: err}
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var answer struct {
		Error string `json:"error"`
	}
	msg := strings.TrimSpace(string(data))
	if json.Unmarshal(data, &answer) == nil && answer.Error != "" {
		msg = answer.Error
	}
	e := &liveStatusError{Addr: c.file.Addr, Path: path, Status: resp.StatusCode, Message: msg}
	if method != http.MethodGet {
		e.Method = method
	}
	return nil, e
}

// getJSON sends GET path?query and decodes the JSON answer into v.
func (c *liveClient) getJSON(ctx context.Context, path string, query url.Values, v any) error {
	resp, err := c.get(ctx, path, query)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("daemon at %s: GET %s: decode the answer: %w", c.file.Addr, path, err)
	}
	return nil
}

// isLiveNotFound reports whether err is the daemon's 404 answer.
func isLiveNotFound(err error) bool {
	var se *liveStatusError
	return errors.As(err, &se) && se.Status == http.StatusNotFound
}

// eventQuery asks for the events of a stream, as `flowrt dump` does.
type eventQuery struct {
	stream   string
	from     uint64 // 0: the first retained event
	limit    int    // 0: all
	typeGlob string
	follow   bool // keep the answer open and stream new events
}

// liveEvents is an answer of GET /v1/streams/{stream}/events: JSON lines
// in `flowrt dump --json`'s format. It is not safe for concurrent use.
type liveEvents struct {
	resp *http.Response
	r    *bufio.Reader
	addr string
}

// events asks the daemon for the events of q.stream. A missing stream is
// an error for which isLiveNotFound holds.
func (c *liveClient) events(ctx context.Context, q eventQuery) (*liveEvents, error) {
	query := url.Values{}
	if q.from > 0 {
		query.Set("from", strconv.FormatUint(q.from, 10))
	}
	if q.limit > 0 {
		query.Set("limit", strconv.Itoa(q.limit))
	}
	if q.typeGlob != "" {
		query.Set("type", q.typeGlob)
	}
	if q.follow {
		query.Set("follow", "1")
	}
	resp, err := c.get(ctx, "/v1/streams/"+url.PathEscape(q.stream)+"/events", query)
	if err != nil {
		return nil, err
	}
	return &liveEvents{resp: resp, r: bufio.NewReader(resp.Body), addr: c.file.Addr}, nil
}

// next returns the next event of the answer, and whether more are already
// buffered (a caller flushes its output when none is). It returns io.EOF
// at the answer's end, and a *liveCutError when the answer breaks off.
func (le *liveEvents) next() (eventlog.Event, bool, error) {
	for {
		line, err := le.r.ReadBytes('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				if len(bytes.TrimSpace(line)) == 0 {
					return eventlog.Event{}, false, io.EOF
				}
				err = io.ErrUnexpectedEOF // a line without its end
			}
			return eventlog.Event{}, false, &liveCutError{Addr: le.addr, Err: err}
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue // a blank keep-alive line
		}
		ev, err := decodeEventLine(line)
		if err != nil {
			return eventlog.Event{}, false, fmt.Errorf("daemon at %s: %w", le.addr, err)
		}
		return ev, le.r.Buffered() > 0, nil
	}
}

// liveCutError reports an answer of the daemon that broke off: the daemon
// stopped or failed while it answered.
type liveCutError struct {
	Addr string
	Err  error
}

// Error names the daemon and the cause.
func (e *liveCutError) Error() string {
	return fmt.Sprintf("daemon at %s cut its answer short: %v", e.Addr, e.Err)
}

// Unwrap returns the cause.
func (e *liveCutError) Unwrap() error { return e.Err }

// Close ends the answer.
func (le *liveEvents) Close() error { return le.resp.Body.Close() }

// decodeEventLine parses one line of `flowrt dump --json` back into the
// event it describes.
func decodeEventLine(line []byte) (eventlog.Event, error) {
	var je jsonEvent
	if err := json.Unmarshal(line, &je); err != nil {
		return eventlog.Event{}, fmt.Errorf("bad event line %.80q: %w", line, err)
	}
	ev := eventlog.Event{Stream: je.Stream, Seq: je.Seq, Type: je.Type, Key: je.Key, Headers: je.Headers}
	var err error
	if je.ID != "" {
		if ev.ID, err = eventlog.ParseID(je.ID); err != nil {
			return ev, fmt.Errorf("event %d: id: %w", je.Seq, err)
		}
	}
	if je.Time != "" {
		if ev.Time, err = time.Parse(time.RFC3339Nano, je.Time); err != nil {
			return ev, fmt.Errorf("event %d: time: %w", je.Seq, err)
		}
	}
	if je.Data != nil {
		if ev.Data, err = eventjson.DecodeData(je.Data); err != nil {
			return ev, fmt.Errorf("event %d: %w", je.Seq, err)
		}
	}
	return ev, nil
}

// liveStatus is the part of GET /v1/status the dump commands use.
type liveStatus struct {
	Run   string `json:"run"`
	State string `json:"state"`
	Flows []struct {
		Name     string `json:"name"`
		Stream   string `json:"stream"`
		InFlight int64  `json:"in_flight"`
	} `json:"flows"`
	Streams []struct {
		Name     string   `json:"name"`
		First    uint64   `json:"first"`
		Last     uint64   `json:"last"`
		Count    uint64   `json:"count"`
		Bytes    uint64   `json:"bytes"`
		LastTime wireTime `json:"last_time,omitzero"`
	} `json:"streams"`
}

// status returns the daemon's /v1/status.
func (c *liveClient) status(ctx context.Context) (liveStatus, error) {
	var st liveStatus
	err := c.getJSON(ctx, "/v1/status", nil, &st)
	return st, err
}

// consumers returns GET /v1/consumers.
func (c *liveClient) consumers(ctx context.Context) ([]wireConsumer, error) {
	var out []wireConsumer
	err := c.getJSON(ctx, "/v1/consumers", nil, &out)
	return out, err
}

// deadLetters returns GET /v1/dlq for one consumer, each row naming it.
func (c *liveClient) deadLetters(ctx context.Context, stream, name string) ([]wireDeadLetter, error) {
	var out []wireDeadLetter
	err := c.getJSON(ctx, "/v1/dlq", url.Values{"stream": {stream}, "consumer": {name}}, &out)
	for i := range out {
		out[i].Stream, out[i].Consumer = stream, name
	}
	return out, err
}

// state returns GET /v1/state/{flow}.
func (c *liveClient) state(ctx context.Context, flow, key, prefix string) ([]wireEntry, error) {
	query := url.Values{}
	if key != "" {
		query.Set("key", key)
	}
	if prefix != "" {
		query.Set("prefix", prefix)
	}
	var out []wireEntry
	err := c.getJSON(ctx, "/v1/state/"+url.PathEscape(flow), query, &out)
	return out, err
}

// runs returns GET /v1/system/runs.
func (c *liveClient) runs(ctx context.Context) ([]wireRun, error) {
	var out []wireRun
	err := c.getJSON(ctx, "/v1/system/runs", nil, &out)
	return out, err
}
