package rules

import (
	"os"
	"testing"
)

// BenchmarkEvaluate is one evaluation with the example rules: score of 7
// factors, grade, 9 alert conditions, no transition.
func BenchmarkEvaluate(b *testing.B) {
	data, err := os.ReadFile("../deploy/rules/example.yaml")
	if err != nil {
		b.Fatal(err)
	}
	rs, err := Load("example.yaml", data, LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	v := nullValues()
	v[ActivationRate], v[LoginRatio7d], v[UsageChange7d], v[CoreAdoption30d] = 0.7, 0.4, 0.05, 0.66
	v[DaysSinceActive], v[OldestOpenTicketDays], v[NPS90d], v[ActivatedUsers] = 0.2, 3, 30, 20
	attrs := [NumAttrs]string{Segment: "normal", CSM: "li"}
	in := Input{AccountID: "acme", Metrics: v, Attrs: &attrs, Depth: DepthProcess}
	e := NewEvaluator()
	var st State
	b.ReportAllocs()
	now := int64(0)
	for b.Loop() {
		now += 60e9
		rs.Evaluate(e, &st, in, now)
	}
}

// BenchmarkCondition is one compiled condition.
func BenchmarkCondition(b *testing.B) {
	c, err := compileCondition("login_ratio_7d < 0.2 && activated_users >= 5 || segment == \"strategic\" && seats_30d_ago * 5 <= seats")
	if err != nil {
		b.Fatal(err)
	}
	v := nullValues()
	v[LoginRatio7d], v[ActivatedUsers] = 0.5, 10
	attrs := [NumAttrs]string{Segment: "strategic"}
	e := &env{values: v, attrs: &attrs}
	b.ReportAllocs()
	for b.Loop() {
		c.eval(e)
	}
}
