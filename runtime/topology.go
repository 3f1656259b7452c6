package runtime

import (
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
)

// Topology is the graph of a set of flows: the streams they read, the
// flows, their sinks, and the streams they emit to. Its JSON form is what
// `flowrt graph --format json` prints and GET /v1/topology serves; every
// list is present, empty rather than null.
type Topology struct {
	Streams []string       `json:"streams"` // sorted, each once
	Flows   []TopologyFlow `json:"flows"`   // in the order given
}

// TopologyFlow is one flow in a Topology.
type TopologyFlow struct {
	Name   string   `json:"name"`
	Stream string   `json:"stream"`
	Types  []string `json:"types,omitempty"`
	Key    string   `json:"key,omitempty"`
	Steps  []string `json:"steps,omitempty"` // Step.String of each step
	Sinks  []string `json:"sinks"`           // a description of each sink, such as "file out/orders.jsonl"
	Emits  []string `json:"emits,omitempty"` // streams the flow emits to, each once, in order
	State  bool     `json:"state,omitempty"` // the flow has a reduce step
}

// Describer is a Sink that describes itself in a Topology, such as
// "file out/orders.jsonl". The runtime's own sinks are described by kind
// and target; other sinks are shown by their Go type.
type Describer interface {
	Describe() string
}

// TopologyOf returns the topology of flows.
func TopologyOf(flows []Flow) Topology {
	t := Topology{Streams: []string{}, Flows: make([]TopologyFlow, 0, len(flows))}
	streams := map[string]bool{}
	for _, f := range flows {
		tf := TopologyFlow{Name: f.Name, Stream: f.On.stream(), Types: slices.Clone(f.On.Types), Key: f.On.Key, Sinks: []string{}}
		streams[tf.Stream] = true
		emit := func(stream string) {
			if !slices.Contains(tf.Emits, stream) {
				tf.Emits = append(tf.Emits, stream)
			}
		}
		for _, s := range f.Steps {
			tf.Steps = append(tf.Steps, s.String())
			switch s.kind {
			case "emit":
				emit(s.emit.Stream)
			case "reduce":
				tf.State = true
			}
		}
		if f.handler != nil {
			tf.Sinks = append(tf.Sinks, "handler")
		}
		for _, s := range f.Sinks {
			tf.Sinks = append(tf.Sinks, describeSink(s))
			if e, ok := s.(emitSink); ok {
				emit(e.spec.Stream)
			}
		}
		for _, e := range tf.Emits {
			streams[e] = true
		}
		t.Flows = append(t.Flows, tf)
	}
	for s := range streams {
		t.Streams = append(t.Streams, s)
	}
	sort.Strings(t.Streams)
	return t
}

// describeSink names a sink's kind and target for a Topology.
func describeSink(s Sink) string {
	switch s := s.(type) {
	case Describer:
		return s.Describe()
	case *middlewareSink:
		return describeSink(s.inner)
	case *fileSink:
		return "file " + s.path
	case *httpSink:
		return "http " + s.shown
	case *writerSink:
		if s.w == os.Stdout {
			return "stdout"
		}
		return fmt.Sprintf("writer %T", s.w)
	case namedSink:
		return "sink " + string(s)
	case emitSink:
		return "emit " + s.spec.Stream + " " + s.spec.Type
	}
	return fmt.Sprintf("%T", s)
}

// isEmitSink reports whether a sink description is an emit sink's: the
// graphs draw those as edges to the stream, not as sink nodes.
func isEmitSink(desc string) bool { return strings.HasPrefix(desc, "emit ") }

// Mermaid writes the topology as a Mermaid flowchart: streams as
// cylinders, flows as boxes, sinks as flags, and dotted edges from a flow
// to the streams it emits to. Node IDs are made of letters, digits and
// '_' only, derived from the names so that they stay stable; every label
// is quoted, with the characters Mermaid would read as syntax written as
// entity codes.
func (t Topology) Mermaid(w io.Writer) error {
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	for _, s := range t.Streams {
		fmt.Fprintf(&b, "  %s[(\"%s\")]\n", mermaidID("stream_", s), mermaidLabel(s))
	}
	for _, f := range t.Flows {
		id := mermaidID("flow_", f.Name)
		label := mermaidLabel(f.Name)
		if len(f.Types) > 0 {
			label += "<br/>" + mermaidLabel(strings.Join(f.Types, ", "))
		}
		fmt.Fprintf(&b, "  %s[\"%s\"]\n", id, label)
		fmt.Fprintf(&b, "  %s --> %s\n", mermaidID("stream_", f.Stream), id)
		for i, s := range f.Sinks {
			if isEmitSink(s) {
				continue
			}
			sid := fmt.Sprintf("%s__%d", mermaidID("sink_", f.Name), i)
			fmt.Fprintf(&b, "  %s>\"%s\"]\n  %s --> %s\n", sid, mermaidLabel(s), id, sid)
		}
		for _, e := range f.Emits {
			fmt.Fprintf(&b, "  %s -. emit .-> %s\n", id, mermaidID("stream_", e))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// DOT writes the topology as a Graphviz digraph, with the shapes of
// Mermaid's. Every ID and label is a quoted string.
func (t Topology) DOT(w io.Writer) error {
	var b strings.Builder
	b.WriteString("digraph \"flowrt\" {\n  rankdir=\"LR\";\n")
	for _, s := range t.Streams {
		fmt.Fprintf(&b, "  %s [shape=\"cylinder\", label=%s];\n", dotQuote("stream:"+s), dotQuote(s))
	}
	for _, f := range t.Flows {
		id := dotQuote("flow:" + f.Name)
		label := f.Name
		if len(f.Types) > 0 {
			label += "\n" + strings.Join(f.Types, ", ")
		}
		fmt.Fprintf(&b, "  %s [shape=\"box\", label=%s];\n  %s -> %s;\n", id, dotQuote(label), dotQuote("stream:"+f.Stream), id)
		for i, s := range f.Sinks {
			if isEmitSink(s) {
				continue
			}
			sid := dotQuote(fmt.Sprintf("sink:%s/%d", f.Name, i))
			fmt.Fprintf(&b, "  %s [shape=\"note\", label=%s];\n  %s -> %s;\n", sid, dotQuote(s), id, sid)
		}
		for _, e := range f.Emits {
			fmt.Fprintf(&b, "  %s -> %s [style=\"dashed\", label=\"emit\"];\n", id, dotQuote("stream:"+e))
		}
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// mermaidID makes a Mermaid node ID from a prefix and any name: letters
// and digits stay, every other byte (including '_') becomes '_' and two
// hex digits. Distinct names give distinct IDs, and "__" never occurs in
// one, so it can separate a suffix.
func mermaidID(prefix, name string) string {
	var b strings.Builder
	b.WriteString(prefix)
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "_%02X", c)
		}
	}
	return b.String()
}

// mermaidLabel escapes text for a quoted Mermaid label: the quote, the
// '#' that starts an entity code, HTML's < > &, and the backquote that
// starts a Markdown string become entity codes; a line break becomes <br/>.
var mermaidLabel = strings.NewReplacer(
	`"`, "#quot;",
	"#", "#35;",
	"<", "#lt;",
	">", "#gt;",
	"&", "#amp;",
	"`", "#96;",
	"\r\n", "<br/>",
	"\n", "<br/>",
	"\r", "<br/>",
).Replace

// dotQuote quotes s as a DOT string: in a quoted DOT string only \" is an
// escape, and labels read \\ as a backslash and \n as a line break.
func dotQuote(s string) string {
	return `"` + dotEscape.Replace(s) + `"`
}

var dotEscape = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\r\n", `\n`, "\n", `\n`, "\r", `\n`)
