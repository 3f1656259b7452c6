package runtime_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/runtime"
)

// received is one request an httptest server got.
type received struct {
	header http.Header
	body   []byte
}

// newReceiver starts a server answering every request with status and
// body, and returns it with a channel of the requests it received.
func newReceiver(t *testing.T, status int, body string) (*httptest.Server, <-chan received) {
	t.Helper()
	got := make(chan received, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		got <- received{header: r.Header.Clone(), body: b}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func mustHTTPSink(t *testing.T, o runtime.HTTPOptions) runtime.Sink {
	t.Helper()
	s, err := runtime.HTTPSink(o)
	require.NoError(t, err)
	t.Cleanup(func() { closeSink(t, s) })
	return s
}

func TestHTTPSinkStatuses(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      string
		ok        bool
		permanent bool
	}{
		{name: "200 ok", status: http.StatusOK, ok: true},
		{name: "204 ok", status: http.StatusNoContent, ok: true},
		{name: "500 retryable", status: http.StatusInternalServerError, body: "database down"},
		{name: "503 retryable", status: http.StatusServiceUnavailable, body: "later"},
		{name: "408 retryable", status: http.StatusRequestTimeout},
		{name: "429 retryable", status: http.StatusTooManyRequests, body: "slow down"},
		{name: "404 permanent", status: http.StatusNotFound, body: "no such hook", permanent: true},
		{name: "400 permanent", status: http.StatusBadRequest, body: "bad payload", permanent: true},
		{name: "long error body is cut", status: http.StatusUnprocessableEntity, body: strings.Repeat("x", 10000), permanent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, got := newReceiver(t, tt.status, tt.body)
			s := mustHTTPSink(t, runtime.HTTPOptions{URL: srv.URL + "/hook"})
			err := s.Deliver(context.Background(), sinkDelivery(7, map[string]any{"total": 250}))
			require.Len(t, got, 1, "one request")
			if tt.ok {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Equal(t, tt.permanent, consumer.IsPermanent(err))
			assert.Contains(t, err.Error(), fmt.Sprint(tt.status), "the error names the status")
			assert.Contains(t, err.Error(), tt.body[:min(len(tt.body), 100)], "the error quotes the body")
			assert.Less(t, len(err.Error()), 1000, "only a prefix of the body")
		})
	}
}

func TestHTTPSinkRequest(t *testing.T) {
	srv, got := newReceiver(t, http.StatusOK, "")
	s := mustHTTPSink(t, runtime.HTTPOptions{URL: srv.URL, Headers: map[string]string{"Authorization": "Bearer t0k"}})
	d := sinkDelivery(7, map[string]any{"total": 250})
	d.Part = "2"
	d.ID += "/2"
	require.NoError(t, s.Deliver(context.Background(), d))

	r := <-got
	assert.Equal(t, "application/json", r.header.Get("Content-Type"))
	assert.Equal(t, d.ID, r.header.Get("Idempotency-Key"))
	assert.Equal(t, "test", r.header.Get("Flowrt-Flow"))
	assert.Equal(t, "7", r.header.Get("Flowrt-Source-Seq"))
	assert.Equal(t, "Bearer t0k", r.header.Get("Authorization"))
	want, err := d.MarshalJSON()
	require.NoError(t, err)
	assert.JSONEq(t, string(want), string(r.body), "the body is the delivery's JSON")
}

func TestHTTPSinkTimeoutIsRetryable(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first: no handler outlives the test

	s := mustHTTPSink(t, runtime.HTTPOptions{URL: srv.URL, Timeout: 50 * time.Millisecond})
	err := s.Deliver(context.Background(), sinkDelivery(1, nil))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.False(t, consumer.IsPermanent(err))

	// The caller's context is honoured too.
	s = mustHTTPSink(t, runtime.HTTPOptions{URL: srv.URL})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = s.Deliver(ctx, sinkDelivery(1, nil))
	require.ErrorIs(t, err, context.Canceled)
	assert.False(t, consumer.IsPermanent(err))
}

func TestHTTPSinkNetworkErrorIsRetryable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	s := mustHTTPSink(t, runtime.HTTPOptions{URL: url})
	err := s.Deliver(context.Background(), sinkDelivery(1, nil))
	require.Error(t, err)
	assert.False(t, consumer.IsPermanent(err))
}

func TestHTTPSinkRedirects(t *testing.T) {
	final, got := newReceiver(t, http.StatusOK, "")
	tests := []struct {
		name   string
		status int
		ok     bool
	}{
		{name: "307 keeps the POST and is followed", status: http.StatusTemporaryRedirect, ok: true},
		{name: "308 keeps the POST and is followed", status: http.StatusPermanentRedirect, ok: true},
		{name: "302 would lose the body and is refused", status: http.StatusFound},
		{name: "303 would lose the body and is refused", status: http.StatusSeeOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, final.URL, tt.status)
			}))
			t.Cleanup(srv.Close)
			s := mustHTTPSink(t, runtime.HTTPOptions{URL: srv.URL})
			err := s.Deliver(context.Background(), sinkDelivery(1, nil))
			if tt.ok {
				require.NoError(t, err)
				r := <-got
				assert.NotEmpty(t, r.body, "the body went along")
				return
			}
			require.ErrorContains(t, err, fmt.Sprint(tt.status))
			assert.Empty(t, got, "not followed")
			assert.True(t, consumer.IsPermanent(err))
		})
	}
}

func TestHTTPSinkRefusesBadOptions(t *testing.T) {
	tests := []struct {
		name string
		opts runtime.HTTPOptions
		want string
	}{
		{name: "no URL", opts: runtime.HTTPOptions{}, want: "URL is required"},
		{name: "unparsable URL", opts: runtime.HTTPOptions{URL: "http://[::1"}, want: "URL"},
		{name: "relative URL", opts: runtime.HTTPOptions{URL: "/hook"}, want: "scheme"},
		{name: "other scheme", opts: runtime.HTTPOptions{URL: "ftp://example.test/x"}, want: "scheme"},
		{name: "no host", opts: runtime.HTTPOptions{URL: "http:///x"}, want: "no host"},
		{name: "negative timeout", opts: runtime.HTTPOptions{URL: "http://127.0.0.1/", Timeout: -1}, want: "Timeout"},
		{name: "bad header name", opts: runtime.HTTPOptions{URL: "http://127.0.0.1/", Headers: map[string]string{"X Bad": "1"}}, want: "invalid header name"},
		{name: "header value with newline", opts: runtime.HTTPOptions{URL: "http://127.0.0.1/", Headers: map[string]string{"X-A": "1\r\nX-B: 2"}}, want: "control character"},
		{name: "header the sink sets", opts: runtime.HTTPOptions{URL: "http://127.0.0.1/", Headers: map[string]string{"idempotency-key": "k"}}, want: "set by the sink"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := runtime.HTTPSink(tt.opts)
			require.ErrorContains(t, err, tt.want)
			assert.Nil(t, s)
		})
	}
}

func TestHTTPSinkKeepsTheURLPasswordOutOfErrors(t *testing.T) {
	srv, _ := newReceiver(t, http.StatusInternalServerError, "")
	u := strings.Replace(srv.URL, "http://", "http://user:s3cret@", 1)
	s := mustHTTPSink(t, runtime.HTTPOptions{URL: u})
	err := s.Deliver(context.Background(), sinkDelivery(1, nil))
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "s3cret")
}

// An HTTP sink POSTs each delivery as JSON, with an Idempotency-Key the
// receiver deduplicates by.
func ExampleHTTPSink() {
	seen := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			ID     string         `json:"id"`
			Flow   string         `json:"flow"`
			Source runtime.Source `json:"source"`
			Data   any            `json:"data"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest) // dead-lettered
			return
		}
		key := r.Header.Get("Idempotency-Key")
		fmt.Printf("flow %s, seq %d, data %v, key is the id: %t, duplicate: %t\n",
			body.Flow, body.Source.Seq, body.Data, key == body.ID, seen[key])
		seen[key] = true
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()

	sink, err := runtime.HTTPSink(runtime.HTTPOptions{URL: srv.URL, Timeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	d := runtime.Delivery{
		ID:      "01JAZ5V3K2Q9X0M7N4B8C6D2EF",
		Flow:    "ship",
		Event:   eventlog.Event{Seq: 7, Type: "order.created"},
		Payload: map[string]any{"order": "A1"},
	}
	for range 2 { // a redelivery carries the same key
		if err := sink.Deliver(context.Background(), d); err != nil {
			log.Fatal(err)
		}
	}
	// Output:
	// flow ship, seq 7, data map[order:A1], key is the id: true, duplicate: false
	// flow ship, seq 7, data map[order:A1], key is the id: true, duplicate: true
}
