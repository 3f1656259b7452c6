package consumer

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/flowrt/flowrt/eventlog"
)

// work runs batches of items through the handler until jobs is closed,
// and returns each batch on results once it has no item left to start.
func (r *Reader) work(ctx context.Context, h Handler, jobs <-chan *batch, results chan<- *batch) {
	for b := range jobs {
		b.run(func(it *item) result { return r.process(ctx, h, it) }, r.opts.KeyFailure)
		results <- b
	}
}

// process runs one attempt and records its outcome durably before
// reporting it: a failure's attempt count, or the dead letter, is in the
// journal before the event can be retried or the floor can pass it.
func (r *Reader) process(ctx context.Context, h Handler, it *item) result {
	if ctx.Err() != nil {
		return result{it: it, outcome: interrupted}
	}
	r.stats.delivered.Add(1)
	start := time.Now()
	actx := newAttemptCtx(ctx, start.Add(r.opts.HandlerTimeout))
	err := r.call(actx, h, it.ev)
	end := time.Now()
	if actx.release(end) && ctx.Err() == nil {
		// An attempt that outlived its deadline failed, whatever it
		// returned: its context was (or would have been) cancelled.
		err = fmt.Errorf("flowrt/consumer: handler ran past its %v timeout: %w", r.opts.HandlerTimeout, context.DeadlineExceeded)
	}
	r.stats.latency.observe(end.Sub(start))
	if oh, ok := r.opts.Commit.(OutcomeHook); ok {
		oh.Outcome(it.ev.Seq, err == nil)
	}
	if err == nil {
		r.stats.acked.Add(1)
		if it.redelivery {
			return result{it: it, outcome: acked, err: r.redelivered(it.ev.Seq)}
		}
		return result{it: it, outcome: acked}
	}
	if ctx.Err() != nil {
		// Stopped by Close or an expired Shutdown: not the event's fault.
		return result{it: it, outcome: interrupted}
	}
	now := end
	it.attempts++
	if it.first.IsZero() {
		it.first = now
	}
	seq := it.ev.Seq
	if IsPermanent(err) || it.attempts >= r.opts.Retry.MaxAttempts {
		dl := DeadLetter{
			Seq: seq, ID: it.ev.ID, Type: it.ev.Type, Key: it.ev.Key, Attempts: it.attempts,
			FirstFailure: it.first.UTC(), LastFailure: now.UTC(), LastError: err.Error(),
		}
		done := retryRecord{Attempts: it.attempts, First: it.first.UnixNano(), Last: now.UnixNano(), LastError: dl.LastError, Dead: true}
		perr := r.persist(func(b buckets) error {
			if err := b.redeliver.Delete(seqKey(seq)); err != nil {
				return err
			}
			if !it.redelivery { // above the floor: remember it is done
				if err := putRecord(b.retries, seq, &done); err != nil {
					return err
				}
			}
			return putRecord(b.dead, seq, &dl)
		})
		if perr == nil {
			r.stats.deadLettered.Add(1)
			r.opts.Logger.Warn("event dead-lettered", "consumer", r.name, "stream", r.stream, "seq", seq, "attempts", it.attempts, "err", err)
		}
		return result{it: it, outcome: deadLettered, err: perr}
	}
	it.due = now.Add(r.opts.Retry.delay(it.attempts))
	if it.redelivery {
		// Redeliveries lie below the floor, where retry records are swept;
		// the queued mark survives a crash instead.
		r.stats.retried.Add(1)
		return result{it: it, outcome: retrying}
	}
	rec := retryRecord{Attempts: it.attempts, First: it.first.UnixNano(), Last: now.UnixNano(), Due: it.due.UnixNano(), LastError: err.Error()}
	perr := r.persist(func(b buckets) error { return putRecord(b.retries, seq, &rec) })
	if perr == nil {
		r.stats.retried.Add(1)
	}
	return result{it: it, outcome: retrying, err: perr}
}

// redelivered records that a redelivered dead letter succeeded. The event
// lies at or below the committed floor, which no later commit moves past
// again: the commit hook writes its effects in this transaction.
func (r *Reader) redelivered(seq uint64) error {
	committed := r.committed.Load()
	done := []uint64{seq}
	err := r.j.Update(func(tx *eventlog.Tx) error {
		b, _, err := consumerBuckets(tx, r.stream, r.name)
		if err != nil {
			return err
		}
		if err := clearDead(b, seq); err != nil {
			return err
		}
		if h := r.opts.Commit; h != nil {
			return h.Commit(tx, committed, done)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("flowrt/consumer: persist state of %q: %w", r.name, err)
	}
	if h := r.opts.Commit; h != nil {
		h.Committed(committed, done)
	}
	return nil
}

// call runs the handler, turning a panic into an error.
func (r *Reader) call(ctx context.Context, h Handler, ev eventlog.Event) (err error) {
	defer func() {
		if p := recover(); p != nil {
			stack := debug.Stack()
			r.opts.Logger.Error("handler panicked", "consumer", r.name, "stream", r.stream, "seq", ev.Seq, "panic", p, "stack", string(stack))
			err = fmt.Errorf("flowrt/consumer: handler panicked: %v", p)
		}
	}()
	return h(ctx, ev)
}

func (r *Reader) persist(fn func(buckets) error) error {
	err := r.j.Update(func(tx *eventlog.Tx) error {
		b, _, err := consumerBuckets(tx, r.stream, r.name)
		if err != nil {
			return err
		}
		return fn(b)
	})
	if err != nil {
		return fmt.Errorf("flowrt/consumer: persist state of %q: %w", r.name, err)
	}
	return nil
}

func clearDead(b buckets, seq uint64) error {
	if err := b.redeliver.Delete(seqKey(seq)); err != nil {
		return err
	}
	return b.dead.Delete(seqKey(seq))
}
