package runtime

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/expr-lang/expr/file"
	"github.com/flowrt/flowrt/consumer"
	yaml "go.yaml.in/yaml/v3"
)

// placeholderRuntime returns a runtime whose Options have every lookup
// and registered sink the config names, so ParseConfig can compile
// everything that does not depend on a real runtime's Options.
func placeholderRuntime(c *Config) *Runtime {
	rt := &Runtime{byName: map[string]bool{}, opts: Options{Lookups: map[string]Lookup{}, Sinks: map[string]Sink{}}}
	for _, fs := range c.specs {
		for _, st := range fs.steps {
			if st.step.kind == "enrich" {
				rt.opts.Lookups[st.step.enrich.Lookup] = func(context.Context, any) (any, error) { return nil, nil }
			}
		}
		for _, s := range fs.sinks {
			if s.kind == "sink" {
				rt.opts.Sinks[s.name] = SinkFunc(func(context.Context, Delivery) error { return nil })
			}
		}
	}
	return rt
}

// check compiles every step and sink of the config against rt, as
// Runtime.Add does, and reports each problem at the field it comes from.
// Items that could not be built were reported already and are skipped.
func (d *decoder) check(c *Config, rt *Runtime) {
	for _, fs := range c.specs {
		def := Flow{Name: fs.name, On: fs.on}
		comp := &compiler{rt: rt, flow: fs.name, flowRef: &flow{rt: rt, name: fs.name}}
		for i, st := range fs.steps {
			comp.site = "step " + strconv.Itoa(i)
			if st.bad {
				// Later steps still see the name it would have set.
				if _, builtin := builtinNames[st.step.as]; !builtin && isIdentifier(st.step.as) {
					comp.sc = comp.sc.with(st.step.as)
				}
				continue
			}
			later := fs.steps[i+1:]
			if _, _, err := comp.compile(st.step); err != nil {
				d.compileErrors(err, st.node, st.path, st.fields, st.exprs, later, rt)
			}
			if st.step.kind == "emit" {
				d.loop(rt, def, st.step.emit, st.node, st.path)
			}
		}
		d.stateChecks(fs)
		for i, s := range fs.sinks {
			comp.site = "sink " + strconv.Itoa(i)
			if s.bad {
				continue
			}
			switch s.kind {
			case "sink":
				if _, ok := rt.opts.Sinks[s.name]; !ok {
					d.errorf(s.fields["sink"], s.path, "unknown sink %q: %s", s.name, registered("Options.Sinks", rt.opts.Sinks))
				}
			case "emit":
				if _, err := comp.compileEmit(s.emit); err != nil {
					d.compileErrors(err, s.node, s.path, s.fields, s.exprs, nil, rt)
				}
				d.loop(rt, def, s.emit, s.node, s.path)
			}
		}
	}
}

// registered lists the names a map of Options has, for unknown-name errors.
func registered[V any](what string, m map[string]V) string {
	if len(m) == 0 {
		return what + " has none"
	}
	names := slices.Sorted(maps.Keys(m))
	if len(names) > 10 {
		names = append(names[:10], "…")
	}
	return what + " has " + strings.Join(names, ", ")
}

// loop reports an emit into the flow's own trigger (Runtime.checkLoop).
func (d *decoder) loop(rt *Runtime, def Flow, spec EmitSpec, n *yaml.Node, p string) {
	if spec.Stream == "" || spec.Type == "" {
		return
	}
	if err := rt.checkLoop(def, spec, "emit"); err != nil {
		d.errorf(n, p, "%s", strings.TrimPrefix(err.Error(), "emit: "))
	}
}

// pkgPrefix matches the package prefix of flowrt's error messages.
var pkgPrefix = regexp.MustCompile(`flowrt/[a-z]+: `)

// cleanMsg makes an error one line without package prefixes.
func cleanMsg(msg string) string {
	msg = pkgPrefix.ReplaceAllString(msg, "")
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = strings.TrimSpace(msg[:i])
	}
	return msg
}

// compileErrors reports what the compiler refused, each at its field: an
// expression at its node (the character where possible), a name at the
// field that gives it. Errors about a field that is missing were reported
// when it was found missing.
func (d *decoder) compileErrors(err error, n *yaml.Node, p string, fields map[string]*yaml.Node,
	exprs []exprField, later []*stepSpec, rt *Runtime) {
	for _, e := range leafErrors(err) {
		if ee := (*ExprError)(nil); errors.As(e, &ee) {
			if ee.Expr == "" {
				continue // missing or not a string: reported
			}
			i := slices.IndexFunc(exprs, func(x exprField) bool { return x.src == ee.Expr })
			if i < 0 {
				d.errorf(n, p, "%s", cleanMsg(e.Error()))
				continue
			}
			d.exprError(exprs[i], ee, later)
			continue
		}
		msg := e.Error()
		var key string
		switch {
		case errors.Is(e, ErrUnknownLookup):
			key = "lookup"
			msg = fmt.Sprintf("unknown lookup %q: %s", fieldValue(fields, key), registered("Options.Lookups", rt.opts.Lookups))
		case strings.HasPrefix(msg, "emit stream: "):
			key = "stream"
		case strings.HasPrefix(msg, "emit type: "):
			key = "type"
		case strings.HasPrefix(msg, "as: "), strings.HasPrefix(msg, "enrich: as "):
			key, msg = "as", strings.TrimPrefix(msg, "enrich: ")
		}
		if key == "" {
			d.errorf(n, p, "%s", cleanMsg(msg))
			continue
		}
		if fields[key] == nil {
			continue // missing: reported
		}
		msg = strings.TrimPrefix(strings.TrimPrefix(msg, "emit "), key+": ")
		d.errorf(fields[key], field(p, key), "%s", cleanMsg(msg))
	}
}

func fieldValue(fields map[string]*yaml.Node, k string) string {
	if n := fields[k]; n != nil {
		return n.Value
	}
	return ""
}

// exprError reports a bad expression at the character the compiler
// points to when the expression is written on one line, else at its
// start.
func (d *decoder) exprError(x exprField, ee *ExprError, later []*stepSpec) {
	line, col := x.node.Line, x.node.Column
	msg := cleanMsg(ee.Err.Error())
	var fe *file.Error
	if errors.As(ee.Err, &fe) {
		msg = cleanMsg(fe.Message)
		if l, c, ok := d.exprPos(x, fe); ok {
			line, col = l, c
		} else if fe.Line > 0 {
			msg += fmt.Sprintf(" (line %d, column %d of the expression)", fe.Line, fe.Column+1)
		}
		if name, ok := strings.CutPrefix(fe.Message, "unknown name "); ok {
			for _, st := range later {
				if st.step.as == name {
					msg += fmt.Sprintf(" (%s sets it: a step sees only the names set before it)", st.item)
					break
				}
			}
		}
	}
	d.errorAt(line, col, x.path, msg)
}

// exprPos places an expression error in the file, when the expression is
// a one-line scalar written as is (plain, or quoted without escapes).
func (d *decoder) exprPos(x exprField, fe *file.Error) (line, col int, ok bool) {
	n := x.node
	if fe.Line != 1 || strings.Contains(x.src, "\n") || n.Line < 1 || n.Line > len(d.lines) {
		return 0, 0, false
	}
	quote := 0
	switch n.Style {
	case 0:
	case yaml.SingleQuotedStyle, yaml.DoubleQuotedStyle:
		quote = 1
	default:
		return 0, 0, false
	}
	text := []rune(d.lines[n.Line-1])
	src := []rune(x.src)
	start := n.Column - 1 + quote
	if start < 0 || start+len(src) > len(text) || string(text[start:start+len(src)]) != x.src {
		return 0, 0, false
	}
	return n.Line, start + min(fe.Column, len(src)) + 1, true
}

// build builds the config's flows with fresh sinks. rt resolves the
// registered sinks that carry middleware; nil leaves them Named. A sink
// that cannot be built is reported.
func (c *Config) build(rt *Runtime, d *decoder) []Flow {
	files := map[string]Sink{} // one sink per file, shared by the flows writing it
	flows := make([]Flow, 0, len(c.specs))
	for _, fs := range c.specs {
		f := Flow{Name: fs.name, Description: fs.desc, On: fs.on}
		f.On.Types = slices.Clone(fs.on.Types)
		if fs.consumer != nil {
			co := *fs.consumer
			f.Consumer = &co
		}
		if fs.restart != nil {
			r := *fs.restart
			f.Restart = &r
		}
		f.StateVersion, f.SnapshotEvery = fs.version, fs.snapshot
		for _, st := range fs.steps {
			f.Steps = append(f.Steps, st.step)
		}
		for _, s := range fs.sinks {
			sink, err := s.build(rt, files)
			if err != nil {
				d.errorf(s.node, s.path, "%s", cleanMsg(err.Error()))
				continue
			}
			f.Sinks = append(f.Sinks, sink)
		}
		flows = append(flows, f)
	}
	return flows
}

// build builds the sink and wraps it in its middleware: the circuit
// breaker outermost, then the rate limit, then the timeout.
func (s *sinkSpec) build(rt *Runtime, files map[string]Sink) (Sink, error) {
	var sink Sink
	switch s.kind {
	case "stdout":
		sink = Stdout()
	case "file":
		if sink = files[s.file]; sink == nil {
			if rt != nil {
				// A runtime is about to write it: create its directory.
				if err := os.MkdirAll(filepath.Dir(s.file), 0o755); err != nil {
					return nil, fmt.Errorf("file sink: %w", err)
				}
			}
			sink = FileSink(s.file)
			files[s.file] = sink
		}
	case "http":
		o := s.http
		o.Headers = maps.Clone(o.Headers)
		var err error
		if sink, err = HTTPSink(o); err != nil {
			return nil, err
		}
	case "emit":
		return EmitSink(s.emit), nil
	case "sink":
		sink = Named(s.name)
		if named, ok := rt.lookupSink(s.name); ok && s.hasMiddleware() {
			sink = named
		}
	default:
		return nil, fmt.Errorf("unknown sink kind %q", s.kind)
	}
	var mw []SinkMiddleware
	if s.breaker != nil {
		mw = append(mw, CircuitBreaker(*s.breaker))
	}
	if s.rate != nil {
		mw = append(mw, RateLimit(s.rate.perSecond, s.rate.burst))
	}
	if s.timeout > 0 {
		mw = append(mw, SinkTimeout(s.timeout))
	}
	if len(mw) > 0 {
		sink = WithMiddleware(sink, mw...)
	}
	return sink, nil
}

// lookupSink returns a registered sink; false on a nil runtime.
func (rt *Runtime) lookupSink(name string) (Sink, bool) {
	if rt == nil {
		return nil, false
	}
	s, ok := rt.opts.Sinks[name]
	return s, ok
}

// stateChecks reports what keeps a flow's reduce step from being
// effectively once (Runtime.Add's state checks), at the reduce step.
func (d *decoder) stateChecks(fs *flowSpec) {
	// Negative versions and intervals were reported where they are written.
	def := Flow{Name: fs.name, StateVersion: max(fs.version, 0), SnapshotEvery: max(fs.snapshot, 0)}
	var at *stepSpec
	for _, st := range fs.steps {
		def.Steps = append(def.Steps, st.step)
		if st.step.kind == "reduce" && at == nil {
			at = st
		}
	}
	if at == nil {
		return
	}
	var copts consumer.Options
	if fs.consumer != nil {
		copts = *fs.consumer
	}
	for _, err := range stateErrors(def, copts) {
		d.errorf(at.node, at.path, "%s", cleanMsg(err.Error()))
	}
}
