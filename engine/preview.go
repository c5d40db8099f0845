package engine

import (
	"cmp"
	"context"
	"slices"

	"github.com/pulsehq/pulse/rules"
)

// A preview answers "what would these rules say now?" on a running
// partition: it evaluates a candidate ruleset against every account's
// current state and compares it with the rules in force, changing
// nothing. Both rulesets are evaluated at the partition's clock, each on
// a copy of the account's rules state (the candidate's alert episodes
// carried over by rule name, as a reload does), so a candidate identical
// to the rules in force shows no difference, and a difference is the
// rules' alone, never the time since an account's last evaluation.
//
// "Would fire now" therefore means: fires at the first evaluation after
// a reload to the candidate made now. A rule the rules in force also have
// keeps its episode — a pending alert of it fires once it has been
// pending for the candidate's `for`, a firing one stays firing until the
// candidate's clear holds. A new rule (or a renamed one) starts its
// episode now: with a `for`, it is pending, not firing, and is counted as
// such; it fires at an evaluation `for` later if its condition still
// holds then.

// Preview is the difference between the rules in force (Old) and a
// candidate (New) on the accounts of one or more partitions. Merge
// previews of several partitions with Add.
type Preview struct {
	Accounts int
	// Clock is the earliest clock the accounts were evaluated at (Unix
	// ns; each partition evaluates at its own).
	Clock int64
	// Rules lists every rule of either ruleset: the candidate's in file
	// order, then those only the rules in force have.
	Rules []RulePreview
	// Grades counts the accounts by grade (rules.Grade) under each.
	OldGrades, NewGrades [rules.GradeGreen + 1]int
	// GradeChanges lists the accounts whose grade differs, by id.
	GradeChanges []GradeChange
}

// RulePreview is one rule's alerts under each ruleset.
type RulePreview struct {
	Rule     string
	Old, New *AlertCount // nil where the ruleset has no such rule
	// NewlyFlagged lists the accounts the rule fires for under the
	// candidate and not under the rules in force; NoLongerFlagged the
	// reverse. Both sorted.
	NewlyFlagged, NoLongerFlagged []string
}

// AlertCount counts one rule's accounts by alert state.
type AlertCount struct {
	Firing int // firing, suppressed ones included
	// Suppressed counts the firing alerts an inhibiting alert silences.
	Suppressed int
	// Pending counts the alerts whose condition holds but not yet for
	// the rule's `for`.
	Pending int
}

// GradeChange is one account whose grade the candidate changes.
type GradeChange struct {
	AccountID string
	Old, New  rules.Grade
}

// Preview evaluates candidate against every account as the README's
// "Rules preview" says, and returns the difference with inForce: the
// rules in force, which the partition has or is about to take on (a
// reload reaches a partition before its next batch). It changes nothing:
// no state, no output, no notification. Run it on the partition's
// goroutine; it stops with ctx's error when ctx ends (it checks between
// accounts).
func (p *Partition) Preview(ctx context.Context, inForce, candidate *rules.Ruleset) (*Preview, error) {
	pv := &Preview{Accounts: len(p.order)}
	if len(p.order) > 0 {
		pv.Clock = p.clock
	}
	index := map[string]int{}
	for _, a := range candidate.Alerts {
		index[a.Name] = len(pv.Rules)
		pv.Rules = append(pv.Rules, RulePreview{Rule: a.Name, New: &AlertCount{}})
	}
	for _, a := range inForce.Alerts {
		i, ok := index[a.Name]
		if !ok {
			i = len(pv.Rules)
			index[a.Name] = i
			pv.Rules = append(pv.Rules, RulePreview{Rule: a.Name})
		}
		pv.Rules[i].Old = &AlertCount{}
	}
	ev := previewer{p: p, eval: rules.NewEvaluator(), index: index, pv: pv,
		old: p.previewSide(inForce), new: p.previewSide(candidate)}
	for i, a := range p.order {
		if i%256 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		ev.account(a, p.clock)
	}
	for i := range pv.Rules {
		slices.Sort(pv.Rules[i].NewlyFlagged)
		slices.Sort(pv.Rules[i].NoLongerFlagged)
	}
	slices.SortFunc(pv.GradeChanges, func(a, b GradeChange) int { return cmp.Compare(a.AccountID, b.AccountID) })
	return pv, nil
}

// previewSide is one ruleset of a preview.
type previewSide struct {
	rules   *rules.Ruleset
	classes *moduleClasses // its module classes where they differ from the partition's
}

func (p *Partition) previewSide(rs *rules.Ruleset) previewSide {
	s := previewSide{rules: rs}
	if !sameModules(rs.Modules, p.rules.Modules) {
		mc := newModuleClasses(rs.Modules)
		s.classes = &mc
	}
	return s
}

// previewer evaluates accounts for a Preview.
type previewer struct {
	p        *Partition
	old, new previewSide
	eval     *rules.Evaluator
	index    map[string]int // rule name → index in pv.Rules
	pv       *Preview

	base, values         rules.Values
	state                rules.State
	alerts               []rules.ActiveAlert // the copy's alert states, reused
	oldFiring, newFiring []string
}

func (e *previewer) account(a *account, t int64) {
	// The metrics at t, with the partition's module classes; computing
	// them refreshes the account's cache of day-bucket metrics, as a
	// listing does.
	depth := a.metrics(t, &e.p.classes, &e.base)
	oldGrade := e.step(a, e.old, depth, t, &e.oldFiring, e.oldCounts)
	newGrade := e.step(a, e.new, depth, t, &e.newFiring, e.newCounts)

	e.pv.OldGrades[oldGrade]++
	e.pv.NewGrades[newGrade]++
	if oldGrade != newGrade {
		e.pv.GradeChanges = append(e.pv.GradeChanges, GradeChange{AccountID: a.id, Old: oldGrade, New: newGrade})
	}
	for _, name := range e.newFiring {
		if !slices.Contains(e.oldFiring, name) {
			r := &e.pv.Rules[e.index[name]]
			r.NewlyFlagged = append(r.NewlyFlagged, a.id)
		}
	}
	for _, name := range e.oldFiring {
		if !slices.Contains(e.newFiring, name) {
			r := &e.pv.Rules[e.index[name]]
			r.NoLongerFlagged = append(r.NoLongerFlagged, a.id)
		}
	}
}

// step evaluates the account under a side's rules at t as
// Partition.evaluate does, on a copy of its rules state (alert episodes
// carried over by rule name), counts its alert states with count, and
// returns its grade, with the names of its firing alerts in *firing
// (sorted). e.base holds the metrics with the partition's modules.
func (e *previewer) step(a *account, side previewSide, depth rules.Depth, t int64, firing *[]string, count func(string) *AlertCount) rules.Grade {
	rs := side.rules
	e.state = a.rulesState
	e.state.Alerts = append(e.alerts[:0], a.rulesState.Alerts...) // StepAlerts writes into it
	e.values = e.base
	if side.classes != nil {
		// Other modules: the metrics afresh for them, leaving the cache
		// as it was.
		saved := a.usage
		a.usage.dayPlus1 = 0
		depth = a.metrics(t, side.classes, &e.values)
		a.usage = saved
	}
	in := rules.Input{AccountID: a.id, Metrics: &e.values, Attrs: &a.attrs, Depth: depth}
	sc := rs.ScoreAccount(e.eval, &e.state, in)
	a.scoreMetrics(t, sc.Score, &e.values)
	// grade_days as the evaluation would leave it: from now when the
	// grade moves (or is first given).
	since := a.gradeSince
	if sc.Grade != a.rulesState.Grade || since == 0 {
		since = t
	}
	e.values[rules.GradeDays] = rules.Null
	if sc.Grade != rules.GradeNone {
		e.values[rules.GradeDays] = days(t - since)
	}
	res := rs.StepAlerts(e.eval, &e.state, in, sc, t)
	e.alerts = e.state.Alerts
	*firing = append((*firing)[:0], res.Firing...)
	// The state holds the pending and firing alerts of rs.
	for _, s := range e.state.Alerts {
		c := count(s.Rule)
		switch {
		case !slices.Contains(res.Firing, s.Rule):
			c.Pending++
		case rs.Inhibited(s.Rule, res.Firing):
			c.Firing++
			c.Suppressed++
		default:
			c.Firing++
		}
	}
	return sc.Grade
}

func (e *previewer) oldCounts(name string) *AlertCount { return e.pv.Rules[e.index[name]].Old }
func (e *previewer) newCounts(name string) *AlertCount { return e.pv.Rules[e.index[name]].New }

func sameModules(a, b rules.ModuleSets) bool {
	return slices.Equal(a.All, b.All) && slices.Equal(a.Core, b.Core) &&
		slices.Equal(a.Process, b.Process) && slices.Equal(a.Custom, b.Custom)
}

// Add merges the preview of other partitions into pv. Accounts an
// instance holds in several partitions (see Merge) count in each.
func (pv *Preview) Add(o *Preview) {
	pv.Accounts += o.Accounts
	if o.Clock != 0 && (pv.Clock == 0 || o.Clock < pv.Clock) {
		pv.Clock = o.Clock
	}
	for i := range pv.OldGrades {
		pv.OldGrades[i] += o.OldGrades[i]
		pv.NewGrades[i] += o.NewGrades[i]
	}
	pv.GradeChanges = mergeSorted(pv.GradeChanges, o.GradeChanges, func(a, b GradeChange) int { return cmp.Compare(a.AccountID, b.AccountID) })
	for _, r := range o.Rules {
		i := slices.IndexFunc(pv.Rules, func(x RulePreview) bool { return x.Rule == r.Rule })
		if i < 0 {
			pv.Rules = append(pv.Rules, RulePreview{Rule: r.Rule})
			i = len(pv.Rules) - 1
		}
		x := &pv.Rules[i]
		x.Old, x.New = addCounts(x.Old, r.Old), addCounts(x.New, r.New)
		x.NewlyFlagged = mergeSorted(x.NewlyFlagged, r.NewlyFlagged, cmp.Compare[string])
		x.NoLongerFlagged = mergeSorted(x.NoLongerFlagged, r.NoLongerFlagged, cmp.Compare[string])
	}
}

func addCounts(a, b *AlertCount) *AlertCount {
	switch {
	case b == nil:
		return a
	case a == nil:
		c := *b
		return &c
	}
	return &AlertCount{Firing: a.Firing + b.Firing, Suppressed: a.Suppressed + b.Suppressed, Pending: a.Pending + b.Pending}
}

// mergeSorted merges two sorted lists into a new sorted one.
func mergeSorted[T any](a, b []T, compare func(x, y T) int) []T {
	if len(b) == 0 {
		return a
	}
	out := make([]T, 0, len(a)+len(b))
	out = append(append(out, a...), b...)
	slices.SortStableFunc(out, compare)
	return out
}
