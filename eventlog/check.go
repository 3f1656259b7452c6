package eventlog

import (
	"context"
	"encoding/binary"
	"fmt"
	"runtime"

	bolt "go.etcd.io/bbolt"
)

// CheckReport is the result of Log.Check.
type CheckReport struct {
	Streams   int     // streams checked
	Events    uint64  // events whose records were verified
	Consumers int     // consumer offsets checked
	Problems  []error // each names what is wrong; empty when healthy
}

// OK reports whether the check found no problem.
func (r CheckReport) OK() bool { return len(r.Problems) == 0 }

// maxProblems bounds how many problems a check collects.
const maxProblems = 100

// Check verifies the whole journal in one read transaction: bbolt's own
// page consistency check, every record's CRC and encoding, dense sequences
// within each stream, heads that agree with the events, an ID index that
// points at the right events, and consumer offsets within bounds. It
// returns an error only when it could not run; what it finds is in the
// report. It holds a read transaction for its whole run.
func (l *Log) Check(ctx context.Context) (CheckReport, error) {
	var r CheckReport
	add := func(err error) bool {
		r.Problems = append(r.Problems, err)
		return len(r.Problems) < maxProblems
	}
	err := l.View(func(tx *Tx) error {
		if err := touchPages(tx.btx); err != nil {
			add(&CorruptError{Path: l.path, Err: err})
			return nil // bbolt's own check would not survive it
		}
		full := false
		for err := range tx.btx.Check() { // drained: bbolt's goroutine sends until done
			if !full && !add(&CorruptError{Path: l.path, Err: fmt.Errorf("bbolt: %w", err)}) {
				full = true
			}
		}
		if full {
			return nil
		}
		streams, err := tx.Streams()
		if err != nil {
			add(err)
			return nil
		}
		for _, si := range streams {
			r.Streams++
			n, err := tx.checkStream(ctx, si, add)
			r.Events += n
			if err != nil {
				return err
			}
		}
		cs, err := tx.Consumers("")
		if err != nil {
			add(err)
			return nil
		}
		for _, c := range cs {
			r.Consumers++
			si, err := tx.Info(c.Stream)
			if err != nil && !isNotFound(err) {
				add(err)
				continue
			}
			if c.Offset > si.Last {
				add(fmt.Errorf("consumer %q on %q: offset %d beyond the stream's last sequence %d", c.Name, c.Stream, c.Offset, si.Last))
			}
		}
		return nil
	})
	return r, err
}

func (tx *Tx) checkStream(ctx context.Context, si StreamInfo, add func(error) bool) (uint64, error) {
	st, err := tx.stream(si.Name, existing)
	if err != nil {
		add(err)
		return 0, nil
	}
	var n, bytes uint64
	expect := si.First
	c := st.events.Cursor()
	full := false
	for k, v := c.First(); k != nil && !full; k, v = c.Next() {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		first := binary.BigEndian.Uint64(k)
		if first != expect {
			if !add(tx.corrupt(si.Name, first, fmt.Errorf("sequence gap: expected %d", expect))) {
				return n, nil
			}
		}
		expect = first
		err := eachRecord(first, v, first, func(seq uint64, rec []byte) bool {
			n++
			bytes += uint64(len(rec))
			expect = seq + 1
			e, err := tx.decode(st, seq, rec)
			if err != nil {
				full = !add(err)
				return !full
			}
			if got, _, ok, err := tx.lookupID(st, e.ID); err != nil || !ok || got < seq {
				if err == nil {
					err = tx.corrupt(si.Name, seq, fmt.Errorf("id %s does not find its event", e.ID))
				}
				full = !add(err)
			}
			return !full
		})
		if err != nil && !add(tx.corrupt(si.Name, first, err)) {
			return n, nil
		}
	}
	if n > 0 && expect-1 != si.Last {
		add(tx.corrupt(si.Name, expect-1, fmt.Errorf("head says the last sequence is %d", si.Last)))
	}
	if bytes != st.head.bytes {
		add(tx.corrupt(si.Name, 0, fmt.Errorf("head counts %d bytes, records hold %d", st.head.bytes, bytes)))
	}
	return n, nil
}

// touchPages reads every page reachable from the root, and the first and
// last byte of every key and value, in the calling goroutine. A damaged page
// then panics or faults here, where viewContained turns it into a
// CorruptError, rather than in the goroutine that bbolt's Check (and its
// freelist rebuild at open) starts, where a panic or fault ends the
// process. It also returns an error when the pages claim more overflow
// pages than the file has: bbolt's Check visits each claimed page, and a
// damaged count of billions exhausts memory. The keys of branch pages are
// beyond bbolt's API, so a damaged branch key offset can still reach
// bbolt's goroutine, and a cycle of pages is followed here without bound.
func touchPages(btx *bolt.Tx) error {
	var sink byte
	touch := func(b []byte) {
		if len(b) > 0 {
			sink ^= b[0] ^ b[len(b)-1]
		}
	}
	var walk func(b *bolt.Bucket)
	walk = func(b *bolt.Bucket) {
		_ = b.Stats() // every page header, through the branch pages
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			touch(k)
			touch(v)
			if v == nil {
				if child := b.Bucket(k); child != nil {
					walk(child)
				}
			}
		}
	}
	pages := btx.Size() / int64(btx.DB().Info().PageSize)
	var claimed int64
	err := btx.ForEach(func(name []byte, b *bolt.Bucket) error {
		touch(name)
		st := b.Stats() // sub-buckets included
		claimed += int64(st.BranchPageN + st.BranchOverflowN + st.LeafPageN + st.LeafOverflowN)
		if claimed > pages {
			return fmt.Errorf("bbolt: the pages of bucket %q and those before it claim %d pages, the file has %d", name, claimed, pages)
		}
		walk(b)
		return nil
	})
	runtime.KeepAlive(sink) // the reads must happen: they are the point
	return err
}
