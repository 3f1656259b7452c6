package command

import (
	"bufio"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/flowrt/flowrt/runtime"
)

type graphOptions struct {
	config string
	format string
	json   bool
}

func newGraphCommand() *cobra.Command {
	var o graphOptions
	cmd := &cobra.Command{
		Use:   "graph --config FLOWS.yaml [--format mermaid|dot|json]",
		Short: "Draw the topology of a flows config: streams, flows, sinks",
		Long: `Graph draws the topology of the flows a config file declares: the streams
they read, the flows, their sinks, and the streams they emit to. It reads
only the config (validated as 'flowrt validate' does), not a journal.

--format mermaid (the default) writes a Mermaid flowchart, to paste into
Markdown that renders it (GitHub, GitLab, mermaid.live):

  streams are cylinders, flows are boxes (with their event types), sinks are
  flags, and a dotted "emit" edge goes from a flow to each stream it emits to

--format dot writes the same graph for Graphviz (dot -Tsvg), and
--format json (or --json) the topology as JSON, as GET /v1/topology of a
running daemon serves it:

  {"streams": ["events", ...], "flows": [{"name": "orders", "stream":
   "events", "types": [...], "key": "...", "steps": ["map(...)"], "sinks":
   ["file out/orders.jsonl"], "emits": ["warehouse"], "state": true}]}

types, key, steps, emits and state are omitted when empty. A file sink's
path is shown as the runtime resolves it: relative to the config's directory.

A config with problems is reported like 'flowrt validate' reports it, and
nothing is drawn.

Exit status:
  0  the graph was written
  1  the config file could not be read, or the output not written
  2  the config has problems, there is no file at --config, or a usage
     error`,
		Example: `  flowrt graph --config examples/flows.yaml
  flowrt graph --config examples/flows.yaml --format dot | dot -Tsvg > flows.svg
  flowrt graph --config examples/flows.yaml --json | jq '.flows[].name'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runGraph(cmd, &o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "flows config file (YAML, required)")
	f.StringVar(&o.format, "format", "mermaid", "output format: mermaid, dot or json")
	f.BoolVar(&o.json, "json", false, "same as --format json")
	return cmd
}

func runGraph(cmd *cobra.Command, o *graphOptions) error {
	if o.config == "" {
		return usageErrorf("--config is required: the flows file")
	}
	format := o.format
	if o.json {
		if cmd.Flags().Changed("format") && format != "json" {
			return usageErrorf("--json and --format %s disagree: give one of them", format)
		}
		format = "json"
	}
	switch format {
	case "mermaid", "dot", "json":
	default:
		return usageErrorf("--format %q: want mermaid, dot or json", format)
	}
	cfg, err := loadFlowsConfig(o.config)
	if err != nil {
		return configError(err)
	}
	topo := runtime.TopologyOf(cfg.Flows)
	out := bufio.NewWriter(cmd.OutOrStdout())
	switch format {
	case "mermaid":
		err = topo.Mermaid(out)
	case "dot":
		err = topo.DOT(out)
	case "json":
		err = writeIndentedJSON(out, topo)
	}
	if err = errors.Join(err, out.Flush()); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}
