package supervisor

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/flowrt/flowrt/eventlog"
)

// SystemStream is the stream the supervisor writes its lifecycle to.
const SystemStream = "$system"

// Event types in SystemStream. Their data is JSON (docs/LIFECYCLE.md); the
// event key is the run's ID. These names are part of the journal format.
const (
	TypeTransition = "supervisor.transition"
	TypeRecovery   = "supervisor.recovery"
)

// Transition is one recorded state change of the runtime (Child empty) or
// of one child.
type Transition struct {
	Run     string            `json:"run"`             // the run's ID, a ULID per process start
	Child   string            `json:"child,omitempty"` // empty for the runtime
	From    string            `json:"from"`
	To      string            `json:"to"`
	Reason  string            `json:"reason,omitempty"`
	Time    time.Time         `json:"time"`
	Details map[string]string `json:"details,omitempty"`
	Seq     uint64            `json:"-"` // its sequence in $system
}

// Recovery is recorded once, before anything runs, by a run that found the
// previous run crashed (it never reached stopped or failed).
type Recovery struct {
	Run        string            `json:"run"`         // the recovering run
	CrashedRun string            `json:"crashed_run"` // the run that crashed
	LastState  string            `json:"last_state"`  // its last recorded runtime state
	LastTime   time.Time         `json:"last_time"`   // when it recorded anything last
	Children   map[string]string `json:"children,omitempty"`
	Consumers  []Resume          `json:"consumers,omitempty"`
	Time       time.Time         `json:"time"`
	Seq        uint64            `json:"-"`
}

// Resume says where a consumer resumes after a crash.
type Resume struct {
	Stream   string `json:"stream"`
	Consumer string `json:"consumer"`
	Offset   uint64 `json:"offset"` // the committed ack floor it resumes after
	// Pending counts the events above Offset: those the crashed run had
	// delivered are redelivered, the rest are delivered for the first time.
	Pending uint64 `json:"pending"`
}

func appendSystem(tx *eventlog.Tx, run, typ string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = tx.Append(SystemStream, eventlog.Event{Type: typ, Key: run, Data: data})
	return err
}

// decodeSystem parses one $system event; ok is false for types it does not
// know.
func decodeSystem(e eventlog.Event) (t *Transition, r *Recovery, err error) {
	switch e.Type {
	case TypeTransition:
		t = new(Transition)
		err = json.Unmarshal(e.Data, t)
		t.Seq = e.Seq
	case TypeRecovery:
		r = new(Recovery)
		err = json.Unmarshal(e.Data, r)
		r.Seq = e.Seq
	}
	if err != nil {
		return nil, nil, fmt.Errorf("flowrt/supervisor: $system seq %d: %w", e.Seq, err)
	}
	return t, r, nil
}

// Run is one run's lifecycle as read back from $system.
type Run struct {
	ID          string
	FirstSeq    uint64 // its first record in $system
	Started     time.Time
	Last        time.Time // time of its last record
	End         State     // last recorded runtime state
	Crashed     bool      // it never ended and a later run recovered from it
	Reason      string    // why it ended, for a failed run
	Transitions []Transition
	Recovery    *Recovery // recorded by this run about the one before
}

// Ended reports whether the run reached a terminal state.
func (r Run) Ended() bool { return r.End.Terminal() }

// Reader is what reading the lifecycle needs of a journal.
type Reader interface {
	View(fn func(*eventlog.Tx) error) error
}

// historyChunk is how many $system events one read transaction takes.
const historyChunk = 1024

// Runs reads every run recorded in $system, oldest first.
func Runs(j Reader) ([]Run, error) {
	var runs []Run
	index := map[string]int{}
	from := uint64(1)
	for {
		var evs []eventlog.Event
		err := j.View(func(tx *eventlog.Tx) (err error) {
			evs, err = tx.Read(nil, SystemStream, from, historyChunk)
			return err
		})
		if isNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		for _, e := range evs {
			t, rec, err := decodeSystem(e)
			if err != nil {
				return nil, err
			}
			run := e.Key
			i, ok := index[run]
			if !ok {
				i = len(runs)
				index[run] = i
				runs = append(runs, Run{ID: run, FirstSeq: e.Seq, Started: e.Time})
			}
			r := &runs[i]
			r.Last = e.Time
			switch {
			case t != nil:
				r.Transitions = append(r.Transitions, *t)
				if t.Child == "" {
					var s State
					if err := s.UnmarshalText([]byte(t.To)); err == nil {
						r.End = s
						if s == Failed {
							r.Reason = t.Reason
						}
					}
				}
			case rec != nil:
				r.Recovery = rec
				if j, ok := index[rec.CrashedRun]; ok {
					runs[j].Crashed = true
				}
			}
		}
		if len(evs) < historyChunk {
			return runs, nil
		}
		from = evs[len(evs)-1].Seq + 1
	}
}

// previous describes the run before this one, from the tail of $system.
type previous struct {
	run      string
	last     State
	lastTime time.Time
	children map[string]string
}

func (p previous) crashed() bool { return p.run != "" && !p.last.Terminal() }

// inspectPrevious reads $system backwards, in chunks, until it has the last
// runtime transition of the newest run and that run's child states.
func inspectPrevious(j Reader) (previous, error) {
	var p previous
	err := j.View(func(tx *eventlog.Tx) error {
		si, err := tx.Info(SystemStream)
		if isNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		haveState := false
		for hi := si.Last; hi >= si.First && hi > 0; {
			lo := max(si.First, hi-min(hi, historyChunk)+1)
			evs, err := tx.Read(nil, SystemStream, lo, int(hi-lo+1))
			if err != nil {
				return err
			}
			for i := len(evs) - 1; i >= 0; i-- {
				e := evs[i]
				if p.run == "" {
					p.run, p.lastTime, p.children = e.Key, e.Time, map[string]string{}
				}
				if e.Key != p.run {
					return nil // the run before: done
				}
				t, _, err := decodeSystem(e)
				if err != nil {
					return err
				}
				if t == nil {
					continue
				}
				if t.Child != "" {
					if _, seen := p.children[t.Child]; !seen {
						p.children[t.Child] = t.To
					}
					continue
				}
				if !haveState {
					if err := p.last.UnmarshalText([]byte(t.To)); err != nil {
						return err
					}
					haveState = true
				}
				if t.From == Created.String() {
					return nil // the run's first record
				}
			}
			if lo == si.First {
				break
			}
			hi = lo - 1
		}
		if !haveState && p.run != "" {
			p.last = Created
		}
		return nil
	})
	return p, err
}
