package command

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/eventjson"
	"github.com/flowrt/flowrt/snapshot"
	"github.com/flowrt/flowrt/supervisor"
)

// The JSON shapes below are both what the daemon's read side answers
// (docs/CLI.md, "flowrt run --http") and what the dump subcommands print
// with --json, one object per line: a pipeline reads a journal at rest and
// a live one alike.

// wireTime is a time in JSON: RFC 3339 in UTC with nine fraction digits
// when written, any RFC 3339 time when read. A zero time is omitted by
// fields tagged omitzero.
type wireTime time.Time

// MarshalJSON writes the time in dump's JSON layout.
func (t wireTime) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Time(t).UTC().Format(jsonTimeLayout))
}

// UnmarshalJSON reads an RFC 3339 time.
func (t *wireTime) UnmarshalJSON(b []byte) error { return (*time.Time)(t).UnmarshalJSON(b) }

func (t wireTime) time() time.Time { return time.Time(t) }

// IsZero reports whether the time is unset.
func (t wireTime) IsZero() bool { return time.Time(t).IsZero() }

// tableTime shows a time in a table cell: UTC with milliseconds, or "-".
func tableTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(tableTimeLayout)
}

// wireConsumer is one consumer of one stream (GET /v1/consumers).
type wireConsumer struct {
	Stream      string   `json:"stream"`
	Consumer    string   `json:"consumer"`
	Offset      uint64   `json:"offset"` // every event at or below it is done
	Last        uint64   `json:"last"`   // the stream's last sequence
	Lag         uint64   `json:"lag"`    // Last - Offset
	Updated     wireTime `json:"updated,omitzero"`
	DeadLetters int      `json:"dead_letters"`
	// InFlight counts the events fetched and not done, for the consumer
	// of a flow that runs in the daemon; nil otherwise.
	InFlight *int64 `json:"in_flight,omitempty"`
}

// wireDeadLetter is one dead letter of one consumer (GET /v1/dlq).
type wireDeadLetter struct {
	Stream       string   `json:"stream,omitempty"`
	Consumer     string   `json:"consumer,omitempty"`
	Seq          uint64   `json:"seq"`
	ID           string   `json:"id"`
	Type         string   `json:"type"`
	Key          string   `json:"key,omitempty"`
	Attempts     int      `json:"attempts"`
	FirstFailure wireTime `json:"first_failure,omitzero"`
	LastFailure  wireTime `json:"last_failure,omitzero"`
	LastError    string   `json:"last_error"`
	Redeliver    bool     `json:"redeliver"` // queued for redelivery
}

func toWireDeadLetter(stream, name string, dl consumer.DeadLetter) wireDeadLetter {
	return wireDeadLetter{
		Stream: stream, Consumer: name,
		Seq: dl.Seq, ID: dl.ID.String(), Type: dl.Type, Key: dl.Key, Attempts: dl.Attempts,
		FirstFailure: wireTime(dl.FirstFailure), LastFailure: wireTime(dl.LastFailure),
		LastError: dl.LastError, Redeliver: dl.Redeliver,
	}
}

// wireEntry is one key of a flow's committed state (GET /v1/state/{flow}).
// Value is the stored bytes in the form dump gives event data: inline when
// they are JSON, else {"$base64": ...}.
type wireEntry struct {
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
}

func toWireEntry(e snapshot.Entry) wireEntry {
	v := eventjson.EncodeData(e.Value)
	if v == nil { // never written by flows, whose values are JSON
		v = json.RawMessage("null")
	}
	return wireEntry{Key: e.Key, Value: v}
}

// wireSnapshot describes one snapshot of a flow's state.
type wireSnapshot struct {
	State   string   `json:"state"`
	Floor   uint64   `json:"floor"`
	Version int      `json:"version"`
	Entries int      `json:"entries"`
	Taken   wireTime `json:"taken,omitzero"`
}

// wireTransition is one recorded state change of a run.
type wireTransition struct {
	Seq     uint64            `json:"seq,omitempty"` // in $system; not given by the daemon
	Run     string            `json:"run"`
	Child   string            `json:"child,omitempty"`
	From    string            `json:"from"`
	To      string            `json:"to"`
	Reason  string            `json:"reason,omitempty"`
	Time    wireTime          `json:"time,omitzero"`
	Details map[string]string `json:"details,omitempty"`
}

// wireRecovery is what a run recorded about the crashed run before it.
type wireRecovery struct {
	Seq        uint64              `json:"seq,omitempty"`
	Run        string              `json:"run"`
	CrashedRun string              `json:"crashed_run"`
	LastState  string              `json:"last_state"`
	LastTime   wireTime            `json:"last_time,omitzero"`
	Children   map[string]string   `json:"children,omitempty"`
	Consumers  []supervisor.Resume `json:"consumers,omitempty"`
	Time       wireTime            `json:"time,omitzero"`
}

// wireRun is one run of the supervisor (GET /v1/system/runs).
type wireRun struct {
	ID          string           `json:"id"`
	FirstSeq    uint64           `json:"first_seq"` // its first record in $system
	Started     wireTime         `json:"started,omitzero"`
	Last        wireTime         `json:"last,omitzero"`
	End         string           `json:"end"` // the last recorded runtime state
	Crashed     bool             `json:"crashed"`
	Reason      string           `json:"reason,omitempty"`
	Transitions []wireTransition `json:"transitions"`
	Recovery    *wireRecovery    `json:"recovery,omitempty"`
}

func toWireRun(r supervisor.Run) wireRun {
	w := wireRun{
		ID: r.ID, FirstSeq: r.FirstSeq, Started: wireTime(r.Started), Last: wireTime(r.Last), End: r.End.String(),
		Crashed: r.Crashed, Reason: r.Reason, Transitions: make([]wireTransition, len(r.Transitions)),
	}
	for i, t := range r.Transitions {
		w.Transitions[i] = wireTransition{Seq: t.Seq, Run: t.Run, Child: t.Child, From: t.From, To: t.To,
			Reason: t.Reason, Time: wireTime(t.Time), Details: t.Details}
	}
	if rec := r.Recovery; rec != nil {
		w.Recovery = &wireRecovery{Seq: rec.Seq, Run: rec.Run, CrashedRun: rec.CrashedRun, LastState: rec.LastState,
			LastTime: wireTime(rec.LastTime), Children: rec.Children, Consumers: rec.Consumers, Time: wireTime(rec.Time)}
	}
	return w
}

// ended reports whether the run recorded a terminal state.
func (r wireRun) ended() bool {
	var s supervisor.State
	return s.UnmarshalText([]byte(r.End)) == nil && s.Terminal()
}

// writeJSONLines writes each item as one line of JSON and flushes.
func writeJSONLines[T any](w io.Writer, items []T) error {
	bw := bufio.NewWriter(w)
	for _, it := range items {
		line, err := eventjson.MarshalLine(it)
		if err != nil {
			return err
		}
		if _, err := bw.Write(line); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// validName checks a stream, consumer or flow name given with flag.
func validName(flag, name string) error {
	if err := eventlog.ValidateName(name); err != nil {
		return usageErrorf("%s: %v", flag, eventjson.Message(err))
	}
	return nil
}
