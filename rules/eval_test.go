package rules

import (
	"math"
	"strings"
	"testing"
	"time"
)

func mustLoad(t testing.TB, src string) *Ruleset {
	t.Helper()
	rs, err := Load("test.yaml", []byte(src), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func nullValues() *Values {
	var v Values
	for i := range v {
		v[i] = Null
	}
	return &v
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestConditionNullSemantics(t *testing.T) {
	v := nullValues()
	v[DAU] = 3
	attrs := [NumAttrs]string{Segment: "strategic"}
	e := &env{values: v, attrs: &attrs, score: Null, grade: "none", depth: "record"}
	for src, want := range map[string]bool{
		"dau > 2":                         true,
		"dau != 3":                        false,
		"seats < 10":                      false, // null
		"seats >= 10":                     false, // null
		"seats == seats":                  false, // null
		"seats != 5":                      false, // null: != too
		"!(seats < 10)":                   true,  // negating a false comparison
		"seats + 1 > 0":                   false, // arithmetic on null is null
		"dau / 0 > 1":                     false, // division by zero is null
		"dau / 0 < 1":                     false,
		"dau * 2 - 1 == 5":                true,
		"dau % 2 == 1":                    true,
		"-dau < 0":                        true,
		"segment == \"strategic\"":        true,
		"segment != \"micro\" && dau > 1": true,
		"segment == \"micro\" || dau < 1": false,
		"csm == \"\"":                     true,
		"score > 0 || score <= 0":         false,
		"depth == \"record\"":             true,
		"grade == \"none\"":               true,
		"(dau > 1) == true":               true,
		"dau > 1 ? seats > 0 : true":      false,
		"not (dau > 5) and dau >= 3":      true,
		"2 ** 3 == 8":                     true,
	} {
		c, err := compileCondition(src)
		if err != nil {
			t.Errorf("%s: %v", src, err)
			continue
		}
		if got := c.eval(e); got != want {
			t.Errorf("%s = %v, want %v", src, got, want)
		}
	}
}

func TestConditionReads(t *testing.T) {
	c, err := compileCondition("seats >= 50 && seats_30d_ago <= 10 && segment == \"x\" || score < 3")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.reads, ","); got != "score,seats,seats_30d_ago" {
		t.Fatalf("reads = %s", got)
	}
}

func TestScoreRedistributesNullWeights(t *testing.T) {
	rs := mustLoad(t, `
score:
  factors:
    - {name: activation, metric: activation_rate, weight: 3, points: [[0.2, 0], [0.8, 100]]}
    - {name: trend, metric: usage_change_7d, weight: 2, points: [[-0.5, 0], [0, 70], [0.3, 100]]}
`)
	v := nullValues()
	if s, _ := rs.Default.Score(v, nil); !IsNull(s) {
		t.Fatalf("all null: score %v, want null", s)
	}
	v[ActivationRate] = 0.5 // halfway: 50 points
	s, f := rs.Default.Score(v, nil)
	if !near(s, 50) || !near(f[0].Points, 50) || !IsNull(f[1].Points) || !IsNull(f[1].Value) || f[1].Weight != 2 {
		t.Fatalf("one factor: score %v factors %+v", s, f)
	}
	v[UsageChange7d] = -0.25 // halfway between 0 and 70: 35
	s, _ = rs.Default.Score(v, nil)
	if want := (3*50 + 2*35) / 5.0; math.Abs(s-want) > 1e-9 {
		t.Fatalf("score %v, want %v", s, want)
	}
	v[ActivationRate], v[UsageChange7d] = 5, -9 // clamped
	if s, _ = rs.Default.Score(v, nil); !near(s, 60) {
		t.Fatalf("clamped score %v, want 60", s)
	}
}

func TestGradeHysteresis(t *testing.T) {
	g := Grades{Green: 70, Yellow: 40, Hysteresis: 5}
	steps := []struct {
		score float64
		want  Grade
	}{
		{Null, GradeNone},
		{50, GradeYellow}, // first grade: no hysteresis
		{72, GradeYellow}, // above green but not green+5
		{74.9, GradeYellow},
		{75, GradeGreen},
		{70, GradeGreen},    // still at its own threshold
		{69.9, GradeYellow}, // down at once
		{39, GradeRed},
		{44, GradeRed},
		{45, GradeYellow},
		{80, GradeGreen}, // jumps two grades when past green+5
		{10, GradeRed},
		{Null, GradeNone},
		{72, GradeGreen},
	}
	prev := GradeNone
	for i, s := range steps {
		prev = g.Next(prev, s.score)
		if prev != s.want {
			t.Fatalf("step %d (score %v): grade %s, want %s", i, s.score, prev, s.want)
		}
	}
}

const alertRules = `
alerts:
  - name: churn_risk
    when: login_ratio_7d < 0.2 && activated_users >= 5
    for: 24h
    clear: login_ratio_7d >= 0.25
    severity: high
    match: {segment: [strategic, normal]}
    message: "Only {{ pct .login_ratio_7d }} log in ({{ .segment }}, {{ num .activated_users }} users)"
  - name: dark
    when: days_since_active > 14
    kind: opportunity
    severity: low
`

func TestAlertStateMachine(t *testing.T) {
	rs := mustLoad(t, alertRules)
	e := NewEvaluator()
	var st State
	v := nullValues()
	v[ActivatedUsers] = 10
	attrs := [NumAttrs]string{Segment: "strategic"}
	in := Input{AccountID: "acme", Metrics: v, Attrs: &attrs}
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	h := int64(time.Hour)
	step := func(at int64, ratio float64) Result {
		v[LoginRatio7d] = ratio
		return rs.Evaluate(e, &st, in, at)
	}
	if r := step(t0, 0.5); len(r.Transitions) != 0 || len(st.Alerts) != 0 || st.Alert("churn_risk") != StateInactive {
		t.Fatalf("healthy: %+v %+v", r.Transitions, st.Alerts)
	}
	if r := step(t0+h, 0.1); len(r.Transitions) != 0 || len(st.Alerts) != 1 || st.Alerts[0].State != StatePending || st.Alert("churn_risk") != StatePending {
		t.Fatalf("want pending, got %+v %+v", r.Transitions, st.Alerts)
	}
	// Recovering while pending ends the episode silently.
	if r := step(t0+2*h, 0.3); len(r.Transitions) != 0 || len(st.Alerts) != 0 || st.Alert("churn_risk") != StateInactive {
		t.Fatalf("want inactive, got %+v %+v", r.Transitions, st.Alerts)
	}
	start := t0 + 3*h
	step(start, 0.1)
	if r := step(start+23*h, 0.1); len(r.Transitions) != 0 || st.Alert("churn_risk") != StatePending {
		t.Fatalf("fired before `for`: %+v %+v", r.Transitions, st.Alerts)
	}
	r := step(start+24*h, 0.1)
	if len(r.Transitions) != 1 || len(r.Firing) != 1 || r.Firing[0] != "churn_risk" || st.Alert("churn_risk") != StateFiring {
		t.Fatalf("want firing, got %+v firing %v, %+v", r.Transitions, r.Firing, st.Alerts)
	}
	fired := r.Transitions[0]
	if fired.State != PhaseFiring || fired.Ts != start+24*h || fired.Severity != SeverityHigh || fired.Kind != KindRisk {
		t.Fatalf("transition %+v", fired)
	}
	if fired.ID != AlertID("acme", "churn_risk", start) {
		t.Fatalf("id %s is not derived from the episode start", fired.ID)
	}
	if fired.Message != "Only 10% log in (strategic, 10 users)" {
		t.Fatalf("message %q", fired.Message)
	}
	if len(fired.Values) != 2 || fired.Values[0].Name != "activated_users" || fired.Values[1].Value != 0.1 {
		t.Fatalf("values %+v", fired.Values)
	}
	// Between when and clear (0.2 ≤ x < 0.25): stays firing, emits nothing.
	if r := step(start+25*h, 0.22); len(r.Transitions) != 0 || len(r.Firing) != 1 {
		t.Fatalf("hysteresis band: %+v", r.Transitions)
	}
	r = step(start+26*h, 0.25)
	if len(r.Transitions) != 1 || r.Transitions[0].State != PhaseResolved || r.Transitions[0].ID != fired.ID || len(r.Firing) != 0 || st.Alert("churn_risk") != StateInactive {
		t.Fatalf("want resolved with the same id, got %+v", r.Transitions)
	}
	if r := step(start+27*h, 0.3); len(r.Transitions) != 0 {
		t.Fatalf("resolved twice: %+v", r.Transitions)
	}
}

func TestAlertMatchFilter(t *testing.T) {
	rs := mustLoad(t, alertRules)
	e := NewEvaluator()
	var st State
	v := nullValues()
	v[ActivatedUsers], v[LoginRatio7d] = 10, 0.05
	attrs := [NumAttrs]string{Segment: "micro"}
	in := Input{AccountID: "tiny", Metrics: v, Attrs: &attrs}
	day := int64(24 * time.Hour)
	for i := range int64(3) {
		if r := rs.Evaluate(e, &st, in, i*day+1); len(r.Transitions) != 0 {
			t.Fatalf("micro account matched a strategic-only rule: %+v", r.Transitions)
		}
	}
	// The segment changes: the rule now applies, and leaving resolves it.
	attrs[Segment] = "normal"
	rs.Evaluate(e, &st, in, 4*day)
	if r := rs.Evaluate(e, &st, in, 5*day); len(r.Transitions) != 1 {
		t.Fatalf("want firing after for, got %+v", r.Transitions)
	}
	attrs[Segment] = "micro"
	if r := rs.Evaluate(e, &st, in, 6*day); len(r.Transitions) != 1 || r.Transitions[0].State != PhaseResolved {
		t.Fatalf("want resolved when the account no longer matches, got %+v", r.Transitions)
	}
}

func TestAlertWithoutClearResolvesWhenWhenStops(t *testing.T) {
	rs := mustLoad(t, alertRules)
	e := NewEvaluator()
	var st State
	v := nullValues()
	attrs := [NumAttrs]string{}
	in := Input{AccountID: "a", Metrics: v, Attrs: &attrs}
	v[DaysSinceActive] = 15
	r := rs.Evaluate(e, &st, in, 100) // for 0: fires at once
	if len(r.Transitions) != 1 || r.Transitions[0].Kind != KindOpportunity || r.Transitions[0].Message != "dark: days_since_active=15" {
		t.Fatalf("want firing with the default message, got %+v", r.Transitions)
	}
	v[DaysSinceActive] = Null // null: when is false, so it resolves
	if r := rs.Evaluate(e, &st, in, 200); len(r.Transitions) != 1 || r.Transitions[0].State != PhaseResolved {
		t.Fatalf("want resolved, got %+v", r.Transitions)
	}
}

func TestReloadKeepsStateByName(t *testing.T) {
	e := NewEvaluator()
	var st State
	v := nullValues()
	v[DaysSinceActive] = 20
	attrs := [NumAttrs]string{}
	in := Input{AccountID: "a", Metrics: v, Attrs: &attrs}
	rs := mustLoad(t, alertRules)
	rs.Evaluate(e, &st, in, 100)
	// The reloaded file keeps "dark" (now second) and drops churn_risk.
	rs2 := mustLoad(t, "alerts:\n  - {name: other, when: dau > 1}\n  - {name: dark, when: days_since_active > 14}\n")
	if r := rs2.Evaluate(e, &st, in, 200); len(r.Transitions) != 0 || len(r.Firing) != 1 {
		t.Fatalf("a reload re-fired or lost the alert: %+v %v", r.Transitions, r.Firing)
	}
	rs3 := mustLoad(t, "alerts:\n  - {name: other, when: dau > 1}\n")
	if r := rs3.Evaluate(e, &st, in, 300); len(st.Alerts) != 0 || len(r.Firing) != 0 {
		t.Fatalf("state of a removed rule kept: %+v", st.Alerts)
	}
}

func TestForgetResolvesFiring(t *testing.T) {
	rs := mustLoad(t, alertRules)
	var st State
	v := nullValues()
	v[DaysSinceActive] = 20
	attrs := [NumAttrs]string{Segment: "normal"}
	rs.Evaluate(NewEvaluator(), &st, Input{AccountID: "a", Metrics: v, Attrs: &attrs}, 100)
	out := rs.Forget(&st, "a", &attrs, 500)
	if len(out) != 1 || out[0].State != PhaseResolved || out[0].ID != AlertID("a", "dark", 100) || len(st.Alerts) != 0 {
		t.Fatalf("forget: %+v", out)
	}
}

func TestEvaluateDoesNotAllocate(t *testing.T) {
	rs := mustLoad(t, alertRules+`
score:
  factors:
    - {name: activation, metric: activation_rate, weight: 3, points: [[0.2, 0], [0.8, 100]]}
`)
	e := NewEvaluator()
	var st State
	v := nullValues()
	v[ActivationRate], v[LoginRatio7d], v[ActivatedUsers] = 0.5, 0.5, 10
	attrs := [NumAttrs]string{Segment: "normal"}
	in := Input{AccountID: "a", Metrics: v, Attrs: &attrs}
	now := int64(0)
	allocs := testing.AllocsPerRun(100, func() {
		now += int64(time.Minute)
		rs.Evaluate(e, &st, in, now)
	})
	if allocs != 0 {
		t.Fatalf("Evaluate allocates %.1f times per call without transitions", allocs)
	}
}

func TestCostliest(t *testing.T) {
	fs := []FactorResult{
		{Name: "a", Points: 50, Weight: 1},   // costs 50
		{Name: "b", Points: 90, Weight: 3},   // 30
		{Name: "c", Points: Null, Weight: 9}, // null: left out
		{Name: "d", Points: 0, Weight: 2},    // 200
		{Name: "e", Points: 100, Weight: 5},  // full: left out
	}
	got := Costliest(fs, 2)
	if len(got) != 2 || got[0].Name != "d" || got[1].Name != "a" {
		t.Fatalf("%+v", got)
	}
	if len(Costliest(fs, 10)) != 3 {
		t.Fatal("want the three that cost points")
	}
}

func TestIsFinite(t *testing.T) {
	for v, want := range map[float64]bool{0: true, -1.5: true, math.MaxFloat64: true, math.Inf(1): false, math.Inf(-1): false} {
		if IsFinite(v) != want {
			t.Errorf("IsFinite(%v) = %v", v, !want)
		}
	}
	if IsFinite(Null) {
		t.Error("IsFinite(Null) = true")
	}
}
