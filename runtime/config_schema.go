package runtime

import (
	"path"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/supervisor"
)

// configVersion is the only schema version this package knows.
const configVersion = 1

// The keys of each mapping of a flows file (docs/FLOWS.md).
var (
	topFields      = []string{"version", "flows"}
	flowFields     = []string{"name", "description", "on", "filter", "steps", "sinks", "consumer", "restart", "state_version", "snapshot_every"}
	onFields       = []string{"stream", "types", "key"}
	stepKinds      = []string{"filter", "map", "fan_out", "enrich", "emit", "reduce"}
	reduceFields   = []string{"func", "value", "limit", "as"}
	fanOutFields   = []string{"each", "as"}
	enrichFields   = []string{"lookup", "key", "as"}
	emitFields     = []string{"stream", "type", "key", "data"}
	sinkKinds      = []string{"stdout", "file", "http", "emit", "sink"}
	middlewareKeys = []string{"timeout", "rate_limit", "circuit_breaker"}
	fileFields     = []string{"path"}
	httpFields     = []string{"url", "timeout", "headers"}
	rateFields     = []string{"per_second", "burst"}
	breakerFields  = []string{"failures", "cooldown"}
	consumerFields = []string{"workers", "max_in_flight", "handler_timeout", "start", "key_failure",
		"commit_interval", "commit_every", "retry"}
	retryFields   = []string{"max_attempts", "base", "max", "multiplier", "jitter"}
	restartFields = []string{"base", "max", "multiplier", "max_restarts", "window"}
)

// flowSpec is a flow as the file declares it, with the nodes its problems
// are reported at.
type flowSpec struct {
	path     string
	node     *yaml.Node
	name     string
	nameNode *yaml.Node
	desc     string
	on       Trigger
	steps    []*stepSpec
	sinks    []*sinkSpec
	consumer *consumer.Options
	restart  *supervisor.RestartPolicy
	version  int
	snapshot time.Duration
}

// stepSpec is one step: the config's top-level filter or a steps item.
type stepSpec struct {
	item   string     // the item's path, such as flows[0].steps[1]
	path   string     // the kind's path, such as flows[0].steps[1].map
	node   *yaml.Node // the kind's value
	step   Step
	fields map[string]*yaml.Node // the kind's fields, such as as or lookup
	exprs  []exprField
	bad    bool // the step could not be built; only its as is known
}

// exprField is an expression and where it is written.
type exprField struct {
	path string
	src  string
	node *yaml.Node
}

// config reads the whole file into c.
func (d *decoder) config(c *Config, data []byte) {
	root := d.document(data)
	if root == nil {
		return
	}
	o := d.object(root, "", unknownField, topFields...)
	if o == nil {
		return
	}
	if v := d.require(o, "version"); v != nil {
		if n, ok := d.integer(v, "version"); ok {
			c.Version = n
			if n != configVersion {
				d.errorf(v, "version", "unknown version %d: this flowrt knows version %d", n, configVersion)
			}
		}
	}
	v := d.require(o, "flows")
	if v == nil {
		return
	}
	items := d.list(v, "flows")
	if len(items) == 0 && v.Kind == yaml.SequenceNode {
		d.errorf(v, "flows", "a flows file needs at least one flow")
	}
	seen := map[string]*flowSpec{}
	for i, item := range items {
		fs := d.flow(c, item, index("flows", i))
		if fs == nil {
			continue
		}
		c.specs = append(c.specs, fs)
		if fs.nameNode == nil {
			continue
		}
		if first, ok := seen[fs.name]; ok {
			d.errorf(first.nameNode, first.path+".name", "duplicate flow name %q (also at line %d)", fs.name, fs.nameNode.Line)
			d.errorf(fs.nameNode, fs.path+".name", "duplicate flow name %q (also at line %d)", fs.name, first.nameNode.Line)
			continue
		}
		seen[fs.name] = fs
	}
}

func (d *decoder) flow(c *Config, n *yaml.Node, p string) *flowSpec {
	o := d.object(n, p, unknownField, flowFields...)
	if o == nil {
		return nil
	}
	fs := &flowSpec{path: p, node: o.node}
	if v := d.require(o, "name"); v != nil {
		if s, ok := d.str(v, field(p, "name")); ok {
			if err := eventlog.ValidateName(s); err != nil {
				d.errorf(v, field(p, "name"), "invalid flow name %q: want 1 to %d letters, digits, '_', '-' or '.'", s, eventlog.MaxNameLen)
			} else {
				fs.name, fs.nameNode = s, v
			}
		}
	}
	if v := o.get("description"); v != nil {
		fs.desc, _ = d.str(v, field(p, "description"))
	}
	if v := o.get("on"); v != nil {
		fs.on = d.trigger(v, field(p, "on"))
	}
	if v := o.get("filter"); v != nil {
		if st := d.exprStep(v, p, field(p, "filter"), "filter"); st != nil {
			fs.steps = append(fs.steps, st)
		}
	}
	if v := o.get("steps"); v != nil {
		for i, item := range d.list(v, field(p, "steps")) {
			fs.steps = append(fs.steps, d.step(item, index(field(p, "steps"), i)))
		}
	}
	if v := d.require(o, "sinks"); v != nil {
		items := d.list(v, field(p, "sinks"))
		if len(items) == 0 && v.Kind == yaml.SequenceNode {
			d.errorf(v, field(p, "sinks"), "a flow needs at least one sink")
		}
		for i, item := range items {
			fs.sinks = append(fs.sinks, d.sink(c, item, index(field(p, "sinks"), i), fs.name))
		}
	}
	if v := o.get("consumer"); v != nil {
		fs.consumer = d.consumerOptions(v, field(p, "consumer"))
	}
	if v := o.get("restart"); v != nil {
		fs.restart = d.restartPolicy(v, field(p, "restart"))
	}
	if v := o.get("state_version"); v != nil {
		fs.version, _ = signed(d, v, field(p, "state_version"), d.integer, nonNegative)
	}
	if v := o.get("snapshot_every"); v != nil {
		fs.snapshot, _ = signed(d, v, field(p, "snapshot_every"), d.duration, nonNegative)
	}
	return fs
}

func (d *decoder) trigger(n *yaml.Node, p string) Trigger {
	var t Trigger
	o := d.object(n, p, unknownField, onFields...)
	if o == nil {
		return t
	}
	if v := o.get("stream"); v != nil {
		if s, ok := d.str(v, field(p, "stream")); ok {
			if err := eventlog.ValidateName(s); err != nil {
				d.errorf(v, field(p, "stream"), "invalid stream name %q: want 1 to %d letters, digits, '_', '-' or '.'", s, eventlog.MaxNameLen)
			} else {
				t.Stream = s
			}
		}
	}
	if v := o.get("types"); v != nil {
		types, nodes := d.strings(v, field(p, "types"))
		for i, pat := range types {
			if d.pattern(nodes[i], field(p, "types"), pat) {
				t.Types = append(t.Types, pat)
			}
		}
	}
	if v := o.get("key"); v != nil {
		if s, ok := d.str(v, field(p, "key")); ok && d.pattern(v, field(p, "key"), s) {
			t.Key = s
		}
	}
	return t
}

// pattern checks a path.Match glob.
func (d *decoder) pattern(n *yaml.Node, p, pat string) bool {
	if pat == "" {
		d.errorf(n, p, "empty pattern")
		return false
	}
	if _, err := path.Match(pat, ""); err != nil {
		d.errorf(n, p, "bad pattern %q: %v", pat, err)
		return false
	}
	return true
}

// kindOf finds the one kind key of a step or sink item.
func (d *decoder) kindOf(o *object, what string, kinds []string) (string, bool) {
	var found []string
	for _, k := range kinds {
		if _, ok := o.keys[k]; ok {
			found = append(found, k)
		}
	}
	switch len(found) {
	case 1:
		return found[0], true
	case 0:
		for k := range o.keys {
			if !contains(kinds, k) && !contains(middlewareKeys, k) {
				return "", false // reported as an unknown kind
			}
		}
		d.errorf(o.node, o.path, "a %s needs one of %s", what, strings.Join(kinds, ", "))
	default:
		d.errorf(o.keys[found[1]], o.path, "a %s has exactly one of %s; found %s", what, strings.Join(kinds, ", "), strings.Join(found, " and "))
	}
	return "", false
}

func (d *decoder) step(n *yaml.Node, item string) *stepSpec {
	st := &stepSpec{item: item, path: item, node: n, bad: true}
	o := d.object(n, item, unknownStepKind, stepKinds...)
	if o == nil {
		return st
	}
	kind, ok := d.kindOf(o, "step", stepKinds)
	if !ok {
		return st
	}
	p := field(item, kind)
	v := o.vals[kind]
	if isNull(v) {
		d.errorf(o.keys[kind], p, "missing value")
		return st
	}
	switch kind {
	case "filter", "map":
		if s := d.exprStep(v, item, p, kind); s != nil {
			return s
		}
		return st
	case "fan_out":
		return d.fanOutStep(v, item, p)
	case "enrich":
		return d.enrichStep(v, item, p)
	case "reduce":
		return d.reduceStep(v, item, p)
	}
	return d.emitStep(v, item, p)
}

func (d *decoder) reduceStep(n *yaml.Node, item, p string) *stepSpec {
	st := &stepSpec{item: item, path: p, node: n, fields: map[string]*yaml.Node{}}
	o := d.object(n, p, unknownField, reduceFields...)
	if o == nil {
		st.bad = true
		return st
	}
	var spec ReduceSpec
	if v := d.require(o, "func"); v != nil {
		st.fields["func"] = v
		spec.Func, _ = d.nonEmpty(v, field(p, "func"), "a reducer (count, sum, min, max, last, recent)")
	}
	if v := o.get("value"); v != nil {
		spec.Value, _ = d.nonEmpty(v, field(p, "value"), "an expression")
		st.exprs = append(st.exprs, exprField{field(p, "value"), spec.Value, v})
	}
	if v := o.get("limit"); v != nil {
		st.fields["limit"] = v
		spec.Limit, _ = d.integer(v, field(p, "limit"))
	}
	var bad bool
	spec.As, bad = d.optionalVar(o, st, p, false)
	st.bad = bad
	st.step = Reduce(spec)
	return st
}

// exprStep reads a filter or map step.
func (d *decoder) exprStep(n *yaml.Node, item, p, kind string) *stepSpec {
	src, ok := d.nonEmpty(n, p, "an expression")
	if !ok {
		return nil
	}
	st := &stepSpec{item: item, path: p, node: n, exprs: []exprField{{p, src, n}}}
	if kind == "filter" {
		st.step = Filter(src)
	} else {
		st.step = Map(src)
	}
	return st
}

func (d *decoder) fanOutStep(n *yaml.Node, item, p string) *stepSpec {
	st := &stepSpec{item: item, path: p, node: n, fields: map[string]*yaml.Node{}}
	if n.Kind == yaml.ScalarNode {
		src, ok := d.nonEmpty(n, p, "an expression")
		st.bad = !ok
		st.exprs = []exprField{{p, src, n}}
		st.step = FanOut(src, "")
		return st
	}
	o := d.object(n, p, unknownField, fanOutFields...)
	if o == nil {
		st.bad = true
		return st
	}
	var src, as string
	if v := d.require(o, "each"); v != nil {
		var ok bool
		src, ok = d.nonEmpty(v, field(p, "each"), "an expression")
		st.exprs = []exprField{{field(p, "each"), src, v}}
		st.bad = st.bad || !ok
	} else {
		st.bad = true
	}
	as, st.bad = d.optionalVar(o, st, p, st.bad)
	st.step = FanOut(src, as)
	return st
}

// optionalVar reads a step's as field.
func (d *decoder) optionalVar(o *object, st *stepSpec, p string, bad bool) (string, bool) {
	v := o.get("as")
	if v == nil {
		return "", bad
	}
	st.fields["as"] = v
	as, ok := d.str(v, field(p, "as"))
	return as, bad || !ok
}

func (d *decoder) enrichStep(n *yaml.Node, item, p string) *stepSpec {
	st := &stepSpec{item: item, path: p, node: n, fields: map[string]*yaml.Node{}}
	o := d.object(n, p, unknownField, enrichFields...)
	if o == nil {
		st.bad = true
		return st
	}
	var spec EnrichSpec
	if v := d.require(o, "lookup"); v != nil {
		st.fields["lookup"] = v
		spec.Lookup, _ = d.nonEmpty(v, field(p, "lookup"), "a lookup name")
	}
	if v := o.get("key"); v != nil {
		spec.Key, _ = d.nonEmpty(v, field(p, "key"), "an expression")
		st.exprs = append(st.exprs, exprField{field(p, "key"), spec.Key, v})
	}
	if v := d.require(o, "as"); v != nil {
		st.fields["as"] = v
		spec.As, _ = d.str(v, field(p, "as"))
	}
	st.step = Enrich(spec)
	return st
}

func (d *decoder) emitSpec(n *yaml.Node, p string, fields map[string]*yaml.Node) (EmitSpec, []exprField, bool) {
	var spec EmitSpec
	o := d.object(n, p, unknownField, emitFields...)
	if o == nil {
		return spec, nil, false
	}
	if v := d.require(o, "stream"); v != nil {
		fields["stream"] = v
		spec.Stream, _ = d.str(v, field(p, "stream"))
	}
	if v := d.require(o, "type"); v != nil {
		fields["type"] = v
		spec.Type, _ = d.str(v, field(p, "type"))
	}
	var exprs []exprField
	if v := o.get("key"); v != nil {
		spec.Key, _ = d.nonEmpty(v, field(p, "key"), "an expression")
		exprs = append(exprs, exprField{field(p, "key"), spec.Key, v})
	}
	if v := o.get("data"); v != nil {
		spec.Data, _ = d.nonEmpty(v, field(p, "data"), "an expression")
		exprs = append(exprs, exprField{field(p, "data"), spec.Data, v})
	}
	return spec, exprs, true
}

func (d *decoder) emitStep(n *yaml.Node, item, p string) *stepSpec {
	st := &stepSpec{item: item, path: p, node: n, fields: map[string]*yaml.Node{}}
	spec, exprs, ok := d.emitSpec(n, p, st.fields)
	st.step, st.exprs, st.bad = Emit(spec), exprs, !ok
	return st
}
