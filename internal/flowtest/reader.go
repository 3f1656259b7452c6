package flowtest

import (
	"context"
	"sync"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
)

// ReaderChild runs a consumer.Reader as a supervised child
// (supervisor.Child, Drainer and Idler). A Reader runs once, so each Run
// opens a new one; Shutdown drains the current one and keeps any later Run
// from starting. Idle reports whether the committed offset has reached the
// stream's end. A nil Handler acks every event. Its methods are safe for
// concurrent use.
type ReaderChild struct {
	Log     *eventlog.Log
	Stream  string
	Name    string
	Options *consumer.Options
	Handler consumer.Handler

	mu       sync.Mutex
	r        *consumer.Reader
	shutdown bool
}

// Run opens a Reader and runs it until ctx is cancelled or it is shut down.
func (c *ReaderChild) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.shutdown {
		c.mu.Unlock()
		return consumer.ErrClosed
	}
	r, err := consumer.Open(c.Log, c.Stream, c.Name, c.Options)
	if err != nil {
		c.mu.Unlock()
		return err
	}
	c.r = r
	c.mu.Unlock()
	h := c.Handler
	if h == nil {
		h = func(context.Context, eventlog.Event) error { return nil }
	}
	return r.Run(ctx, h)
}

// Shutdown drains the running Reader, if any, and stops later runs.
func (c *ReaderChild) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	c.shutdown = true
	r := c.r
	c.mu.Unlock()
	if r == nil {
		return nil
	}
	return r.Shutdown(ctx)
}

// Idle reports whether the Reader has committed the stream's last event.
func (c *ReaderChild) Idle() bool {
	c.mu.Lock()
	r := c.r
	c.mu.Unlock()
	if r == nil {
		return false
	}
	si, err := c.Log.Info(c.Stream)
	return err == nil && r.Offset() >= si.Last
}
