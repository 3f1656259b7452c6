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

const (
	// jsFetchBatch is how many messages one pull request of workload 4's
	// consumer asks for.
	jsFetchBatch = 256
	// jsFetchWait bounds one pull request; a full one returns at once.
	jsFetchWait = 10 * time.Second
)

// jsReader is workload 4's JetStream peer: the server restarted on the
// prefilled store, and for each read a new durable pull consumer (explicit
// ack, deliver all) that fetches jsFetchBatch messages per request and acks
// each. The last ack is a double ack, which waits for the server to have
// processed it and so every earlier ack of the connection. Not safe for
// concurrent use.
type jsReader struct {
	j    *jetStream
	n    int
	cons jetstream.Consumer
}

func openJetStreamReader(dir string, n int) (*jsReader, error) {
	j, err := openJetStream(dir, jsDefault, jsAsyncPublish)
	if err != nil {
		return nil, err
	}
	return &jsReader{j: j, n: n}, nil
}

func (r *jsReader) Prepare(ctx context.Context) error {
	cons, err := r.j.js.CreateConsumer(ctx, jsStream, jetstream.ConsumerConfig{
		Durable:       newReadName(),
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("bench/jetstream: create consumer: %w", err)
	}
	r.cons = cons
	return nil
}

func (r *jsReader) Scan(ctx context.Context) error {
	if r.cons == nil {
		return errors.New("bench/jetstream: scan without prepare")
	}
	cons := r.cons
	r.cons = nil
	got := 0
	for got < r.n {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch, err := cons.Fetch(min(jsFetchBatch, r.n-got), jetstream.FetchMaxWait(jsFetchWait))
		if err != nil {
			return fmt.Errorf("bench/jetstream: fetch: %w", err)
		}
		fetched := 0
		for msg := range batch.Messages() {
			fetched++
			got++
			if got < r.n {
				err = msg.Ack()
			} else {
				err = msg.DoubleAck(ctx)
			}
			if err != nil {
				return fmt.Errorf("bench/jetstream: ack: %w", err)
			}
		}
		if err := batch.Error(); err != nil {
			return fmt.Errorf("bench/jetstream: fetch: %w", err)
		}
		if fetched == 0 {
			return fmt.Errorf("bench/jetstream: fetch returned nothing after %d of %d messages", got, r.n)
		}
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("bench/jetstream: consumer info: %w", err)
	}
	if info.AckFloor.Stream != uint64(r.n) || info.NumAckPending != 0 {
		return fmt.Errorf("bench/jetstream: after the last ack: ack floor %d, %d pending; want %d, 0",
			info.AckFloor.Stream, info.NumAckPending, r.n)
	}
	return nil
}

func (r *jsReader) Close() error { return r.j.Close() }
