package crashstate_test

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/snapshot"
)

// tick is what the verifier keeps of an event of the stream.
type tick struct {
	match  bool // the flows' trigger selects it
	key    string
	amount float64
}

// values is a flow's state: the value per key.
type values map[string]float64

// flowView is what the journal holds of one flow after a run.
type flowView struct {
	committed uint64   // the consumer's committed offset
	doneAbove []uint64 // events above it recorded done by a clean stop
	state     values   // the committed state
	meta      snapshot.Meta
	metaOK    bool
}

// verifier reads the journal after each run, as the next process would
// see it, and checks each flow's committed state against the events.
//
// For each flow, with C its committed offset and D the events above C
// that a clean stop recorded done (consumer.DoneAbove), the committed
// state must be exactly one application of every event at or below C and
// of those in D, and of nothing else (docs/STATE.md, guarantee 1 and 4):
//
//   - counts: for each key, the number of matching events of that key;
//   - sums: for each key, the sum of data.amount over its matching events
//     with amount >= minAmount; keys with none have no entry.
//
// Every one of sums' snapshots at floor F must hold exactly the state
// after the events at or below F. A run killed in the middle of a rebuild
// of sums (its recorded version is not the run's) leaves the state as it
// was, emptied, or loaded from a snapshot of the run's version: one of
// those is accepted, and the next run must rebuild again. Offsets never
// move back, and no event is dead-lettered.
type verifier struct {
	journal string

	events    []tick            // by sequence - 1: the stream's events so far
	committed map[string]uint64 // each flow's offset after the previous run
	snapsSeen map[snapKey]bool  // snapshots already checked
	version   *int              // sums' recorded state version after the previous run
	runs      []string          // a line per run, for failure messages
	markers   bool              // sums had done markers above its floor after the last run
	counts    verifierCounts
}

// snapKey identifies a snapshot: a floor can be snapshotted again.
type snapKey struct {
	floor uint64
	taken time.Time
}

// verifierCounts is what the verifier saw, for the log.
type verifierCounts struct {
	checks            int // state checks that passed
	doneAbove         int // checks that included events done above the floor
	snapshots         int // distinct snapshots checked
	rebuilds          int // completed rebuilds of sums
	interrupted       int // runs that ended in the middle of a rebuild of sums
	stalled           int // runs after which counts' offset had not moved
	maxAboveAtTheKill int // most matching events above counts' offset after a run
}

func newVerifier(journal string) *verifier {
	return &verifier{journal: journal, committed: map[string]uint64{}, snapsSeen: map[snapKey]bool{}}
}

// afterRun checks what a run with the flow configuration fc left in the
// journal.
func (v *verifier) afterRun(fc flowConfig) (err error) {
	l, err := eventlog.Open(v.journal, &eventlog.Options{ReadOnly: true, LockTimeout: 10 * time.Second})
	if err != nil {
		return fmt.Errorf("reopen the journal: %w", err)
	}
	defer func() {
		if cerr := l.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close the journal: %w", cerr))
		}
	}()
	if err := v.readEvents(l); err != nil {
		return err
	}
	counts, err := v.readFlow(l, countsFlow)
	if err != nil {
		return err
	}
	if err := v.checkState(countsFlow, counts, counts.committed, counts.doneAbove); err != nil {
		return err
	}
	sums, err := v.readFlow(l, sumsFlow)
	if err != nil {
		return err
	}
	if err := v.checkSums(l, sums, fc.SumsVersion); err != nil {
		return err
	}
	if err := v.checkSnapshots(l); err != nil {
		return err
	}
	if counts.committed == v.committed[countsFlow] {
		v.counts.stalled++
	}
	above := 0
	for _, e := range v.events[counts.committed:] {
		if e.match {
			above++
		}
	}
	v.counts.maxAboveAtTheKill = max(v.counts.maxAboveAtTheKill, above)
	v.committed[countsFlow] = counts.committed
	v.committed[sumsFlow] = sums.committed
	v.markers = len(sums.doneAbove) > 0
	return nil
}

// readEvents reads the events appended since the last call.
func (v *verifier) readEvents(l *eventlog.Log) error {
	for e, err := range l.Scan(streamName, uint64(len(v.events))+1, 0) {
		if errors.Is(err, eventlog.ErrNotFound) && len(v.events) == 0 {
			return nil // nothing appended yet
		}
		if err != nil {
			return fmt.Errorf("scan %s: %w", streamName, err)
		}
		if e.Seq != uint64(len(v.events))+1 {
			return fmt.Errorf("scan %s: event %d after %d", streamName, e.Seq, len(v.events))
		}
		var d eventData
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return fmt.Errorf("event %d: data %s: %w", e.Seq, e.Data, err)
		}
		match, _ := path.Match(flowTypes, e.Type)
		v.events = append(v.events, tick{match: match, key: e.Key, amount: float64(d.Amount)})
	}
	return nil
}

// readFlow reads a flow's offset, done markers, dead letters, state and
// state meta, and checks the offset.
func (v *verifier) readFlow(l *eventlog.Log, flow string) (flowView, error) {
	var fv flowView
	var err error
	if fv.committed, _, err = l.Offset(streamName, flow); err != nil {
		return fv, fmt.Errorf("%s: read the offset: %w", flow, err)
	}
	if fv.doneAbove, err = consumer.DoneAbove(l, streamName, flow); err != nil {
		return fv, fmt.Errorf("%s: read the done markers: %w", flow, err)
	}
	dls, err := consumer.DeadLetters(l, streamName, flow, consumer.Range{})
	if err != nil {
		return fv, fmt.Errorf("%s: read the dead letters: %w", flow, err)
	}
	if len(dls) > 0 {
		return fv, fmt.Errorf("%s: %d events dead-lettered, the first %d (%s); none may be", flow, len(dls), dls[0].Seq, dls[0].LastError)
	}
	entries, err := snapshot.Read(l, flow, "")
	if err != nil {
		return fv, err
	}
	if fv.state, err = decodeValues(entries); err != nil {
		return fv, fmt.Errorf("%s: %w", flow, err)
	}
	if fv.meta, fv.metaOK, err = snapshot.ReadMeta(l, flow); err != nil {
		return fv, fmt.Errorf("%s: %w", flow, err)
	}
	last := uint64(len(v.events))
	switch {
	case fv.committed < v.committed[flow]:
		return fv, fmt.Errorf("%s: the committed offset moved back from %d to %d", flow, v.committed[flow], fv.committed)
	case fv.committed > last:
		return fv, fmt.Errorf("%s: the committed offset %d is beyond the stream's last sequence %d", flow, fv.committed, last)
	}
	for _, s := range fv.doneAbove {
		if s <= fv.committed || s > last {
			return fv, fmt.Errorf("%s: event %d recorded done above the offset %d (stream ends at %d)", flow, s, fv.committed, last)
		}
	}
	return fv, nil
}

func decodeValues(entries []snapshot.Entry) (values, error) {
	out := values{}
	for _, e := range entries {
		var n float64
		if err := json.Unmarshal(e.Value, &n); err != nil {
			return nil, fmt.Errorf("state %q: %s is not a number: %w", e.Key, e.Value, err)
		}
		out[e.Key] = n
	}
	return out, nil
}

// expected returns a flow's state after exactly one application of every
// event at or below floor and of those in done.
func (v *verifier) expected(flow string, floor uint64, done []uint64) values {
	out := values{}
	apply := func(e tick) {
		switch {
		case !e.match:
		case flow == countsFlow:
			out[e.key]++
		case e.amount >= minAmount:
			out[e.key] += e.amount
		}
	}
	for _, e := range v.events[:floor] {
		apply(e)
	}
	for _, s := range done {
		apply(v.events[s-1])
	}
	return out
}

// checkState checks a flow's committed state against the events at or
// below floor and those in done.
func (v *verifier) checkState(flow string, fv flowView, floor uint64, done []uint64) error {
	want := v.expected(flow, floor, done)
	if diff := diffValues(want, fv.state); diff != "" {
		return fmt.Errorf("%s: the committed state is not one application of the events at or below the offset %d and of the %d done above it %v: %s",
			flow, floor, len(done), done, diff)
	}
	v.counts.checks++
	if len(done) > 0 {
		v.counts.doneAbove++
	}
	return nil
}

// checkSums checks sums, allowing for a rebuild the kill interrupted.
func (v *verifier) checkSums(l *eventlog.Log, fv flowView, version int) error {
	if !fv.metaOK || fv.meta.Version == version {
		if fv.metaOK && v.version != nil && *v.version != version {
			v.counts.rebuilds++
		}
		if fv.metaOK {
			v.version = &fv.meta.Version
		}
		return v.checkState(sumsFlow, fv, fv.committed, fv.doneAbove)
	}
	// The run was killed before its rebuild of sums finished: the flow
	// consumed nothing, and the state is as it was, or was reset to
	// nothing or to a snapshot of the new version.
	if fv.committed != v.committed[sumsFlow] {
		return fmt.Errorf("%s: the recorded state version is %d, not the run's %d (a rebuild was interrupted), yet the offset moved from %d to %d",
			sumsFlow, fv.meta.Version, version, v.committed[sumsFlow], fv.committed)
	}
	v.counts.interrupted++
	if diffValues(v.expected(sumsFlow, fv.committed, fv.doneAbove), fv.state) == "" || len(fv.state) == 0 {
		return nil
	}
	candidates := []string{fmt.Sprintf("the state at the offset %d", fv.committed), "nothing"}
	snaps, err := snapshot.Snapshots(l, sumsFlow)
	if err != nil {
		return err
	}
	for _, s := range snaps {
		if s.Version != version || s.Floor > fv.committed {
			continue
		}
		if diffValues(v.expected(sumsFlow, s.Floor, nil), fv.state) == "" {
			return nil
		}
		candidates = append(candidates, fmt.Sprintf("the snapshot at %d", s.Floor))
	}
	return fmt.Errorf("%s: in the middle of a rebuild to version %d (recorded %d), the state %v is none of: %s",
		sumsFlow, version, fv.meta.Version, fv.state, strings.Join(candidates, ", "))
}

// checkSnapshots checks every snapshot of sums not checked before.
func (v *verifier) checkSnapshots(l *eventlog.Log) error {
	snaps, err := snapshot.Snapshots(l, sumsFlow)
	if err != nil {
		return err
	}
	for _, s := range snaps {
		k := snapKey{floor: s.Floor, taken: s.Taken}
		if v.snapsSeen[k] {
			continue
		}
		got, err := readSnapshot(l, sumsFlow, s.Floor)
		if err != nil {
			return err
		}
		if s.Entries != len(got) {
			return fmt.Errorf("%s: the snapshot at %d records %d entries and holds %d", sumsFlow, s.Floor, s.Entries, len(got))
		}
		if diff := diffValues(v.expected(sumsFlow, s.Floor, nil), got); diff != "" {
			return fmt.Errorf("%s: the snapshot at %d (version %d) is not the state after exactly the events at or below %d: %s",
				sumsFlow, s.Floor, s.Version, s.Floor, diff)
		}
		v.snapsSeen[k] = true
		v.counts.snapshots++
	}
	return nil
}

// readSnapshot reads the copy of the state a snapshot holds: the bucket
// snaps/<flow>/<floor>/d of the snapshot namespace (docs/FORMAT.md).
func readSnapshot(l *eventlog.Log, flow string, floor uint64) (values, error) {
	var entries []snapshot.Entry
	err := l.View(func(tx *eventlog.Tx) error {
		b, err := tx.Namespace("snapshot")
		for _, name := range [][]byte{[]byte("snaps"), []byte(flow), binary.BigEndian.AppendUint64(nil, floor), []byte("d")} {
			if err != nil {
				break
			}
			b, err = b.Bucket(name)
		}
		if err != nil {
			return err
		}
		for k, val := range b.Items(nil) {
			entries = append(entries, snapshot.Entry{Key: string(k), Value: slices.Clone(val)})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: read the snapshot at %d: %w", flow, floor, err)
	}
	return decodeValues(entries)
}

// diffValues describes how got differs from want, or returns "".
func diffValues(want, got values) string {
	var diffs []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if g, ok := got[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: want %v, missing", k, want[k]))
		} else if g != want[k] {
			diffs = append(diffs, fmt.Sprintf("%s: want %v, got %v", k, want[k], g))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: want no entry, got %v", k, got[k]))
		}
	}
	return strings.Join(diffs, "; ")
}

// record keeps a line about a run for history.
func (v *verifier) record(line string) { v.runs = append(v.runs, line) }

// history returns the lines of the last n runs.
func (v *verifier) history(n int) string {
	return strings.Join(v.runs[max(0, len(v.runs)-n):], "\n")
}
