package server

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/eventjson"
	"github.com/flowrt/flowrt/snapshot"
	"github.com/flowrt/flowrt/supervisor"
)

// The read-side answers, built from a journal. They work on a journal
// opened read-only too, so a tool can print the same JSON at rest as the
// daemon serves.

// Consumer is one element of GET /v1/consumers: a consumer's durable
// offset on a stream.
type Consumer struct {
	Stream      string    `json:"stream"`
	Consumer    string    `json:"consumer"`
	Offset      uint64    `json:"offset"` // every event at or below it is done
	Last        uint64    `json:"last"`   // the stream's last sequence
	Lag         uint64    `json:"lag"`    // Last - Offset
	Updated     time.Time `json:"updated"`
	DeadLetters int       `json:"dead_letters"`
}

// Consumers lists every registered consumer of the journal, by stream and
// name, with its dead-letter count.
func Consumers(l *eventlog.Log) ([]Consumer, error) {
	infos, err := l.Consumers("")
	if err != nil {
		return nil, fmt.Errorf("list consumers: %w", err)
	}
	out := make([]Consumer, 0, len(infos))
	for _, ci := range infos {
		dead, err := consumer.DeadLetters(l, ci.Stream, ci.Name, consumer.Range{})
		if err != nil {
			return nil, fmt.Errorf("dead letters of %s on %s: %w", ci.Name, ci.Stream, err)
		}
		out = append(out, Consumer{
			Stream: ci.Stream, Consumer: ci.Name, Offset: ci.Offset, Last: ci.Offset + ci.Lag,
			Lag: ci.Lag, Updated: ci.Updated.UTC(), DeadLetters: len(dead),
		})
	}
	return out, nil
}

// DeadLetter is one element of GET /v1/dlq: consumer.DeadLetter with
// snake_case keys, and the stream and consumer it belongs to.
type DeadLetter struct {
	Stream       string    `json:"stream"`
	Consumer     string    `json:"consumer"`
	Seq          uint64    `json:"seq"`
	ID           string    `json:"id"`
	Type         string    `json:"type"`
	Key          string    `json:"key"`
	Attempts     int       `json:"attempts"`
	FirstFailure time.Time `json:"first_failure"`
	LastFailure  time.Time `json:"last_failure"`
	LastError    string    `json:"last_error"`
	Redeliver    bool      `json:"redeliver"` // queued for redelivery
}

// DeadLetters lists the dead letters of the registered consumers, by
// stream, consumer and sequence; an empty stream or name matches any. It
// returns eventlog.ErrNotFound, wrapped, when no registered consumer
// matches.
func DeadLetters(l *eventlog.Log, stream, name string) ([]DeadLetter, error) {
	infos, err := l.Consumers(stream)
	if err != nil {
		return nil, fmt.Errorf("list consumers: %w", err)
	}
	out := []DeadLetter{}
	matched := false
	for _, ci := range infos {
		if name != "" && ci.Name != name {
			continue
		}
		matched = true
		dead, err := consumer.DeadLetters(l, ci.Stream, ci.Name, consumer.Range{})
		if err != nil {
			return nil, fmt.Errorf("dead letters of %s on %s: %w", ci.Name, ci.Stream, err)
		}
		for _, d := range dead {
			out = append(out, DeadLetter{
				Stream: ci.Stream, Consumer: ci.Name, Seq: d.Seq, ID: d.ID.String(), Type: d.Type, Key: d.Key,
				Attempts: d.Attempts, FirstFailure: d.FirstFailure.UTC(), LastFailure: d.LastFailure.UTC(),
				LastError: d.LastError, Redeliver: d.Redeliver,
			})
		}
	}
	if !matched && (stream != "" || name != "") {
		return nil, fmt.Errorf("%w: no consumer%s%s", eventlog.ErrNotFound, describe(" named %q", name), describe(" on stream %q", stream))
	}
	return out, nil
}

func describe(format, v string) string {
	if v == "" {
		return ""
	}
	return fmt.Sprintf(format, v)
}

// StateEntry is one element of GET /v1/state/{flow}: a key's committed
// value, as its JSON text (eventjson.EncodeData: a value that is not JSON
// is a {"$base64": ...} marker).
type StateEntry struct {
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
}

// State lists the committed state of a flow (snapshot.Read): the key
// exactly when key is not empty, else the keys starting with prefix. It
// returns eventlog.ErrNotFound, wrapped, for a flow that never had state.
func State(l *eventlog.Log, flow, key, prefix string) ([]StateEntry, error) {
	_, ok, err := snapshot.ReadMeta(l, flow)
	if err != nil {
		return nil, fmt.Errorf("read state of %s: %w", flow, err)
	}
	if key != "" {
		prefix = key
	}
	entries, err := snapshot.Read(l, flow, prefix)
	if err != nil {
		return nil, err
	}
	if !ok && len(entries) == 0 {
		return nil, fmt.Errorf("%w: flow %q has no state (only flows with a reduce step have)", eventlog.ErrNotFound, flow)
	}
	out := []StateEntry{}
	for _, e := range entries {
		if key != "" && e.Key != key {
			continue
		}
		v := eventjson.EncodeData(e.Value)
		if v == nil {
			v = json.RawMessage("null")
		}
		out = append(out, StateEntry{Key: e.Key, Value: v})
	}
	return out, nil
}

// Run is one element of GET /v1/system/runs: a supervisor.Run with
// snake_case keys.
type Run struct {
	ID          string       `json:"id"`
	FirstSeq    uint64       `json:"first_seq"` // its first record in $system
	Started     time.Time    `json:"started"`
	Last        time.Time    `json:"last"` // time of its last record
	End         string       `json:"end"`  // last recorded runtime state
	Crashed     bool         `json:"crashed"`
	Reason      string       `json:"reason,omitempty"`
	Transitions []Transition `json:"transitions"`
	Recovery    *Recovery    `json:"recovery,omitempty"`
}

// Transition is a supervisor.Transition with its sequence in $system.
type Transition struct {
	Seq uint64 `json:"seq"`
	supervisor.Transition
}

// Recovery is a supervisor.Recovery with its sequence in $system.
type Recovery struct {
	Seq uint64 `json:"seq"`
	supervisor.Recovery
}

// Runs lists the runs recorded in $system, oldest first.
func Runs(l *eventlog.Log) ([]Run, error) {
	runs, err := supervisor.Runs(l)
	if err != nil {
		return nil, fmt.Errorf("read runs: %w", err)
	}
	out := make([]Run, len(runs))
	for i, r := range runs {
		out[i] = Run{
			ID: r.ID, FirstSeq: r.FirstSeq, Started: r.Started.UTC(), Last: r.Last.UTC(), End: r.End.String(),
			Crashed: r.Crashed, Reason: r.Reason, Transitions: make([]Transition, len(r.Transitions)),
		}
		for j, tr := range r.Transitions {
			out[i].Transitions[j] = Transition{Seq: tr.Seq, Transition: tr}
		}
		if r.Recovery != nil {
			out[i].Recovery = &Recovery{Seq: r.Recovery.Seq, Recovery: *r.Recovery}
		}
	}
	return out, nil
}
