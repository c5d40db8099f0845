package engine

import (
	"cmp"
	"slices"

	"github.com/pulsehq/pulse/rules"
)

// A shadow evaluates a second ruleset beside a partition's own, for a
// dry run of a rules change (pulse replay --diff) in one pass over the
// events.
//
// What an account's events leave behind — windows, users, modules,
// tickets, attributes, the times it is evaluated at and when it is
// evicted — does not depend on the rules. What does is small: the rules
// state (grade, caps, alert episodes), the score history the score-based
// metrics read, the time the grade last changed, and, when the two files
// declare different modules, the metrics that count modules by class. A
// shadow keeps its own copy of exactly those per account and evaluates its
// ruleset at every evaluation of the partition, with the metrics the
// partition has just computed. Its transitions and grades are therefore
// those a replay on its ruleset alone gives (TestShadowEqualsAReplay).
//
// A shadow lives only in a replay: it is not checkpointed.
type shadow struct {
	rules *rules.Ruleset
	// sameModules is set when both rulesets declare the same modules: the
	// partition's metrics then hold as they are.
	sameModules bool
	classes     moduleClasses
	eval        *rules.Evaluator
	values      rules.Values
	// Keyed by the partition's account: the account struct is sized to a
	// malloc class and has no room for a pointer more.
	accounts    map[*account]*shadowAccount
	transitions []rules.Transition
}

// shadowAccount is the rules-dependent state of one account under the
// shadow's ruleset: what account keeps in rulesState, gradeSince, histStart
// and hist for the partition's own.
type shadowAccount struct {
	state      rules.State
	gradeSince int64
	histStart  int32
	hist       []uint32
}

func newShadow(rs *rules.Ruleset, own rules.ModuleSets) *shadow {
	same := slices.Equal(rs.Modules.All, own.All) && slices.Equal(rs.Modules.Core, own.Core) &&
		slices.Equal(rs.Modules.Process, own.Process) && slices.Equal(rs.Modules.Custom, own.Custom)
	return &shadow{rules: rs, sameModules: same, classes: newModuleClasses(rs.Modules),
		eval: rules.NewEvaluator(), accounts: make(map[*account]*shadowAccount)}
}

// evaluate evaluates account a at t under the shadow's ruleset, as
// Partition.evaluate does under its own; v and depth are the metrics the
// partition computed for this evaluation.
func (s *shadow) evaluate(a *account, t int64, depth rules.Depth, v *rules.Values) {
	sa := s.accounts[a]
	if sa == nil {
		sa = &shadowAccount{}
		s.accounts[a] = sa
	}
	s.values = *v
	if !s.sameModules {
		depth = a.moduleMetrics(dayOf(t), &s.classes, &s.values)
	}
	in := rules.Input{AccountID: a.id, Metrics: &s.values, Attrs: &a.attrs, Depth: depth}
	before := sa.state.Grade
	sc := s.rules.ScoreAccount(s.eval, &sa.state, in)
	if sc.Grade != before || sa.gradeSince == 0 {
		sa.gradeSince = t
	}
	if sc.Grade == rules.GradeNone {
		sa.gradeSince = 0
	}
	fillScoreMetrics(t, sc.Score, sa.histStart, sa.hist, sa.gradeSince, &s.values)
	res := s.rules.StepAlerts(s.eval, &sa.state, in, sc, t)
	if t%nsPerDay == 0 {
		recordDay(&sa.histStart, &sa.hist, dayOf(t), res.Score, res.Grade)
	}
	s.transitions = append(s.transitions, res.Transitions...)
}

// forget resolves the shadow's firing alerts of an account the partition
// evicts, and drops its state.
func (s *shadow) forget(a *account, t int64) {
	if sa := s.accounts[a]; sa != nil {
		s.transitions = append(s.transitions, s.rules.Forget(&sa.state, a.id, &a.attrs, t)...)
		delete(s.accounts, a)
	}
}

// moduleMetrics recomputes, for other module classes, the metrics that
// depend on them — module_breadth_30d, core_adoption_30d — and returns the
// depth, as metrics would with mc. v must hold the account's other metrics
// at a time of day day (mau and api_calls_30d are read from it).
func (a *account) moduleMetrics(day int32, mc *moduleClasses, v *rules.Values) rules.Depth {
	var modules, core int
	var used uint8
	for _, m := range a.modules {
		if m.lastDay > day-30 {
			modules++
			c := mc.of(m.hash)
			used |= c
			if c&classCore != 0 {
				core++
			}
		}
	}
	v[rules.ModuleBreadth30d] = rules.Null
	if mc.declaredAll {
		v[rules.ModuleBreadth30d] = float64(modules) / float64(mc.nAll)
	}
	v[rules.CoreAdoption30d] = rules.Null
	if mc.declaredCore {
		v[rules.CoreAdoption30d] = float64(core) / float64(mc.nCore)
	}
	switch {
	case used&classCustom != 0:
		return rules.DepthCustom
	case v[rules.APICalls30d] > 0:
		return rules.DepthIntegration
	case used&classProcess != 0:
		return rules.DepthProcess
	case v[rules.MAU] > 0:
		return rules.DepthRecord
	}
	return rules.DepthNone
}

// Shadow makes the replay evaluate a second ruleset beside its own, at
// the same times and on the same metrics, in the same pass over the
// events: ShadowTransitions and EachGrade then tell what rs would have
// done. Call it before the first Line.
func (r *Replayer) Shadow(rs *rules.Ruleset) {
	for _, p := range r.parts {
		p.shadow = newShadow(rs, p.rules.Modules)
	}
}

// ShadowTransitions returns the alert transitions of the shadow ruleset
// (see Shadow), ordered as Transitions orders the replay's own.
func (r *Replayer) ShadowTransitions() []rules.Transition {
	var out []rules.Transition
	for _, p := range r.parts {
		if p.shadow != nil {
			out = append(out, p.shadow.transitions...)
		}
	}
	sortTransitions(out)
	return out
}

// EachGrade calls fn with every account's grade after its last
// evaluation, under the replay's ruleset and under the shadow's (GradeNone
// without a shadow), in account-id order.
func (r *Replayer) EachGrade(fn func(accountID string, grade, shadowGrade rules.Grade)) {
	type ref struct {
		a *account
		s *shadow
	}
	var refs []ref
	for _, p := range r.parts {
		refs = slices.Grow(refs, p.Len())
		p.eachAccount(func(a *account) { refs = append(refs, ref{a, p.shadow}) })
	}
	slices.SortFunc(refs, func(x, y ref) int { return cmp.Compare(x.a.id, y.a.id) })
	for _, x := range refs {
		g := rules.GradeNone
		if x.s != nil {
			if sa := x.s.accounts[x.a]; sa != nil {
				g = sa.state.Grade
			}
		}
		fn(x.a.id, x.a.rulesState.Grade, g)
	}
}

// sortTransitions orders transitions by event time, ties by account, rule
// and state: an order independent of the partition count.
func sortTransitions(ts []rules.Transition) {
	slices.SortStableFunc(ts, func(a, b rules.Transition) int {
		return cmp.Or(cmp.Compare(a.Ts, b.Ts), cmp.Compare(a.AccountID, b.AccountID),
			cmp.Compare(a.Rule, b.Rule), cmp.Compare(a.State, b.State))
	})
}
