package engine

import (
	"cmp"
	"maps"
	"math"
	"slices"

	"github.com/pulsehq/pulse/rules"
)

// The portfolio is what a customer-success lead runs the book on: where
// the accounts and the ARR are by grade, segment and CSM, how much of the
// book is in steady use, how much ARR is at risk, which renewals come
// next and at what risk, and how the last twelve months' renewals went.
// It is computed from the partitions' snapshots (accounts counted once,
// as the API lists them) and their retention sums, which add up across
// partitions.

// Portfolio definitions.
const (
	// SteadyDays: an account is steadily active when it had user
	// activity on at least this many of the last 7 days.
	SteadyDays = 4
	// RenewalDays: the renewals listed are those due within this many
	// days (days_to_renewal from 0 to RenewalDays).
	RenewalDays = 90
)

// Portfolio is the book of accounts an instance holds.
type Portfolio struct {
	// Clock is the earliest clock of the partitions that hold accounts
	// (Unix ns; 0 if none): every figure is at least that current.
	Clock    int64
	Total    Book
	Grades   [rules.GradeGreen + 1]Book // by rules.Grade
	Segments []Group                    // by segment, sorted ("" first: unknown)
	CSMs     []Group                    // by CSM, likewise
	// Renewals are the accounts due for renewal within RenewalDays,
	// ranked by exposure (see Renewal), most exposed first.
	Renewals []Renewal
	// Retention adds up every renewal outcome of the trailing
	// RetentionDays.
	Retention Retention
}

// Book adds up a set of accounts.
type Book struct {
	Accounts int
	ARR      float64 // Σ arr of the accounts that have one
	NoARR    int     // accounts whose arr is unknown
	Graded   int     // accounts with a grade (not none)
	Red      int
	RedARR   float64
	// HighRisk counts the accounts with a firing (or suppressed: it still
	// fires) alert of a rule of severity high and kind risk.
	HighRisk    int
	HighRiskARR float64
	// AtRisk counts the accounts that are red or HighRisk, each once.
	AtRisk         int
	AtRiskARR      float64
	SteadilyActive int // active on at least SteadyDays of the last 7
}

// SteadyShare is the share of the accounts that are steadily active;
// null without accounts.
func (b Book) SteadyShare() float64 { return ratio(float64(b.SteadilyActive), float64(b.Accounts)) }

// RedShare is the share of the graded accounts that are red (an account
// still in warm-up, or without data, has no grade to count); null without
// graded accounts.
func (b Book) RedShare() float64 { return ratio(float64(b.Red), float64(b.Graded)) }

// Group is the book of one segment or CSM, with the retention of the
// renewals it owned.
type Group struct {
	Name string
	Book
	Retention Retention
}

// Renewal is an account due for renewal within RenewalDays.
type Renewal struct {
	AccountID     string
	Segment, CSM  string
	RenewalNs     int64   // the renewal date, 00:00 UTC
	DaysToRenewal float64 // from the account's partition clock
	ARR           float64 // null when unknown
	Score         float64 // null when the account has no score
	Grade         rules.Grade
	// Risk is (100 − score) ÷ 100: 0 for a perfect score, 1 for 0;
	// Exposure is ARR × Risk, what the renewal puts at stake. Both are
	// null when the score (or, for Exposure, the ARR) is.
	Risk, Exposure float64
}

// NewPortfolio computes the portfolio of the accounts of snaps; accounts
// is Merge(snaps), in an order that does not depend on the partitions
// (the API's riskiest first, or by id): sums of ARR follow it, and a sum
// of floats depends on its order in the last bits. Retention adds up the outcomes of every
// partition: each renewal event was applied by one partition, so even an
// account split across partitions (see Merge) counts each renewal once.
func NewPortfolio(snaps []*Snapshot, accounts []MergedAccount) *Portfolio {
	pf := &Portfolio{}
	for _, s := range snaps {
		if len(s.Accounts) > 0 && s.Clock != 0 && (pf.Clock == 0 || s.Clock < pf.Clock) {
			pf.Clock = s.Clock
		}
	}
	segments, csms := map[string]*Group{}, map[string]*Group{}
	group := func(m map[string]*Group, name string) *Group {
		g := m[name]
		if g == nil {
			g = &Group{Name: name}
			m[name] = g
		}
		return g
	}
	for i := range accounts {
		m := &accounts[i]
		st := &m.State
		e := entry{arr: st.Metrics[rules.ARR], grade: st.Grade, steady: m.ActiveDays >= SteadyDays,
			highRisk: highRisk(m.Snapshot.Rules, st.Alerts) || highRisk(m.Snapshot.Rules, st.Suppressed)}
		pf.Total.add(&e)
		pf.Grades[st.Grade].add(&e)
		group(segments, st.Attrs[rules.Segment]).add(&e)
		group(csms, st.Attrs[rules.CSM]).add(&e)
		if days := st.Metrics[rules.DaysToRenewal]; days >= 0 && days <= RenewalDays {
			r := Renewal{AccountID: st.AccountID, Segment: st.Attrs[rules.Segment], CSM: st.Attrs[rules.CSM],
				RenewalNs: int64(math.Round(float64(st.Ts)/float64(nsPerDay)+days)) * nsPerDay, DaysToRenewal: days, ARR: e.arr, Score: st.Score, Grade: st.Grade,
				Risk: (100 - st.Score) / 100}
			r.Exposure = r.ARR * r.Risk // null in, null out
			pf.Renewals = append(pf.Renewals, r)
		}
	}
	slices.SortFunc(pf.Renewals, byExposure)
	for _, s := range snaps {
		for _, k := range slices.SortedFunc(maps.Keys(s.Retention), func(a, b Owner) int {
			return cmp.Or(cmp.Compare(a.Segment, b.Segment), cmp.Compare(a.CSM, b.CSM))
		}) {
			r := s.Retention[k]
			pf.Retention.Add(r)
			group(segments, k.Segment).Retention.Add(r)
			group(csms, k.CSM).Retention.Add(r)
		}
	}
	pf.Segments, pf.CSMs = sortedGroups(segments), sortedGroups(csms)
	return pf
}

// entry is what one account adds to a Book.
type entry struct {
	arr      float64
	grade    rules.Grade
	steady   bool
	highRisk bool
}

func (b *Book) add(e *entry) {
	known := !rules.IsNull(e.arr)
	arr := 0.0
	if known {
		arr = e.arr
	} else {
		b.NoARR++
	}
	b.Accounts++
	b.ARR += arr
	red := e.grade == rules.GradeRed
	if e.grade != rules.GradeNone {
		b.Graded++
	}
	if red {
		b.Red++
		b.RedARR += arr
	}
	if e.highRisk {
		b.HighRisk++
		b.HighRiskARR += arr
	}
	if red || e.highRisk {
		b.AtRisk++
		b.AtRiskARR += arr
	}
	if e.steady {
		b.SteadilyActive++
	}
}

// highRisk reports whether any of the firing alerts is of a high-severity
// risk rule of rs.
func highRisk(rs *rules.Ruleset, firing []string) bool {
	if rs == nil {
		return false
	}
	for _, name := range firing {
		for _, a := range rs.Alerts {
			if a.Name == name && a.Severity == rules.SeverityHigh && a.Kind == rules.KindRisk {
				return true
			}
		}
	}
	return false
}

// byExposure ranks renewals: the highest exposure first; those of unknown
// exposure (no score, or no ARR) after every known one, by ARR; then the
// nearest renewal, then the account id.
func byExposure(a, b Renewal) int {
	desc := func(x, y float64) int {
		switch nx, ny := rules.IsNull(x), rules.IsNull(y); {
		case nx && ny:
			return 0
		case nx:
			return 1
		case ny:
			return -1
		}
		return cmp.Compare(y, x)
	}
	return cmp.Or(desc(a.Exposure, b.Exposure), desc(a.ARR, b.ARR), cmp.Compare(a.DaysToRenewal, b.DaysToRenewal),
		cmp.Compare(a.AccountID, b.AccountID))
}

func sortedGroups(m map[string]*Group) []Group {
	out := make([]Group, 0, len(m))
	for _, name := range slices.Sorted(maps.Keys(m)) {
		out = append(out, *m[name])
	}
	return out
}
