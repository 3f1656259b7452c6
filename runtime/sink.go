package runtime

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"sync"
)

// Sink receives a flow's records. Deliver returns nil once the record is
// delivered; an error makes the flow retry the event (the parts and sinks
// that already succeeded are not delivered again by this process), and an
// error marked with consumer.Permanent sends it to the flow's dead
// letters. Deliver is called concurrently when the flow has several
// workers. A Sink that is also an io.Closer is closed when the runtime
// stops.
type Sink interface {
	Deliver(ctx context.Context, d Delivery) error
}

// SinkFunc adapts a function to a Sink.
type SinkFunc func(ctx context.Context, d Delivery) error

// Deliver calls f.
func (f SinkFunc) Deliver(ctx context.Context, d Delivery) error { return f(ctx, d) }

// Stdout returns a sink writing each delivery to standard output as one
// line of JSON.
func Stdout() Sink { return WriterSink(os.Stdout) }

// WriterSink returns a sink writing each delivery to w as one line of
// JSON. Writes are serialised; nothing is synced.
func WriterSink(w io.Writer) Sink { return &writerSink{w: w} }

type writerSink struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *writerSink) Deliver(_ context.Context, d Delivery) error {
	line, err := json.Marshal(d)
	if err != nil {
		return err
	}
	line = append(line, '\n')
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err = s.w.Write(line)
	return err
}

// Named refers to a sink registered in Options.Sinks under name. Add
// reports an unknown name.
func Named(name string) Sink { return namedSink(name) }

type namedSink string

func (namedSink) Deliver(context.Context, Delivery) error { return ErrUnknownSink }
