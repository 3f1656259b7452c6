package crash_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/oklog/ulid/v2"
)

// The child process is this test binary run again by flowtest.StartChild:
// it opens the journal, appends until it is killed, and reports on stdout
// one JSON line (an ackLine) per call that returned nil. Nothing else goes
// to stdout; problems go to stderr and end the child with a non-zero
// status, which the parent reports as a failure.

// childMaxLife bounds a child the parent failed to kill: it exits on its
// own, so a parent that died cannot leave it appending forever.
const childMaxLife = 3 * time.Minute

// childConfig is what the parent tells the child.
type childConfig struct {
	Journal      string
	Cycle        uint32
	Seed         uint64
	SyncInterval time.Duration     // eventlog.Options.SyncInterval
	Truncate     map[string]uint64 // stream -> truncate below this sequence (Force), concurrently with the appends
}

// Operations an ackLine reports.
const (
	opAppend   = "append"   // Log.Append
	opUpdate   = "update"   // Log.Update: Tx.Append and Tx.SetOffset in one transaction
	opTruncate = "truncate" // Log.Truncate with Force
)

// ackLine is what one acknowledged call did. The child writes it only
// after the call returned nil.
type ackLine struct {
	Op     string     `json:"op"`
	Stream string     `json:"s"`
	Cycle  uint32     `json:"c"`
	Writer uint8      `json:"w"`
	Events []ackEvent `json:"e,omitempty"`
	Offset uint64     `json:"o,omitempty"` // update: consumer consumerName(Writer) moved here
	Below  uint64     `json:"b,omitempty"` // truncate: removed everything below
}

// ackEvent is one result of an acknowledged append, in call order.
type ackEvent struct {
	Ctr  uint64 `json:"n"`           // the event's key (with the line's stream, cycle, writer)
	Seq  uint64 `json:"q"`           // AppendResult.Seq
	ID   string `json:"id"`          // AppendResult.ID
	Dup  bool   `json:"d,omitempty"` // AppendResult.Duplicate
	Orig uint64 `json:"r,omitempty"` // re-append of an acknowledged event: its sequence
	Sum  uint32 `json:"x"`           // digest of the event's Data
}

// ackWriter writes whole lines to the parent, one write each.
type ackWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (a *ackWriter) write(line *ackLine) error {
	b, err := json.Marshal(line)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	_, err = a.w.Write(append(b, '\n'))
	return err
}

// runChild runs the child's workload. It returns only on failure.
func runChild(cfg childConfig) error {
	l, err := eventlog.Open(cfg.Journal, &eventlog.Options{SyncInterval: cfg.SyncInterval, LockTimeout: 10 * time.Second})
	if err != nil {
		return err
	}
	// Never closed: the parent kills the process.
	out := &ackWriter{w: os.Stdout}
	errc := make(chan error, writers+len(cfg.Truncate))
	for stream, below := range cfg.Truncate {
		go func() {
			if _, err := l.Truncate(stream, below, eventlog.Force); err != nil {
				errc <- fmt.Errorf("truncate %s below %d: %w", stream, below, err)
				return
			}
			errc <- out.write(&ackLine{Op: opTruncate, Stream: stream, Cycle: cfg.Cycle, Below: below})
		}()
	}
	for slot := range writers {
		w := &writer{
			l: l, out: out, cycle: cfg.Cycle, slot: uint8(slot),
			rng: rand.New(rand.NewPCG(cfg.Seed, uint64(slot))),
		}
		go func() { errc <- w.run() }()
	}
	for {
		if err := <-errc; err != nil {
			return err
		}
	}
}

// writer is one appending goroutine of the child.
type writer struct {
	l     *eventlog.Log
	out   *ackWriter
	cycle uint32
	slot  uint8
	rng   *rand.Rand
	ctr   uint64
	// acked holds, per stream, some of the events this writer has seen
	// acknowledged: the candidates for idempotent re-appends.
	acked [numStreams][]ackedRef
}

type ackedRef struct {
	ctr   uint64
	flags byte
	seq   uint64
	id    ulid.ULID
}

const maxRefs = 64

func (w *writer) run() error {
	for {
		s := uint8(w.rng.IntN(numStreams))
		var err error
		switch x := w.rng.IntN(100); {
		case x < 10:
			err = w.update(s)
		case x < 16 && len(w.acked[s]) > 0:
			err = w.reappend(s)
		default:
			err = w.append(s)
		}
		if err != nil {
			return fmt.Errorf("writer %d: %w", w.slot, err)
		}
	}
}

// next returns n new events for stream s; the last one carries lastFlags.
func (w *writer) next(s uint8, n int, lastFlags byte) ([]eventlog.Event, []uint64) {
	evs := make([]eventlog.Event, n)
	ctrs := make([]uint64, n)
	for i := range evs {
		var flags byte
		if i == n-1 {
			flags = lastFlags
		}
		ctrs[i] = w.ctr
		evs[i] = makeEvent(eventKey{Stream: s, Cycle: w.cycle, Writer: w.slot, Ctr: w.ctr}, flags)
		w.ctr++
	}
	return evs, ctrs
}

func (w *writer) batchSize() int { return 1 + w.rng.IntN(16) }

// append appends a batch of new events with Log.Append.
func (w *writer) append(s uint8) error {
	evs, ctrs := w.next(s, w.batchSize(), 0)
	res, err := w.l.Append(streams[s], evs...)
	if err != nil {
		return fmt.Errorf("append %d events to %s: %w", len(evs), streams[s], err)
	}
	return w.ack(opAppend, s, evs, ctrs, make([]uint64, len(evs)), res, 0)
}

// update appends a batch and moves the writer's consumer offset to its
// last event, in one transaction.
func (w *writer) update(s uint8) error {
	evs, ctrs := w.next(s, w.batchSize(), flagOffset)
	var res []eventlog.AppendResult
	err := w.l.Update(func(tx *eventlog.Tx) error {
		r, err := tx.Append(streams[s], evs...)
		if err != nil {
			return err
		}
		res = r
		return tx.SetOffset(streams[s], consumerName(int(w.slot)), r[len(r)-1].Seq)
	})
	if err != nil {
		return fmt.Errorf("update: append %d events to %s and commit offset: %w", len(evs), streams[s], err)
	}
	return w.ack(opUpdate, s, evs, ctrs, make([]uint64, len(evs)), res, res[len(res)-1].Seq)
}

// reappend appends an acknowledged event again, under its ID, among up
// to three new events: the journal must answer Duplicate with the
// original sequence for it and append the others.
func (w *writer) reappend(s uint8) error {
	refs := w.acked[s]
	ref := refs[w.rng.IntN(len(refs))]
	evs, ctrs := w.next(s, w.rng.IntN(4), 0)
	orig := make([]uint64, len(evs))
	dup := makeEvent(eventKey{Stream: s, Cycle: w.cycle, Writer: w.slot, Ctr: ref.ctr}, ref.flags)
	dup.ID = ref.id // the journal's ID when it generated one
	at := w.rng.IntN(len(evs) + 1)
	evs = insert(evs, at, dup)
	ctrs = insert(ctrs, at, ref.ctr)
	orig = insert(orig, at, ref.seq)
	res, err := w.l.Append(streams[s], evs...)
	if err != nil {
		return fmt.Errorf("re-append %s seq %d to %s: %w", ref.id, ref.seq, streams[s], err)
	}
	return w.ack(opAppend, s, evs, ctrs, orig, res, 0)
}

func insert[T any](s []T, i int, v T) []T {
	s = append(s, v)
	copy(s[i+1:], s[i:])
	s[i] = v
	return s
}

// ack reports an acknowledged call to the parent and remembers its new
// events as candidates for re-appends.
func (w *writer) ack(op string, s uint8, evs []eventlog.Event, ctrs, orig []uint64, res []eventlog.AppendResult, offset uint64) error {
	if len(res) != len(evs) {
		return fmt.Errorf("%s to %s: %d results for %d events", op, streams[s], len(res), len(evs))
	}
	line := &ackLine{Op: op, Stream: streams[s], Cycle: w.cycle, Writer: w.slot, Offset: offset, Events: make([]ackEvent, len(evs))}
	for i, r := range res {
		line.Events[i] = ackEvent{Ctr: ctrs[i], Seq: r.Seq, ID: r.ID.String(), Dup: r.Duplicate, Orig: orig[i], Sum: digest(evs[i].Data)}
	}
	if err := w.out.write(line); err != nil {
		return errors.Join(errors.New("report to parent"), err)
	}
	for i, r := range res {
		if orig[i] != 0 || r.Duplicate {
			continue
		}
		var flags byte
		if op == opUpdate && i == len(res)-1 {
			flags = flagOffset
		}
		ref := ackedRef{ctr: ctrs[i], flags: flags, seq: r.Seq, id: r.ID}
		if refs := w.acked[s]; len(refs) < maxRefs {
			w.acked[s] = append(refs, ref)
		} else {
			refs[w.rng.IntN(maxRefs)] = ref
		}
	}
	return nil
}
