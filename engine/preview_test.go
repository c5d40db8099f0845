package engine

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/pulsehq/pulse/rules"
)

// replayedPartition is the portfolio test's stream applied to one
// partition and evaluated at portfolioAt.
func replayedPartition(t *testing.T, rs *rules.Ruleset) *Partition {
	t.Helper()
	p := NewPartition(0, rs, Config{})
	feedPartition(p, portfolioLines(t))
	p.AdvanceTo(portfolioAt.UnixNano())
	p.EvaluateAll()
	p.TakeTransitions()
	return p
}

// The preview of testdata/portfolio/candidate.yaml against rules.yaml on
// the portfolio test's accounts (table in TestPortfolioOfAHandMadeStream),
// worked out by hand:
//
//   - ticket_open is kept: a2 and a5 keep their episodes; a5's is no
//     longer suppressed, ticket_pile (which silenced it) being gone;
//   - upsell from 50 seats: a2 (50) and a5 (60) are newly flagged;
//   - renewal_soon is new with `for: 24h`: a1, a4 and a6 renew within
//     30 days, and are pending, not firing;
//   - no_arr is new without `for`: a4 (no ARR) is flagged at once;
//   - ticket_pile is removed: a5 is no longer flagged;
//   - grade lines 50/25: a2 and a5 turn green, a4 (30) yellow.
func TestPreviewOfACandidate(t *testing.T) {
	rs := loadRules(t, "testdata/portfolio/rules.yaml")
	candidate := loadRules(t, "testdata/portfolio/candidate.yaml")
	p := replayedPartition(t, rs)
	before := p.AppendCheckpoint(nil, 1)

	pv, err := p.Preview(context.Background(), p.Rules(), candidate)
	if err != nil {
		t.Fatal(err)
	}
	want := &Preview{Accounts: 6, Clock: portfolioAt.UnixNano(),
		Rules: []RulePreview{
			{Rule: "ticket_open", Old: &AlertCount{Firing: 2, Suppressed: 1}, New: &AlertCount{Firing: 2}},
			{Rule: "upsell", Old: &AlertCount{Firing: 1}, New: &AlertCount{Firing: 3}, NewlyFlagged: []string{"a2", "a5"}},
			{Rule: "renewal_soon", New: &AlertCount{Pending: 3}},
			{Rule: "no_arr", New: &AlertCount{Firing: 1}, NewlyFlagged: []string{"a4"}},
			{Rule: "ticket_pile", Old: &AlertCount{Firing: 1}, NoLongerFlagged: []string{"a5"}},
		},
		OldGrades: [4]int{rules.GradeNone: 1, rules.GradeRed: 2, rules.GradeYellow: 2, rules.GradeGreen: 1},
		NewGrades: [4]int{rules.GradeNone: 1, rules.GradeRed: 1, rules.GradeYellow: 1, rules.GradeGreen: 3},
		GradeChanges: []GradeChange{
			{"a2", rules.GradeYellow, rules.GradeGreen},
			{"a4", rules.GradeRed, rules.GradeYellow},
			{"a5", rules.GradeYellow, rules.GradeGreen},
		},
	}
	if !reflect.DeepEqual(pv, want) {
		t.Errorf("preview\n got %s\nwant %s", previewString(pv), previewString(want))
	}

	// Nothing moved: the same state, no output.
	if !bytes.Equal(p.AppendCheckpoint(nil, 1), before) || len(p.TakeTransitions()) != 0 || len(p.TakeScores()) != 0 {
		t.Error("the preview changed the partition or emitted outputs")
	}

	// The rules in force as the candidate: no difference.
	same, err := p.Preview(context.Background(), rs, rs)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range same.Rules {
		if !reflect.DeepEqual(r.Old, r.New) || r.NewlyFlagged != nil || r.NoLongerFlagged != nil {
			t.Errorf("the rules in force against themselves: %+v", r)
		}
	}
	if same.OldGrades != same.NewGrades || same.GradeChanges != nil {
		t.Errorf("the rules in force against themselves: grades %v → %v, changes %v", same.OldGrades, same.NewGrades, same.GradeChanges)
	}

	// Past its deadline, a preview stops.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Preview(ctx, rs, candidate); err != context.Canceled {
		t.Errorf("a preview past its deadline: %v", err)
	}
}

// Previews of several partitions add up to the preview of one that holds
// every account.
func TestPreviewsAddUp(t *testing.T) {
	rs := loadRules(t, "testdata/portfolio/rules.yaml")
	candidate := loadRules(t, "testdata/portfolio/candidate.yaml")
	want, err := replayedPartition(t, rs).Preview(context.Background(), rs, candidate)
	if err != nil {
		t.Fatal(err)
	}
	r := NewReplayer(rs, Config{}, 3, portfolioAt.UnixNano(), 0)
	for i, l := range portfolioLines(t) {
		r.Line(i+1, l)
	}
	r.Finish()
	var got *Preview
	for _, p := range r.parts {
		pv, err := p.Preview(context.Background(), p.Rules(), candidate)
		if err != nil {
			t.Fatal(err)
		}
		if got == nil {
			got = pv
		} else {
			got.Add(pv)
		}
	}
	// Rules come in the order the first partition lists them.
	if !reflect.DeepEqual(got, want) {
		t.Errorf("three partitions\n got %s\nwant %s", previewString(got), previewString(want))
	}
}

// A preview is a reload on a copy: its candidate side equals the state of
// a copy of the partition that reloads the candidate and evaluates every
// account now, its other side a copy that evaluates with the rules in
// force — here on the shipped model's generated accounts, with a
// candidate that moves the core modules (so the metrics that count them),
// the grade lines and the alerts.
func TestPreviewIsAReloadOnACopy(t *testing.T) {
	rs := exampleRules(t)
	data, err := os.ReadFile("../deploy/rules/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src := string(data)
	edited := strings.Replace(src, "core: [pipeline, reports, approvals]", "core: [pipeline, reports]", 1)
	edited = strings.Replace(edited, "grades: {green: 70, yellow: 40, hysteresis: 5}", "grades: {green: 60, yellow: 45, hysteresis: 5}", 1)
	edited = strings.Replace(edited, "  - name: support_backlog\n", "  - name: quiet_week\n    when: events_7d < 400\n    for: 2d\n  - name: support_backlog_renamed\n", 1)
	if edited == src || strings.Count(edited, "quiet_week") != 1 {
		t.Fatal("the shipped model changed: edit the candidate anew")
	}
	candidate, err := rules.Load("candidate.yaml", []byte(edited), rules.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := NewPartition(0, rs, Config{})
	feedPartition(p, benchLines(&testing.B{}, 60, 50))
	before := p.AppendCheckpoint(nil, 1)

	pv, err := p.Preview(context.Background(), p.Rules(), candidate)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.AppendCheckpoint(nil, 1), before) {
		t.Fatal("the preview changed the partition")
	}
	evaluated := func(with *rules.Ruleset) *Partition {
		q, _, err := RestorePartition(before, with, Config{})
		if err != nil {
			t.Fatal(err)
		}
		q.EvaluateAll()
		return q
	}
	old, cand := evaluated(rs), evaluated(candidate)
	want := &Preview{Accounts: p.Len(), Clock: p.Clock()}
	counts := func(q *Partition, name string) *AlertCount {
		c := &AlertCount{}
		for _, a := range q.order {
			for _, s := range a.rulesState.Alerts {
				switch {
				case s.Rule != name:
				case !slices.Contains(a.firingAlerts(), name):
					c.Pending++
				default:
					c.Firing++
					if q.rules.Inhibited(name, a.firingAlerts()) {
						c.Suppressed++
					}
				}
			}
		}
		return c
	}
	flagged := func(q *Partition, name string) []string {
		var ids []string
		for _, a := range q.order {
			if slices.Contains(a.firingAlerts(), name) {
				ids = append(ids, a.id)
			}
		}
		slices.Sort(ids)
		return ids
	}
	var names []string
	for _, a := range candidate.Alerts {
		names = append(names, a.Name)
	}
	for _, a := range rs.Alerts {
		if !slices.Contains(names, a.Name) {
			names = append(names, a.Name)
		}
	}
	for _, name := range names {
		r := RulePreview{Rule: name}
		if slices.ContainsFunc(candidate.Alerts, func(a *rules.Alert) bool { return a.Name == name }) {
			r.New = counts(cand, name)
		}
		if slices.ContainsFunc(rs.Alerts, func(a *rules.Alert) bool { return a.Name == name }) {
			r.Old = counts(old, name)
		}
		o, n := flagged(old, name), flagged(cand, name)
		for _, id := range n {
			if !slices.Contains(o, id) {
				r.NewlyFlagged = append(r.NewlyFlagged, id)
			}
		}
		for _, id := range o {
			if !slices.Contains(n, id) {
				r.NoLongerFlagged = append(r.NoLongerFlagged, id)
			}
		}
		want.Rules = append(want.Rules, r)
	}
	for i := range old.order {
		a, b := old.order[i], cand.order[i]
		want.OldGrades[a.rulesState.Grade]++
		want.NewGrades[b.rulesState.Grade]++
		if a.rulesState.Grade != b.rulesState.Grade {
			want.GradeChanges = append(want.GradeChanges, GradeChange{a.id, a.rulesState.Grade, b.rulesState.Grade})
		}
	}
	slices.SortFunc(want.GradeChanges, func(a, b GradeChange) int { return strings.Compare(a.AccountID, b.AccountID) })
	if !reflect.DeepEqual(pv, want) {
		t.Errorf("preview\n got %s\nwant %s", previewString(pv), previewString(want))
	}
	// A partition that has not taken on a reload yet compares with the
	// rules in force all the same.
	reloaded, err := p.Preview(context.Background(), candidate, candidate)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range reloaded.Rules {
		if !reflect.DeepEqual(r.Old, pv.Rules[i].New) || !reflect.DeepEqual(r.New, pv.Rules[i].New) || r.NewlyFlagged != nil || r.NoLongerFlagged != nil {
			t.Errorf("the candidate in force against itself: %+v, want %+v on both sides", r, pv.Rules[i].New)
		}
	}
	// The candidate changes something of each kind, or the test proves
	// little.
	var newly, gone, pending int
	for _, r := range pv.Rules {
		newly += len(r.NewlyFlagged)
		gone += len(r.NoLongerFlagged)
		if r.New != nil {
			pending += r.New.Pending
		}
	}
	if newly == 0 || gone == 0 || pending == 0 || len(pv.GradeChanges) == 0 {
		t.Errorf("newly flagged %d, no longer %d, pending %d, grade changes %d: want some of each", newly, gone, pending, len(pv.GradeChanges))
	}
}

func previewString(pv *Preview) string {
	var b strings.Builder
	fmt.Fprintf(&b, "{%d accounts at %d", pv.Accounts, pv.Clock)
	for _, r := range pv.Rules {
		fmt.Fprintf(&b, "\n  %s: %v → %v, newly %v, no longer %v", r.Rule, count(r.Old), count(r.New), r.NewlyFlagged, r.NoLongerFlagged)
	}
	fmt.Fprintf(&b, "\n  grades %v → %v, changes %v\n}", pv.OldGrades, pv.NewGrades, pv.GradeChanges)
	return b.String()
}

func count(c *AlertCount) string {
	if c == nil {
		return "–"
	}
	return fmt.Sprintf("%+v", *c)
}

// BenchmarkPreview: a preview of a candidate with other grade lines and
// other core modules (so the metrics that count modules are computed
// twice) on 1,500 generated accounts with 30 days of history.
func BenchmarkPreview(b *testing.B) {
	rs := exampleRules(b)
	data, err := os.ReadFile("../deploy/rules/example.yaml")
	if err != nil {
		b.Fatal(err)
	}
	edited := strings.Replace(string(data), "core: [pipeline, reports, approvals]", "core: [pipeline, reports]", 1)
	edited = strings.Replace(edited, "grades: {green: 70, yellow: 40, hysteresis: 5}", "grades: {green: 60, yellow: 45, hysteresis: 5}", 1)
	candidate, err := rules.Load("candidate.yaml", []byte(edited), rules.LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	p := NewPartition(0, rs, Config{})
	feedPartition(p, benchLines(b, 1500, 30))
	for _, c := range []struct {
		name string
		rs   *rules.Ruleset
	}{{"same-modules", rs}, {"other-modules", candidate}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportMetric(float64(p.Len()), "accounts")
			for b.Loop() {
				if _, err := p.Preview(context.Background(), rs, c.rs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
