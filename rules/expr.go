package rules

import (
	"fmt"
	"math"
	"slices"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
)

// Conditions (alert when/clear) are parsed with expr-lang/expr's parser,
// which gives a full expression grammar, precedence and positioned syntax
// errors, and are then compiled here, once, into a tree of typed Go
// closures over the metric array. We do not use expr's VM: it boxes every
// float64 into an interface (an allocation per comparison) and would need
// every operator patched to honour SPEC §4's null rule. Compiling ourselves
// gives exact null semantics by construction — a comparison that involves
// a null metric is false, arithmetic on null (or a division by zero) is
// null — types checked at load time, and evaluation with no allocation at
// tens of nanoseconds per condition.

// Extra names that conditions may read besides the metrics and attributes.
const (
	nameScore = "score" // the account's health score, null when no factor applies
	nameGrade = "grade" // none | red | yellow | green
	nameDepth = "depth" // none | record | process | integration | custom
)

// env is what a condition reads: one account at one time.
type env struct {
	values *Values
	attrs  *[NumAttrs]string
	score  float64
	grade  string
	depth  string
}

type (
	numFn  func(*env) float64 // NaN is null
	strFn  func(*env) string
	boolFn func(*env) bool
)

// condition is a compiled boolean expression.
type condition struct {
	eval       boolFn
	reads      []string // metric names (and score) it reads
	readsGrade bool
}

// typed is a compiled sub-expression: exactly one of the functions is set.
type typed struct {
	num  numFn
	str  strFn
	bool boolFn
}

func (t typed) kind() string {
	switch {
	case t.num != nil:
		return "number"
	case t.str != nil:
		return "string"
	}
	return "boolean"
}

// Limits on a condition's text: a rules file is operator input, but a
// reload must never take the daemon down (a parser recursing through two
// million parentheses overflows the stack).
const (
	maxExprLen   = 4096
	maxExprDepth = 64
)

// compileCondition parses and compiles a when/clear expression.
func compileCondition(src string) (*condition, error) {
	if len(src) > maxExprLen {
		return nil, fmt.Errorf("%w: %d characters, at most %d", ErrBadExpression, len(src), maxExprLen)
	}
	if d := nesting(src); d > maxExprDepth {
		return nil, fmt.Errorf("%w: brackets nested %d deep, at most %d", ErrBadExpression, d, maxExprDepth)
	}
	tree, err := parser.Parse(src)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadExpression, err)
	}
	c := &exprCompiler{src: src}
	t, err := c.compile(tree.Node)
	if err != nil {
		return nil, err
	}
	if t.bool == nil {
		return nil, fmt.Errorf("%w: the condition is a %s, not true/false", ErrBadExpression, t.kind())
	}
	slices.Sort(c.reads)
	return &condition{eval: t.bool, reads: slices.Compact(c.reads), readsGrade: c.readsGrade}, nil
}

// nesting returns the deepest bracket nesting of src outside string
// literals.
func nesting(src string) int {
	depth, deepest := 0, 0
	var quote byte
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'' || c == '`':
			quote = c
		case c == '(' || c == '[' || c == '{':
			depth++
			deepest = max(deepest, depth)
		case c == ')' || c == ']' || c == '}':
			depth--
		}
	}
	return deepest
}

type exprCompiler struct {
	src        string
	reads      []string
	readsGrade bool
}

func (c *exprCompiler) errorf(n ast.Node, sentinel error, format string, args ...any) error {
	loc := n.Location()
	return fmt.Errorf("%w: %s (at column %d of %q)", sentinel, fmt.Sprintf(format, args...), loc.From+1, c.src)
}

func (c *exprCompiler) compile(n ast.Node) (typed, error) {
	switch n := n.(type) {
	case *ast.IntegerNode:
		v := float64(n.Value)
		return typed{num: func(*env) float64 { return v }}, nil
	case *ast.FloatNode:
		v := n.Value
		return typed{num: func(*env) float64 { return v }}, nil
	case *ast.StringNode:
		v := n.Value
		return typed{str: func(*env) string { return v }}, nil
	case *ast.BoolNode:
		v := n.Value
		return typed{bool: func(*env) bool { return v }}, nil
	case *ast.IdentifierNode:
		return c.identifier(n)
	case *ast.UnaryNode:
		return c.unary(n)
	case *ast.BinaryNode:
		return c.binary(n)
	case *ast.ConditionalNode:
		return c.conditional(n)
	case *ast.CallNode:
		return c.call(n)
	case *ast.BuiltinNode:
		return typed{}, c.errorf(n, ErrBadExpression, "function %s is not supported (is_null is)", n.Name)
	}
	return typed{}, c.errorf(n, ErrBadExpression, "only metrics, attributes, numbers, strings, comparisons, arithmetic, &&, ||, ! and parentheses are supported")
}

func (c *exprCompiler) identifier(n *ast.IdentifierNode) (typed, error) {
	if m, ok := MetricByName(n.Value); ok {
		c.reads = append(c.reads, n.Value)
		return typed{num: func(e *env) float64 { return e.values[m] }}, nil
	}
	if a, ok := AttrByName(n.Value); ok {
		return typed{str: func(e *env) string { return e.attrs[a] }}, nil
	}
	switch n.Value {
	case nameScore:
		c.reads = append(c.reads, n.Value)
		return typed{num: func(e *env) float64 { return e.score }}, nil
	case nameGrade:
		c.readsGrade = true
		return typed{str: func(e *env) string { return e.grade }}, nil
	case nameDepth:
		return typed{str: func(e *env) string { return e.depth }}, nil
	}
	return typed{}, c.errorf(n, ErrUnknownMetric, "%q is not a metric or attribute", n.Value)
}

// call compiles a function call; is_null(x) is the only function.
func (c *exprCompiler) call(n *ast.CallNode) (typed, error) {
	id, ok := n.Callee.(*ast.IdentifierNode)
	if !ok || id.Value != "is_null" {
		return typed{}, c.errorf(n, ErrBadExpression, "unknown function (is_null is the only one)")
	}
	if len(n.Arguments) != 1 {
		return typed{}, c.errorf(n, ErrBadExpression, "is_null takes one number, got %d arguments", len(n.Arguments))
	}
	x, err := c.compile(n.Arguments[0])
	if err != nil {
		return typed{}, err
	}
	if x.num == nil {
		return typed{}, c.errorf(n, ErrBadExpression, "is_null needs a number, got a %s", x.kind())
	}
	f := x.num
	return typed{bool: func(e *env) bool { return IsNull(f(e)) }}, nil
}

func (c *exprCompiler) unary(n *ast.UnaryNode) (typed, error) {
	x, err := c.compile(n.Node)
	if err != nil {
		return typed{}, err
	}
	switch n.Operator {
	case "!", "not":
		if x.bool == nil {
			return typed{}, c.errorf(n, ErrBadExpression, "%s needs true/false, got a %s", n.Operator, x.kind())
		}
		f := x.bool
		return typed{bool: func(e *env) bool { return !f(e) }}, nil
	case "-", "+":
		if x.num == nil {
			return typed{}, c.errorf(n, ErrBadExpression, "%s needs a number, got a %s", n.Operator, x.kind())
		}
		if n.Operator == "+" {
			return x, nil
		}
		f := x.num
		return typed{num: func(e *env) float64 { return -f(e) }}, nil
	}
	return typed{}, c.errorf(n, ErrBadExpression, "operator %q is not supported", n.Operator)
}

func (c *exprCompiler) binary(n *ast.BinaryNode) (typed, error) {
	l, err := c.compile(n.Left)
	if err != nil {
		return typed{}, err
	}
	r, err := c.compile(n.Right)
	if err != nil {
		return typed{}, err
	}
	op := n.Operator
	switch op {
	case "&&", "and", "||", "or":
		if l.bool == nil || r.bool == nil {
			return typed{}, c.errorf(n, ErrBadExpression, "%s needs true/false on both sides, got a %s and a %s", op, l.kind(), r.kind())
		}
		lf, rf := l.bool, r.bool
		if op == "&&" || op == "and" {
			return typed{bool: func(e *env) bool { return lf(e) && rf(e) }}, nil
		}
		return typed{bool: func(e *env) bool { return lf(e) || rf(e) }}, nil
	case "<", "<=", ">", ">=", "==", "!=":
		return c.comparison(n, op, l, r)
	case "??":
		if l.num == nil || r.num == nil {
			return typed{}, c.errorf(n, ErrBadExpression, "?? needs numbers on both sides, got a %s and a %s", l.kind(), r.kind())
		}
		lf, rf := l.num, r.num
		return typed{num: func(e *env) float64 {
			if x := lf(e); !IsNull(x) {
				return x
			}
			return rf(e)
		}}, nil
	case "+", "-", "*", "/", "%", "**", "^":
		if l.num == nil || r.num == nil {
			return typed{}, c.errorf(n, ErrBadExpression, "%s needs numbers on both sides, got a %s and a %s", op, l.kind(), r.kind())
		}
		return typed{num: arithmetic(op, l.num, r.num)}, nil
	}
	return typed{}, c.errorf(n, ErrBadExpression, "operator %q is not supported", op)
}

// comparison compiles a comparison. With numbers, a null (NaN) side makes
// it false, whatever the operator — including != (IEEE says true).
func (c *exprCompiler) comparison(n ast.Node, op string, l, r typed) (typed, error) {
	switch {
	case l.num != nil && r.num != nil:
		lf, rf := l.num, r.num
		cmp := numCompare(op)
		return typed{bool: func(e *env) bool {
			x, y := lf(e), rf(e)
			return !IsNull(x) && !IsNull(y) && cmp(x, y)
		}}, nil
	case l.str != nil && r.str != nil:
		lf, rf := l.str, r.str
		cmp := strCompare(op)
		return typed{bool: func(e *env) bool { return cmp(lf(e), rf(e)) }}, nil
	case l.bool != nil && r.bool != nil && (op == "==" || op == "!="):
		lf, rf, eq := l.bool, r.bool, op == "=="
		return typed{bool: func(e *env) bool { return (lf(e) == rf(e)) == eq }}, nil
	}
	return typed{}, c.errorf(n, ErrBadExpression, "cannot compare a %s with a %s using %s", l.kind(), r.kind(), op)
}

func numCompare(op string) func(x, y float64) bool {
	switch op {
	case "<":
		return func(x, y float64) bool { return x < y }
	case "<=":
		return func(x, y float64) bool { return x <= y }
	case ">":
		return func(x, y float64) bool { return x > y }
	case ">=":
		return func(x, y float64) bool { return x >= y }
	case "==":
		return func(x, y float64) bool { return x == y }
	}
	return func(x, y float64) bool { return x != y }
}

func strCompare(op string) func(x, y string) bool {
	switch op {
	case "<":
		return func(x, y string) bool { return x < y }
	case "<=":
		return func(x, y string) bool { return x <= y }
	case ">":
		return func(x, y string) bool { return x > y }
	case ">=":
		return func(x, y string) bool { return x >= y }
	case "==":
		return func(x, y string) bool { return x == y }
	}
	return func(x, y string) bool { return x != y }
}

// arithmetic compiles an arithmetic operator; null in gives null out, and
// so does a division by zero (a ratio over nothing is unknown, not ∞).
func arithmetic(op string, lf, rf numFn) numFn {
	finite := func(v float64) float64 {
		if math.IsInf(v, 0) {
			return Null
		}
		return v
	}
	switch op {
	case "+":
		return func(e *env) float64 { return lf(e) + rf(e) }
	case "-":
		return func(e *env) float64 { return lf(e) - rf(e) }
	case "*":
		return func(e *env) float64 { return lf(e) * rf(e) }
	case "/":
		return func(e *env) float64 { return finite(lf(e) / rf(e)) }
	case "%":
		return func(e *env) float64 { return math.Mod(lf(e), rf(e)) }
	}
	return func(e *env) float64 { return finite(math.Pow(lf(e), rf(e))) }
}

func (c *exprCompiler) conditional(n *ast.ConditionalNode) (typed, error) {
	cond, err := c.compile(n.Cond)
	if err != nil {
		return typed{}, err
	}
	a, err := c.compile(n.Exp1)
	if err != nil {
		return typed{}, err
	}
	b, err := c.compile(n.Exp2)
	if err != nil {
		return typed{}, err
	}
	if cond.bool == nil || a.kind() != b.kind() {
		return typed{}, c.errorf(n, ErrBadExpression, "cond ? a : b needs a true/false condition and two branches of one type")
	}
	cf := cond.bool
	switch {
	case a.num != nil:
		x, y := a.num, b.num
		return typed{num: func(e *env) float64 {
			if cf(e) {
				return x(e)
			}
			return y(e)
		}}, nil
	case a.str != nil:
		x, y := a.str, b.str
		return typed{str: func(e *env) string {
			if cf(e) {
				return x(e)
			}
			return y(e)
		}}, nil
	}
	x, y := a.bool, b.bool
	return typed{bool: func(e *env) bool {
		if cf(e) {
			return x(e)
		}
		return y(e)
	}}, nil
}

// readsOf lists the metric names (and score) read by the conditions, sorted.
func readsOf(conds ...*condition) []string {
	var out []string
	for _, c := range conds {
		if c != nil {
			out = append(out, c.reads...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
