package runtime

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

// decoder walks a flows file's YAML node tree, which keeps every value's
// line and column, and collects every problem instead of stopping at the
// first.
type decoder struct {
	file  string
	lines []string
	probs []Problem
}

// errorf records a problem at n (the file's start when n is nil).
func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	line, col := 1, 1
	if n != nil && n.Line > 0 {
		line, col = n.Line, n.Column
	}
	d.errorAt(line, col, path, fmt.Sprintf(format, args...))
}

func (d *decoder) errorAt(line, col int, path, msg string) {
	d.probs = append(d.probs, Problem{File: d.file, Line: line, Column: col, Path: path, Msg: msg})
}

// yamlLine finds the line in a YAML parser error, such as
// "yaml: line 3: did not find expected key".
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// document parses data into its root node; nil after a syntax error,
// which it records.
func (d *decoder) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.errorf(nil, "", "the file is empty: want a mapping with version and flows")
			return nil
		}
		d.syntaxError(err)
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		d.errorf(&next, "", "a flows file holds one YAML document; found another")
	case !errors.Is(err, io.EOF):
		d.syntaxError(err)
	}
	if len(doc.Content) == 0 {
		d.errorf(nil, "", "the file is empty: want a mapping with version and flows")
		return nil
	}
	root := doc.Content[0]
	// Aliases can make a small file stand for a huge tree (a "billion
	// laughs"): refuse a tree much larger than the file.
	written := countNodes(root, nil, 0)
	limit := 2*written + maxAliasNodes
	if expanded := countNodes(root, map[*yaml.Node]int{}, limit); expanded > limit {
		d.errorf(nil, "", "the file's aliases expand to more than %d nodes: write the repeated values out", limit)
		return nil
	}
	return root
}

// maxAliasNodes is how many more nodes than twice those written a file's
// aliases may add.
const maxAliasNodes = 10000

// countNodes counts the nodes of the tree under n: as written when
// expanded is nil, else with every alias expanded (memoised in expanded)
// up to limit. An alias inside its anchor counts as more than limit.
func countNodes(n *yaml.Node, expanded map[*yaml.Node]int, limit int) int {
	if n.Kind == yaml.AliasNode {
		if expanded == nil || n.Alias == nil {
			return 1
		}
		if c, ok := expanded[n.Alias]; ok {
			return c
		}
		expanded[n.Alias] = limit + 1 // an alias inside its own anchor never ends
		c := countNodes(n.Alias, expanded, limit)
		expanded[n.Alias] = c
		return c
	}
	total := 1
	for _, c := range n.Content {
		total += countNodes(c, expanded, limit)
		if expanded != nil && total > limit {
			return total
		}
	}
	return total
}

func (d *decoder) syntaxError(err error) {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		d.errorAt(max(line, 1), 1, "", "invalid YAML: "+m[2])
		return
	}
	d.errorAt(1, 1, "", "invalid YAML: "+strings.TrimPrefix(msg, "yaml: "))
}

// resolve follows aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// describe names what a node holds, for "want X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!bool":
			return "a boolean (" + n.Value + ")"
		case "!!int", "!!float":
			return "a number (" + n.Value + ")"
		}
		return strconv.Quote(n.Value)
	}
	return "an unexpected YAML node"
}

func field(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// object is a YAML mapping's fields.
type object struct {
	node *yaml.Node
	path string
	keys map[string]*yaml.Node // key nodes, by key
	vals map[string]*yaml.Node // value nodes, aliases resolved
}

// has reports whether the key is present with a value other than null.
func (o *object) has(k string) bool { return !isNull(o.vals[k]) }

// get returns the key's value, nil when it is absent or null.
func (o *object) get(k string) *yaml.Node {
	if v := o.vals[k]; !isNull(v) {
		return v
	}
	return nil
}

// unknownKind says what an unknown key is called in an object's errors.
type unknownKind string

const (
	unknownField    unknownKind = "field"
	unknownStepKind unknownKind = "step kind"
	unknownSinkKind unknownKind = "sink kind"
)

// object reads a mapping node, reporting a wrong type, keys that are not
// strings, duplicate keys, merge keys, and keys not in known.
func (d *decoder) object(n *yaml.Node, path string, what unknownKind, known ...string) *object {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "want a mapping, got %s", describe(n))
		return nil
	}
	o := &object{node: n, path: path, keys: map[string]*yaml.Node{}, vals: map[string]*yaml.Node{}}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		switch {
		case k.Kind != yaml.ScalarNode:
			d.errorf(k, path, "keys must be strings, got %s", describe(k))
			continue
		case k.ShortTag() == "!!merge":
			d.errorf(k, path, "merge keys (<<) are not supported: use an alias (*name) for the whole value")
			continue
		}
		if first, ok := o.keys[k.Value]; ok {
			d.errorf(k, field(path, k.Value), "duplicate key (first at line %d)", first.Line)
			continue
		}
		o.keys[k.Value] = k
		o.vals[k.Value] = resolve(v)
		if known != nil && !contains(known, k.Value) {
			d.errorf(k, field(path, k.Value), "unknown %s %q%s", what, k.Value, suggest(k.Value, known, what))
		}
	}
	return o
}

// require returns the key's value, reporting it when absent or null.
func (d *decoder) require(o *object, k string) *yaml.Node {
	v := o.get(k)
	if v == nil {
		d.errorf(o.node, o.path, "missing required field %q", k)
	}
	return v
}

// str reads a scalar as text. Numbers and booleans are taken as written.
func (d *decoder) str(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		d.errorf(n, path, "want a string, got %s", describe(n))
		return "", false
	}
	return n.Value, true
}

// nonEmpty reads a string that must not be empty.
func (d *decoder) nonEmpty(n *yaml.Node, path, what string) (string, bool) {
	s, ok := d.str(n, path)
	if ok && strings.TrimSpace(s) == "" {
		d.errorf(n, path, "want %s, got an empty string", what)
		return "", false
	}
	return s, ok
}

func (d *decoder) integer(n *yaml.Node, path string) (int, bool) {
	var v int
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&v) != nil {
		d.errorf(n, path, "want an integer, got %s", describe(n))
		return 0, false
	}
	return v, true
}

func (d *decoder) number(n *yaml.Node, path string) (float64, bool) {
	var v float64
	tag := n.ShortTag()
	if n.Kind != yaml.ScalarNode || (tag != "!!int" && tag != "!!float") || n.Decode(&v) != nil {
		d.errorf(n, path, "want a number, got %s", describe(n))
		return 0, false
	}
	return v, true
}

// sign is what a quantity may be: zero or more, or more than zero.
type sign bool

const (
	nonNegative sign = false
	positive    sign = true
)

// signed reads a quantity at n with read and reports, at n, one that has
// not the sign s. ok is false when read failed.
func signed[T int | float64 | time.Duration](d *decoder, n *yaml.Node, path string, read func(*yaml.Node, string) (T, bool), s sign) (v T, ok bool) {
	if v, ok = read(n, path); !ok {
		return v, false
	}
	switch {
	case s == positive && v <= 0:
		d.errorf(n, path, "must be positive (got %v)", v)
	case s == nonNegative && v < 0:
		d.errorf(n, path, "must not be negative (got %v)", v)
	}
	return v, true
}

// duration reads a Go duration string such as 1m30s.
func (d *decoder) duration(n *yaml.Node, path string) (time.Duration, bool) {
	if n.Kind == yaml.ScalarNode && (n.ShortTag() == "!!int" || n.ShortTag() == "!!float") && n.Value != "0" {
		d.errorf(n, path, "want a duration such as 5s or 1m30s, got %s: add a unit", describe(n))
		return 0, false
	}
	s, ok := d.str(n, path)
	if !ok {
		return 0, false
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		d.errorf(n, path, "want a duration such as 5s or 1m30s, got %q", s)
		return 0, false
	}
	return v, true
}

// strings reads a list of strings, or a single string as a list of one.
func (d *decoder) strings(n *yaml.Node, path string) ([]string, []*yaml.Node) {
	if n.Kind == yaml.ScalarNode {
		if s, ok := d.str(n, path); ok {
			return []string{s}, []*yaml.Node{n}
		}
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, path, "want a string or a list of strings, got %s", describe(n))
		return nil, nil
	}
	var out []string
	var nodes []*yaml.Node
	for i, item := range n.Content {
		item = resolve(item)
		if s, ok := d.str(item, index(path, i)); ok {
			out = append(out, s)
			nodes = append(nodes, item)
		}
	}
	return out, nodes
}

// stringMap reads a mapping's values as strings.
func (d *decoder) stringMap(o *object) map[string]string {
	out := make(map[string]string, len(o.vals))
	for k, v := range o.vals {
		if s, ok := d.str(v, field(o.path, k)); ok {
			out[k] = s
		}
	}
	return out
}

// list reads a sequence node.
func (d *decoder) list(n *yaml.Node, path string) []*yaml.Node {
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, path, "want a list, got %s", describe(n))
		return nil
	}
	out := make([]*yaml.Node, len(n.Content))
	for i, item := range n.Content {
		out[i] = resolve(item)
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// suggest names the known key closest to an unknown one, or lists the
// known keys (only the kinds, for a sink).
func suggest(key string, known []string, what unknownKind) string {
	best, bestDist := "", 3
	for _, k := range known {
		if dist := editDistance(key, k); dist < bestDist && dist < len(k) {
			best, bestDist = k, dist
		}
	}
	if best != "" {
		return fmt.Sprintf(": did you mean %q?", best)
	}
	switch {
	case what == unknownSinkKind:
		known = sinkKinds
	case len(known) == 1:
		return fmt.Sprintf(" (want %s)", known[0])
	}
	return " (want one of " + strings.Join(known, ", ") + ")"
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return max(len(a), len(b))
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
