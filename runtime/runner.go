package runtime

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/snapshot"
)

// flow is a compiled Flow: the supervisor's child for it. Each Run opens
// the flow's consumer anew (a consumer.Reader runs once), so a restart
// resumes from the committed floor. Its methods are safe for concurrent
// use.
type flow struct {
	rt         *Runtime
	name       string
	trigger    Trigger
	stream     string
	steps      []stage
	sinks      []stage
	decode     bool // the steps read the payload, so the data is decoded first
	handler    consumer.Handler
	copts      consumer.Options
	state      *snapshot.State // nil for a flow without a Reduce step
	hook       *stateHook      // the state's consumer hook
	reduceStep int             // the index of the Reduce step
	version    int
	snapEvery  time.Duration

	counters flowCounters
	partial  partialSet

	mu       sync.Mutex
	reader   *consumer.Reader
	base     consumer.Stats // the counters of readers that finished
	shutdown bool
}

// stage is a compiled step or sink, with the name its errors carry.
type stage struct {
	name string
	kind string // the step's kind

	op   OperatorFunc // steps: op, or one when the step yields a record at most
	one  oneFunc
	sink Sink // sinks
}

type flowCounters struct {
	matched, filtered, processed, failed atomic.Uint64
}

// Run opens the flow's consumer and runs it until ctx is cancelled or the
// flow is shut down.
func (f *flow) Run(ctx context.Context) error {
	if f.state != nil {
		if err := f.prepareState(ctx); err != nil {
			return fmt.Errorf("flow %s: %w", f.name, err)
		}
		// Changes staged and reductions queued by an earlier run were
		// never committed: their events are delivered again. A rebuild
		// wrote the committed state itself: forget what reads cached of
		// the state before it.
		f.hook.Discard()
		stop := f.snapshotLoop()
		defer stop()
	}
	f.mu.Lock()
	if f.shutdown {
		f.mu.Unlock()
		return consumer.ErrClosed
	}
	r, err := consumer.Open(f.rt.j, f.stream, f.name, &f.copts)
	if err != nil {
		f.mu.Unlock()
		return fmt.Errorf("flow %s: %w", f.name, err)
	}
	f.reader = r
	f.mu.Unlock()
	err = r.Run(ctx, f.handler)
	f.mu.Lock()
	f.base = addStats(f.base, r.Stats())
	f.reader = nil
	f.mu.Unlock()
	if errors.Is(err, consumer.ErrClosed) && ctx.Err() == nil {
		return nil
	}
	return err
}

// Shutdown drains the flow's consumer and keeps it from running again.
func (f *flow) Shutdown(ctx context.Context) error {
	f.mu.Lock()
	f.shutdown = true
	r := f.reader
	f.mu.Unlock()
	if r == nil {
		return nil
	}
	return r.Shutdown(ctx)
}

// Idle reports whether the flow has committed every event of its stream.
func (f *flow) Idle() bool {
	f.mu.Lock()
	r := f.reader
	f.mu.Unlock()
	if r == nil {
		return false
	}
	s := r.Stats()
	return s.Committed >= s.Last && s.InFlight == 0
}

// Details reports the flow's progress for the supervisor's records.
func (f *flow) Details() map[string]string {
	s := f.stats()
	return map[string]string{
		"floor":     strconv.FormatUint(s.Floor, 10),
		"committed": strconv.FormatUint(s.Committed, 10),
		"in_flight": strconv.FormatInt(s.InFlight, 10),
		"lag":       strconv.FormatUint(s.Lag, 10),
	}
}

// handle is the flow's consumer handler: match, run the steps, deliver.
func (f *flow) handle(ctx context.Context, e eventlog.Event) error {
	if !f.trigger.Match(e) {
		return nil
	}
	f.counters.matched.Add(1)
	var att *attemptState
	if f.state != nil {
		att = f.hook.attempt()
	}
	err := f.process(ctx, e, att)
	switch {
	case att == nil:
	case err == nil || err == errFiltered:
		// Kept until the consumer says the attempt is acked (not, say,
		// past its timeout); the hook then stages its changes, or queues
		// its reductions, before the floor can pass the event.
		f.hook.keep(e.Seq, att)
	default:
		att.release()
	}
	switch {
	case err == nil:
		f.counters.processed.Add(1)
		if len(f.sinks) > 1 || len(f.steps) > 0 {
			f.partial.forget(e.Seq)
		}
	case errFiltered == err:
		f.counters.filtered.Add(1)
		return nil
	default:
		f.counters.failed.Add(1)
	}
	return err
}

// errFiltered reports that every record of an event was filtered out.
var errFiltered = errors.New("filtered")

func (f *flow) process(ctx context.Context, e eventlog.Event, att *attemptState) error {
	rec := Record{Event: e, att: att}
	if f.decode {
		rec.data = decodePayload(e.Data)
		rec.Payload = rec.data
	} else {
		rec.Payload = rawPayload(e.Data)
	}
	var buf [1]Record
	buf[0] = rec
	recs, errs := runSteps(ctx, f.steps, buf[:], nil)
	if len(recs) == 0 && len(errs) == 0 {
		return errFiltered
	}
	// Parts and sinks that succeeded are remembered only when a record
	// goes to several places, where a retry could repeat some of them.
	track := len(recs) > 1 || len(f.sinks) > 1
	for _, r := range recs {
		d := Delivery{ID: r.ID(), Flow: f.name, Part: r.Part, Event: e, Payload: r.Payload, rec: r}
		for i, s := range f.sinks {
			var done string
			if track {
				done = r.Part + "\x00" + strconv.Itoa(i)
				if f.partial.has(e.Seq, done) {
					continue
				}
			}
			if err := s.sink.Deliver(ctx, d); err != nil {
				errs = append(errs, &PartError{Part: r.Part, Stage: s.name, Err: err})
				continue
			}
			if track {
				f.partial.add(e.Seq, done)
			}
		}
	}
	return eventError(errs)
}

// runSteps runs recs through steps and returns the records that come out,
// with errs extended by the failures of the parts that failed: a failing
// part is contained, and the other parts go on. recs is reused.
func runSteps(ctx context.Context, steps []stage, recs []Record, errs []error) ([]Record, []error) {
	for _, st := range steps {
		if st.one != nil {
			// In place: each record yields one at most.
			out := recs[:0]
			for _, r := range recs {
				r, ok, err := st.one(ctx, r)
				switch {
				case err != nil:
					errs = append(errs, &PartError{Part: r.Part, Stage: st.name, Err: err})
				case ok:
					out = append(out, r)
				}
			}
			clear(recs[len(out):])
			recs = out
			continue
		}
		var next []Record
		for _, r := range recs {
			out, err := st.op(ctx, r)
			if err != nil {
				errs = append(errs, &PartError{Part: r.Part, Stage: st.name, Err: err})
				continue
			}
			next = append(next, out...)
		}
		recs = next
	}
	return recs, errs
}

// eventError combines an event's failures. The event is dead-lettered at
// once only if every failure is permanent; otherwise it is retried, and a
// permanent failure among them fails again then.
func eventError(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	permanent := 0
	for _, err := range errs {
		if consumer.IsPermanent(err) {
			permanent++
		}
	}
	switch {
	case permanent == len(errs):
		return consumer.Permanent(joinErrors(errs))
	case permanent > 0:
		return &retryable{joinErrors(errs)}
	}
	return joinErrors(errs)
}

// retryable is an event's failures when only some are permanent: its
// chain holds the others, so neither errors.As finds a permanent mark nor
// errors.Is loses the retryable causes; its message names them all.
type retryable struct{ err error }

func (e *retryable) Error() string { return e.err.Error() }

// Unwrap returns the failures that are not permanent.
func (e *retryable) Unwrap() []error {
	var out []error
	for _, err := range e.err.(interface{ Unwrap() []error }).Unwrap() {
		if !consumer.IsPermanent(err) {
			out = append(out, err)
		}
	}
	return out
}

// partialSet remembers, per event, the parts and sinks that succeeded in
// an attempt that failed elsewhere, so a retry in this process skips
// them. It is bounded: the oldest event is forgotten first.
type partialSet struct {
	mu   sync.Mutex
	done map[uint64]map[string]struct{}
	n    atomic.Int64 // len(done), so that forget costs nothing when it is empty
}

const maxPartialEvents = 10000

func (p *partialSet) has(seq uint64, k string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.done[seq][k]
	return ok
}

func (p *partialSet) add(seq uint64, k string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		p.done = map[uint64]map[string]struct{}{}
	}
	if p.done[seq] == nil {
		if len(p.done) >= maxPartialEvents {
			oldest := seq
			for s := range p.done {
				oldest = min(oldest, s)
			}
			delete(p.done, oldest)
		}
		p.done[seq] = map[string]struct{}{}
		p.n.Store(int64(len(p.done)))
	}
	p.done[seq][k] = struct{}{}
}

// forget drops what is remembered of event seq. An attempt that added
// to the set happened before any later attempt at its event, and so
// before its forget: an empty set has nothing of seq.
func (p *partialSet) forget(seq uint64) {
	if p.n.Load() == 0 {
		return // the usual case: every event succeeded whole
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.done, seq)
	p.n.Store(int64(len(p.done)))
}
