package consumer

import "sync/atomic"

// batch is a run of ready items handed to one worker, which starts them in
// order. Batches spread the cost of the hand-offs over many events, but a
// slow handler must delay only its own key: so the worker publishes each
// outcome as it finishes and the dispatcher collects the outcomes while the
// batch is still running, and the dispatcher can take back the items not
// yet started, for idle workers or, when intake stops, to deliver them on
// the next run instead.
type batch struct {
	items []*item
	out   []result     // out[i] is final once ended > i; allocated by the worker
	next  atomic.Int64 // index of the next item to start; ≥ len(items) when none is left
	ended atomic.Int64 // outcomes published, out[:ended]
	seen  int          // outcomes collected; the dispatcher's alone
}

// run is the worker's side: it starts the items one at a time, publishing
// each outcome, until none is left to start. Under HoldKey, once an item
// fails its later items of the same key are deferred, not run: they wait
// for its retry.
func (b *batch) run(process func(*item) result, policy KeyFailure) {
	hold := policy == HoldKey
	b.out = make([]result, len(b.items))
	var failed map[string]bool
	for {
		i := b.next.Add(1) - 1
		if i >= int64(len(b.items)) {
			return
		}
		it := b.items[i]
		if failed[it.ev.Key] {
			b.out[i] = result{it: it, outcome: deferred}
		} else {
			b.out[i] = process(it)
			if hold && it.ev.Key != "" && b.out[i].outcome == retrying {
				if failed == nil {
					failed = map[string]bool{}
				}
				failed[it.ev.Key] = true
			}
		}
		b.ended.Store(i + 1)
	}
}

// collect returns the outcomes published since the last collect.
func (b *batch) collect() []result {
	end := int(b.ended.Load())
	if end == b.seen {
		return nil
	}
	rs := b.out[b.seen:end]
	b.seen = end
	return rs
}

// reclaim takes back the items the worker has not started.
func (b *batch) reclaim() []*item {
	i := b.next.Swap(int64(len(b.items)))
	if i >= int64(len(b.items)) {
		return nil
	}
	return b.items[i:]
}
