package engine

import (
	"errors"
	"slices"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/pulsehq/pulse/config"
	"github.com/pulsehq/pulse/rules"
)

// Config holds the engine's settings. DefaultConfig has the defaults (of
// SPEC §1 and §4), in this one place; NewPartition takes a zero setting
// as its default (WithDefaults).
type Config struct {
	// Retention bounds state: events older than clock − Retention are
	// dropped as late, and accounts with no event for Retention are evicted.
	Retention time.Duration
	// MaxFuture rejects events further than this ahead of the wall clock.
	MaxFuture time.Duration
	// EvalInterval is the least event time between two evaluations of an
	// account triggered by its events.
	EvalInterval time.Duration
	// SweepInterval is the event time between sweeps that evaluate every
	// account, so absence rules fire with no events. See the README for why
	// it defaults to an hour rather than EvalInterval.
	SweepInterval time.Duration
	// ScoreRows makes evaluations emit score history rows (see ScoreRow),
	// at least one per account per ScoreInterval of event time.
	ScoreRows     bool
	ScoreInterval time.Duration
	// MaxAccounts bounds the accounts one partition keeps: an event that
	// would create one more is rejected (account_limit). MaxUsers bounds
	// the distinct users (and NPS respondents) one account keeps: an event
	// of one more is rejected (user_limit). Both bound memory against
	// hostile or broken producers; see the README for what each costs.
	MaxAccounts int
	MaxUsers    int
	// MaxSkew is how far ahead of the partition's clock an event may be
	// and still move it: one further ahead is held back until a run of
	// ConfirmRun such events confirms the new time, or the clock gets
	// within MaxSkew of it (see watermark.go and the README, "Clock").
	MaxSkew time.Duration
}

// maxHeld bounds the events held back per partition; a partition that
// holds this many takes them as confirmation (a flood is not an outlier).
const maxHeld = 100_000

// DefaultConfig returns the defaults of SPEC §1 and §4.
func DefaultConfig() Config {
	return Config{
		Retention:     90 * 24 * time.Hour,
		MaxFuture:     5 * time.Minute,
		EvalInterval:  time.Minute,
		SweepInterval: time.Hour,
		ScoreInterval: time.Hour,
		MaxAccounts:   1_000_000,
		MaxUsers:      50_000,
		MaxSkew:       time.Hour,
	}
}

// Validate reports every setting that is out of range, each a
// *config.Error keyed as the config file's engine block writes it
// (retention, eval_interval, …), joined; nil when all are in range. It
// checks a complete config: DefaultConfig with changes, or WithDefaults'.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, config.Errorf(key, format, args...))
	}
	days := rules.FormatDuration
	if c.Retention < 31*24*time.Hour {
		bad("retention", "%s is too short: windows read 30 days, so at least 31d", days(c.Retention))
	}
	if c.MaxFuture < 0 {
		bad("max_future", "%s must not be negative", days(c.MaxFuture))
	}
	switch {
	case c.EvalInterval <= 0:
		bad("eval_interval", "%s must be positive", days(c.EvalInterval))
	case c.SweepInterval < c.EvalInterval:
		bad("sweep_interval", "%s must be at least eval_interval (%s)", days(c.SweepInterval), days(c.EvalInterval))
	case (24*time.Hour)%c.SweepInterval != 0 && c.SweepInterval%(24*time.Hour) != 0:
		bad("sweep_interval", "%s must divide 24h or be whole days, so that sweeps fall on UTC midnights and record the scores", days(c.SweepInterval))
	}
	if c.ScoreInterval <= 0 {
		bad("score_interval", "%s must be positive", days(c.ScoreInterval))
	}
	if c.MaxAccounts < 0 {
		bad("max_accounts", "%d must be positive", c.MaxAccounts)
	}
	if c.MaxUsers < 0 {
		bad("max_users_per_account", "%d must be positive", c.MaxUsers)
	}
	if c.MaxSkew <= 0 {
		bad("max_skew", "%s must be positive", days(c.MaxSkew))
	}
	return errors.Join(errs...)
}

// WithDefaults returns c with every zero setting set from DefaultConfig
// (a zero SweepInterval to at least EvalInterval).
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	if c.Retention == 0 {
		c.Retention = d.Retention
	}
	if c.MaxFuture == 0 {
		c.MaxFuture = d.MaxFuture
	}
	if c.EvalInterval == 0 {
		c.EvalInterval = d.EvalInterval
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = max(d.SweepInterval, c.EvalInterval)
	}
	if c.ScoreInterval == 0 {
		c.ScoreInterval = d.ScoreInterval
	}
	if c.MaxAccounts == 0 {
		c.MaxAccounts = d.MaxAccounts
	}
	if c.MaxUsers == 0 {
		c.MaxUsers = d.MaxUsers
	}
	if c.MaxSkew == 0 {
		c.MaxSkew = d.MaxSkew
	}
	return c
}

// maxSweepsPerAdvance bounds the sweeps one clock jump runs; a longer idle
// gap sweeps only its last boundaries (nothing in between can differ but
// the time of a `for` firing).
const maxSweepsPerAdvance = 1000

// Partition owns the accounts of one Kafka partition (or one virtual
// partition of a file replay). Exactly one goroutine may use it: it holds
// no locks. Its outputs depend only on the order of the events applied and
// the rules, never on how they were batched.
type Partition struct {
	id      int32
	cfg     Config
	rules   *rules.Ruleset
	classes moduleClasses
	eval    *rules.Evaluator

	accounts map[uint64]*account
	order    []*account // creation order: sweeps walk it deterministically

	clock     int64 // event time: highest ts applied, or advanced when idle
	nextSweep int64
	due       dueQueue    // accounts with events applied since their last evaluation
	held      []heldEvent // events too far ahead of the clock, in arrival order
	run       int         // held events at the end of held that came in a row
	outliers  uint64      // events held back since the last TakeOutliers

	interner    interner
	values      rules.Values
	transitions []rules.Transition
	scores      []ScoreRow
	spareScores []ScoreRow // a buffer handed back by RecycleScores
	revenue     []RevenueRow
	retired     []renewalOutcome // outcomes of evicted accounts, within the trailing period (revenue.go)

	shadow *shadow // a second ruleset evaluated alongside (replay --diff); nil: none
}

// NewPartition returns an empty partition evaluating rs.
func NewPartition(id int32, rs *rules.Ruleset, cfg Config) *Partition {
	p := &Partition{
		id:       id,
		cfg:      cfg.WithDefaults(),
		eval:     rules.NewEvaluator(),
		accounts: make(map[uint64]*account),
	}
	p.SetRules(rs)
	return p
}

// ID returns the partition number.
func (p *Partition) ID() int32 { return p.id }

// SetRules swaps the ruleset; alert state carries over by rule name.
func (p *Partition) SetRules(rs *rules.Ruleset) {
	p.rules = rs
	p.classes = newModuleClasses(rs.Modules)
	for _, a := range p.order {
		a.usage.dayPlus1 = 0 // its module counts follow the classes
	}
}

// Rules returns the ruleset in force.
func (p *Partition) Rules() *rules.Ruleset { return p.rules }

// Clock returns the partition's event-time clock in Unix nanoseconds.
func (p *Partition) Clock() int64 { return p.clock }

// Len returns the number of accounts.
func (p *Partition) Len() int { return len(p.order) }

// Apply folds one decoded event into its account and evaluates the account
// if it is due. wall is the wall clock in Unix nanoseconds, for rejecting
// future events (0 skips that check). It returns ReasonOK, ReasonLate,
// ReasonFuture, ReasonCollision, ReasonAccountLimit or ReasonUserLimit; a
// rejected event changes nothing.
func (p *Partition) Apply(ev *Event, wall int64) Reason {
	if wall != 0 && ev.Ts > wall+int64(p.cfg.MaxFuture) {
		return ReasonFuture
	}
	if ev.Ts < p.clock-int64(p.cfg.Retention) {
		return ReasonLate
	}
	h := xxhash.Sum64(ev.Account)
	a := p.accounts[h]
	// Two ids with one 64-bit hash are astronomically unlikely (≈ 3·10⁻⁸ at
	// a million accounts); comparing lengths catches most of those without
	// reading the id's bytes, a cache miss per event at scale.
	switch {
	case a != nil && int(a.idLen) != len(ev.Account):
		return ReasonCollision
	case a != nil && a.overUserLimit(ev, p.cfg.MaxUsers):
		return ReasonUserLimit
	case a == nil && len(p.accounts) >= p.cfg.MaxAccounts:
		return ReasonAccountLimit
	}
	if p.clock != 0 && ev.Ts > p.clock+int64(p.cfg.MaxSkew) {
		p.hold(ev)
		return ReasonOK
	}
	p.run = 0 // an event in range: held ones so far were isolated
	p.apply(ev, h)
	if len(p.held) > 0 {
		p.releaseHeld(p.clock)
	}
	return ReasonOK
}

// apply folds an event that passed every check into its account (an
// account the sweeps it runs evict starts anew).
func (p *Partition) apply(ev *Event, h uint64) {
	p.advance(ev.Ts)
	a := p.accounts[h]
	if a == nil {
		a = &account{id: string(ev.Account), idLen: uint16(len(ev.Account))}
		p.accounts[h] = a
		p.order = append(p.order, a)
	}
	a.apply(ev, &p.interner, &p.classes, p.horizon())
	if ev.Type == TypeRenewal {
		p.revenue = append(p.revenue, RevenueRow{AccountID: a.id, Ts: ev.Ts, Outcome: ev.Outcome,
			ArrBefore: ev.ARRBefore, ArrAfter: ev.ARRAfter, Segment: a.attrs[rules.Segment], CSM: a.attrs[rules.CSM]})
	}
	switch iv := int64(p.cfg.EvalInterval); {
	case a.lastEvalNs == 0 || p.clock-a.lastEvalNs >= iv:
		p.evaluate(a, p.clock)
	case a.dueNs == 0:
		// Evaluated less than eval_interval ago: due at exactly its last
		// evaluation + eval_interval (SPEC §2), whenever the clock gets
		// there, so a transition lags its cause by at most the interval.
		a.dueNs = a.lastEvalNs + iv
		p.due.push(a)
	}
}

// horizon is the oldest ts an account's value histories (seats, NPS
// answers) must still answer for: the retention, or the longest window
// if the retention is shorter.
func (p *Partition) horizon() int64 {
	return p.clock - max(int64(p.cfg.Retention), (longestDays+1)*nsPerDay)
}

// AdvanceTo moves the clock forward to t (never back), running the sweeps
// whose boundaries it passes, and applies the held-back events it reaches
// at their times. The daemon calls it with the wall clock when a partition
// is idle; a replay calls it with its end time.
func (p *Partition) AdvanceTo(t int64) {
	p.releaseHeld(t)
	p.advance(t)
}

func (p *Partition) advance(t int64) {
	if t <= p.clock {
		return
	}
	iv := int64(p.cfg.SweepInterval)
	if p.nextSweep == 0 {
		p.nextSweep = (t/iv + 1) * iv
	}
	if (t-p.nextSweep)/iv > maxSweepsPerAdvance {
		p.nextSweep = (t/iv - maxSweepsPerAdvance + 1) * iv
	}
	// Due evaluations and sweeps, in event-time order. A sweep at the same
	// time as a due evaluation covers it.
	for {
		sweep := p.nextSweep <= t
		if at, ok := p.due.next(); ok && at <= t && (!sweep || at < p.nextSweep) {
			a := p.due.pop()
			if a.dueNs != at {
				continue // evaluated since (by a sweep or an event), or evicted
			}
			p.clock = at
			p.evaluate(a, at)
			continue
		}
		if !sweep {
			break
		}
		p.clock = p.nextSweep
		p.sweep(p.nextSweep)
		p.nextSweep += iv
	}
	p.clock = t
}

// sweep evaluates every account at t and evicts the ones idle for longer
// than the retention.
func (p *Partition) sweep(t int64) {
	horizon := t - int64(p.cfg.Retention)
	kept := p.order[:0]
	for _, a := range p.order {
		p.evaluate(a, t)
		if a.lastEventNs < horizon {
			p.evict(a, t)
			continue
		}
		kept = append(kept, a)
	}
	clear(p.order[len(kept):])
	p.order = kept
	p.pruneRetired()
}

func (p *Partition) evict(a *account, t int64) {
	delete(p.accounts, xxhash.Sum64String(a.id))
	a.dueNs = 0
	p.retire(a)
	res := p.rules.Forget(&a.rulesState, a.id, &a.attrs, t)
	p.transitions = append(p.transitions, res...)
	if p.shadow != nil {
		p.shadow.forget(a, t)
	}
}

// EvaluateAll evaluates every account at the current clock, due or not. A
// replay calls it once at its end time.
func (p *Partition) EvaluateAll() {
	for _, a := range p.order {
		p.evaluate(a, p.clock)
	}
}

func (p *Partition) evaluate(a *account, t int64) {
	depth := a.metrics(t, &p.classes, &p.values)
	in := rules.Input{AccountID: a.id, Metrics: &p.values, Attrs: &a.attrs, Depth: depth}
	before := a.rulesState.Grade
	sc := p.rules.ScoreAccount(p.eval, &a.rulesState, in)
	if sc.Grade != before || a.gradeSince == 0 {
		a.gradeSince = t
	}
	if sc.Grade == rules.GradeNone {
		a.gradeSince = 0
	}
	a.scoreMetrics(t, sc.Score, &p.values)
	res := p.rules.StepAlerts(p.eval, &a.rulesState, in, sc, t)
	a.lastEvalNs, a.dueNs = t, 0
	if t%nsPerDay == 0 {
		a.record(dayOf(t), res.Score, res.Grade)
	}
	p.transitions = append(p.transitions, res.Transitions...)
	if p.shadow != nil {
		p.shadow.evaluate(a, t, depth, &p.values)
	}
	if p.cfg.ScoreRows && a.row.due(res.Score, res.Grade, depth, t, int64(p.cfg.ScoreInterval)) {
		a.row = lastRow{ts: t, score: res.Score, grade: res.Grade, depth: depth}
		if len(p.scores) == cap(p.scores) {
			// Double rather than append's 1.25× for large slices: a jump of
			// hours sweeps every account once per hour, and each step of
			// growth copies the rows into memory the kernel faults in.
			p.scores = slices.Grow(p.scores, max(cap(p.scores), 64))
		}
		p.scores = append(p.scores, ScoreRow{AccountID: a.id, Ts: t, Score: res.Score, Grade: res.Grade, Depth: depth,
			Scorecard: res.Card.Name, Attrs: a.attrs, Metrics: p.values})
	}
}

// scoreMetrics fills the metrics derived from the score being computed at
// t and the account's recorded history (SPEC §3): the score changes and
// grade_days. The grade must already be moved for t.
func (a *account) scoreMetrics(t int64, score float64, v *rules.Values) {
	fillScoreMetrics(t, score, a.histStart, a.hist, a.gradeSince, v)
}

// fillScoreMetrics fills the score-based metrics from a score history
// (see recordDay) and the time the grade last changed (0: no grade).
func fillScoreMetrics(t int64, score float64, histStart int32, hist []uint32, gradeSince int64, v *rules.Values) {
	change := func(back int64) float64 {
		// The last midnight ≤ t − back: midnights are day-bucket ends.
		then, ok := recordedDay(histStart, hist, int32(floorDiv(t-back*nsPerDay, nsPerDay)))
		if !ok {
			return rules.Null
		}
		return score - then // null in, null out
	}
	v[rules.ScoreChange7d] = change(7)
	v[rules.ScoreChange30d] = change(30)
	v[rules.GradeDays] = rules.Null
	if gradeSince != 0 {
		v[rules.GradeDays] = days(t - gradeSince)
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// TakeScores returns the score rows emitted since the last call; the
// caller owns them until it hands them back with RecycleScores.
func (p *Partition) TakeScores() []ScoreRow {
	if len(p.scores) == 0 {
		return nil // keep the buffer
	}
	out := p.scores
	if p.spareScores != nil {
		p.scores, p.spareScores = p.spareScores, nil
	} else {
		// The next run is likely as long: size for it rather than grow
		// (and copy) row by row through doublings.
		p.scores = make([]ScoreRow, 0, min(cap(out), 1<<16))
	}
	return out
}

// PendingScores returns the number of score rows emitted since the last
// TakeScores.
func (p *Partition) PendingScores() int { return len(p.scores) }

// RecycleScores hands back rows taken with TakeScores once nothing reads
// them any more, so the next rows reuse their memory. A catch-up emits
// millions of rows of a few hundred bytes each: allocating them afresh
// costs more than evaluating the accounts that emit them.
func (p *Partition) RecycleScores(rows []ScoreRow) {
	if cap(rows) > cap(p.spareScores) {
		// The old account ids stay referenced until overwritten: a few
		// strings, not worth clearing a buffer of this size for.
		p.spareScores = rows[:0]
	}
}

// TakeRevenue returns the renewal outcomes applied since the last call,
// in order. The caller owns the returned slice.
func (p *Partition) TakeRevenue() []RevenueRow {
	out := p.revenue
	p.revenue = nil
	return out
}

// TakeTransitions returns the alert transitions emitted since the last
// call, in emission order. The caller owns the returned slice.
func (p *Partition) TakeTransitions() []rules.Transition {
	out := p.transitions
	p.transitions = nil
	return out
}

// State returns the account's state at the partition clock: metrics now,
// the grade and firing alerts of its last evaluation.
func (p *Partition) State(accountID string) (AccountState, bool) {
	a := p.accounts[xxhash.Sum64String(accountID)]
	if a == nil || a.id != accountID {
		return AccountState{}, false
	}
	return p.state(a), true
}

// States calls fn with the state of every account, in creation order.
func (p *Partition) States(fn func(*AccountState)) {
	for _, a := range p.order {
		s := p.state(a)
		fn(&s)
	}
}

// FiringAlert is one firing alert of an account, for listings.
type FiringAlert struct {
	AccountID string
	Rule      string
	Since     int64 // episode start, Unix nanoseconds of event time
	ID        string
}

// Firing calls fn for every firing alert of every account.
func (p *Partition) Firing(fn func(FiringAlert)) {
	for _, a := range p.order {
		for _, st := range a.rulesState.Alerts {
			if st.State == rules.StateFiring {
				fn(FiringAlert{AccountID: a.id, Rule: st.Rule, Since: st.Since, ID: rules.AlertID(a.id, st.Rule, st.Since)})
			}
		}
	}
}

// History returns the account's daily score history, oldest first: the
// score and grade recorded at each UTC midnight of the last 90 days (days
// it was not evaluated at are left out).
func (p *Partition) History(accountID string) ([]HistoryPoint, bool) {
	a := p.accounts[xxhash.Sum64String(accountID)]
	if a == nil || a.id != accountID {
		return nil, false
	}
	return a.history(), true
}

func (p *Partition) eachAccount(fn func(*account)) {
	for _, a := range p.order {
		fn(a)
	}
}

func (p *Partition) state(a *account) AccountState { return p.stateAt(a, p.clock) }

// stateAt is the account's state with its metrics at t (not before the
// account's newest event) and the grade and alerts of its last evaluation.
func (p *Partition) stateAt(a *account, t int64) AccountState {
	s := AccountState{AccountID: a.id, Ts: t, Attrs: a.attrs, Grade: a.rulesState.Grade}
	s.Depth = a.metrics(t, &p.classes, &s.Metrics)
	card, score, factors, caps := p.rules.Explain(&a.rulesState, &s.Metrics, &a.attrs, s.Depth)
	s.Scorecard, s.Score, s.Factors, s.Caps = card.Name, score, factors, caps
	a.scoreMetrics(t, s.Score, &s.Metrics)
	s.Alerts, s.Suppressed = p.rules.SplitSuppressed(a.firingAlerts())
	if s.Alerts == nil {
		s.Alerts = []string{}
	}
	return s
}
