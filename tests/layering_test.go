package tests

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/flowrt/flowrt"

// allowed lists, per package, the flowrt packages it may import
// (docs/ARCHITECTURE.md). Packages below a listed path inherit its rule.
var allowed = map[string][]string{
	"eventlog":          {},
	"consumer":          {"eventlog"},
	"snapshot":          {"eventlog"},
	"supervisor":        {"eventlog"},
	"runtime":           {"eventlog", "consumer", "snapshot", "supervisor"},
	"internal/flowtest": {"eventlog", "consumer", "snapshot", "supervisor", "runtime"},
}

// TestForbiddenImports fails on any import that points up the layering:
// like pebble's internal/lint, it reads `go list` rather than trusting review.
func TestForbiddenImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-json=ImportPath,Imports,TestImports,XTestImports", module+"/...").Output()
	require.NoError(t, err, "go list")
	dec := json.NewDecoder(strings.NewReader(string(out)))
	checked := 0
	for {
		var p struct {
			ImportPath                         string
			Imports, TestImports, XTestImports []string
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else {
			require.NoError(t, err)
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module+"/") {
				continue
			}
			dep := strings.TrimPrefix(imp, module+"/")
			if strings.HasPrefix(dep, "cmd/") || dep == "cmd" {
				if !strings.HasPrefix(rel, "cmd/") {
					t.Errorf("%s imports %s: nothing outside cmd may import cmd", rel, dep)
				}
				continue
			}
			if !permitted(rel, dep) {
				t.Errorf("%s imports %s: upward import (allowed: %v)", rel, dep, allowedFor(rel))
			}
		}
		checked++
	}
	require.Positive(t, checked)
}

// owner returns the key of allowed that governs pkg, or "".
func owner(pkg string) string {
	for len(pkg) > 0 {
		if _, ok := allowed[pkg]; ok {
			return pkg
		}
		i := strings.LastIndexByte(pkg, '/')
		if i < 0 {
			break
		}
		pkg = pkg[:i]
	}
	return ""
}

func allowedFor(pkg string) []string { return allowed[owner(pkg)] }

// permitted reports whether pkg may import dep: dep is in pkg's rule, or
// both lie in the same package tree (eventlog may import eventlog/internal).
func permitted(pkg, dep string) bool {
	o := owner(pkg)
	if o == "" || o == owner(dep) {
		return true
	}
	for _, a := range allowed[o] {
		if dep == a || strings.HasPrefix(dep, a+"/") {
			return true
		}
	}
	return false
}

func TestPermitted(t *testing.T) {
	for _, tc := range []struct {
		name, pkg, dep string
		want           bool
	}{
		{"downward", "consumer", "eventlog", true},
		{"upward", "eventlog", "consumer", false},
		{"sibling", "supervisor", "runtime", false},
		{"own subtree", "eventlog", "eventlog/internal/x", true},
		{"subpackage inherits", "runtime/sink", "consumer", true},
		{"test helpers", "internal/flowtest", "runtime", true},
		{"unlisted package", "tests/crash", "runtime", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, permitted(tc.pkg, tc.dep))
		})
	}
}
