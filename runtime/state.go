package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/snapshot"
)

// Reducer computes a key's new state from its current one (nil when the
// key has none) and a record. It must be a pure function of its inputs:
// after a crash it is applied again to the events above the committed
// floor, from the state as committed.
type Reducer func(state any, r Record) (any, error)

// ReduceSpec configures a Reduce step.
type ReduceSpec struct {
	// Func names a built-in reducer: count, sum, min, max, last, or recent
	// (a list of the latest Limit values). Ignored when Reducer is set.
	Func string
	// Value is an expression giving the value reduced (sum, min, max,
	// last, recent). Default: the record's payload.
	Value string
	// Limit is how many values recent keeps. Default 10.
	Limit int
	// As names a variable that holds the key's new state for later steps.
	As string
	// Reducer is a reducer written in Go, instead of Func.
	Reducer Reducer
}

// Reduce keeps per-key state for the flow: each record updates its event
// key's state with the reducer (to keep state by another key, emit events
// keyed by it and reduce them in a second flow). An event without a key
// fails permanently. The state changes commit in the same journal
// transaction as the flow's ack floor, so after any crash the state is
// exactly one application of every event at or below the floor
// (effectively once); see docs/STATE.md. A flow has at most one Reduce
// step, and its state is named after the flow.
func Reduce(spec ReduceSpec) Step { return Step{kind: "reduce", reduce: spec, as: spec.As} }

func builtinReducer(spec ReduceSpec) (Reducer, error) {
	limit := spec.Limit
	if limit == 0 {
		limit = 10
	}
	if limit < 0 {
		return nil, fmt.Errorf("reduce: limit must be positive (got %d)", spec.Limit)
	}
	if n, ok := numericReducers[spec.Func]; ok {
		return func(state any, r Record) (any, error) {
			v, err := n.value(r.Payload)
			if err != nil {
				return nil, err
			}
			return n.apply(state, v)
		}, nil
	}
	switch spec.Func {
	case "last":
		return func(_ any, r Record) (any, error) { return r.Payload, nil }, nil
	case "recent":
		return func(state any, r Record) (any, error) {
			list, _ := state.([]any)
			list = append(list[:len(list):len(list)], r.Payload)
			if len(list) > limit {
				list = list[len(list)-limit:]
			}
			return list, nil
		}, nil
	}
	return nil, fmt.Errorf("reduce: unknown reducer %q (want count, sum, min, max, last or recent)", spec.Func)
}

// numericReducer is a built-in reducer of numbers.
type numericReducer struct {
	name   string
	valued bool // it reduces a value: all but count
	// step returns the new state from the current one (has is false when
	// the key has none) and the value.
	step func(state float64, has bool, v float64) float64
}

var numericReducers = map[string]numericReducer{
	"count": {name: "count", step: func(state float64, _ bool, _ float64) float64 { return state + 1 }},
	"sum":   {name: "sum", valued: true, step: func(state float64, _ bool, v float64) float64 { return state + v }},
	"min": {name: "min", valued: true, step: func(state float64, has bool, v float64) float64 {
		if has && state <= v {
			return state
		}
		return v
	}},
	"max": {name: "max", valued: true, step: func(state float64, has bool, v float64) float64 {
		if has && state >= v {
			return state
		}
		return v
	}},
}

// value returns the number a record's value reduces: nil counts as 0, and
// count reads none.
func (n numericReducer) value(v any) (float64, error) {
	if !n.valued {
		return 0, nil
	}
	return n.number(v, "value")
}

// apply returns the state after reducing v into state (nil for none).
func (n numericReducer) apply(state any, v float64) (any, error) {
	cur, err := n.number(state, "state")
	if err != nil {
		return nil, err
	}
	return n.step(cur, state != nil, v), nil
}

func (n numericReducer) number(v any, what string) (float64, error) {
	switch x := v.(type) {
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return 0, fmt.Errorf("reduce %s: %s is %v, not a finite number", n.name, what, x)
		}
		return x, nil
	case int:
		return float64(x), nil
	case int64:
		return float64(x), nil
	case nil:
		return 0, nil
	}
	return 0, fmt.Errorf("reduce %s: %s is %T, not a number", n.name, what, v)
}

// stateReader is where a reduce step reads the current state: the live
// State, or a rebuild's overlay.
type stateReader interface {
	Get(key string) ([]byte, bool, error)
}

func (c *compiler) compileReduce(spec ReduceSpec) (oneFunc, error) {
	var errs []error
	red := spec.Reducer
	if red == nil {
		var err error
		if red, err = builtinReducer(spec); err != nil {
			errs = append(errs, err)
		}
	}
	var value *program
	var err error
	if spec.Value != "" {
		if value, err = compileExpr(spec.Value, c.sc, false); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	// A built-in numeric reducer whose result no later step reads is
	// folded by the commits (see state_hook.go).
	num, numeric := numericReducers[spec.Func]
	if f := c.flowRef; f != nil && f.hook != nil && spec.Reducer == nil && spec.As == "" && numeric {
		f.hook.fold = &num
	}
	return func(ctx context.Context, r Record) (Record, bool, error) {
		att := r.att
		if att == nil {
			return r, false, errors.New("reduce: the record carries no state attempt")
		}
		// The state key is the event key: the consumer runs the events of
		// a key one at a time, in sequence order, so they apply in order.
		k := r.Event.Key
		if k == "" {
			// Keyless events are not ordered among themselves, and the
			// journal keeps no empty key: such an event cannot apply.
			return r, false, consumer.Permanent(errors.New("reduce: the event has no key, and state is per key"))
		}
		in := r
		if value != nil {
			v, err := value.run(r)
			if err != nil {
				return r, false, err
			}
			in.Payload = v
		}
		if att.fold {
			v, err := num.value(in.Payload)
			if err != nil {
				return r, false, err
			}
			att.ops = append(att.ops, reduction{key: k, value: v})
			return r, true, nil
		}
		cur, ok := att.get(k)
		if !ok {
			var err error
			if cur, _, err = att.from.Get(k); err != nil {
				return r, false, fmt.Errorf("reduce: read state %q: %w", k, err)
			}
		}
		state, err := decodeState(cur)
		if err != nil {
			return r, false, fmt.Errorf("reduce: decode state %q: %w", k, err)
		}
		next, err := red(state, in)
		if err != nil {
			return r, false, err
		}
		enc, err := encodeState(next)
		if err != nil {
			return r, false, fmt.Errorf("reduce: encode state %q: %w", k, err)
		}
		att.set(k, enc)
		if spec.As != "" {
			r.Vars = r.withVar(spec.As, next)
		}
		return r, true, nil
	}, nil
}

// decodeState decodes a stored state value: JSON, with a fast path for
// the numbers the built-in reducers keep.
func decodeState(b []byte) (any, error) {
	if b == nil {
		return nil, nil
	}
	if jsonNumber(b) {
		if f, err := strconv.ParseFloat(string(b), 64); err == nil {
			return f, nil
		}
	}
	var v any
	err := json.Unmarshal(b, &v)
	return v, err
}

// jsonNumber reports whether b is a number in JSON's grammar, which is
// stricter than strconv's (no "Inf", "0x10" or "01").
func jsonNumber(b []byte) bool {
	digits := func(i int) int {
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i
	}
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(i)
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		if j := digits(i + 1); j > i+1 {
			i = j
		} else {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(i)
		if j == i {
			return false
		}
		i = j
	}
	return i == len(b)
}

// encodeState encodes a state value as JSON, numbers without reflection:
// a whole number as an integer, as encoding/json writes it.
func encodeState(v any) ([]byte, error) {
	f, ok := v.(float64)
	switch {
	case !ok || math.IsInf(f, 0) || math.IsNaN(f):
		return json.Marshal(v)
	case f == math.Trunc(f) && math.Abs(f) < 1<<53 && (f != 0 || !math.Signbit(f)):
		return strconv.AppendInt(make([]byte, 0, 8), int64(f), 10), nil
	}
	return strconv.AppendFloat(nil, f, 'g', -1, 64), nil
}

// FlowState reads a stateful flow's state while the runtime runs: the
// committed values overlaid with the changes of events done since.
type FlowState struct {
	f *flow
}

// State returns the state of the named flow, which must have a Reduce
// step.
func (rt *Runtime) State(flow string) (*FlowState, error) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for _, f := range rt.flows {
		if f.name == flow {
			if f.state == nil {
				return nil, fmt.Errorf("%w: %q", ErrNoState, flow)
			}
			return &FlowState{f: f}, nil
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownFlow, flow)
}

// Get returns key's current state, decoded from JSON.
func (s *FlowState) Get(key string) (value any, ok bool, err error) {
	v, ok, err := s.f.hook.Get(key)
	if err != nil || !ok {
		return nil, ok, err
	}
	err = json.Unmarshal(v, &value)
	return value, true, err
}

// StateEntry is one key's state.
type StateEntry struct {
	Key   string
	Value any
}

// Items returns every key starting with prefix ("" for all) and its
// current state, in key order.
func (s *FlowState) Items(prefix string) ([]StateEntry, error) {
	entries, err := s.f.hook.Items(prefix)
	if err != nil {
		return nil, err
	}
	out := make([]StateEntry, len(entries))
	for i, e := range entries {
		out[i].Key = e.Key
		if err := json.Unmarshal(e.Value, &out[i].Value); err != nil {
			return nil, fmt.Errorf("flowrt/runtime: decode state %q: %w", e.Key, err)
		}
	}
	return out, nil
}

// Snapshot takes a snapshot of the flow's state at its committed floor
// (see snapshot.Take). Right after a restart that followed a clean stop it
// can fail with snapshot.ErrNotSettled until the floor passes the events
// the stop marked done.
func (s *FlowState) Snapshot() (snapshot.Snapshot, error) { return s.f.snapshot() }

// snapshot takes a snapshot unless the consumer has events marked done
// above its floor, whose changes the state already holds.
func (f *flow) snapshot() (snapshot.Snapshot, error) {
	return snapshot.Take(f.rt.j, f.name, f.stream, f.name, func(tx *eventlog.Tx) error {
		done, err := consumer.DoneAboveTx(tx, f.stream, f.name)
		if err == nil && len(done) > 0 {
			err = fmt.Errorf("%d events above the floor are done (%d first)", len(done), done[0])
		}
		return err
	})
}
