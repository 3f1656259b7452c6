package runtime

import (
	"fmt"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/types"
	"github.com/expr-lang/expr/vm"
)

// Expressions are written in expr (github.com/expr-lang/expr), compiled
// once when a flow is added and run in a sandbox: no I/O, at most
// maxExprNodes nodes, and the vm's memory budget bounds what one
// evaluation may allocate.
const maxExprNodes = 1000

// builtinNames are the names every expression sees. Variables that steps
// add must not shadow them.
var builtinNames = map[string]types.Type{
	"id":      types.String,
	"seq":     types.Int,
	"stream":  types.String,
	"type":    types.String,
	"key":     types.String,
	"time":    types.TypeOf(time.Time{}),
	"headers": types.TypeOf(map[string]string{}),
	"data":    types.Any,
	"payload": types.Any,
	"part":    types.String,
}

// program is a compiled expression with its source, for error messages.
type program struct {
	src string
	p   *vm.Program
}

// scope is the set of variable names visible to a step: the builtins and
// the Vars added by earlier steps.
type scope []string

func (s scope) env() types.Map {
	env := make(types.Map, len(builtinNames)+len(s))
	for k, t := range builtinNames {
		env[k] = t
	}
	for _, v := range s {
		env[v] = types.Any
	}
	return env
}

func (s scope) with(name string) scope {
	return append(s[:len(s):len(s)], name)
}

// compileExpr compiles src for the scope. asBool requires a boolean result.
func compileExpr(src string, sc scope, asBool bool) (*program, error) {
	opts := []expr.Option{expr.Env(sc.env()), expr.MaxNodes(maxExprNodes)}
	if asBool {
		opts = append(opts, expr.AsBool())
	}
	p, err := expr.Compile(src, opts...)
	if err != nil {
		return nil, &ExprError{Expr: src, Err: err}
	}
	return &program{src: src, p: p}, nil
}

// run evaluates the program over a record.
func (p *program) run(r Record) (any, error) {
	out, err := expr.Run(p.p, exprEnv(r))
	if err != nil {
		return nil, &ExprError{Expr: p.src, Err: err}
	}
	return out, nil
}

func (p *program) bool(r Record) (bool, error) {
	out, err := p.run(r)
	if err != nil {
		return false, err
	}
	b, ok := out.(bool)
	if !ok {
		return false, &ExprError{Expr: p.src, Err: fmt.Errorf("result is %T, not bool", out)}
	}
	return b, nil
}

func exprEnv(r Record) map[string]any {
	e := r.Event
	env := make(map[string]any, len(builtinNames)+len(r.Vars))
	for k, v := range r.Vars {
		env[k] = v
	}
	env["id"] = e.ID.String()
	env["seq"] = int(e.Seq)
	env["stream"] = e.Stream
	env["type"] = e.Type
	env["key"] = e.Key
	env["time"] = e.Time
	env["headers"] = e.Headers
	env["data"] = r.data
	env["payload"] = r.Payload
	env["part"] = r.Part
	return env
}
