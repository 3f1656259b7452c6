package crash_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/oklog/ulid/v2"
)

// model is what the parent knows the journal must hold, across cycles:
// every event, consumer offset and truncation a child acknowledged.
type model struct {
	streams [numStreams]*streamModel
	// capBytes bounds a stream's retained bytes: past it, the next child
	// truncates the stream to about half, so the file stops growing and
	// bbolt reuses freed pages.
	capBytes uint64
	stats    stats
}

type streamModel struct {
	acked map[uint64]ackedEvent // by sequence
	// announced is the highest truncation point given to a child: acked
	// events below it may be gone. truncated is the highest one a child
	// acknowledged: everything below it must be gone.
	announced, truncated uint64
	// offset is the highest consumer offset acknowledged per writer slot.
	offset [writers]uint64
	// verified is the last sequence whose event was regenerated and
	// compared in full in an earlier cycle; later cycles check it by its
	// CRCs and digest only.
	verified uint64
	// truncateBelow is the truncation the next child is to run, or 0.
	truncateBelow uint64
}

type ackedEvent struct {
	id  ulid.ULID
	sum uint32
	key eventKey
}

type stats struct {
	acks, events, reappends, updates, truncations, tornLines int
	maxFileSize                                              int64
	toFirstAck, children, verifying                          time.Duration
}

func newModel(capBytes uint64) *model {
	m := &model{capBytes: capBytes}
	for i := range m.streams {
		m.streams[i] = &streamModel{acked: make(map[uint64]ackedEvent)}
	}
	return m
}

func streamIndex(name string) (uint8, bool) {
	for i, s := range streams {
		if s == name {
			return uint8(i), true
		}
	}
	return 0, false
}

// problems collects what a check found, up to a bound.
type problems []error

const (
	maxProblems = 40
	maxLost     = 10 // lost events reported one by one, per stream
)

func (p *problems) add(format string, args ...any) {
	if len(*p) < maxProblems {
		*p = append(*p, fmt.Errorf(format, args...))
	}
}

func (p problems) err() error { return errors.Join(p...) }

// ingest records one cycle's acknowledgements, checking what can be
// checked from them alone: a fresh event got a new sequence, the new events
// of one call got consecutive sequences, a re-append came back Duplicate
// with the original sequence, an update moved the offset to its last event.
func (m *model) ingest(cycle uint32, cfg childConfig, lines []ackLine) error {
	var p problems
	for _, a := range lines {
		si, ok := streamIndex(a.Stream)
		switch {
		case !ok:
			p.add("ack for unknown stream %q", a.Stream)
			continue
		case a.Cycle != cycle:
			p.add("ack from cycle %d in cycle %d", a.Cycle, cycle)
			continue
		}
		sm := m.streams[si]
		m.stats.acks++
		switch a.Op {
		case opTruncate:
			if a.Below != cfg.Truncate[a.Stream] {
				p.add("%s: truncation below %d acknowledged, %d was asked", a.Stream, a.Below, cfg.Truncate[a.Stream])
			}
			sm.truncated = max(sm.truncated, a.Below)
			m.stats.truncations++
			continue
		case opAppend, opUpdate:
		default:
			p.add("ack with unknown op %q", a.Op)
			continue
		}
		if int(a.Writer) >= writers || len(a.Events) == 0 {
			p.add("malformed ack %+v", a)
			continue
		}
		var prev uint64
		for _, e := range a.Events {
			k := eventKey{Stream: si, Cycle: cycle, Writer: a.Writer, Ctr: e.Ctr}
			id, err := ulid.ParseStrict(e.ID)
			if err != nil {
				p.add("event %s: acknowledged ID %q: %v", k, e.ID, err)
				continue
			}
			if e.Orig != 0 {
				m.stats.reappends++
				if !e.Dup || e.Seq != e.Orig {
					p.add("event %s: re-append of acknowledged ID %s (seq %d) came back Duplicate=%v seq %d", k, id, e.Orig, e.Dup, e.Seq)
				}
				if orig, ok := sm.acked[e.Orig]; !ok {
					p.add("event %s: re-append names seq %d, which was not acknowledged", k, e.Orig)
				} else if orig.id != id || orig.key != k {
					p.add("event %s: re-append of %s names seq %d, acknowledged for %s %s", k, id, e.Orig, orig.key, orig.id)
				}
				continue
			}
			if e.Dup {
				p.add("event %s: a new event came back Duplicate of seq %d", k, e.Seq)
				continue
			}
			if prev != 0 && e.Seq != prev+1 {
				p.add("event %s: seq %d after %d in the same call: one call's events must be consecutive", k, e.Seq, prev)
			}
			prev = e.Seq
			if old, ok := sm.acked[e.Seq]; ok {
				p.add("event %s: seq %s/%d acknowledged twice, first for %s", k, a.Stream, e.Seq, old.key)
			}
			sm.acked[e.Seq] = ackedEvent{id: id, sum: e.Sum, key: k}
			m.stats.events++
		}
		if a.Op == opUpdate {
			m.stats.updates++
			if last := a.Events[len(a.Events)-1]; a.Offset != last.Seq {
				p.add("%s: update acknowledged offset %d for %s, its last event is %d", a.Stream, a.Offset, consumerName(int(a.Writer)), last.Seq)
			}
			sm.offset[a.Writer] = max(sm.offset[a.Writer], a.Offset)
		}
	}
	return p.err()
}

// verify checks the reopened journal l against the model.
func (m *model) verify(ctx context.Context, l *eventlog.Log) error {
	var p problems
	rep, err := l.Check(ctx)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	for _, e := range rep.Problems {
		p.add("check: %w", e)
	}
	for i, sm := range m.streams {
		m.verifyStream(l, uint8(i), sm, &p)
	}
	return p.err()
}

func (m *model) verifyStream(l *eventlog.Log, s uint8, sm *streamModel, p *problems) {
	name := streams[s]
	si, err := l.Info(name)
	if errors.Is(err, eventlog.ErrNotFound) {
		if len(sm.acked) > 0 {
			p.add("%s: stream missing, %d events acknowledged", name, len(sm.acked))
		}
		return
	} else if err != nil {
		p.add("%s: info: %w", name, err)
		return
	}

	var (
		seqs      []uint64 // retained sequences, in order
		sizes     []uint64 // their payload sizes
		ids       = make(map[ulid.ULID]uint64, si.Count)
		lastMark  [writers]uint64 // highest event carrying flagOffset, per writer slot
		prev      uint64
		lastCheck = sm.verified
	)
	for e, err := range l.Scan(name, 0, 0) {
		if err != nil {
			p.add("%s: scan after seq %d: %w", name, prev, err)
			return
		}
		switch {
		case prev == 0 && e.Seq != si.First:
			p.add("%s: first event is %d, Info says %d", name, e.Seq, si.First)
		case prev != 0 && e.Seq != prev+1:
			p.add("%s: sequence gap: %d follows %d", name, e.Seq, prev)
		}
		prev = e.Seq
		seqs = append(seqs, e.Seq)
		sizes = append(sizes, uint64(len(e.Data)+len(e.Type)+len(e.Key)+48))
		if other, ok := ids[e.ID]; ok {
			p.add("%s: id %s at seq %d and %d", name, e.ID, other, e.Seq)
		}
		ids[e.ID] = e.Seq
		k, flags, err := parseData(e.Data)
		if err != nil {
			p.add("%s seq %d: %w", name, e.Seq, err)
			continue
		}
		if k.Stream != s {
			p.add("%s seq %d: event %s belongs to another stream", name, e.Seq, k)
		}
		if e.Seq > lastCheck {
			if err := checkEvent(e, k, flags); err != nil {
				p.add("%s seq %d: %w", name, e.Seq, err)
			}
			sm.verified = e.Seq
		}
		if flags&flagOffset != 0 {
			lastMark[k.Writer] = e.Seq
		}
		if a, ok := sm.acked[e.Seq]; ok {
			switch {
			case a.key != k:
				p.add("%s seq %d: holds event %s, acknowledged for %s", name, e.Seq, k, a.key)
			case a.id != e.ID:
				p.add("%s seq %d: id %s, acknowledged %s", name, e.Seq, e.ID, a.id)
			case a.sum != digest(e.Data):
				p.add("%s seq %d: payload digest %08x, acknowledged %08x", name, e.Seq, digest(e.Data), a.sum)
			}
		}
	}
	if uint64(len(seqs)) != si.Count {
		p.add("%s: scanned %d events, Info counts %d", name, len(seqs), si.Count)
	}
	if prev != 0 && prev != si.Last {
		p.add("%s: last event is %d, head says %d", name, prev, si.Last)
	}
	if sm.truncated > 0 && si.First < sm.truncated {
		p.add("%s: truncation below %d was acknowledged, first retained is %d", name, sm.truncated, si.First)
	}

	// Every acknowledged event is still there, unless a truncation that a
	// child was given removed it.
	var lost []uint64
	for seq := range sm.acked {
		if _, found := slices.BinarySearch(seqs, seq); found {
			continue
		}
		if seq < si.First && seq < sm.announced {
			delete(sm.acked, seq) // truncated
			continue
		}
		lost = append(lost, seq)
	}
	slices.Sort(lost)
	for i, seq := range lost {
		if i == maxLost {
			p.add("%s: %d more acknowledged events lost, up to seq %d", name, len(lost)-i, lost[len(lost)-1])
			break
		}
		a := sm.acked[seq]
		p.add("%s: acknowledged event %s (seq %d, id %s) is lost (retained %d..%d, truncations announced below %d)", name, a.key, seq, a.id, si.First, si.Last, sm.announced)
	}

	m.verifyOffsets(l, s, sm, si, seqs, lastMark, p)

	// Plan the next truncation: keep about half the cap.
	sm.truncateBelow = 0
	if si.Bytes > m.capBytes {
		var kept uint64
		i := len(sizes)
		for i > 0 && kept+sizes[i-1] <= m.capBytes/2 {
			i--
			kept += sizes[i]
		}
		if i > 0 && i < len(seqs) {
			sm.truncateBelow = seqs[i]
		}
	}
}

// verifyOffsets checks the consumer offsets: each is at or below the head,
// at least what was acknowledged, and names exactly the last event that
// was appended in the same transaction as an offset move (the event
// carrying flagOffset): an offset is never committed without its events,
// nor events without their offset.
func (m *model) verifyOffsets(l *eventlog.Log, s uint8, sm *streamModel, si eventlog.StreamInfo, seqs []uint64, lastMark [writers]uint64, p *problems) {
	name := streams[s]
	cs, err := l.Consumers(name)
	if err != nil {
		p.add("%s: consumers: %w", name, err)
		return
	}
	var offsets [writers]uint64
	var registered [writers]bool
	for _, c := range cs {
		slot, ok := parseConsumerName(c.Name)
		if !ok {
			p.add("%s: unexpected consumer %q", name, c.Name)
			continue
		}
		offsets[slot], registered[slot] = c.Offset, true
	}
	for slot := range writers {
		cn, off := consumerName(slot), offsets[slot]
		switch {
		case sm.offset[slot] > 0 && !registered[slot]:
			p.add("%s: consumer %s lost: offset %d was acknowledged", name, cn, sm.offset[slot])
			continue
		case !registered[slot]:
			if lastMark[slot] != 0 {
				p.add("%s: event %d was appended with an offset move for %s, which is not registered", name, lastMark[slot], cn)
			}
			continue
		case off < sm.offset[slot]:
			p.add("%s: consumer %s at %d, %d was acknowledged", name, cn, off, sm.offset[slot])
		case off > si.Last:
			p.add("%s: consumer %s at %d, beyond the head %d", name, cn, off, si.Last)
		}
		if lastMark[slot] != 0 {
			if off != lastMark[slot] {
				p.add("%s: consumer %s at %d, but the last event appended with its offset move is %d", name, cn, off, lastMark[slot])
			}
		} else if _, found := slices.BinarySearch(seqs, off); found {
			p.add("%s: consumer %s at %d, an event not appended with an offset move", name, cn, off)
		}
	}
}

// checkTimeout bounds one verification's Check and scan.
const checkTimeout = 5 * time.Minute
