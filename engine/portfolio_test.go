package engine

import (
	"bytes"
	"cmp"
	"os"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/pulsehq/pulse/rules"
)

// portfolioAt is the time the portfolio test's stream is evaluated at.
var portfolioAt = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

// portfolioLines reads the portfolio test's stream: six accounts, and
// six renewals over the year before portfolioAt (one of them sent twice,
// one out of the trailing twelve months, one of an account evicted since).
func portfolioLines(t testing.TB) [][]byte {
	t.Helper()
	data, err := os.ReadFile("testdata/portfolio/events.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Split(bytes.TrimSpace(data), []byte("\n"))
}

// replayPortfolio replays lines over n virtual partitions up to
// portfolioAt and returns their snapshots.
func replayPortfolio(t testing.TB, lines [][]byte, n int) []*Snapshot {
	t.Helper()
	rs := loadRules(t, "testdata/portfolio/rules.yaml")
	r := NewReplayer(rs, Config{}, n, portfolioAt.UnixNano(), 0)
	r.OnReject = func(line int, reason Reason, detail string) { t.Fatalf("line %d: %s: %s", line, reason, detail) }
	for i, l := range lines {
		r.Line(i+1, l)
	}
	r.Finish()
	var snaps []*Snapshot
	for _, p := range r.parts {
		snaps = append(snaps, p.Snapshot(0))
	}
	return snaps
}

// The portfolio of a hand-made stream, every figure worked out by hand
// (testdata/portfolio/events.jsonl; the score is the seats bought):
//
//	account  segment    csm  grade   score  arr     renewal in  active days  alerts
//	a1       strategic  li   red     20     100000  30          5            —
//	a2       strategic  sam  yellow  50     50000   60          4            ticket_open (high risk)
//	a3       normal     li   green   90     20000   90          7            upsell (high opportunity)
//	a4       normal     sam  red     30     —       15          3 (a login at 00:00 of day −7 is day −8's)
//	a5       micro      —    yellow  60     10000   101         0            ticket_pile (medium), ticket_open suppressed
//	a6       micro      li   none    —      5000    10          4            —
//
// Renewals of the trailing twelve months, with the owner at the time:
// a1 expanded 90000 → 100000 (strategic/li), a2 contracted 60000 → 50000
// (strategic/sam; sent twice, counted once), a7 churned 30000 → 0
// (normal/sam; a7 has been evicted since), a5 renewed 10000 → 10000
// (micro/—), a6 expanded 4000 → 5000 (normal/sam, its owner then). a3's
// renewal of 2025-11-10 is older than the twelve months.
func TestPortfolioOfAHandMadeStream(t *testing.T) {
	lines := portfolioLines(t)
	snaps := replayPortfolio(t, lines, 3)
	pf := portfolioOf(snaps)

	if pf.Clock != portfolioAt.UnixNano() {
		t.Errorf("clock %v", time.Unix(0, pf.Clock).UTC())
	}
	want := Book{Accounts: 6, ARR: 185000, NoARR: 1, Graded: 5, Red: 2, RedARR: 100000,
		HighRisk: 2, HighRiskARR: 60000, AtRisk: 4, AtRiskARR: 160000, SteadilyActive: 4}
	if pf.Total != want {
		t.Errorf("total\n got %+v\nwant %+v", pf.Total, want)
	}
	if got := pf.Total.SteadyShare(); got != 4.0/6 {
		t.Errorf("steadily active share %v, want 4/6", got)
	}
	if got := pf.Total.RedShare(); got != 2.0/5 {
		t.Errorf("red share %v, want 2/5", got)
	}
	grades := [4]Book{
		rules.GradeNone:   {Accounts: 1, ARR: 5000, Graded: 0, SteadilyActive: 1},
		rules.GradeRed:    {Accounts: 2, ARR: 100000, NoARR: 1, Graded: 2, Red: 2, RedARR: 100000, AtRisk: 2, AtRiskARR: 100000, SteadilyActive: 1},
		rules.GradeYellow: {Accounts: 2, ARR: 60000, Graded: 2, HighRisk: 2, HighRiskARR: 60000, AtRisk: 2, AtRiskARR: 60000, SteadilyActive: 1},
		rules.GradeGreen:  {Accounts: 1, ARR: 20000, Graded: 1, SteadilyActive: 1},
	}
	if pf.Grades != grades {
		t.Errorf("grades\n got %+v\nwant %+v", pf.Grades, grades)
	}

	// Retention: Σ before 194000, Σ after 165000, Σ kept 154000.
	if want := (Retention{Outcomes: 5, Churned: 1, ARRBefore: 194000, ARRAfter: 165000, ARRKept: 154000}); pf.Retention != want {
		t.Errorf("retention\n got %+v\nwant %+v", pf.Retention, want)
	}
	if pf.Retention.NDR() != 165000.0/194000 || pf.Retention.GRR() != 154000.0/194000 || pf.Retention.LogoChurn() != 0.2 {
		t.Errorf("NDR %v GRR %v logo churn %v", pf.Retention.NDR(), pf.Retention.GRR(), pf.Retention.LogoChurn())
	}
	segments := []Group{
		{Name: "micro", Book: Book{Accounts: 2, ARR: 15000, Graded: 1, HighRisk: 1, HighRiskARR: 10000, AtRisk: 1, AtRiskARR: 10000, SteadilyActive: 1},
			Retention: Retention{Outcomes: 1, ARRBefore: 10000, ARRAfter: 10000, ARRKept: 10000}},
		{Name: "normal", Book: Book{Accounts: 2, ARR: 20000, NoARR: 1, Graded: 2, Red: 1, AtRisk: 1, SteadilyActive: 1},
			Retention: Retention{Outcomes: 2, Churned: 1, ARRBefore: 34000, ARRAfter: 5000, ARRKept: 4000}},
		{Name: "strategic", Book: Book{Accounts: 2, ARR: 150000, Graded: 2, Red: 1, RedARR: 100000, HighRisk: 1, HighRiskARR: 50000, AtRisk: 2, AtRiskARR: 150000, SteadilyActive: 2},
			Retention: Retention{Outcomes: 2, ARRBefore: 150000, ARRAfter: 150000, ARRKept: 140000}},
	}
	if !reflect.DeepEqual(pf.Segments, segments) {
		t.Errorf("segments\n got %+v\nwant %+v", pf.Segments, segments)
	}
	csms := []Group{
		{Name: "", Book: Book{Accounts: 1, ARR: 10000, Graded: 1, HighRisk: 1, HighRiskARR: 10000, AtRisk: 1, AtRiskARR: 10000},
			Retention: Retention{Outcomes: 1, ARRBefore: 10000, ARRAfter: 10000, ARRKept: 10000}},
		{Name: "li", Book: Book{Accounts: 3, ARR: 125000, Graded: 2, Red: 1, RedARR: 100000, AtRisk: 1, AtRiskARR: 100000, SteadilyActive: 3},
			Retention: Retention{Outcomes: 1, ARRBefore: 90000, ARRAfter: 100000, ARRKept: 90000}},
		{Name: "sam", Book: Book{Accounts: 2, ARR: 50000, NoARR: 1, Graded: 2, Red: 1, HighRisk: 1, HighRiskARR: 50000, AtRisk: 2, AtRiskARR: 50000, SteadilyActive: 1},
			Retention: Retention{Outcomes: 3, Churned: 1, ARRBefore: 94000, ARRAfter: 55000, ARRKept: 54000}},
	}
	if !reflect.DeepEqual(pf.CSMs, csms) {
		t.Errorf("CSMs\n got %+v\nwant %+v", pf.CSMs, csms)
	}
	if g := pf.CSMs[2].Retention; g.NDR() != 55000.0/94000 || g.GRR() != 54000.0/94000 || g.LogoChurn() != 1.0/3 {
		t.Errorf("sam: NDR %v GRR %v logo churn %v", g.NDR(), g.GRR(), g.LogoChurn())
	}

	// Renewals within 90 days, by ARR × (100 − score)/100: a1 100000 ×
	// 0.8, a2 50000 × 0.5, a3 20000 × 0.1; then the unknown exposures by
	// ARR: a6 (no score), a4 (no ARR). a5 renews in 101 days.
	day := func(s string) int64 {
		d, _ := time.Parse(time.DateOnly, s)
		return d.UnixNano()
	}
	null := rules.Null
	renewals := []Renewal{
		{AccountID: "a1", Segment: "strategic", CSM: "li", RenewalNs: day("2026-12-20"), DaysToRenewal: 30, ARR: 100000, Score: 20, Grade: rules.GradeRed, Risk: 0.8, Exposure: 80000},
		{AccountID: "a2", Segment: "strategic", CSM: "sam", RenewalNs: day("2027-01-19"), DaysToRenewal: 60, ARR: 50000, Score: 50, Grade: rules.GradeYellow, Risk: 0.5, Exposure: 25000},
		{AccountID: "a3", Segment: "normal", CSM: "li", RenewalNs: day("2027-02-18"), DaysToRenewal: 90, ARR: 20000, Score: 90, Grade: rules.GradeGreen, Risk: 0.1, Exposure: 20000 * 0.1},
		{AccountID: "a6", Segment: "micro", CSM: "li", RenewalNs: day("2026-11-30"), DaysToRenewal: 10, ARR: 5000, Score: null, Grade: rules.GradeNone, Risk: null, Exposure: null},
		{AccountID: "a4", Segment: "normal", CSM: "sam", RenewalNs: day("2026-12-05"), DaysToRenewal: 15, ARR: null, Score: 30, Grade: rules.GradeRed, Risk: 0.7, Exposure: null},
	}
	if len(pf.Renewals) != len(renewals) {
		t.Fatalf("renewals\n got %+v\nwant %+v", pf.Renewals, renewals)
	}
	for i, r := range pf.Renewals {
		if !sameRenewal(r, renewals[i]) {
			t.Errorf("renewal %d\n got %+v\nwant %+v", i+1, r, renewals[i])
		}
	}
}

// sameRenewal compares renewals, nulls equal to nulls.
func sameRenewal(a, b Renewal) bool {
	eq := func(x, y float64) bool { return x == y || rules.IsNull(x) && rules.IsNull(y) }
	return a.AccountID == b.AccountID && a.Segment == b.Segment && a.CSM == b.CSM && a.RenewalNs == b.RenewalNs &&
		eq(a.DaysToRenewal, b.DaysToRenewal) && eq(a.ARR, b.ARR) && eq(a.Score, b.Score) && a.Grade == b.Grade &&
		eq(a.Risk, b.Risk) && eq(a.Exposure, b.Exposure)
}

// portfolioOf is the portfolio of snaps, its accounts in id order.
func portfolioOf(snaps []*Snapshot) *Portfolio {
	merged := Merge(snaps)
	slices.SortFunc(merged, func(a, b MergedAccount) int { return cmp.Compare(a.State.AccountID, b.State.AccountID) })
	return NewPortfolio(snaps, merged)
}

// samePortfolio compares portfolios, nulls equal to nulls.
func samePortfolio(a, b *Portfolio) bool {
	if a.Clock != b.Clock || a.Total != b.Total || a.Grades != b.Grades || a.Retention != b.Retention ||
		!reflect.DeepEqual(a.Segments, b.Segments) || !reflect.DeepEqual(a.CSMs, b.CSMs) || len(a.Renewals) != len(b.Renewals) {
		return false
	}
	for i := range a.Renewals {
		if !sameRenewal(a.Renewals[i], b.Renewals[i]) {
			return false
		}
	}
	return true
}

// The portfolio does not depend on how accounts fall into partitions, and
// a partition restored from a checkpoint taken anywhere in the stream —
// before the renewals, between them, after the evictions — gives the
// portfolio of one that never stopped: renewal outcomes, retired ones
// included, survive restarts and rebalances exactly.
func TestPortfolioSurvivesCheckpoints(t *testing.T) {
	lines := portfolioLines(t)
	want := portfolioOf(replayPortfolio(t, lines, 1))
	for _, n := range []int{2, 3, 5} {
		if got := portfolioOf(replayPortfolio(t, lines, n)); !samePortfolio(got, want) {
			t.Errorf("%d partitions:\n got %+v\nwant %+v", n, got, want)
		}
	}

	rs := loadRules(t, "testdata/portfolio/rules.yaml")
	for cut := range lines {
		whole := NewPartition(0, rs, Config{})
		feedPartition(whole, lines[:cut])
		restored, _, err := RestorePartition(whole.AppendCheckpoint(nil, 1), rs, Config{})
		if err != nil {
			t.Fatal(err)
		}
		if cut == len(lines)-1 && (len(restored.retired) != 5 || !reflect.DeepEqual(restored.retired, whole.retired)) {
			// a1, a2 (its renewal once), a5, a6 and a7 were evicted with
			// their renewals by November; a3's, older than twelve months
			// by then, is forgotten.
			t.Errorf("retired outcomes restored: %+v, want %+v", restored.retired, whole.retired)
		}
		feedPartition(whole, lines[cut:])
		feedPartition(restored, lines[cut:])
		for _, p := range []*Partition{whole, restored} {
			p.AdvanceTo(portfolioAt.UnixNano())
			p.EvaluateAll()
		}
		if got := portfolioOf([]*Snapshot{restored.Snapshot(0)}); !samePortfolio(got, want) {
			t.Fatalf("restored after line %d:\n got %+v\nwant %+v", cut, got, want)
		}
	}
}

// BenchmarkPortfolio: the snapshot of 5,000 generated accounts with 30
// days of history, and the portfolio computed from it.
func BenchmarkPortfolio(b *testing.B) {
	p := NewPartition(0, exampleRules(b), Config{})
	feedPartition(p, benchLines(b, 5000, 30))
	b.Run("snapshot", func(b *testing.B) {
		b.ReportMetric(float64(p.Len()), "accounts")
		for b.Loop() {
			p.Snapshot(0)
		}
	})
	snaps := []*Snapshot{p.Snapshot(0)}
	merged := Merge(snaps)
	b.Run("portfolio", func(b *testing.B) {
		for b.Loop() {
			NewPortfolio(snaps, merged)
		}
	})
}
