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
// The shadow's evaluations run on a goroutine of their own (see
// shadowPipe): the partition hands over a copy of what an evaluation read
// — metrics, attributes, depth, time — and goes on, so a diff takes
// little more wall time than one replay where a second core is free.
//
// A shadow lives only in a replay: it is not checkpointed.
type shadow struct {
	rules *rules.Ruleset
	// sameModules is set when both rulesets declare the same modules: the
	// partition's metrics then hold as they are.
	sameModules bool
	classes     moduleClasses
	pipe        *shadowPipe

	// Owned by the pipe's goroutine until it is closed.
	eval *rules.Evaluator
	// Keyed by the partition's account (a key only: the goroutine reads
	// no account field): the account struct is sized to a malloc class
	// and has no room for a pointer more.
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

func newShadow(rs *rules.Ruleset, own rules.ModuleSets, pipe *shadowPipe) *shadow {
	same := slices.Equal(rs.Modules.All, own.All) && slices.Equal(rs.Modules.Core, own.Core) &&
		slices.Equal(rs.Modules.Process, own.Process) && slices.Equal(rs.Modules.Custom, own.Custom)
	return &shadow{rules: rs, sameModules: same, classes: newModuleClasses(rs.Modules), pipe: pipe,
		eval: rules.NewEvaluator(), accounts: make(map[*account]*shadowAccount)}
}

// shadowJob is one evaluation (or eviction) of an account, as the
// shadow's goroutine needs it: copies, since the account moves on.
type shadowJob struct {
	s      *shadow
	a      *account // the key of the shadow's state; not read
	id     string
	t      int64
	depth  rules.Depth
	forget bool
	attrs  [rules.NumAttrs]string
	values rules.Values
}

// shadowPipe carries the shadows' jobs, in batches and in the order the
// partitions emit them, to one goroutine that runs them.
type shadowPipe struct {
	batch []shadowJob
	full  chan []shadowJob
	free  chan []shadowJob
	done  chan struct{}
}

const (
	shadowBatch   = 512 // jobs per hand-over: ≈ 300 KB
	shadowBatches = 4   // in flight at most
)

func newShadowPipe() *shadowPipe {
	p := &shadowPipe{full: make(chan []shadowJob, shadowBatches), free: make(chan []shadowJob, shadowBatches+1),
		done: make(chan struct{})}
	for range shadowBatches {
		p.free <- make([]shadowJob, 0, shadowBatch)
	}
	p.batch = <-p.free
	go func() {
		defer close(p.done)
		for b := range p.full {
			for i := range b {
				b[i].run()
			}
			p.free <- b[:0]
		}
	}()
	return p
}

// job returns the next job to fill; it is handed over with the batch.
func (p *shadowPipe) job() *shadowJob {
	if len(p.batch) == cap(p.batch) {
		p.full <- p.batch
		p.batch = <-p.free
	}
	p.batch = p.batch[:len(p.batch)+1]
	return &p.batch[len(p.batch)-1]
}

// close runs the jobs left and waits for them: the shadows' state is the
// caller's again.
func (p *shadowPipe) close() {
	if p.done == nil {
		return
	}
	p.full <- p.batch
	close(p.full)
	<-p.done
	p.batch, p.done = nil, nil
}

// evaluate hands over account a's evaluation at t under the shadow's
// ruleset; v and depth are the metrics the partition computed for it.
func (s *shadow) evaluate(a *account, t int64, depth rules.Depth, v *rules.Values) {
	j := s.pipe.job()
	*j = shadowJob{s: s, a: a, id: a.id, t: t, depth: depth, attrs: a.attrs, values: *v}
	if !s.sameModules {
		// Modules change with the next event: count them now.
		j.depth = a.moduleMetrics(dayOf(t), &s.classes, &j.values)
	}
}

// forget hands over the eviction of an account at t.
func (s *shadow) forget(a *account, t int64) {
	*s.pipe.job() = shadowJob{s: s, a: a, id: a.id, t: t, forget: true, attrs: a.attrs}
}

// run evaluates the account as Partition.evaluate does under its own
// ruleset, or resolves its firing alerts and drops its state when the
// partition evicts it.
func (j *shadowJob) run() {
	s := j.s
	sa := s.accounts[j.a]
	if j.forget {
		if sa != nil {
			s.transitions = append(s.transitions, s.rules.Forget(&sa.state, j.id, &j.attrs, j.t)...)
			delete(s.accounts, j.a)
		}
		return
	}
	if sa == nil {
		sa = &shadowAccount{}
		s.accounts[j.a] = sa
	}
	in := rules.Input{AccountID: j.id, Metrics: &j.values, Attrs: &j.attrs, Depth: j.depth}
	before := sa.state.Grade
	sc := s.rules.ScoreAccount(s.eval, &sa.state, in)
	if sc.Grade != before || sa.gradeSince == 0 {
		sa.gradeSince = j.t
	}
	if sc.Grade == rules.GradeNone {
		sa.gradeSince = 0
	}
	fillScoreMetrics(j.t, sc.Score, sa.histStart, sa.hist, sa.gradeSince, &j.values)
	res := s.rules.StepAlerts(s.eval, &sa.state, in, sc, j.t)
	if j.t%nsPerDay == 0 {
		recordDay(&sa.histStart, &sa.hist, dayOf(j.t), res.Score, res.Grade)
	}
	s.transitions = append(s.transitions, res.Transitions...)
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
	r.pipe = newShadowPipe()
	for _, p := range r.parts {
		p.shadow = newShadow(rs, p.rules.Modules, r.pipe)
	}
}

// ShadowTransitions returns the alert transitions of the shadow ruleset
// (see Shadow), ordered as Transitions orders the replay's own. Call it
// after Finish.
func (r *Replayer) ShadowTransitions() []rules.Transition {
	r.closePipe()
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
// without a shadow), in account-id order. Call it after Finish.
func (r *Replayer) EachGrade(fn func(accountID string, grade, shadowGrade rules.Grade)) {
	r.closePipe()
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

// closePipe waits for the shadows' evaluations handed over so far.
func (r *Replayer) closePipe() {
	if r.pipe != nil {
		r.pipe.close()
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
