package command

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/eventjson"
	"github.com/flowrt/flowrt/internal/server"
)

// appendTarget is where append writes: the journal, or the daemon that
// holds it.
type appendTarget interface {
	Append(stream string, events ...eventlog.Event) ([]eventlog.AppendResult, error)
	Close() error
}

// openAppendTarget opens the journal for appending or, when a daemon holds
// it and published its address (`flowrt run --http`), appends through the
// daemon's ingest endpoint, which answers after the fsync as Append does.
func openAppendTarget(ctx context.Context, o *appendOptions, maxEventBytes int) (appendTarget, error) {
	l, info, err := openOrFindDaemon(o.db, eventlog.Options{LockTimeout: o.lockTimeout, MaxEventBytes: maxEventBytes})
	switch {
	case err != nil:
		return nil, err
	case l != nil:
		return l, nil
	}
	lc, err := newLiveClient(&dumpCommon{db: o.db, lockTimeout: o.lockTimeout, token: o.token, tokenFile: o.tokenFile}, info)
	if err != nil {
		return nil, err
	}
	return &liveAppender{ctx: ctx, c: lc}, nil
}

// liveAppender appends through a daemon, its requests bound to ctx.
type liveAppender struct {
	ctx context.Context
	c   *liveClient
}

func (a *liveAppender) Close() error { return nil }

// Append posts the events, as JSON lines, to the daemon's ingest endpoint.
func (a *liveAppender) Append(stream string, events ...eventlog.Event) ([]eventlog.AppendResult, error) {
	var body bytes.Buffer
	for _, ev := range events {
		line, err := eventjson.EncodeLine(ev)
		if err != nil {
			return nil, err
		}
		body.Write(line)
	}
	var answer server.IngestAnswer
	if err := a.c.post(a.ctx, "/v1/streams/"+url.PathEscape(stream)+"/events", "application/x-ndjson", &body, &answer); err != nil {
		return nil, err
	}
	if len(answer.Results) != len(events) {
		return nil, fmt.Errorf("daemon at %s: %d results for %d events", a.c.file.Addr, len(answer.Results), len(events))
	}
	out := make([]eventlog.AppendResult, len(events))
	for i, r := range answer.Results {
		id, err := eventlog.ParseID(r.ID)
		if err != nil {
			return nil, fmt.Errorf("daemon at %s: result %d: %w", a.c.file.Addr, i, err)
		}
		out[i] = eventlog.AppendResult{Seq: r.Seq, ID: id, Duplicate: r.Duplicate}
	}
	return out, nil
}

// post sends body to the daemon and decodes its 200 answer into out, with
// the errors of do.
func (c *liveClient) post(ctx context.Context, path, contentType string, body io.Reader, out any) error {
	resp, err := c.do(ctx, http.MethodPost, path, nil, contentType, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("daemon at %s: read the answer: %w", c.file.Addr, err)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("daemon at %s: decode the answer: %w", c.file.Addr, err)
	}
	return nil
}
