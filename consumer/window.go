package consumer

// window tracks the events between the ack floor and the newest admitted
// event. The floor is the highest sequence such that every event at or
// below it is done; completions above a gap wait for the gap. It is owned
// by the dispatch loop and not safe for concurrent use.
type window struct {
	floor uint64 // every sequence ≤ floor is done
	top   uint64 // highest admitted sequence; top ≥ floor
	done  []bool // done[i] is the state of sequence floor+1+i
}

func newWindow(floor uint64) *window { return &window{floor: floor, top: floor} }

// size is how many sequences lie above the floor.
func (w *window) size() int { return int(w.top - w.floor) }

// admit registers seq (> top). Sequences skipped between top and seq, which
// retention removed, count as done.
func (w *window) admit(seq uint64) {
	if len(w.done) == 0 && seq > w.top+1 {
		// Nothing pending: jump over the gap instead of recording it, so
		// a gap of millions costs nothing.
		w.floor, w.top = seq-1, seq-1
	}
	for s := w.top + 1; s < seq; s++ {
		w.done = append(w.done, true)
	}
	w.done = append(w.done, false)
	w.top = seq
	w.advance()
}

// complete marks seq done and advances the floor. It reports whether the
// floor moved.
func (w *window) complete(seq uint64) bool {
	if seq <= w.floor || seq > w.top {
		return false
	}
	w.done[seq-w.floor-1] = true
	return w.advance()
}

func (w *window) advance() bool {
	n := 0
	for n < len(w.done) && w.done[n] {
		n++
	}
	if n == 0 {
		return false
	}
	w.floor += uint64(n)
	w.done = w.done[n:] // append reallocates past the front: memory stays bounded by the window
	return true
}

// doneAbove returns the sequences above the floor that are done.
func (w *window) doneAbove() []uint64 {
	var out []uint64
	for i, done := range w.done {
		if done {
			out = append(out, w.floor+1+uint64(i))
		}
	}
	return out
}
