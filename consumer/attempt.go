package consumer

import (
	"context"
	"sync"
	"time"
)

// attemptCtx is the context of one handler attempt: its parent's values and
// cancellation, plus the handler deadline. Unlike context.WithTimeout it
// starts no timer and registers nothing with its parent until the handler
// asks for Done: a handler that never watches its context costs no
// allocation beyond this struct, which matters at a million events a
// second.
type attemptCtx struct {
	context.Context // parent
	deadline        time.Time

	mu     sync.Mutex
	done   chan struct{}
	err    error
	timer  *time.Timer
	unhook func() bool
}

func newAttemptCtx(parent context.Context, deadline time.Time) *attemptCtx {
	return &attemptCtx{Context: parent, deadline: deadline}
}

func (c *attemptCtx) Deadline() (time.Time, bool) {
	if d, ok := c.Context.Deadline(); ok && d.Before(c.deadline) {
		return d, true
	}
	return c.deadline, true
}

func (c *attemptCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		if c.err == nil {
			if err := c.errLocked(); err != nil {
				c.cancelLocked(err)
			} else {
				c.timer = time.AfterFunc(time.Until(c.deadline), func() { c.cancel(context.DeadlineExceeded) })
				c.unhook = context.AfterFunc(c.Context, func() { c.cancel(c.Context.Err()) })
			}
		} else {
			close(c.done)
		}
	}
	return c.done
}

func (c *attemptCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		if err := c.errLocked(); err != nil {
			c.cancelLocked(err)
		}
	}
	return c.err
}

// errLocked computes the error the context has now, without recording it.
func (c *attemptCtx) errLocked() error {
	if err := c.Context.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

func (c *attemptCtx) cancel(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cancelLocked(err)
}

func (c *attemptCtx) cancelLocked(err error) {
	if c.err != nil {
		return
	}
	c.err = err
	if c.done != nil {
		close(c.done)
	}
}

// release stops the timers after the handler returned, at now, and marks
// the context cancelled, as a cancel func would. It reports whether the
// deadline had passed.
func (c *attemptCtx) release(now time.Time) (expired bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer != nil {
		c.timer.Stop()
		c.unhook()
	}
	expired = c.err == context.DeadlineExceeded || (c.err == nil && !now.Before(c.deadline))
	c.cancelLocked(context.Canceled)
	return expired
}
