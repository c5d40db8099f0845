package engine

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pulsehq/pulse/engine/synth"
	"github.com/pulsehq/pulse/rules"
)

// A ruleset evaluated as a shadow gives exactly the transitions and final
// grades of a replay on that ruleset alone, and does not change the
// replay's own: the one-pass `pulse replay --diff` equals two replays.
func TestShadowEqualsAReplay(t *testing.T) {
	example, err := os.ReadFile("../deploy/rules/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Another model: other thresholds, weights, grade lines and module
	// classes (so depth and the module metrics differ), a rule gone and a
	// rule added.
	changed := string(example)
	for _, r := range []struct{ old, new string }{
		{"core: [pipeline, reports, approvals]", "core: [pipeline, reports]"},
		{"custom: [custom_objects]", "custom: [custom_objects, daily_report]"},
		{"when: login_ratio_7d < 0.2 && activated_users >= 5 && tenure_days >= 7", "when: login_ratio_7d < 0.35 && activated_users >= 5 && tenure_days >= 7"},
		{"grades: {green: 70, yellow: 40, hysteresis: 5}", "grades: {green: 80, yellow: 66, hysteresis: 2}"},
		{"    metric: seat_login_ratio_7d\n    weight: 3", "    metric: seat_login_ratio_7d\n    weight: 1"},
	} {
		if !strings.Contains(changed, r.old) {
			t.Fatalf("example.yaml has no %q", r.old)
		}
		changed = strings.Replace(changed, r.old, r.new, 1)
	}
	changed = strings.Replace(changed, "alerts:\n", `alerts:
  - name: deep_custom
    when: depth == "custom" && tenure_days >= 7
    severity: low
    kind: opportunity
`, 1)
	oldRules := exampleRules(t)
	newRules, err := rules.Load("changed.yaml", []byte(changed), rules.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}

	end := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	g := synth.New(synth.Options{Accounts: 50, Days: 40, Seed: 5, End: end})
	var lines [][]byte
	// An account that stops on the first day, evicted (and its firing
	// alerts resolved) after the retention of 31 days.
	for u := range 6 {
		lines = append(lines, fmt.Appendf(nil, `{"ts":%q,"account_id":"gone","type":"login","user_id":"u%d"}`,
			end.AddDate(0, 0, -40).Add(time.Hour).Format(time.RFC3339), u))
	}
	for d := range g.Days() {
		g.Day(d, func(l []byte) { lines = append(lines, append([]byte(nil), l...)) })
	}
	cfg := Config{Retention: 31 * 24 * time.Hour}
	replay := func(own, shadow *rules.Ruleset) *Replayer {
		r := NewReplayer(own, cfg, 4, 0, 0)
		if shadow != nil {
			r.Shadow(shadow)
		}
		for i, l := range lines {
			r.Line(i+1, l)
		}
		r.Finish()
		return r
	}
	grades := func(r *Replayer, shadow bool) map[string]rules.Grade {
		m := map[string]rules.Grade{}
		r.EachGrade(func(id string, g, sg rules.Grade) {
			if shadow {
				g = sg
			}
			m[id] = g
		})
		return m
	}
	both := replay(oldRules, newRules)
	alone := replay(newRules, nil)
	plain := replay(oldRules, nil)

	if got, want := transitionsJSON(both.ShadowTransitions()), transitionsJSON(alone.Transitions()); got != want {
		t.Errorf("shadow transitions differ from a replay on the new rules:\n%.2000s", firstDiff(got, want))
	}
	if got, want := transitionsJSON(both.Transitions()), transitionsJSON(plain.Transitions()); got != want {
		t.Errorf("a shadow changed the replay's own transitions:\n%.2000s", firstDiff(got, want))
	}
	if got, want := grades(both, true), grades(alone, false); !reflect.DeepEqual(got, want) {
		t.Errorf("shadow grades differ from a replay on the new rules")
	}
	if got, want := grades(both, false), grades(plain, false); !reflect.DeepEqual(got, want) {
		t.Errorf("a shadow changed the replay's own grades")
	}
	// The test means something only if the two models disagree, and
	// the eviction happened.
	if transitionsJSON(both.ShadowTransitions()) == transitionsJSON(both.Transitions()) || reflect.DeepEqual(grades(both, true), grades(both, false)) {
		t.Error("the two rulesets gave the same transitions or grades")
	}
	forgotten := 0
	for _, tr := range both.ShadowTransitions() {
		if tr.AccountID == "gone" && tr.State == rules.PhaseResolved && rules.IsNull(tr.Score) {
			forgotten++
		}
	}
	if forgotten == 0 {
		t.Error("the evicted account's firing alerts were not resolved under the shadow")
	}
	if _, ok := grades(both, false)["gone"]; ok {
		t.Error("the idle account was not evicted")
	}
}

// transitionsJSON writes transitions as replay --transitions prints them
// (a null score is NaN, which reflect.DeepEqual never finds equal).
func transitionsJSON(ts []rules.Transition) string {
	var b []byte
	for i := range ts {
		b = AppendTransitionJSON(b, &ts[i])
		b = append(b, '\n')
	}
	return string(b)
}

// firstDiff returns the first line where got and want differ.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range min(len(g), len(w)) {
		if g[i] != w[i] {
			return fmt.Sprintf("line %d:\n got %s\nwant %s", i+1, g[i], w[i])
		}
	}
	return fmt.Sprintf("%d lines vs %d", len(g), len(w))
}
