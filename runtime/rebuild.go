package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/snapshot"
)

// compileState checks a flow's Reduce step, if it has one, and gives the
// flow its State, which commits with the consumer's floor.
func (rt *Runtime) compileState(def Flow, f *flow) error {
	if !hasReduce(def.Steps) {
		return nil
	}
	if errs := stateErrors(def, f.copts); len(errs) > 0 {
		return joinErrors(errs)
	}
	for i, s := range def.Steps {
		if s.kind == "reduce" {
			f.reduceStep = i
		}
	}
	st, err := snapshot.Open(rt.j, def.Name)
	if err != nil {
		return err
	}
	f.state, f.version, f.snapEvery = st, def.StateVersion, def.SnapshotEvery
	f.hook = newStateHook(st)
	f.copts.Commit = f.hook
	return nil
}

func hasReduce(steps []Step) bool {
	for _, s := range steps {
		if s.kind == "reduce" {
			return true
		}
	}
	return false
}

// stateErrors reports what keeps a flow's reduce step from being
// effectively once.
func stateErrors(def Flow, copts consumer.Options) []error {
	var reduce []ReduceSpec
	for _, s := range def.Steps {
		if s.kind == "reduce" {
			reduce = append(reduce, s.reduce)
		}
	}
	if len(reduce) == 0 {
		return nil
	}
	var errs []error
	if len(reduce) > 1 {
		errs = append(errs, errors.New("state: a flow has at most one reduce step"))
	}
	if copts.Commit != nil {
		errs = append(errs, errors.New("state: Consumer.Commit is the flow state's; leave it nil"))
	}
	if copts.KeyFailure == consumer.SkipAhead {
		errs = append(errs, errors.New("state: a stateful flow keeps key order (KeyFailure hold-key)"))
	}
	if def.StateVersion < 0 || def.SnapshotEvery < 0 {
		errs = append(errs, errors.New("state: StateVersion and SnapshotEvery must not be negative"))
	}
	return errs
}

// prepareState makes the committed state match the flow's definition
// before the flow runs: a state computed with another version, or a flow
// that gained its state after consuming events, is rebuilt first.
func (f *flow) prepareState(ctx context.Context) error {
	meta, ok, err := snapshot.ReadMeta(f.rt.j, f.name)
	if err != nil {
		return err
	}
	offset, _, err := f.offset()
	if err != nil {
		return err
	}
	if (ok && meta.Version == f.version) || (!ok && offset == 0) {
		return f.rt.j.Update(func(tx *eventlog.Tx) error {
			if !ok {
				if err := snapshot.WriteMeta(tx, f.name, snapshot.Meta{Version: f.version}); err != nil {
					return err
				}
			}
			return snapshot.Guard(tx, f.name, f.stream)
		})
	}
	return f.rebuild(ctx, offset)
}

func (f *flow) offset() (seq uint64, ok bool, err error) {
	err = f.rt.j.View(func(tx *eventlog.Tx) error {
		seq, ok, err = tx.Offset(f.stream, f.name)
		return err
	})
	return seq, ok, err
}

// overlay is a rebuild's state: the values replayed so far over the
// snapshot it starts from.
type overlay struct {
	base    map[string][]byte
	changes map[string][]byte
}

func (o *overlay) Get(key string) ([]byte, bool, error) {
	if v, ok := o.changes[key]; ok {
		return v, true, nil
	}
	v, ok := o.base[key]
	return v, ok, nil
}

// rebuildBatch is how many events a rebuild reads per read transaction.
const rebuildBatch = 1024

// rebuild recomputes the state from the newest snapshot of the current
// version at or below the committed offset (or from nothing), replaying
// every event the flow has done since: those at or below the offset that
// are not dead letters, and those a clean stop marked done above it. The
// replay runs in memory; the new state and the new version are written
// in one transaction, so a crash or a failure mid-rebuild leaves the old
// state and version as they were.
func (f *flow) rebuild(ctx context.Context, offset uint64) error {
	start := time.Now()
	log := f.copts.Logger
	snaps, err := snapshot.Snapshots(f.rt.j, f.name)
	if err != nil {
		return err
	}
	var base uint64
	for _, s := range snaps {
		if s.Version == f.version && s.Floor <= offset {
			base = s.Floor
		}
	}
	dead, err := consumer.DeadLetters(f.rt.j, f.stream, f.name, consumer.Range{})
	if err != nil {
		return err
	}
	skip := make(map[uint64]bool, len(dead))
	for _, d := range dead {
		skip[d.Seq] = true
	}
	doneAbove, err := consumer.DoneAbove(f.rt.j, f.stream, f.name)
	if err != nil {
		return err
	}
	log.Info("rebuilding state", "flow", f.name, "version", f.version, "from_snapshot", base, "to", offset, "done_above", len(doneAbove))
	o := &overlay{base: map[string][]byte{}, changes: map[string][]byte{}}
	if base > 0 {
		entries, err := snapshot.ReadSnapshot(f.rt.j, f.name, base)
		if err != nil {
			return fmt.Errorf("rebuild: %w", err)
		}
		for _, e := range entries {
			o.base[e.Key] = e.Value
		}
	}
	replayed := 0
	steps := f.replayStages()
	replay := func(e eventlog.Event) error {
		if skip[e.Seq] || !f.trigger.Match(e) {
			return nil
		}
		att := newAttempt(o)
		defer att.release()
		if err := replaySteps(ctx, steps, e, att); err != nil {
			return fmt.Errorf("rebuild: event %d: %w", e.Seq, err)
		}
		for _, c := range att.changes {
			o.changes[c.Key] = c.Value
		}
		replayed++
		if replayed%100000 == 0 {
			took := time.Since(start)
			rate := float64(replayed) / took.Seconds()
			eta := time.Duration(float64(offset-min(e.Seq, offset)) / rate * float64(time.Second))
			log.Info("rebuilding state", "flow", f.name, "seq", e.Seq, "to", offset, "events", replayed,
				"rate", fmt.Sprintf("%.0f/s", rate), "eta", eta.Round(time.Second))
		}
		return nil
	}
	last := offset
	if len(doneAbove) > 0 {
		last = max(last, slices.Max(doneAbove))
	}
	if base < last {
		var si eventlog.StreamInfo
		err := f.rt.j.View(func(tx *eventlog.Tx) (err error) {
			si, err = tx.Info(f.stream)
			return err
		})
		if err != nil && !errors.Is(err, eventlog.ErrNotFound) {
			return fmt.Errorf("rebuild: %w", err)
		}
		if err == nil && si.First > base+1 {
			return fmt.Errorf("%w: version %d of %s's state needs events from %d of %s, which retention removed (first retained: %d)",
				ErrHistoryTruncated, f.version, f.name, base+1, f.stream, si.First)
		}
	}
	for from := base + 1; from <= last; {
		if err := ctx.Err(); err != nil {
			return err
		}
		var events []eventlog.Event
		err := f.rt.j.View(func(tx *eventlog.Tx) (err error) {
			events, err = tx.Read(nil, f.stream, from, int(min(uint64(rebuildBatch), last-from+1)))
			return err
		})
		if err != nil {
			return fmt.Errorf("rebuild: read from %d: %w", from, err)
		}
		if len(events) == 0 {
			break
		}
		for _, e := range events {
			if !snapshot.Covers(e.Seq, offset, doneAbove) {
				continue // above the floor and not done: the consumer delivers it
			}
			if err := replay(e); err != nil {
				return err
			}
		}
		from = events[len(events)-1].Seq + 1
	}
	err = f.rt.j.Update(func(tx *eventlog.Tx) error {
		if err := snapshot.Reset(tx, f.name, base); err != nil {
			return err
		}
		for k, v := range o.changes {
			if err := snapshot.Put(tx, f.name, snapshot.Change{Key: k, Value: v}); err != nil {
				return err
			}
		}
		if err := snapshot.Guard(tx, f.name, f.stream); err != nil {
			return err
		}
		return snapshot.WriteMeta(tx, f.name, snapshot.Meta{Version: f.version, Rebuilt: offset})
	})
	if err != nil {
		return fmt.Errorf("rebuild: write state: %w", err)
	}
	log.Info("rebuilt state", "flow", f.name, "version", f.version, "events", replayed, "keys", len(o.changes), "took", time.Since(start))
	return nil
}

// replayStages returns the steps a rebuild replays: those up to the
// reduce step, but emit steps.
func (f *flow) replayStages() []stage {
	var steps []stage
	for _, st := range f.steps[:f.reduceStep+1] {
		if st.kind != "emit" {
			steps = append(steps, st)
		}
	}
	return steps
}

// replaySteps runs an event through the replayed steps, for its state
// changes only: nothing reaches the later steps or the sinks.
func replaySteps(ctx context.Context, steps []stage, e eventlog.Event, att *attemptState) error {
	rec := Record{Event: e, data: decodePayload(e.Data), att: att}
	rec.Payload = rec.data
	if _, errs := runSteps(ctx, steps, []Record{rec}, nil); len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// snapshotLoop takes a snapshot every SnapshotEvery, keeping the newest
// three, until the returned stop is called.
func (f *flow) snapshotLoop() (stop func()) {
	if f.snapEvery <= 0 {
		return func() {}
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(f.snapEvery)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				if _, err := f.snapshot(); err != nil {
					level := slog.LevelWarn
					if errors.Is(err, snapshot.ErrNotSettled) {
						level = slog.LevelDebug // the next tick will do
					}
					f.copts.Logger.Log(context.Background(), level, "snapshot skipped", "flow", f.name, "err", err)
					continue
				}
				if _, err := snapshot.DropSnapshots(f.rt.j, f.name, keepSnapshots); err != nil {
					f.copts.Logger.Warn("dropping old snapshots failed", "flow", f.name, "err", err)
				}
			}
		}
	}()
	return func() { close(quit); <-done }
}

// keepSnapshots is how many scheduled snapshots a flow keeps.
const keepSnapshots = 3
