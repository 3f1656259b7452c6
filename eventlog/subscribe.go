package eventlog

import (
	"context"
	"strconv"
	"time"
)

// Position says where a subscription or a new consumer starts.
type Position struct {
	kind positionKind
	seq  uint64
	time time.Time
}

type positionKind uint8

const (
	posEarliest positionKind = iota
	posLatest
	posSeq
	posTime
)

// Earliest starts at the lowest retained event.
func Earliest() Position { return Position{kind: posEarliest} }

// Latest starts after the last event at the moment of resolving: only
// events appended afterwards are seen (Kafka's "latest", JetStream's
// DeliverNew).
func Latest() Position { return Position{kind: posLatest} }

// AtSeq starts at sequence seq (or the next retained one).
func AtSeq(seq uint64) Position { return Position{kind: posSeq, seq: seq} }

// AtTime starts at the first event appended at or after t.
func AtTime(t time.Time) Position { return Position{kind: posTime, time: t} }

// String describes the position, as in "seq 42" or "latest".
func (p Position) String() string {
	switch p.kind {
	case posLatest:
		return "latest"
	case posSeq:
		return "seq " + strconv.FormatUint(p.seq, 10)
	case posTime:
		return "time " + p.time.UTC().Format(time.RFC3339Nano)
	default:
		return "earliest"
	}
}

// Resolve returns the first sequence p designates in stream. A stream that
// does not exist yet resolves to 1.
func (tx *Tx) Resolve(stream string, p Position) (uint64, error) {
	st, err := tx.stream(stream, existing)
	if isNotFound(err) {
		if p.kind == posSeq {
			return max(p.seq, 1), nil
		}
		return 1, nil
	}
	if err != nil {
		return 0, err
	}
	switch p.kind {
	case posLatest:
		return st.head.last + 1, nil
	case posSeq:
		return max(p.seq, 1), nil
	case posTime:
		return tx.SeqAtTime(stream, p.time)
	default:
		return st.first(), nil
	}
}

// Subscription is a live iterator over one stream: it yields the events that
// exist from its position on, then waits for new ones, woken by each commit.
// It is not safe for concurrent use; use one per goroutine.
type Subscription struct {
	log    *Log
	stream string
	next   uint64
	buf    []Event
	batch  int
	ahead  readahead
}

// subscribeBatch is how many events a Subscription reads per transaction.
const subscribeBatch = 512

// Subscribe starts a subscription to stream at p. Many subscriptions may run
// while appends go on. It holds no resources beyond its buffer; drop it when
// done.
func (l *Log) Subscribe(stream string, p Position) (*Subscription, error) {
	if err := ValidateName(stream); err != nil {
		return nil, err
	}
	var next uint64
	if err := l.View(func(tx *Tx) (err error) { next, err = tx.Resolve(stream, p); return err }); err != nil {
		return nil, err
	}
	return &Subscription{log: l, stream: stream, next: next, batch: subscribeBatch}, nil
}

// Next returns the next event, waiting for one to be committed if needed.
// It returns ctx.Err() when ctx is done and ErrClosed when the journal
// closes.
func (s *Subscription) Next(ctx context.Context) (Event, error) {
	for len(s.buf) == 0 {
		if err := ctx.Err(); err != nil {
			return Event{}, err
		}
		signal := s.log.commitSignal()
		s.ahead.advise(s.log, s.stream, s.next)
		events, err := s.log.Read(s.stream, s.next, s.batch)
		// On a damaged record Read returns the events before it with the
		// error: deliver those, and the error when Next reaches it.
		if err != nil && !isNotFound(err) && len(events) == 0 {
			return Event{}, err
		}
		if len(events) > 0 {
			s.buf = events
			break
		}
		select {
		case <-ctx.Done():
			return Event{}, ctx.Err()
		case <-s.log.stopc:
			return Event{}, ErrClosed
		case <-signal:
		}
	}
	e := s.buf[0]
	s.buf = s.buf[1:]
	s.next = e.Seq + 1
	return e, nil
}

// NextBatch appends to dst up to max events and returns the extended
// slice: at least one, waiting for a commit if none is there, and otherwise
// only what can be had without waiting. Errors are those of Next.
func (s *Subscription) NextBatch(ctx context.Context, dst []Event, max int) ([]Event, error) {
	if max <= 0 {
		return dst, nil
	}
	if len(s.buf) == 0 {
		e, err := s.Next(ctx)
		if err != nil {
			return dst, err
		}
		dst = append(dst, e)
		max--
	}
	if n := min(max, len(s.buf)); n > 0 {
		dst = append(dst, s.buf[:n]...)
		s.buf = s.buf[n:]
		s.next = dst[len(dst)-1].Seq + 1
	}
	return dst, nil
}

// NextSeq returns the sequence the subscription will read from next.
func (s *Subscription) NextSeq() uint64 {
	if len(s.buf) > 0 {
		return s.buf[0].Seq
	}
	return s.next
}
