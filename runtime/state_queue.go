package runtime

import "iter"

// queueChunk is how many reductions one array of a reductionQueue holds.
const queueChunk = 4096

// reductionQueue holds reductions in order, in arrays of queueChunk that
// it reuses: a push never copies what is queued, and a queue that is
// folded and refilled allocates nothing. It is not safe for concurrent
// use: the stateHook guards its queue with its mutex.
type reductionQueue struct {
	chunks [][]reduction // in order; every one but the last may be partial
	free   [][]reduction // empty arrays to reuse
}

func (q *reductionQueue) push(op reduction) {
	n := len(q.chunks)
	if n == 0 || len(q.chunks[n-1]) == cap(q.chunks[n-1]) {
		q.chunks = append(q.chunks, q.chunk())
		n++
	}
	q.chunks[n-1] = append(q.chunks[n-1], op)
}

func (q *reductionQueue) chunk() []reduction {
	if n := len(q.free); n > 0 {
		c := q.free[n-1]
		q.free = q.free[:n-1]
		return c
	}
	return make([]reduction, 0, queueChunk)
}

// take empties the queue and returns what it held.
func (q *reductionQueue) take() [][]reduction {
	chunks := q.chunks
	q.chunks = nil
	return chunks
}

// prepend puts ops before what the queue holds.
func (q *reductionQueue) prepend(ops []reduction) {
	if len(ops) == 0 {
		return
	}
	later := q.chunks
	q.chunks = nil
	for _, op := range ops {
		q.push(op)
	}
	q.chunks = append(q.chunks, later...)
}

// recycle keeps the arrays of chunks, which take returned, for reuse.
func (q *reductionQueue) recycle(chunks [][]reduction) {
	for _, c := range chunks {
		clear(c)
		q.free = append(q.free, c[:0])
	}
}

// reset empties the queue.
func (q *reductionQueue) reset() {
	q.recycle(q.take())
}

// allOf iterates over the reductions of chunks, in order.
func allOf(chunks [][]reduction) iter.Seq[reduction] {
	return func(yield func(reduction) bool) {
		for _, c := range chunks {
			for _, op := range c {
				if !yield(op) {
					return
				}
			}
		}
	}
}
