package runtime

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ErrInvalidConfig is returned, wrapped in a *ConfigError, by LoadConfig,
// ParseConfig, Config.Validate and Runtime.AddConfig when a flows file
// does not validate.
var ErrInvalidConfig = errors.New("flowrt/runtime: invalid config")

// Config is a parsed and structurally valid flows file (docs/FLOWS.md is
// its reference). ParseConfig has checked everything that does not depend
// on a runtime's Options, including every expression; Validate checks the
// rest. A Config is immutable and safe for concurrent use.
type Config struct {
	// Path is the file the config was read from, as given to LoadConfig
	// or ParseConfig. Problems are reported against it, and relative file
	// sink paths are resolved from its directory.
	Path string

	// Version is the file's schema version. Only 1 is known.
	Version int

	// Flows are the flows the file declares, in order, built for
	// inspection (names, triggers, steps, sinks). AddConfig builds fresh
	// flows for each runtime, so no sink is shared between runtimes;
	// prefer it to adding these with Runtime.Add, which cannot resolve a
	// registered sink (`sink: NAME`) that carries middleware.
	Flows []Flow

	dir   string      // the directory relative file sink paths start from
	lines []string    // the file's lines, to place expression errors
	specs []*flowSpec // the flows as declared, with their YAML nodes
}

// LoadConfig reads the flows file at path and parses it (ParseConfig).
// A file that does not validate yields a *ConfigError listing every
// problem; a file that cannot be read, a wrapped fs error.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("flowrt/runtime: load config: %w", err)
	}
	return ParseConfig(path, data)
}

// ParseConfig parses a flows file. name is the file's path: problems are
// reported against it, and relative file sink paths are resolved from its
// directory. It reports every problem it finds at once, as a *ConfigError:
// YAML syntax, unknown fields, wrong types, missing fields, bad
// durations, expressions that do not compile in their scope, impossible
// consumer options, emit loops. Problems that depend on a runtime's
// Options (unknown lookups and registered sinks) are left to Validate and
// AddConfig. A config that does not validate yields no flows.
func ParseConfig(name string, data []byte) (*Config, error) {
	d := &decoder{file: name, lines: strings.Split(string(data), "\n")}
	c := &Config{Path: name, dir: filepath.Dir(name), lines: d.lines}
	d.config(c, data)
	// Everything else compiles against a runtime that has every lookup
	// and registered sink the file names.
	d.check(c, placeholderRuntime(c))
	if len(d.probs) == 0 {
		c.Flows = c.build(nil, d)
	}
	if err := d.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks the config against a runtime's Options, as AddConfig
// does, without a journal: every expression in its scope, every lookup
// an enrich step names (Options.Lookups) and every registered sink
// (Options.Sinks). It is what `flowrt validate` runs. Every problem is
// reported at once, in a *ConfigError. opts may be nil.
func (c *Config) Validate(opts *Options) error {
	rt := &Runtime{byName: map[string]bool{}}
	if opts != nil {
		rt.opts = *opts
	}
	d := &decoder{file: c.Path, lines: c.lines}
	d.check(c, rt)
	return d.err()
}

// AddConfig compiles every flow of the config against rt's Options and
// adds them all, or none if any problem is found: then the error is a
// *ConfigError listing every problem, including flow names rt already
// has. Each call builds fresh sinks, which rt closes when it stops.
func (rt *Runtime) AddConfig(c *Config) error {
	if c == nil {
		return errors.New("flowrt/runtime: AddConfig: config is nil")
	}
	rt.mu.Lock()
	started := rt.sup != nil
	names := make(map[string]bool, len(rt.byName))
	for n := range rt.byName {
		names[n] = true
	}
	rt.mu.Unlock()
	if started {
		return ErrStarted
	}
	d := &decoder{file: c.Path, lines: c.lines}
	for _, fs := range c.specs {
		if names[fs.name] {
			d.errorf(fs.nameNode, fs.path+".name", "a flow named %q was already added to the runtime", fs.name)
		}
	}
	d.check(c, rt)
	if err := d.err(); err != nil {
		return err
	}
	flows := c.build(rt, d)
	if err := d.err(); err != nil {
		return err
	}
	if err := rt.Add(flows...); err != nil {
		return fmt.Errorf("flowrt/runtime: add flows of %s: %w", c.Path, err)
	}
	return nil
}

// ConfigError lists every problem found in a flows file, each with its
// file, line and column, sorted by position. It wraps ErrInvalidConfig.
type ConfigError struct {
	Problems []Problem
}

// Error returns one problem per line, as FILE:LINE:COL: PATH: MSG.
func (e *ConfigError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns ErrInvalidConfig, for errors.Is.
func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }

// Problem is one problem in a flows file.
type Problem struct {
	// File is the file's path, as given to LoadConfig or ParseConfig.
	File string
	// Line and Column locate the problem, from 1. A YAML syntax error
	// carries the parser's line and column 1.
	Line, Column int
	// Path names the field, such as flows[0].steps[1].map; "" for the
	// file as a whole.
	Path string
	// Msg says what is wrong.
	Msg string
}

// String formats the problem as FILE:LINE:COL: PATH: MSG (without PATH
// when it is empty).
func (p Problem) String() string {
	if p.Path == "" {
		return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Column, p.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s: %s", p.File, p.Line, p.Column, p.Path, p.Msg)
}

// err returns the problems found as a sorted *ConfigError, or nil.
func (d *decoder) err() error {
	if len(d.probs) == 0 {
		return nil
	}
	probs := slices.Clone(d.probs)
	slices.SortStableFunc(probs, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column),
			cmp.Compare(a.Path, b.Path), cmp.Compare(a.Msg, b.Msg))
	})
	probs = slices.Compact(probs)
	return &ConfigError{Problems: probs}
}
