package consumer

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/flowrt/flowrt/eventlog"
)

// Handler processes one event. Returning nil acks the event; an error
// nacks it, and it is retried with backoff or, if the error is Permanent or
// its attempts are spent, dead-lettered. A panic is recovered, logged with
// its stack, and counts as a failure. ctx is cancelled at the handler
// timeout and when the Reader is closed; Shutdown leaves it intact until
// Shutdown's own context expires. With Options.Workers > 1 the handler runs
// on several goroutines at once, but never for two events of one key.
type Handler func(ctx context.Context, e eventlog.Event) error

// Reader is a named, durable consumer of one stream: it delivers each event
// to a Handler at least once, in sequence order per key, and records its
// progress as an ack offset in the journal. See docs/GUARANTEES.md.
//
// A Reader's methods are safe for concurrent use. It runs once: after Run
// returns, open a new Reader to consume again.
type Reader struct {
	j       Journal
	stream  string
	name    string
	opts    Options
	release func()

	mu       sync.Mutex
	state    state
	stopIn   context.CancelFunc // stops intake: no new deliveries
	stopWork context.CancelFunc // cancels handler contexts
	done     chan struct{}      // closed when Run has finished everything

	floor     atomic.Uint64 // highest sequence with everything at or below done
	committed atomic.Uint64 // the durable ack offset
	doneAbove []uint64      // at the end of Run: sequences above the floor that are done
	stats     counters
}

type state uint8

const (
	stateIdle state = iota
	stateRunning
	stateDraining
	stateClosed
)

func (s state) String() string {
	return [...]string{"idle", "running", "draining", "closed"}[s]
}

// Open registers the consumer name on stream, or finds its committed
// offset, and returns a Reader ready to Run. A new consumer starts at
// opts.Start; an existing one resumes after its committed offset. A start
// beyond the stream's end starts at its end. Only one Reader of a name and
// stream may be open per journal at a time (ErrInUse).
func Open(j Journal, stream, name string, opts *Options) (*Reader, error) {
	if err := eventlog.ValidateName(stream); err != nil {
		return nil, err
	}
	if err := eventlog.ValidateName(name); err != nil {
		return nil, err
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	r := &Reader{j: j, stream: stream, name: name, opts: opts.withDefaults(), release: func() {}, done: make(chan struct{})}
	if c, ok := j.(claimer); ok {
		release, err := c.Claim(claimName(stream, name))
		if err != nil {
			return nil, fmt.Errorf("%w: consumer %q on stream %q: %w", ErrInUse, name, stream, err)
		}
		r.release = release
	}
	var floor uint64
	err := j.Update(func(tx *eventlog.Tx) error {
		off, ok, err := tx.Offset(stream, name)
		if err != nil || ok {
			floor = off
			return err
		}
		if floor, err = startFloor(tx, stream, *r.opts.Start); err != nil {
			return err
		}
		return tx.SetOffset(stream, name, floor)
	})
	if err != nil {
		r.release()
		return nil, fmt.Errorf("flowrt/consumer: open %q on %q: %w", name, stream, err)
	}
	r.floor.Store(floor)
	r.committed.Store(floor)
	return r, nil
}

// startFloor returns the ack offset that makes a consumer start at pos: the
// sequence before it, clamped to the stream's end (0 for a stream not yet
// written).
func startFloor(tx *eventlog.Tx, stream string, pos eventlog.Position) (uint64, error) {
	first, err := tx.Resolve(stream, pos)
	if err != nil {
		return 0, err
	}
	si, err := tx.Info(stream)
	if isNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return min(first-1, si.Last), nil
}

// Name returns the consumer's name.
func (r *Reader) Name() string { return r.name }

// Stream returns the stream the consumer reads.
func (r *Reader) Stream() string { return r.stream }

// Run delivers events to h until Shutdown or Close (then it returns
// ErrClosed), until ctx is cancelled (it stops as Close does and returns
// ctx.Err()), or until the journal fails (it returns that error). The ack
// floor is committed on the way out in every case.
func (r *Reader) Run(ctx context.Context, h Handler) error {
	r.mu.Lock()
	switch r.state {
	case stateClosed, stateDraining:
		r.mu.Unlock()
		return ErrClosed
	case stateRunning:
		r.mu.Unlock()
		return ErrRunning
	}
	r.state = stateRunning
	intake, stopIn := context.WithCancel(ctx)
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	r.stopIn, r.stopWork = stopIn, stopWork
	r.mu.Unlock()
	unhook := context.AfterFunc(ctx, stopWork) // a cancelled Run stops like Close

	err := r.run(intake, work, h)
	unhook()
	stopIn()
	stopWork()

	r.mu.Lock()
	r.state = stateClosed
	r.mu.Unlock()
	r.release()
	close(r.done)
	switch {
	case err != nil:
		return err
	case ctx.Err() != nil:
		return ctx.Err()
	default:
		return ErrClosed
	}
}

// Shutdown stops fetching, lets in-flight handlers finish with their
// contexts intact, commits the ack floor and returns. If ctx expires first,
// it cancels the handlers' contexts, waits for them to return, commits what
// is done and returns ctx.Err(). An event interrupted this way is neither
// counted as a failed attempt nor dead-lettered: it is redelivered on the
// next run. Shutdown of a Reader that never ran just releases it.
func (r *Reader) Shutdown(ctx context.Context) error {
	if !r.beginStop() {
		return nil
	}
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		r.stopWork()
		<-r.done
		return ctx.Err()
	}
}

// Close stops at once: intake stops, handlers' contexts are cancelled, and
// once they have returned the floor of what is done is committed. Handlers
// must honour their context for Close to return promptly. Close is
// idempotent.
func (r *Reader) Close() error {
	if r.beginStop() {
		r.stopWork()
		<-r.done
	}
	return nil
}

// beginStop moves a running Reader to draining and stops its intake. It
// reports whether Run is active and must be waited for.
func (r *Reader) beginStop() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch r.state {
	case stateIdle:
		r.state = stateClosed
		r.release()
		close(r.done)
		return false
	case stateRunning:
		r.state = stateDraining
		r.stopIn()
		return true
	case stateDraining:
		return true
	default:
		return false
	}
}

// Offset returns the durable ack offset: every event at or below it is
// done, and after a crash delivery resumes above it.
func (r *Reader) Offset() uint64 { return r.committed.Load() }

// commit makes floor the durable ack offset and sweeps the retry records at
// or below it. The last commit of a run also records done, the events above
// the floor that are done, so that after a clean stop the next run skips
// them instead of delivering them again.
func (r *Reader) commit(floor uint64, done []uint64) error {
	if floor <= r.committed.Load() && len(done) == 0 {
		return nil
	}
	err := r.j.Update(func(tx *eventlog.Tx) error {
		if err := tx.SetOffset(r.stream, r.name, max(floor, r.committed.Load())); err != nil {
			return err
		}
		b, _, err := consumerBuckets(tx, r.stream, r.name)
		if err != nil {
			return err
		}
		for _, seq := range done {
			if seq <= floor {
				continue // swept below
			}
			if v := b.retries.Get(seqKey(seq)); v != nil {
				rec, err := decodeRecord[retryRecord](seqKey(seq), v)
				if err != nil {
					return err
				}
				if rec.Dead || rec.Acked {
					continue // done already: dead-lettered, or marked
				}
				// A failure record of an event that then succeeded: it is
				// done now, and must not be delivered again.
			}
			if err := putRecord(b.retries, seq, &retryRecord{Acked: true}); err != nil {
				return err
			}
		}
		if h := r.opts.Commit; h != nil {
			if err := h.Commit(tx, floor, done); err != nil {
				return fmt.Errorf("commit hook: %w", err)
			}
		}
		// Retry records at or below the floor belong to events now done.
		var stale [][]byte
		for k := range b.retries.Items(nil) {
			if len(k) != 8 || seqFromKey(k) > floor {
				break
			}
			stale = append(stale, append([]byte(nil), k...))
		}
		for _, k := range stale {
			if err := b.retries.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("flowrt/consumer: commit offset %d of %q: %w", floor, r.name, err)
	}
	// The hook learns of the commit before the Reader shows it: a
	// redelivery waits for the committed floor (releaseRedelivery), and
	// must find the hook done with the commit.
	if h := r.opts.Commit; h != nil {
		h.Committed(floor, done)
	}
	r.committed.Store(floor)
	return nil
}
