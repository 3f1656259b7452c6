package consumer

import (
	"cmp"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/flowrt/flowrt/eventlog"
)

// item is one event on its way through the Reader.
type item struct {
	ev         eventlog.Event
	attempts   int       // failed attempts so far, persisted
	first      time.Time // first failure
	due        time.Time // earliest next attempt
	holdsKey   bool      // this item owns its key's turn
	redelivery bool      // a dead letter redelivered on request: outside the window
}

type outcome uint8

const (
	acked        outcome = iota // handler returned nil
	retrying                    // failed; persisted; due again at item.due
	deadLettered                // failed for good; persisted
	interrupted                 // stopped by Close or an expired Shutdown: not counted
	deferred                    // not run: an earlier item of its key failed in the same batch
)

type result struct {
	it      *item
	outcome outcome
	err     error // a persistence failure: fatal for the Reader
}

type fetched struct {
	events []eventlog.Event
	err    error
}

// fetchBatch is how many events the fetcher reads at once.
const fetchBatch = 256

// redeliverPoll is how often a running Reader looks for dead letters queued
// for redelivery.
const redeliverPoll = time.Second

// run starts the fetcher, the workers and the committer, runs the dispatch
// loop on the calling goroutine, and stops them all before returning.
func (r *Reader) run(intake, work context.Context, h Handler) error {
	floor := r.floor.Load()
	state, err := r.loadState(floor)
	if err != nil {
		return err
	}
	sub, err := r.j.Subscribe(r.stream, eventlog.AtSeq(floor+1))
	if err != nil {
		return fmt.Errorf("flowrt/consumer: subscribe %q: %w", r.stream, err)
	}
	fetchCtx, stopFetch := context.WithCancel(intake)
	defer stopFetch()
	var wg sync.WaitGroup
	in := make(chan fetched)
	wg.Go(func() { fetch(fetchCtx, sub, in) })
	jobs := make(chan *batch)
	results := make(chan *batch, r.opts.Workers) // a worker holds one batch at a time: sends never block
	for range r.opts.Workers {
		wg.Go(func() { r.work(work, h, jobs, results) })
	}
	kick := make(chan struct{}, 1)
	stopCommit := make(chan struct{})
	commitErr := make(chan error, 1)
	commitFailed := make(chan error, 1)
	go func() { commitErr <- r.commitLoop(kick, stopCommit, commitFailed) }()

	d := &dispatcher{r: r, win: newWindow(floor), held: make(map[string]int), state: state, redelivering: make(map[uint64]bool)}
	loopErr := d.loop(intake, in, jobs, results, kick, commitFailed)
	r.doneAbove = d.win.doneAbove()

	stopFetch()
	close(jobs)
	wg.Wait()
	close(stopCommit)
	return errors.Join(loopErr, <-commitErr)
}

func fetch(ctx context.Context, sub *eventlog.Subscription, out chan<- fetched) {
	for {
		evs, err := sub.NextBatch(ctx, make([]eventlog.Event, 0, fetchBatch), fetchBatch)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			evs = nil
		}
		select {
		case out <- fetched{events: evs, err: err}:
			if err != nil {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// commitLoop commits the floor when kicked and once more when stopped.
// A failed commit is reported on failed, once: the dispatch loop then
// stops, since going on would deliver work whose progress cannot be
// saved. The commit on the way out is still attempted.
func (r *Reader) commitLoop(kick <-chan struct{}, stop <-chan struct{}, failed chan<- error) error {
	for {
		select {
		case <-kick:
			if err := r.commit(r.floor.Load(), nil); err != nil {
				select {
				case failed <- err:
				default:
				}
			}
		case <-stop:
			return r.commit(r.floor.Load(), r.doneAbove)
		}
	}
}

// dispatcher is the Reader's state while it runs, owned by the loop
// goroutine alone.
type dispatcher struct {
	r            *Reader
	win          *window
	held         map[string]int   // per key: items out (in a batch, or waiting for a retry that holds the key)
	ready        []*item          // items to hand to workers, in sequence order
	backlog      []eventlog.Event // fetched, not yet admitted (window full)
	timers       retryHeap
	running      int      // items with a worker, outcome not collected
	batches      []*batch // batches with a worker
	spare        *batch   // formed for an idle worker, until one takes it
	state        persistedState
	redelivering map[uint64]bool // redeliveries picked up and not done: parked, or out
	// parked holds, for a Reader with a commit hook, the redeliveries not
	// yet released (releaseRedelivery).
	parked     []*item
	lastKick   uint64
	lastKickAt time.Time
	idleTimer  *time.Timer // armed to commit a caught-up floor soon
}

func (d *dispatcher) loop(intake context.Context, in <-chan fetched, jobs chan<- *batch, results <-chan *batch, kick chan<- struct{}, commitFailed <-chan error) error {
	opts := &d.r.opts
	ticker := time.NewTicker(opts.CommitInterval)
	defer ticker.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	poll := time.NewTicker(redeliverPoll)
	defer poll.Stop()
	defer func() {
		if d.idleTimer != nil {
			d.idleTimer.Stop()
		}
	}()
	d.pollRedeliveries()
	intakeDone := intake.Done()
	accepting := true
	var fatal error
	stop := func(err error) {
		if fatal == nil {
			fatal = err
		}
		accepting, intakeDone = false, nil
		// Items not started are not delivered now: the next run has them.
		for _, b := range d.batches {
			d.running -= len(b.reclaim())
		}
		d.spare = nil
	}
	// gather collects the outcomes the workers have published, including
	// those of batches still running, and gives idle workers the items
	// not started behind a busy handler.
	gather := func() {
		for _, b := range d.batches {
			if err := d.collect(b); err != nil {
				stop(err)
			}
		}
		if accepting && len(d.ready) == 0 && len(d.batches) < opts.Workers {
			for _, b := range d.batches {
				its := b.reclaim()
				d.running -= len(its)
				for _, it := range its {
					d.unhold(it)
					d.makeReady(it)
				}
			}
		}
	}
	for {
		paused := d.pausedForRedelivery()
		if paused {
			d.releaseRedelivery(kick)
		} else {
			d.admit()
		}
		d.armTimer(timer)
		var inC <-chan fetched
		if accepting && !paused && len(d.backlog) == 0 && d.win.size() < opts.MaxInFlight {
			inC = in
		}
		// A batch is formed only for a worker known to be idle, after its
		// last batch's outcomes are in: with one worker, events then run in
		// sequence order.
		if accepting && d.spare == nil && len(d.batches) < opts.Workers {
			d.spare = d.formBatch()
		}
		var jobC chan<- *batch
		if d.spare != nil {
			jobC = jobs
		}
		if !accepting && d.running == 0 && len(d.batches) == 0 {
			return fatal // every worker is idle: none is left blocked on results
		}
		select {
		case f := <-inC:
			if f.err != nil {
				stop(fmt.Errorf("flowrt/consumer: read %q: %w", d.r.stream, f.err))
				continue
			}
			d.backlog = f.events
		case jobC <- d.spare:
			b := d.spare
			d.spare = nil
			d.running += len(b.items)
			d.batches = append(d.batches, b)
		case b := <-results:
			d.batches = slices.DeleteFunc(d.batches, func(x *batch) bool { return x == b })
			if err := d.collect(b); err != nil {
				stop(err)
			}
			gather()
			d.maybeKick(kick, afterProgress)
			d.kickWhenIdle(kick)
		case <-timer.C:
			d.fireTimers(time.Now())
		case <-ticker.C:
			gather()
			d.maybeKick(kick, onInterval)
		case <-d.idleC():
			d.idleTimer = nil
			d.kickWhenIdle(kick)
		case <-poll.C:
			if accepting {
				d.pollRedeliveries()
			}
		case err := <-commitFailed:
			stop(err)
		case <-intakeDone:
			stop(nil) // drain: no new deliveries, wait for running handlers
		}
	}
}

// collect handles the outcomes b has published since the last collect. It
// returns the first persistence failure; the event it concerns is not
// done, so the floor must not pass it.
func (d *dispatcher) collect(b *batch) error {
	var fatal error
	for _, res := range b.collect() {
		d.running--
		if res.err != nil {
			if fatal == nil {
				fatal = res.err
			}
			continue
		}
		d.handle(res)
	}
	return fatal
}

// formBatch takes, in sequence order, up to an even share of the ready
// items whose keys no other batch holds, or nil when none is. Same-key items
// may share a batch: its worker runs them in order. Once a key is skipped,
// its later items are skipped too, so per-key order holds.
func (d *dispatcher) formBatch() *batch {
	if len(d.ready) == 0 {
		return nil
	}
	limit := max(1, min((len(d.ready)+d.r.opts.Workers-1)/d.r.opts.Workers, fetchBatch))
	var items []*item
	var mine, skipped map[string]bool
	rest := d.ready[:0]
	for i, it := range d.ready {
		if len(items) == limit {
			rest = append(rest, d.ready[i:]...)
			break
		}
		k := it.ev.Key
		// A retrying item that holds its key waits until the later items of
		// its key it was batched with have come back (deferred): only then
		// is it the key's sole item out.
		blocked := it.holdsKey && d.held[k] > 1
		if k != "" && (blocked || !it.holdsKey && (skipped[k] || (d.held[k] > 0 && !mine[k]))) {
			if skipped == nil {
				skipped = map[string]bool{}
			}
			skipped[k] = true
			rest = append(rest, it)
			continue
		}
		if k != "" {
			if !it.holdsKey {
				d.held[k]++
			}
			if mine == nil {
				mine = map[string]bool{}
			}
			mine[k] = true
		}
		items = append(items, it)
	}
	clear(d.ready[len(rest):])
	d.ready = rest
	if len(items) == 0 {
		return nil
	}
	return &batch{items: items}
}

// admit moves fetched events into the window while it has room.
func (d *dispatcher) admit() {
	n := 0
	for _, ev := range d.backlog {
		if d.win.size() >= d.r.opts.MaxInFlight {
			break
		}
		n++
		d.win.admit(ev.Seq)
		d.r.floor.Store(d.win.floor) // admit jumps over gaps retention left
		if d.state.done[ev.Seq] {
			delete(d.state.done, ev.Seq)
			d.complete(ev.Seq)
			continue
		}
		it := &item{ev: ev}
		if rec, ok := d.state.retries[ev.Seq]; ok {
			delete(d.state.retries, ev.Seq)
			it.attempts, it.first, it.due = rec.Attempts, time.Unix(0, rec.First), time.Unix(0, rec.Due)
			if k := ev.Key; k != "" && d.r.opts.KeyFailure == HoldKey {
				if d.held[k] == 0 && !d.pendingKey(k) {
					// A retry carried over from the last run keeps its
					// key's turn, as it would have had it not stopped. Only
					// the first of a key does (events are admitted in
					// sequence order): an earlier run may have left
					// several, and two holders of one key would wait for
					// each other.
					it.holdsKey = true
					d.held[k]++
				} else {
					// An earlier event of its key is back too (the last run
					// did it, but no committed floor covers it): it goes
					// first, and this one follows it at once, in order.
					it.due = time.Time{}
				}
			}
		}
		d.r.stats.inFlight.Add(1)
		d.schedule(it)
	}
	d.backlog = d.backlog[n:]
	if len(d.backlog) == 0 {
		d.backlog = nil
	}
}

// pendingKey reports whether an admitted item of key k is not done yet:
// ready, out with a worker, or waiting for its retry. Only admissions of
// retries carried over from the last run ask, so a scan is cheap enough.
func (d *dispatcher) pendingKey(k string) bool {
	for _, it := range d.ready {
		if it.ev.Key == k {
			return true
		}
	}
	for _, it := range d.timers {
		if it.ev.Key == k {
			return true
		}
	}
	batches := d.batches
	if d.spare != nil {
		batches = append(batches[:len(batches):len(batches)], d.spare)
	}
	for _, b := range batches {
		for _, it := range b.items {
			if it.ev.Key == k {
				return true
			}
		}
	}
	return false
}

// schedule makes the item ready, or waits for its due time.
func (d *dispatcher) schedule(it *item) {
	if time.Until(it.due) > 0 {
		heap.Push(&d.timers, it)
		return
	}
	d.makeReady(it)
}

// makeReady inserts the item into the ready list in sequence order.
// Fetched items arrive in order, so this is usually an append.
func (d *dispatcher) makeReady(it *item) {
	n := len(d.ready)
	if n == 0 || d.ready[n-1].ev.Seq < it.ev.Seq {
		d.ready = append(d.ready, it)
		return
	}
	i, _ := slices.BinarySearchFunc(d.ready, it.ev.Seq, func(x *item, seq uint64) int { return cmp.Compare(x.ev.Seq, seq) })
	d.ready = slices.Insert(d.ready, i, it)
}

// unhold releases the item's count on its key.
func (d *dispatcher) unhold(it *item) {
	k := it.ev.Key
	if k == "" || it.holdsKey {
		return
	}
	if d.held[k]--; d.held[k] <= 0 {
		delete(d.held, k)
	}
}

func (d *dispatcher) handle(res result) {
	it := res.it
	switch res.outcome {
	case acked, deadLettered:
		it.holdsKey = false
		d.unhold(it)
		if it.redelivery {
			delete(d.redelivering, it.ev.Seq)
			d.r.stats.redelivering.Store(int64(len(d.redelivering)))
			return
		}
		d.r.stats.inFlight.Add(-1)
		d.complete(it.ev.Seq)
	case retrying:
		if d.r.opts.KeyFailure == SkipAhead || it.ev.Key == "" {
			it.holdsKey = false
			d.unhold(it)
		} else {
			it.holdsKey = true // later events of the key wait for it
		}
		heap.Push(&d.timers, it)
	case deferred:
		d.unhold(it)
		d.makeReady(it) // behind the failed item, which holds the key
	case interrupted:
		// Not done: delivered again after the next start.
	}
}

func (d *dispatcher) complete(seq uint64) {
	if d.win.complete(seq) {
		d.r.floor.Store(d.win.floor)
	}
}

// pausedForRedelivery reports whether the loop admits no new event, for a
// Reader with a commit hook that has redeliveries to run: while one is
// out, and while they wait for the window to drain, unless an event waits
// for a retry, whose schedule may be long: then events flow on, and the
// redeliveries wait until no retry does.
func (d *dispatcher) pausedForRedelivery() bool {
	if d.r.opts.Commit == nil || len(d.redelivering) == 0 {
		return false
	}
	out := len(d.parked) < len(d.redelivering)
	return out || len(d.timers) == 0
}

// releaseRedelivery lets a parked redelivery run once the Reader has
// nothing else in flight and its floor is committed, one at a time, while
// the loop admits no new event. A commit hook then never sees a
// redelivered event, below the floor, done among later events of its key
// that no commit covers yet, nor a commit of its own at the same time: the
// state it commits with the dead letter's clearing is exactly what it was
// plus that event.
func (d *dispatcher) releaseRedelivery(kick chan<- struct{}) {
	if len(d.parked) == 0 || len(d.parked) < len(d.redelivering) || d.win.size() > 0 {
		return // one is out, or events are
	}
	if d.r.committed.Load() < d.win.floor {
		d.maybeKick(kick, beforeRedelivery) // commit what is done first
		return
	}
	it := d.parked[0]
	d.parked = d.parked[1:]
	d.makeReady(it)
}

// kickReason says why the dispatcher considers a commit.
type kickReason uint8

const (
	afterProgress    kickReason = iota // the floor moved: commit after CommitEvery events
	onInterval                         // CommitInterval passed: commit any progress
	beforeRedelivery                   // a redelivery waits for the floor: commit any progress
)

// maybeKick asks the committer to commit the floor: any progress on the
// interval or for a redelivery, or once the floor has moved CommitEvery
// events.
func (d *dispatcher) maybeKick(kick chan<- struct{}, why kickReason) {
	anyProgress := why != afterProgress
	f := d.win.floor
	if f <= d.lastKick || (!anyProgress && f-d.lastKick < uint64(d.r.opts.CommitEvery)) {
		return
	}
	d.lastKick, d.lastKickAt = f, time.Now()
	select {
	case kick <- struct{}{}:
	default: // a commit is pending; it will read the newest floor
	}
}

// idleCommitGap is the shortest time between two commits of a caught-up
// floor: a consumer that keeps catching up with a busy stream commits at
// most this often, and otherwise on CommitInterval.
func (d *dispatcher) idleCommitGap() time.Duration {
	return max(d.r.opts.CommitInterval/10, time.Millisecond)
}

// kickWhenIdle commits the floor soon once the consumer has caught up with
// the stream, so that an idle consumer's progress is durable within
// idleCommitGap instead of CommitInterval. A consumer working through a
// backlog keeps committing on CommitInterval and CommitEvery.
func (d *dispatcher) kickWhenIdle(kick chan<- struct{}) {
	caughtUp := d.win.floor == d.win.top && d.running == 0 && len(d.ready) == 0 && len(d.backlog) == 0 && len(d.timers) == 0
	if !caughtUp || d.win.floor <= d.lastKick {
		return // busy
	}
	if wait := d.idleCommitGap() - time.Since(d.lastKickAt); wait > 0 {
		if d.idleTimer == nil {
			d.idleTimer = time.NewTimer(wait) // it calls again, and looks then
		}
		return
	}
	// Only past the gap, the read of the stream's end: a trickle of
	// events costs one read per gap, not one per event.
	if d.win.floor < d.streamLast() {
		return // only caught up with a fetched batch of a backlog
	}
	d.maybeKick(kick, onInterval)
}

// streamLast returns the stream's last sequence (0 if it cannot tell).
func (d *dispatcher) streamLast() uint64 {
	var last uint64
	_ = d.r.j.View(func(tx *eventlog.Tx) error {
		if si, err := tx.Info(d.r.stream); err == nil {
			last = si.Last
		}
		return nil
	})
	return last
}

// idleC is the idle timer's channel, nil when it is not armed.
func (d *dispatcher) idleC() <-chan time.Time {
	if d.idleTimer == nil {
		return nil
	}
	return d.idleTimer.C
}

func (d *dispatcher) armTimer(t *time.Timer) {
	if len(d.timers) == 0 {
		return
	}
	t.Reset(max(time.Until(d.timers[0].due), 0))
}

func (d *dispatcher) fireTimers(now time.Time) {
	for len(d.timers) > 0 && !d.timers[0].due.After(now) {
		d.makeReady(heap.Pop(&d.timers).(*item))
	}
}

// retryHeap orders items waiting for their retry by due time.
type retryHeap []*item

func (h retryHeap) Len() int           { return len(h) }
func (h retryHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h retryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *retryHeap) Push(x any)        { *h = append(*h, x.(*item)) }
func (h *retryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return it
}
