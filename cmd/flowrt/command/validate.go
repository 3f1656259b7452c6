package command

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/spf13/cobra"

	"github.com/flowrt/flowrt/runtime"
)

type validateOptions struct {
	config string
	json   bool
}

func newValidateCommand() *cobra.Command {
	var o validateOptions
	cmd := &cobra.Command{
		Use:   "validate --config FLOWS.yaml [--json]",
		Short: "Check a flows config file and report every problem",
		Long: `Validate checks a flows config file (docs/FLOWS.md) as 'flowrt run' would,
without a journal: YAML syntax, unknown and missing fields, wrong types,
durations, every expression in its scope, consumer options, emit loops, and
the lookups and registered sinks it names (the flowrt command has none, so
'enrich' and 'sink: NAME' are reported unknown, as 'flowrt run' would).

Every problem is printed on stdout, one per line, in file order:

  FILE:LINE:COL: PATH: MESSAGE

where PATH names the field, such as flows[0].steps[1].map. A config without
problems prints "FILE: N flows OK".

--json prints a JSON array instead, one object per problem (an empty array
when the file is valid):

  [{"file":"flows.yaml","line":7,"column":14,"path":"flows[0].filter",
    "message":"..."}]

Exit status:
  0  the config is valid
  1  the file exists but could not be read
  2  the config has problems, there is no file at --config, or a usage
     error`,
		Example: `  flowrt validate --config examples/flows.yaml
  flowrt validate --config flows.yaml --json | jq -r '.[].message'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runValidate(cmd, &o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "flows config file (YAML, required)")
	f.BoolVar(&o.json, "json", false, "print the problems as a JSON array")
	return cmd
}

// jsonProblem is one config problem in validate's --json output.
type jsonProblem struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Path    string `json:"path"`
	Message string `json:"message"`
}

func runValidate(cmd *cobra.Command, o *validateOptions) error {
	if o.config == "" {
		return usageErrorf("--config is required: the flows file")
	}
	cfg, err := loadFlowsConfig(o.config)
	var ce *runtime.ConfigError
	if err != nil && !errors.As(err, &ce) {
		return err
	}
	out := cmd.OutOrStdout()
	var problems []runtime.Problem
	if ce != nil {
		problems = ce.Problems
	}
	if o.json {
		if err := writeProblemsJSON(out, problems); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
	} else {
		for _, p := range problems {
			if _, err := fmt.Fprintln(out, p.String()); err != nil {
				return fmt.Errorf("write output: %w", err)
			}
		}
	}
	if len(problems) > 0 {
		return &exitError{code: ExitUsage, err: fmt.Errorf("%s: %s", o.config, plural(len(problems), "problem"))}
	}
	if !o.json {
		if _, err := fmt.Fprintf(out, "%s: %s OK\n", o.config, plural(len(cfg.Flows), "flow")); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
	}
	return nil
}

// writeProblemsJSON writes the problems as an indented JSON array, "[]"
// when there are none.
func writeProblemsJSON(w io.Writer, problems []runtime.Problem) error {
	out := make([]jsonProblem, len(problems))
	for i, p := range problems {
		out[i] = jsonProblem{File: p.File, Line: p.Line, Column: p.Column, Path: p.Path, Message: p.Msg}
	}
	return writeIndentedJSON(w, out)
}

// writeIndentedJSON writes v as indented JSON and a newline, without escaping
// HTML characters.
func writeIndentedJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// loadFlowsConfig loads the flows file and validates it without runtime
// options (Config.Validate(nil)), as `flowrt run` does before it opens the
// journal. A config with problems yields a *runtime.ConfigError; a file
// that does not exist, an error with ExitUsage; one that cannot be read,
// a plain error.
func loadFlowsConfig(path string) (*runtime.Config, error) {
	cfg, err := runtime.LoadConfig(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &exitError{code: ExitUsage, err: fmt.Errorf("--config: no such file: %s", path)}
	}
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(nil); err != nil {
		return nil, err
	}
	return cfg, nil
}
