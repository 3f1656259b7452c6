package runtime

import (
	"errors"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

// sinkSpec is one sinks item.
type sinkSpec struct {
	item   string
	path   string
	node   *yaml.Node
	kind   string
	file   string // resolved
	http   HTTPOptions
	emit   EmitSpec
	name   string // a registered sink
	fields map[string]*yaml.Node
	exprs  []exprField

	timeout time.Duration
	rate    *rateSpec
	breaker *BreakerOptions

	bad bool
}

type rateSpec struct {
	perSecond float64
	burst     int
}

func (s *sinkSpec) hasMiddleware() bool { return s.timeout > 0 || s.rate != nil || s.breaker != nil }

func (d *decoder) sink(c *Config, n *yaml.Node, item, flowName string) *sinkSpec {
	s := &sinkSpec{item: item, path: item, node: n, fields: map[string]*yaml.Node{}, bad: true}
	o := d.object(n, item, unknownSinkKind, append(append([]string(nil), sinkKinds...), middlewareKeys...)...)
	if o == nil {
		return s
	}
	d.middleware(o, s, item, flowName)
	kind, ok := d.kindOf(o, "sink", sinkKinds)
	if !ok {
		return s
	}
	s.kind, s.path, s.bad = kind, field(item, kind), false
	v := o.vals[kind]
	switch kind {
	case "stdout":
		if !isNull(v) {
			d.object(v, s.path, unknownField)
			if v.Kind == yaml.MappingNode && len(v.Content) > 0 {
				d.errorf(v, s.path, "stdout takes no fields: write stdout: {}")
			}
		}
	case "file":
		if isNull(v) {
			d.errorf(o.keys[kind], s.path, "missing value: want {path: FILE}")
			s.bad = true
			break
		}
		fo := d.object(v, s.path, unknownField, fileFields...)
		s.bad = fo == nil
		if fo == nil {
			break
		}
		if pv := d.require(fo, "path"); pv != nil {
			f, ok := d.nonEmpty(pv, field(s.path, "path"), "a file path")
			if ok && !filepath.IsAbs(f) {
				f = filepath.Join(c.dir, f)
			}
			s.file, s.bad = f, !ok
		} else {
			s.bad = true
		}
	case "http":
		s.bad = !d.httpSink(v, o.keys[kind], s)
	case "emit":
		if isNull(v) {
			d.errorf(o.keys[kind], s.path, "missing value: want {stream: S, type: T}")
			s.bad = true
			break
		}
		var ok bool
		s.emit, s.exprs, ok = d.emitSpec(v, s.path, s.fields)
		s.bad = !ok
		for _, k := range middlewareKeys {
			if kn, ok := o.keys[k]; ok {
				d.errorf(kn, field(item, k), "an emit sink takes no middleware: it appends to the flow's own journal")
			}
		}
	case "sink":
		if isNull(v) {
			d.errorf(o.keys[kind], s.path, "missing value: want the name of a sink registered in Options.Sinks")
			s.bad = true
			break
		}
		s.fields["sink"] = v
		name, ok := d.nonEmpty(v, s.path, "a sink name")
		s.name, s.bad = name, !ok
	}
	return s
}

func (d *decoder) httpSink(v, key *yaml.Node, s *sinkSpec) bool {
	if isNull(v) {
		d.errorf(key, s.path, "missing value: want {url: URL}")
		return false
	}
	o := d.object(v, s.path, unknownField, httpFields...)
	if o == nil {
		return false
	}
	urlOK, timeoutOK := false, true
	if u := d.require(o, "url"); u != nil {
		s.http.URL, urlOK = d.nonEmpty(u, field(s.path, "url"), "a URL")
	}
	if t := o.get("timeout"); t != nil {
		s.http.Timeout, timeoutOK = d.duration(t, field(s.path, "timeout"))
	}
	var headers *object
	if h := o.get("headers"); h != nil {
		if headers = d.object(h, field(s.path, "headers"), unknownField); headers != nil {
			s.http.Headers = d.stringMap(headers)
		}
	}
	ok := urlOK && timeoutOK
	// HTTPSink checks the URL, the timeout and the headers; a URL found
	// missing or mistyped above is not reported again.
	if _, err := HTTPSink(s.http); err != nil {
		for _, e := range leafErrors(errors.Unwrap(err)) {
			msg := e.Error()
			at, p := v, s.path
			switch {
			case strings.HasPrefix(msg, "URL"):
				if !urlOK {
					continue
				}
				at, p = o.get("url"), field(s.path, "url")
			case strings.HasPrefix(msg, "Timeout"):
				at, p, msg = o.get("timeout"), field(s.path, "timeout"), "t"+msg[1:]
			case strings.HasPrefix(msg, "Headers: ") && headers != nil:
				msg = strings.TrimPrefix(msg, "Headers: ")
				at, p = headers.node, field(s.path, "headers")
				for _, k := range slices.Sorted(maps.Keys(headers.keys)) {
					if strings.Contains(strings.ToLower(msg), strings.ToLower(k)) {
						at, p = headers.keys[k], field(p, k)
						break
					}
				}
			}
			d.errorf(at, p, "%s", cleanMsg(msg))
		}
		return false
	}
	return ok
}

// middleware reads a sink item's timeout, rate_limit and circuit_breaker.
func (d *decoder) middleware(o *object, s *sinkSpec, item, flowName string) {
	if v := o.get("timeout"); v != nil {
		s.timeout, _ = signed(d, v, field(item, "timeout"), d.duration, positive)
	}
	if v := o.get("rate_limit"); v != nil {
		p := field(item, "rate_limit")
		if ro := d.object(v, p, unknownField, rateFields...); ro != nil {
			r := &rateSpec{}
			if pv := d.require(ro, "per_second"); pv != nil {
				r.perSecond, _ = signed(d, pv, field(p, "per_second"), d.number, positive)
			}
			if bv := ro.get("burst"); bv != nil {
				r.burst, _ = signed(d, bv, field(p, "burst"), d.integer, nonNegative)
			}
			s.rate = r
		}
	}
	if v := o.get("circuit_breaker"); v != nil {
		p := field(item, "circuit_breaker")
		if bo := d.object(v, p, unknownField, breakerFields...); bo != nil {
			b := &BreakerOptions{Name: flowName + "/" + item[strings.LastIndex(item, ".")+1:]}
			if fv := bo.get("failures"); fv != nil {
				b.Failures, _ = signed(d, fv, field(p, "failures"), d.integer, nonNegative)
			}
			if cv := bo.get("cooldown"); cv != nil {
				b.Cooldown, _ = signed(d, cv, field(p, "cooldown"), d.duration, nonNegative)
			}
			s.breaker = b
		}
	}
}
