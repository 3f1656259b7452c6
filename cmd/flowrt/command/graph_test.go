package command

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flowrt/flowrt/runtime"
)

func TestGraph(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		golden string
	}{
		{"mermaid by default", nil, "graph_mermaid"},
		{"mermaid", []string{"--format", "mermaid"}, "graph_mermaid"},
		{"dot", []string{"--format", "dot"}, "graph_dot"},
		{"json", []string{"--format", "json"}, "graph_json"},
		{"json flag", []string{"--json"}, "graph_json"},
		{"json flag and format", []string{"--json", "--format", "json"}, "graph_json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, "", append([]string{"graph", "--config", exampleConfig}, tt.args...)...).requireOK(t)
			require.Empty(t, r.stderr)
			golden(t, tt.golden, r.stdout)
		})
	}
}

// TestGraphJSONIsTopology checks that --json is runtime.Topology's JSON,
// what GET /v1/topology serves.
func TestGraphJSONIsTopology(t *testing.T) {
	r := run(t, "", "graph", "--config", exampleConfig, "--json").requireOK(t)
	var got runtime.Topology
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &got))
	cfg, err := runtime.LoadConfig(exampleConfig)
	require.NoError(t, err)
	require.Equal(t, runtime.TopologyOf(cfg.Flows), got)
	require.Equal(t, []string{"events", "warehouse"}, got.Streams)
	require.Equal(t, []string{"warehouse"}, got.Flows[2].Emits)
}

// TestGraphMermaidShape checks the Mermaid output line by line: a
// flowchart header, then node declarations with safe IDs and quoted
// labels, and edges between declared nodes.
func TestGraphMermaidShape(t *testing.T) {
	r := run(t, "", "graph", "--config", exampleConfig).requireOK(t)
	node := regexp.MustCompile(`^  ([A-Za-z0-9_]+)(\[\(|\[|>)"[^"]*"(\)\]|\])$`)
	edge := regexp.MustCompile(`^  ([A-Za-z0-9_]+) (?:-->|-\. emit \.->) ([A-Za-z0-9_]+)$`)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	require.Equal(t, "flowchart LR", lines[0])
	declared := map[string]bool{}
	edges := 0
	for _, line := range lines[1:] {
		if m := node.FindStringSubmatch(line); m != nil {
			declared[m[1]] = true
			continue
		}
		m := edge.FindStringSubmatch(line)
		require.NotNil(t, m, "neither a node nor an edge: %q", line)
		require.True(t, declared[m[1]] && declared[m[2]], "edge between undeclared nodes: %q", line)
		edges++
	}
	require.Len(t, declared, 2+5+5) // streams, flows, sinks
	require.Equal(t, 5+5+1, edges)  // stream->flow, flow->sink, one emit
}

func TestGraphErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no config", []string{"graph"}, ExitUsage, "--config is required"},
		{"bad format", []string{"graph", "--config", exampleConfig, "--format", "svg"}, ExitUsage, `--format "svg": want mermaid, dot or json`},
		{"json and dot", []string{"graph", "--config", exampleConfig, "--json", "--format", "dot"}, ExitUsage, "--json and --format dot disagree"},
		{"missing file", []string{"graph", "--config", "testdata/nope.yaml"}, ExitUsage, "--config: no such file: testdata/nope.yaml"},
		{"bad config", []string{"graph", "--config", badConfig}, ExitUsage, "testdata/validate_bad.yaml:8:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, "", tt.args...)
			require.Equal(t, tt.code, r.code, "stderr: %s", r.stderr)
			require.Empty(t, r.stdout)
			require.Contains(t, r.stderr, tt.want)
		})
	}
}

// TestInspectionHelp checks the help of stat, check, validate and graph:
// examples, exit statuses, every flag; and that flowrt --help lists them.
func TestInspectionHelp(t *testing.T) {
	tests := []struct {
		command string
		flags   []string
		exit    string // a line of the exit-status section
	}{
		{"stat", []string{"--db", "--json", "--lock-timeout", "--token", "--token-file"}, "2  usage or input error"},
		{"check", []string{"--db", "--json", "--lock-timeout"}, "1  problems were found"},
		{"validate", []string{"--config", "--json"}, "2  the config has problems"},
		{"graph", []string{"--config", "--format", "--json"}, "2  the config has problems"},
	}
	root := run(t, "", "--help").requireOK(t)
	for _, tt := range tests {
		t.Run(tt.command, func(t *testing.T) {
			require.Contains(t, root.stdout, "flowrt "+tt.command+" ")
			r := run(t, "", tt.command, "--help").requireOK(t)
			require.Empty(t, r.stderr)
			require.Contains(t, r.stdout, "Examples:")
			require.Contains(t, r.stdout, "Exit status:")
			require.Contains(t, r.stdout, tt.exit)
			for _, f := range tt.flags {
				require.Contains(t, r.stdout, f)
			}
		})
	}
}
