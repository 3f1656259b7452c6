package runtime

import (
	"context"
	"fmt"
	"reflect"
)

// OperatorFunc is a step written in Go: it returns the records that go on
// (none drops the record, several fan it out). It is called from the
// flow's worker goroutines, concurrently for events of different keys.
type OperatorFunc func(ctx context.Context, r Record) ([]Record, error)

// oneFunc is a step that yields at most one record per record (ok is
// false when it drops it): the steps built in but fan_out, whose records
// then pass through without a slice each.
type oneFunc func(ctx context.Context, r Record) (out Record, ok bool, err error)

// Lookup fetches something for an enrich step by a key (by default the
// event's key), like an entity fetcher. Its result is stored in the
// record's Vars. Lookups are called concurrently.
type Lookup func(ctx context.Context, key any) (any, error)

// Step is one step of a flow's pipeline. Build it with Filter, Map,
// FanOut, Enrich, Emit, their Func variants, or Operator. Expression
// steps are compiled by Runtime.Add, which reports a bad expression there.
type Step struct {
	kind   string
	src    string // the expression of a filter, map or fan_out
	as     string // the variable an enrich or fan_out sets
	enrich EnrichSpec
	emit   EmitSpec
	reduce ReduceSpec
	fn     OperatorFunc
	one    oneFunc // in place of fn, for FilterFunc, MapFunc and EnrichFunc
	custom bool    // made by Operator
}

// Kind returns the step's kind: filter, map, fan_out, enrich, emit,
// reduce, or a custom Operator's name.
func (s Step) Kind() string { return s.kind }

// String describes the step, such as `filter(data.total > 100)`.
func (s Step) String() string {
	switch {
	case s.src != "":
		return fmt.Sprintf("%s(%s)", s.kind, s.src)
	case s.kind == "emit":
		return fmt.Sprintf("emit(%s %s)", s.emit.Stream, s.emit.Type)
	case s.kind == "reduce" && s.reduce.Func != "":
		return fmt.Sprintf("reduce(%s)", s.reduce.Func)
	case s.kind == "enrich" && s.enrich.Lookup != "":
		return fmt.Sprintf("enrich(%s as %s)", s.enrich.Lookup, s.enrich.As)
	}
	return s.kind
}

// Filter keeps the records for which the boolean expression is true; the
// others are dropped for this flow (counted as filtered out, and acked).
func Filter(expr string) Step { return Step{kind: "filter", src: expr} }

// FilterFunc is Filter with a Go predicate.
func FilterFunc(keep func(ctx context.Context, r Record) (bool, error)) Step {
	return Step{kind: "filter", one: func(ctx context.Context, r Record) (Record, bool, error) {
		ok, err := keep(ctx, r)
		return r, ok && err == nil, err
	}}
}

// Map replaces the payload with the expression's value, for example
// `{"order": data.id, "total": data.total * 1.21}`.
func Map(expr string) Step { return Step{kind: "map", src: expr} }

// MapFunc is Map with a Go function.
func MapFunc(fn func(ctx context.Context, r Record) (any, error)) Step {
	return Step{kind: "map", one: func(ctx context.Context, r Record) (Record, bool, error) {
		v, err := fn(ctx, r)
		r.Payload = v
		return r, err == nil, err
	}}
}

// FanOut turns each record into one part per element of the array the
// expression returns (such as `data.items`). Each part's payload is its
// element, also stored in Vars[as] when as is not empty, and the rest of
// the pipeline runs for each part. Parts are numbered from 0, so a retry
// yields the same part IDs.
func FanOut(expr, as string) Step { return Step{kind: "fan_out", src: expr, as: as} }

// FanOutFunc is FanOut with a Go function returning the elements.
func FanOutFunc(as string, fn func(ctx context.Context, r Record) ([]any, error)) Step {
	return Step{kind: "fan_out", as: as, fn: func(ctx context.Context, r Record) ([]Record, error) {
		elems, err := fn(ctx, r)
		if err != nil {
			return nil, err
		}
		return fanOut(r, elems, as), nil
	}}
}

func fanOut(r Record, elems []any, as string) []Record {
	out := make([]Record, len(elems))
	for i, e := range elems {
		out[i] = r.part(i, e)
		if as != "" {
			out[i].Vars[as] = e
		}
	}
	return out
}

// elements converts a fan_out expression's value to its elements.
func elements(v any) ([]any, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case []any:
		return v, nil
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
		return nil, fmt.Errorf("fan_out: value is %T, not an array", v)
	}
	out := make([]any, rv.Len())
	for i := range out {
		out[i] = rv.Index(i).Interface()
	}
	return out, nil
}

// EnrichSpec configures an enrich step.
type EnrichSpec struct {
	// Lookup names a Lookup registered in Options.Lookups. Required.
	Lookup string
	// Key is an expression giving the lookup's key. Default: the event's key.
	Key string
	// As names the variable the result is stored in. Required.
	As string
}

// Enrich calls a registered Lookup and stores its result in Vars[spec.As],
// where later expressions see it by that name.
func Enrich(spec EnrichSpec) Step { return Step{kind: "enrich", enrich: spec, as: spec.As} }

// EnrichFunc is Enrich with a Go function of the record.
func EnrichFunc(as string, fn func(ctx context.Context, r Record) (any, error)) Step {
	return Step{kind: "enrich", as: as, one: func(ctx context.Context, r Record) (Record, bool, error) {
		v, err := fn(ctx, r)
		if err != nil {
			return r, false, err
		}
		r.Vars = r.withVar(as, v)
		return r, true, nil
	}}
}

// Operator is a custom step: fn decides what goes on. name is its Kind; it
// must not be a built-in kind (reduce, emit, ...), which the runtime
// treats specially.
func Operator(name string, fn OperatorFunc) Step { return Step{kind: name, fn: fn, custom: true} }

// builtinKinds are the kinds of the built-in steps.
var builtinKinds = map[string]bool{"filter": true, "map": true, "fan_out": true, "enrich": true, "emit": true, "reduce": true}

// readsPayload reports whether the step may read the record's payload or
// data, which are then decoded from JSON before the steps run. Only a
// count, and an enrich by the event key, never do.
func (s Step) readsPayload() bool {
	switch {
	case s.kind == "reduce":
		return s.reduce.Reducer != nil || s.reduce.Value != "" || s.reduce.Func != "count"
	case s.kind == "enrich" && s.one == nil:
		return s.enrich.Key != ""
	}
	return true
}

// compiler compiles a flow's steps and sinks.
type compiler struct {
	rt      *Runtime
	flowRef *flow
	flow    string
	site    string // the step or sink being compiled, for derived IDs
	sc      scope
}

// compile returns the step's operator, as a oneFunc when it yields at
// most one record per record, and leaves in c.sc the scope after it.
func (c *compiler) compile(s Step) (OperatorFunc, oneFunc, error) {
	if s.as != "" {
		if _, ok := builtinNames[s.as]; ok {
			return nil, nil, fmt.Errorf("as: %q is a built-in name", s.as)
		}
		if !isIdentifier(s.as) {
			return nil, nil, fmt.Errorf("as: %q is not an identifier", s.as)
		}
	}
	defer func() {
		if s.as != "" {
			c.sc = c.sc.with(s.as)
		}
	}()
	if s.fn != nil || s.one != nil {
		if s.custom && builtinKinds[s.kind] {
			return nil, nil, fmt.Errorf("%w %q: name custom operators otherwise", ErrReservedKind, s.kind)
		}
		return s.fn, s.one, nil
	}
	var one oneFunc
	var err error
	switch s.kind {
	case "filter":
		one, err = compileFilter(s.src, c.sc)
	case "map":
		one, err = compileMap(s.src, c.sc)
	case "fan_out":
		op, err := compileFanOut(s.src, s.as, c.sc)
		return op, nil, err
	case "enrich":
		one, err = c.compileEnrich(s.enrich)
	case "reduce":
		one, err = c.compileReduce(s.reduce)
	case "emit":
		var e *emitter
		if e, err = c.compileEmit(s.emit); err == nil {
			one = func(ctx context.Context, r Record) (Record, bool, error) {
				err := e.emit(ctx, r)
				return r, err == nil, err
			}
		}
	default:
		err = fmt.Errorf("step %q has no implementation", s.kind)
	}
	return nil, one, err
}

func compileFilter(src string, sc scope) (oneFunc, error) {
	p, err := compileExpr(src, sc, true)
	if err != nil {
		return nil, err
	}
	return func(_ context.Context, r Record) (Record, bool, error) {
		ok, err := p.bool(r)
		return r, ok && err == nil, err
	}, nil
}

func compileMap(src string, sc scope) (oneFunc, error) {
	p, err := compileExpr(src, sc, false)
	if err != nil {
		return nil, err
	}
	return func(_ context.Context, r Record) (Record, bool, error) {
		v, err := p.run(r)
		r.Payload = v
		return r, err == nil, err
	}, nil
}

func compileFanOut(src, as string, sc scope) (OperatorFunc, error) {
	p, err := compileExpr(src, sc, false)
	if err != nil {
		return nil, err
	}
	return func(_ context.Context, r Record) ([]Record, error) {
		v, err := p.run(r)
		if err != nil {
			return nil, err
		}
		elems, err := elements(v)
		if err != nil {
			return nil, &ExprError{Expr: src, Err: err}
		}
		return fanOut(r, elems, as), nil
	}, nil
}

func (c *compiler) compileEnrich(spec EnrichSpec) (oneFunc, error) {
	if spec.As == "" {
		return nil, fmt.Errorf("enrich: as is required")
	}
	lookup, ok := c.rt.opts.Lookups[spec.Lookup]
	if !ok {
		return nil, fmt.Errorf("enrich: %w %q", ErrUnknownLookup, spec.Lookup)
	}
	var key *program
	if spec.Key != "" {
		var err error
		if key, err = compileExpr(spec.Key, c.sc, false); err != nil {
			return nil, err
		}
	}
	return func(ctx context.Context, r Record) (Record, bool, error) {
		var k any = r.Event.Key
		if key != nil {
			var err error
			if k, err = key.run(r); err != nil {
				return r, false, err
			}
		}
		v, err := lookup(ctx, k)
		if err != nil {
			return r, false, fmt.Errorf("enrich %s: %w", spec.Lookup, err)
		}
		r.Vars = r.withVar(spec.As, v)
		return r, true, nil
	}, nil
}

func isIdentifier(s string) bool {
	for i, c := range s {
		letter := c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return s != ""
}
