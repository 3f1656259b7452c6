package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"
)

// jsPipelineConsumer is the durable name of workload 5's JetStream
// consumer.
const jsPipelineConsumer = "w5"

// jsPipeline is workload 5's JetStream peer: the embedded server with
// SyncAlways (a flush per message), producers publishing as in workload 2
// (PublishAsync, each waiting for its own ack), and one durable pull
// consumer (explicit ack, deliver all) consuming continuously with
// Consume, whose callback passes each message's data to deliver and acks
// it. WaitAcked polls the consumer's ack floor, which the server moves
// when it has processed the acks. Safe for concurrent use.
type jsPipeline struct {
	j    *jetStream
	cons jetstream.Consumer
	cc   jetstream.ConsumeContext
	last atomic.Uint64 // the highest stream sequence published

	mu  sync.Mutex
	err error // the first ack or consume error
}

func openJetStreamPipeline(dir string, deliver func([]byte)) (*jsPipeline, error) {
	j, err := openJetStream(dir, jsSyncAlways, jsAsyncPublish)
	if err != nil {
		return nil, err
	}
	p := &jsPipeline{j: j}
	p.cons, err = j.js.CreateConsumer(context.Background(), jsStream, jetstream.ConsumerConfig{
		Durable:       jsPipelineConsumer,
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		j.Close()
		return nil, fmt.Errorf("bench/jetstream: create consumer: %w", err)
	}
	p.cc, err = p.cons.Consume(func(msg jetstream.Msg) {
		deliver(msg.Data())
		if err := msg.Ack(); err != nil {
			p.fail(fmt.Errorf("bench/jetstream: ack: %w", err))
		}
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		p.fail(fmt.Errorf("bench/jetstream: consume: %w", err))
	}))
	if err != nil {
		j.Close()
		return nil, fmt.Errorf("bench/jetstream: consume: %w", err)
	}
	return p, nil
}

func (p *jsPipeline) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = err
	}
}

func (p *jsPipeline) failure() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *jsPipeline) Append(rec []byte) (uint64, error) {
	f, err := p.j.js.PublishAsync(jsSubject, rec, jetstream.WithStallWait(jsStallWait))
	if err != nil {
		return 0, fmt.Errorf("bench/jetstream: publish async: %w", err)
	}
	var seq uint64
	select {
	case ack := <-f.Ok():
		seq = ack.Sequence
	case err := <-f.Err():
		return 0, fmt.Errorf("bench/jetstream: publish async: %w", err)
	}
	for {
		cur := p.last.Load()
		if seq <= cur || p.last.CompareAndSwap(cur, seq) {
			return seq, nil
		}
	}
}

// WaitAcked waits until the consumer's ack floor is the last sequence
// published.
func (p *jsPipeline) WaitAcked(ctx context.Context) error {
	return waitAcked(ctx, p.last.Load(), func() (uint64, error) {
		if err := p.failure(); err != nil {
			return 0, err
		}
		info, err := p.cons.Info(ctx)
		if err != nil {
			return 0, fmt.Errorf("bench/jetstream: consumer info: %w", err)
		}
		return info.AckFloor.Stream, nil
	})
}

// Close stops the consumer, waits until its callback has returned, then
// closes the client and the server.
func (p *jsPipeline) Close() error {
	p.cc.Stop()
	<-p.cc.Closed()
	return p.j.Close()
}
