package rules

import (
	"fmt"
	"math"
	"strings"
	"text/template"
)

// Alert messages are text/template templates over the metric and attribute
// names, so "{{ pct .login_ratio_7d }}" reads like the condition it explains.
// Besides them a message may read .account_id, .rule, .score, .grade,
// .depth, .severity and .kind.

var messageFuncs = template.FuncMap{
	// pct renders a ratio as a whole percentage: 0.153 → "15%".
	"pct": func(v any) string {
		x, ok := asNumber(v)
		if !ok {
			return "n/a"
		}
		return fmt.Sprintf("%.0f%%", x*100)
	},
	// num renders a number with at most two decimals: 3.14159 → "3.14".
	"num": func(v any) string {
		x, ok := asNumber(v)
		if !ok {
			return "n/a"
		}
		return formatNumber(x)
	},
	// days renders a day count: 12.6 → "13 days".
	"days": func(v any) string {
		x, ok := asNumber(v)
		if !ok {
			return "n/a"
		}
		return fmt.Sprintf("%.0f days", math.Round(x))
	},
}

func asNumber(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, !IsNull(x)
	case int:
		return float64(x), true
	}
	return 0, false
}

func formatNumber(x float64) string {
	s := fmt.Sprintf("%.2f", x)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	if s == "-0" {
		s = "0"
	}
	return s
}

func compileMessage(rule, src string) (*template.Template, error) {
	if src == "" {
		return nil, nil
	}
	if len(src) > maxExprLen {
		return nil, fmt.Errorf("%w: %d characters, at most %d", ErrBadValue, len(src), maxExprLen)
	}
	t, err := template.New(rule).Option("missingkey=error").Funcs(messageFuncs).Parse(src)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadValue, err)
	}
	var vals Values
	var attrs [NumAttrs]string
	for i := range vals {
		vals[i] = 0.5
	}
	sample := &Transition{Attrs: attrs, Score: 50}
	if err := t.Execute(new(strings.Builder), messageData(sample, &vals)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadValue, err)
	}
	return t, nil
}

func messageData(t *Transition, v *Values) map[string]any {
	data := make(map[string]any, NumMetrics+NumAttrs+8)
	for i, x := range v {
		if IsNull(x) {
			data[Metric(i).String()] = nil
		} else {
			data[Metric(i).String()] = x
		}
	}
	for i, s := range t.Attrs {
		data[Attr(i).String()] = s
	}
	data["account_id"] = t.AccountID
	data["rule"] = t.Rule
	data[nameScore] = t.Score
	data[nameGrade] = t.Grade.String()
	data[nameDepth] = t.Depth.String()
	data["severity"] = t.Severity.String()
	data["kind"] = t.Kind.String()
	return data
}

// render produces the transition's message. Without a template it lists the
// values the rule reads, e.g. "churn_risk: login_ratio_7d=0.12".
func (a *Alert) render(t *Transition, v *Values) string {
	if a.message != nil {
		var b strings.Builder
		if err := a.message.Execute(&b, messageData(t, v)); err == nil {
			return b.String()
		}
	}
	var b strings.Builder
	b.WriteString(a.Name)
	for i, nv := range t.Values {
		if i == 0 {
			b.WriteString(":")
		}
		b.WriteString(" ")
		b.WriteString(nv.Name)
		b.WriteString("=")
		if IsNull(nv.Value) {
			b.WriteString("null")
		} else {
			b.WriteString(formatNumber(nv.Value))
		}
	}
	return b.String()
}
