package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/flowrt/flowrt/consumer"
)

// HTTPOptions configures an HTTP sink. A zero field means the default in
// its comment.
type HTTPOptions struct {
	// URL is where deliveries are POSTed. Required: an absolute http or
	// https URL.
	URL string

	// Timeout bounds each request, including reading the response.
	// Default 10s.
	Timeout time.Duration

	// Headers are extra request headers. They must not name the headers
	// the sink sets itself (Content-Type, Idempotency-Key, Flowrt-Flow,
	// Flowrt-Source-Seq).
	Headers map[string]string

	// Client sends the requests. Default: a client with Timeout that
	// follows only redirects that keep the POST (307, 308).
	Client *http.Client
}

// The headers an HTTP sink sets on every request.
const (
	headerIdempotencyKey = "Idempotency-Key"
	headerSinkFlow       = "Flowrt-Flow"
	headerSinkSourceSeq  = "Flowrt-Source-Seq"
	headerContentType    = "Content-Type"
)

// httpErrorBody is how much of an error response's body an error quotes.
const httpErrorBody = 256

// httpDrainLimit is how much of a response body is read to reuse the
// connection; a longer body is abandoned with its connection.
const httpDrainLimit = 64 << 10

// HTTPSink returns a sink that POSTs each delivery as JSON
// (Delivery.MarshalJSON). A 2xx response is success. 5xx, 408, 429 and
// network errors (including the timeout) are retryable errors; any other
// status (other 4xx, and 3xx not followed) is a consumer.Permanent error,
// so the event is dead-lettered. Errors quote the status and the start of
// the response body.
//
// Each request carries Content-Type: application/json and
// Idempotency-Key: <Delivery.ID>, plus Flowrt-Flow (the flow) and
// Flowrt-Source-Seq (the source event's sequence), so the receiver can
// deduplicate the redeliveries of at-least-once delivery.
//
// HTTPSink returns an error for a bad URL or options. The sink is safe for
// concurrent use and is an io.Closer that closes the idle connections of
// its default client.
func HTTPSink(o HTTPOptions) (Sink, error) {
	var errs []error
	u, err := url.Parse(o.URL)
	switch {
	case o.URL == "":
		errs = append(errs, errors.New("URL is required"))
	case err != nil:
		errs = append(errs, fmt.Errorf("URL: %w", err))
	case u.Scheme != "http" && u.Scheme != "https":
		errs = append(errs, fmt.Errorf("URL %q: scheme must be http or https", u.Redacted()))
	case u.Host == "":
		errs = append(errs, fmt.Errorf("URL %q: no host", u.Redacted()))
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("Timeout must not be negative (got %v)", o.Timeout))
	}
	for name, value := range o.Headers {
		if err := checkHeader(name, value); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("flowrt/runtime: http sink: %w", errors.Join(errs...))
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	s := &httpSink{url: u.String(), shown: u.Redacted(), timeout: o.Timeout, client: o.Client, header: http.Header{}}
	for name, value := range o.Headers {
		s.header.Set(name, value)
	}
	if s.client == nil {
		s.client = &http.Client{CheckRedirect: keepPost} // Deliver bounds each request by the timeout
		s.own = true
	}
	return s, nil
}

// keepPost follows a redirect only while the request stays a POST (307
// and 308): a 301, 302 or 303 would turn it into a GET without the body.
func keepPost(req *http.Request, via []*http.Request) error {
	if req.Method != http.MethodPost {
		return http.ErrUseLastResponse
	}
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	return nil
}

// checkHeader refuses an extra header the sink cannot send as given.
func checkHeader(name, value string) error {
	if name == "" {
		return errors.New("Headers: empty header name")
	}
	for _, c := range name {
		if c > 0x7e || c <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, c) {
			return fmt.Errorf("Headers: invalid header name %q", name)
		}
	}
	switch http.CanonicalHeaderKey(name) {
	case headerContentType, headerIdempotencyKey, headerSinkFlow, headerSinkSourceSeq:
		return fmt.Errorf("Headers: %s is set by the sink", http.CanonicalHeaderKey(name))
	}
	if strings.ContainsAny(value, "\r\n\x00") {
		return fmt.Errorf("Headers: value of %s contains a control character", name)
	}
	return nil
}

type httpSink struct {
	url     string
	shown   string // the URL without its password, for errors
	timeout time.Duration
	header  http.Header
	client  *http.Client
	own     bool // the client is the sink's own
}

func (s *httpSink) Deliver(ctx context.Context, d Delivery) error {
	body, err := d.MarshalJSON()
	if err != nil {
		return consumer.Permanent(fmt.Errorf("flowrt/runtime: http sink: encode delivery %s: %w", d.ID, err))
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("flowrt/runtime: http sink: new request: %w", err)
	}
	req.Header = s.header.Clone()
	req.Header.Set(headerContentType, "application/json")
	req.Header.Set(headerIdempotencyKey, d.ID)
	req.Header.Set(headerSinkFlow, d.Flow)
	req.Header.Set(headerSinkSourceSeq, strconv.FormatUint(d.Event.Seq, 10))

	resp, err := s.client.Do(req)
	if err != nil {
		// A network error or the timeout: retryable. *url.Error names
		// the URL without its password.
		return fmt.Errorf("flowrt/runtime: http sink: delivery %s: %w", d.ID, err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, httpDrainLimit))
		_ = resp.Body.Close()
	}()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	prefix, _ := io.ReadAll(io.LimitReader(resp.Body, httpErrorBody))
	err = fmt.Errorf("flowrt/runtime: http sink: delivery %s: POST %s: %s: %q", d.ID, s.shown, resp.Status, prefix)
	if retryableStatus(resp.StatusCode) {
		return err
	}
	return consumer.Permanent(err)
}

// retryableStatus reports whether a failed request may succeed later.
func retryableStatus(code int) bool {
	return code >= 500 || code == http.StatusRequestTimeout || code == http.StatusTooManyRequests
}

// Close closes the idle connections of the sink's own client; a client
// from HTTPOptions is left alone.
func (s *httpSink) Close() error {
	if s.own {
		s.client.CloseIdleConnections()
	}
	return nil
}
