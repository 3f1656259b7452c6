package runtime

import (
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
)

// Topology is the graph of a set of flows: the streams they read, the
// flows, their sinks, and the streams they emit to.
type Topology struct {
	Streams []string       `json:"streams"`
	Flows   []TopologyFlow `json:"flows"`
}

// TopologyFlow is one flow in a Topology.
type TopologyFlow struct {
	Name   string   `json:"name"`
	Stream string   `json:"stream"`
	Types  []string `json:"types,omitempty"`
	Key    string   `json:"key,omitempty"`
	Steps  []string `json:"steps,omitempty"` // Step.String of each step
	Sinks  []string `json:"sinks"`           // a description of each sink
	Emits  []string `json:"emits,omitempty"` // streams the flow emits to
	State  bool     `json:"state,omitempty"` // the flow has a reduce step
}

// Describer is a Sink that describes itself in a Topology, such as
// "file out/orders.jsonl". Other sinks are shown by their Go type.
type Describer interface {
	Describe() string
}

// TopologyOf returns the topology of flows.
func TopologyOf(flows []Flow) Topology {
	var t Topology
	streams := map[string]bool{}
	for _, f := range flows {
		tf := TopologyFlow{Name: f.Name, Stream: f.On.stream(), Types: f.On.Types, Key: f.On.Key}
		streams[tf.Stream] = true
		for _, s := range f.Steps {
			tf.Steps = append(tf.Steps, s.String())
			switch s.kind {
			case "emit":
				tf.Emits = append(tf.Emits, s.emit.Stream)
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
				tf.Emits = append(tf.Emits, e.spec.Stream)
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

func describeSink(s Sink) string {
	switch s := s.(type) {
	case Describer:
		return s.Describe()
	case namedSink:
		return "sink " + string(s)
	case emitSink:
		return "emit " + s.spec.Stream + " " + s.spec.Type
	}
	return fmt.Sprintf("%T", s)
}

// Mermaid writes the topology as a Mermaid flowchart.
func (t Topology) Mermaid(w io.Writer) error {
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	for _, s := range t.Streams {
		fmt.Fprintf(&b, "  %s[(%s)]\n", nodeID("stream", s), s)
	}
	for _, f := range t.Flows {
		id := nodeID("flow", f.Name)
		label := f.Name
		if len(f.Types) > 0 {
			label += "<br/>" + strings.Join(f.Types, ", ")
		}
		fmt.Fprintf(&b, "  %s[\"%s\"]\n", id, mermaidEscape(label))
		fmt.Fprintf(&b, "  %s --> %s\n", nodeID("stream", f.Stream), id)
		for i, s := range f.Sinks {
			if strings.HasPrefix(s, "emit ") {
				continue
			}
			sid := nodeID("sink", f.Name+"/"+fmt.Sprint(i))
			fmt.Fprintf(&b, "  %s>\"%s\"]\n  %s --> %s\n", sid, mermaidEscape(s), id, sid)
		}
		for _, e := range f.Emits {
			fmt.Fprintf(&b, "  %s -. emit .-> %s\n", id, nodeID("stream", e))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// DOT writes the topology as a Graphviz digraph.
func (t Topology) DOT(w io.Writer) error {
	var b strings.Builder
	b.WriteString("digraph flowrt {\n  rankdir=LR;\n")
	for _, s := range t.Streams {
		fmt.Fprintf(&b, "  %q [shape=cylinder, label=%q];\n", "stream:"+s, s)
	}
	for _, f := range t.Flows {
		id := "flow:" + f.Name
		fmt.Fprintf(&b, "  %q [shape=box, label=%q];\n  %q -> %q;\n", id, f.Name, "stream:"+f.Stream, id)
		for i, s := range f.Sinks {
			if strings.HasPrefix(s, "emit ") {
				continue
			}
			sid := fmt.Sprintf("sink:%s/%d", f.Name, i)
			fmt.Fprintf(&b, "  %q [shape=note, label=%q];\n  %q -> %q;\n", sid, s, id, sid)
		}
		for _, e := range f.Emits {
			fmt.Fprintf(&b, "  %q -> %q [style=dashed, label=\"emit\"];\n", id, "stream:"+e)
		}
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// nodeID makes a Mermaid node ID from any name.
func nodeID(kind, name string) string { return kind + "_" + strings.ReplaceAll(url.QueryEscape(name), "%", "_") }

func mermaidEscape(s string) string { return strings.ReplaceAll(s, `"`, "#quot;") }
