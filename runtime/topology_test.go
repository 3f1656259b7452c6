package runtime_test

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/flowrt/flowrt/runtime"
)

// topologyFlows covers every kind of sink and the steps a topology shows.
func topologyFlows(t *testing.T) []runtime.Flow {
	t.Helper()
	hs, err := runtime.HTTPSink(runtime.HTTPOptions{URL: "https://user:secret@example.com/hook"})
	require.NoError(t, err)
	return []runtime.Flow{
		{
			Name: "orders",
			On:   runtime.On("order.created", "order.paid"),
			Steps: []runtime.Step{
				runtime.Filter("data.total > 100"),
				runtime.Emit(runtime.EmitSpec{Stream: "warehouse", Type: "pick.requested"}),
			},
			Sinks: []runtime.Sink{
				runtime.FileSink("out/orders.jsonl"),
				runtime.EmitSink(runtime.EmitSpec{Stream: "warehouse", Type: "pick.again"}), // same stream: one edge
				runtime.EmitSink(runtime.EmitSpec{Stream: "audit", Type: "order.seen"}),
			},
		},
		{
			Name:  "picks",
			On:    runtime.Trigger{Stream: "warehouse", Key: "sku-*"},
			Steps: []runtime.Step{runtime.Reduce(runtime.ReduceSpec{Func: "count"})},
			Sinks: []runtime.Sink{
				runtime.WithMiddleware(runtime.FileSink("out/picks.jsonl"), runtime.SinkTimeout(time.Second)),
				hs,
				runtime.Stdout(),
				runtime.Named("crm"),
			},
		},
	}
}

func TestTopologyOf(t *testing.T) {
	got := runtime.TopologyOf(topologyFlows(t))
	want := runtime.Topology{
		Streams: []string{"audit", "events", "warehouse"},
		Flows: []runtime.TopologyFlow{
			{
				Name:   "orders",
				Stream: "events",
				Types:  []string{"order.created", "order.paid"},
				Steps:  []string{"filter(data.total > 100)", "emit(warehouse pick.requested)"},
				Sinks:  []string{"file out/orders.jsonl", "emit warehouse pick.again", "emit audit order.seen"},
				Emits:  []string{"warehouse", "audit"},
			},
			{
				Name:   "picks",
				Stream: "warehouse",
				Key:    "sku-*",
				Steps:  []string{"reduce(count)"},
				Sinks:  []string{"file out/picks.jsonl", "http https://user:xxxxx@example.com/hook", "stdout", "sink crm"},
				State:  true,
			},
		},
	}
	require.Equal(t, want, got)
}

func TestTopologyOfHandler(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	rt, err := runtime.New(l, nil)
	require.NoError(t, err)
	require.NoError(t, rt.Handle("audit", runtime.Trigger{Stream: "$system"}, func(context.Context, eventlog.Event) error { return nil }, nil))
	got := runtime.TopologyOf(rt.Flows())
	require.Equal(t, runtime.Topology{
		Streams: []string{"$system"},
		Flows:   []runtime.TopologyFlow{{Name: "audit", Stream: "$system", Sinks: []string{"handler"}}},
	}, got)
}

func TestTopologyJSON(t *testing.T) {
	tests := []struct {
		name  string
		flows []runtime.Flow
		want  string
	}{
		{"no flows", nil, `{"streams":[],"flows":[]}`},
		{"no sinks", []runtime.Flow{{Name: "f"}}, `{"streams":["events"],"flows":[{"name":"f","stream":"events","sinks":[]}]}`},
		{
			"full",
			[]runtime.Flow{{Name: "f", On: runtime.On("a.*"), Steps: []runtime.Step{runtime.Map("1")}, Sinks: []runtime.Sink{runtime.EmitSink(runtime.EmitSpec{Stream: "s", Type: "t"})}}},
			`{"streams":["events","s"],"flows":[{"name":"f","stream":"events","types":["a.*"],"steps":["map(1)"],"sinks":["emit s t"],"emits":["s"]}]}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(runtime.TopologyOf(tt.flows))
			require.NoError(t, err)
			require.JSONEq(t, tt.want, string(b))
			require.Equal(t, tt.want, string(b)) // field order too
		})
	}
}

func TestTopologyMermaid(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, runtime.TopologyOf(topologyFlows(t)[:1]).Mermaid(&b))
	require.Equal(t, `flowchart LR
  stream_audit[("audit")]
  stream_events[("events")]
  stream_warehouse[("warehouse")]
  flow_orders["orders<br/>order.created, order.paid"]
  stream_events --> flow_orders
  sink_orders__0>"file out/orders.jsonl"]
  flow_orders --> sink_orders__0
  flow_orders -. emit .-> stream_warehouse
  flow_orders -. emit .-> stream_audit
`, b.String())
}

func TestTopologyDOT(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, runtime.TopologyOf(topologyFlows(t)[1:]).DOT(&b))
	require.Equal(t, `digraph "flowrt" {
  rankdir="LR";
  "stream:warehouse" [shape="cylinder", label="warehouse"];
  "flow:picks" [shape="box", label="picks"];
  "stream:warehouse" -> "flow:picks";
  "sink:picks/0" [shape="note", label="file out/picks.jsonl"];
  "flow:picks" -> "sink:picks/0";
  "sink:picks/1" [shape="note", label="http https://user:xxxxx@example.com/hook"];
  "flow:picks" -> "sink:picks/1";
  "sink:picks/2" [shape="note", label="stdout"];
  "flow:picks" -> "sink:picks/2";
  "sink:picks/3" [shape="note", label="sink crm"];
  "flow:picks" -> "sink:picks/3";
}
`, b.String())
}

// awkwardFlows have names and labels that are syntax in Mermaid or DOT:
// dashes that read as edges, keywords, '$', quotes, entity codes, HTML,
// backquotes, backslashes and line breaks.
func awkwardFlows() []runtime.Flow {
	return []runtime.Flow{
		{
			Name:  "a--b",
			On:    runtime.Trigger{Stream: "$system", Types: []string{`x"y`, "#quot;", "<b>&", "`md`"}},
			Sinks: []runtime.Sink{runtime.FileSink("out/\"q\\x\n.jsonl")},
		},
		{Name: "a_2Db", On: runtime.Trigger{Stream: "end"}, Sinks: []runtime.Sink{runtime.Named("graph")}},
		{Name: "end", On: runtime.Trigger{Stream: "a.b"}, Sinks: []runtime.Sink{runtime.EmitSink(runtime.EmitSpec{Stream: "end", Type: "t"})}},
	}
}

// mermaidNode matches a node declaration: ID, shape opening, quoted
// label, shape closing.
var mermaidNode = regexp.MustCompile(`^  ([A-Za-z0-9_]+)(\[\(|\[|>)"([^"]*)"(\)\]|\])$`)

// mermaidEdge matches an edge between two IDs.
var mermaidEdge = regexp.MustCompile(`^  ([A-Za-z0-9_]+) (-->|-\. emit \.->) ([A-Za-z0-9_]+)$`)

func TestTopologyMermaidSyntax(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, runtime.TopologyOf(awkwardFlows()).Mermaid(&b))
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	require.Equal(t, "flowchart LR", lines[0])
	ids := map[string]string{} // ID -> label
	for _, line := range lines[1:] {
		if m := mermaidNode.FindStringSubmatch(line); m != nil {
			require.NotContains(t, ids, m[1], "node %s declared twice", m[1])
			ids[m[1]] = m[3]
			continue
		}
		m := mermaidEdge.FindStringSubmatch(line)
		require.NotNil(t, m, "neither a node nor an edge: %q", line)
		require.Contains(t, ids, m[1], "edge from an undeclared node: %q", line)
		if m[2] == "-->" {
			require.Contains(t, ids, m[3], "edge to an undeclared node: %q", line)
		}
	}
	// Distinct names stay distinct, and labels keep the names readable.
	require.Equal(t, `a--b<br/>x#quot;y, #35;quot;, #lt;b#gt;#amp;, #96;md#96;`, ids["flow_a_2D_2Db"])
	require.Equal(t, "a_2Db", ids["flow_a_5F2Db"])
	require.Equal(t, "end", ids["flow_end"])
	require.Equal(t, "$system", ids["stream__24system"])
	require.Equal(t, "a.b", ids["stream_a_2Eb"])
	require.Equal(t, `file out/#quot;q\x<br/>.jsonl`, ids["sink_a_2D_2Db__0"])
	require.Contains(t, b.String(), "  flow_end -. emit .-> stream_end\n")
}

func TestTopologyDOTQuoting(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, runtime.TopologyOf(awkwardFlows()).DOT(&b))
	out := b.String()
	require.Contains(t, out, `  "flow:a--b" [shape="box", label="a--b\nx\"y, #quot;, <b>&, `+"`md`"+`"];`)
	require.Contains(t, out, `  "sink:a--b/0" [shape="note", label="file out/\"q\\x\n.jsonl"];`)
	require.Contains(t, out, `  "stream:$system" -> "flow:a--b";`)
	require.Contains(t, out, `  "flow:end" -> "stream:end" [style="dashed", label="emit"];`)
	// Every quoted string closes on its line, as DOT's lexer reads it:
	// \\ and \" are pairs, so what is left has an even number of quotes.
	for _, line := range strings.Split(out, "\n") {
		bare := strings.ReplaceAll(strings.ReplaceAll(line, `\\`, ""), `\"`, "")
		require.Zero(t, strings.Count(bare, `"`)%2, "unbalanced quotes: %q", line)
	}
}
