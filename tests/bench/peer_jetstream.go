package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// jsDurability is the embedded server's file store sync setting.
type jsDurability int

const (
	jsDefault    jsDurability = iota // fsync every 2 minutes (sync_interval default)
	jsSyncAlways                     // sync_interval "always": a flush per message
)

// jsPublish says how Append publishes.
type jsPublish int

const (
	jsSyncPublish  jsPublish = iota // Publish: one request, wait for its ack
	jsAsyncPublish                  // PublishAsync with up to jsMaxPending in flight
)

const (
	jsSubject    = "events"
	jsStream     = "EVENTS"
	jsMaxPending = 256
	// jsStallWait bounds how long PublishAsync waits for a free slot when
	// jsMaxPending are in flight; the client's default is 200 ms.
	jsStallWait = 10 * time.Second
	jsReadyWait = 10 * time.Second
)

// jetStream is a nats-server embedded in this process, listening on a random
// port of 127.0.0.1 with JetStream's file store in the variant's directory,
// and a nats.go client publishing to one file-backed stream. Append publishes
// one message and waits for its ack; AppendBatch publishes the batch
// asynchronously and waits until every ack is in. Safe for concurrent use.
type jetStream struct {
	srv     *server.Server
	nc      *nats.Conn
	js      jetstream.JetStream
	publish jsPublish

	mu       sync.Mutex
	asyncErr error // first error reported to the async error handler
}

func openJetStream(dir string, durability jsDurability, publish jsPublish) (*jetStream, error) {
	opts := &server.Options{
		ServerName: "flowrt-bench",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		NoLog:      true,
		NoSigs:     true,
		JetStream:  true,
		StoreDir:   filepath.Join(dir, "jetstream"),
		SyncAlways: durability == jsSyncAlways,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("bench/jetstream: new server: %w", err)
	}
	srv.Start()
	j := &jetStream{srv: srv, publish: publish}
	if !srv.ReadyForConnections(jsReadyWait) {
		j.Close()
		return nil, errors.New("bench/jetstream: server not ready")
	}
	if j.nc, err = nats.Connect(srv.ClientURL()); err != nil {
		j.Close()
		return nil, fmt.Errorf("bench/jetstream: connect: %w", err)
	}
	j.js, err = jetstream.New(j.nc,
		jetstream.WithPublishAsyncMaxPending(jsMaxPending),
		jetstream.WithPublishAsyncErrHandler(j.onAsyncError))
	if err != nil {
		j.Close()
		return nil, fmt.Errorf("bench/jetstream: context: %w", err)
	}
	_, err = j.js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name:     jsStream,
		Subjects: []string{jsSubject},
		Storage:  jetstream.FileStorage,
	})
	if err != nil {
		j.Close()
		return nil, fmt.Errorf("bench/jetstream: create stream: %w", err)
	}
	return j, nil
}

func (j *jetStream) onAsyncError(_ jetstream.JetStream, _ *nats.Msg, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.asyncErr == nil {
		j.asyncErr = err
	}
}

func (j *jetStream) Append(rec []byte) error {
	if j.publish == jsSyncPublish {
		if _, err := j.js.Publish(context.Background(), jsSubject, rec); err != nil {
			return fmt.Errorf("bench/jetstream: publish: %w", err)
		}
		return nil
	}
	f, err := j.js.PublishAsync(jsSubject, rec, jetstream.WithStallWait(jsStallWait))
	if err != nil {
		return fmt.Errorf("bench/jetstream: publish async: %w", err)
	}
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return fmt.Errorf("bench/jetstream: publish async: %w", err)
	}
}

func (j *jetStream) AppendBatch(recs [][]byte) error {
	for _, rec := range recs {
		if _, err := j.js.PublishAsync(jsSubject, rec, jetstream.WithStallWait(jsStallWait)); err != nil {
			return fmt.Errorf("bench/jetstream: publish async: %w", err)
		}
	}
	<-j.js.PublishAsyncComplete()
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.asyncErr != nil {
		return fmt.Errorf("bench/jetstream: publish async: %w", j.asyncErr)
	}
	return nil
}

// Close closes the client, then shuts the server down and waits for it.
func (j *jetStream) Close() error {
	if j.js != nil {
		j.js.CleanupPublisher()
	}
	if j.nc != nil {
		j.nc.Close()
	}
	j.srv.Shutdown()
	j.srv.WaitForShutdown()
	return nil
}
