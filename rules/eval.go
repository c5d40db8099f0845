package rules

import (
	"slices"
	"strconv"
	"time"

	"github.com/cespare/xxhash/v2"
)

// State is what the rules remember about one account between evaluations:
// its grade (for hysteresis) and its active (pending or firing) alerts. The engine
// owns it and passes it in; it is small and has no pointers to the Ruleset,
// so it survives a rules reload and can be checkpointed.
type State struct {
	Grade Grade
	// Scorecard names the scorecard Grade was given by ("" in state from
	// before scorecards: taken as the current one). A move to another
	// scorecard restarts the grade's hysteresis and its caps.
	Scorecard string
	// Caps has bit i set while the scorecard's cap i holds: a cap with a
	// clear condition stays on until that holds.
	Caps uint32
	// Alerts are the active alerts, in rule order: an inactive alert has
	// no entry.
	Alerts []ActiveAlert
}

// AlertState is where an alert of one account is in its state machine
// (as Prometheus' rules.AlertState).
type AlertState uint8

// The alert states. An alert is pending while `when` holds for less than
// `for`, firing once it has held that long, and inactive otherwise.
const (
	StateInactive AlertState = iota
	StatePending
	StateFiring

	// NumAlertStates is the number of alert states.
	NumAlertStates int = iota
)

var alertStateNames = [NumAlertStates]string{"inactive", "pending", "firing"}

func (s AlertState) String() string { return alertStateNames[s] }

// ActiveAlert is one pending or firing alert episode of an account.
type ActiveAlert struct {
	Rule  string
	State AlertState // StatePending or StateFiring
	// Since is when the episode began (when `when` first held), in Unix
	// nanoseconds of event time; the alert id is derived from it.
	Since int64
}

// Alert returns the state of the named rule's alert.
func (s *State) Alert(rule string) AlertState {
	for _, a := range s.Alerts {
		if a.Rule == rule {
			return a.State
		}
	}
	return StateInactive
}

// Phase is the state an alert transition reports: the alert started
// firing, or resolved.
type Phase uint8

// The phases a transition can report.
const (
	PhaseFiring Phase = iota
	PhaseResolved

	// NumPhases is the number of phases.
	NumPhases int = iota
)

var phaseNames = [NumPhases]string{"firing", "resolved"}

func (p Phase) String() string { return phaseNames[p] }

// Transition is an alert that started firing or resolved (SPEC §5).
type Transition struct {
	ID        string
	AccountID string
	Rule      string
	State     Phase
	Severity  Severity
	Kind      Kind
	Ts        int64 // event time of the transition, Unix nanoseconds
	Score     float64
	Grade     Grade
	Depth     Depth
	Values    []NamedValue // the metrics the rule reads, in Alert.Reads order
	Message   string
	Attrs     [NumAttrs]string
	// Scorecard names the scorecard that scored the account.
	Scorecard string
	// Suppressed is set while an inhibiting alert of the same account
	// fires: the transition is stored but not notified.
	Suppressed bool
	// Factors is the score's explanation at the transition (every factor,
	// as Result.Factors): notifications show what costs the most points.
	Factors []FactorResult
}

// NamedValue is one metric value; Value is Null (NaN) when null.
type NamedValue struct {
	Name  string
	Value float64
}

// FactorResult explains one factor's part in the score.
type FactorResult struct {
	Name   string
	Metric Metric
	Value  float64 // Null when the metric is null
	Points float64 // Null when the metric is null
	Weight float64
}

// Result is the outcome of one evaluation. Its slices belong to the
// Evaluator and are valid until its next use: copy what must be kept.
type Result struct {
	Scored
	Firing      []string // names of firing alerts, sorted (suppressed ones too)
	Transitions []Transition
}

// Scored is the score part of an evaluation: the scorecard used, the score,
// the grade and the explanation. Factors belongs to the Evaluator.
type Scored struct {
	Card    *Scorecard
	Score   float64 // Null when every factor's metric is null
	Grade   Grade
	Prev    Grade // the grade before this evaluation (GradeNone on a scorecard change)
	Factors []FactorResult
	Caps    []string // the caps that hold, in file order (the score is at most the lowest)
}

// Evaluator holds the scratch space of evaluations, so they do not
// allocate. It is not safe for concurrent use; give each goroutine its own.
type Evaluator struct {
	env         env
	caps        []string
	factors     []FactorResult
	firing      []string
	transitions []Transition
	states      []ActiveAlert
}

// NewEvaluator returns an Evaluator for any Ruleset.
func NewEvaluator() *Evaluator { return &Evaluator{} }

// Score computes the health score: Σ(weight × points) ÷ Σ weight over the
// factors whose metric is not null, or Null when all are null.
func (c *Scorecard) Score(v *Values, out []FactorResult) (float64, []FactorResult) {
	score, out := c.weigh(v, out)
	if c.Warmup > 0 && !(v[TenureDays]*float64(24*time.Hour) >= float64(c.Warmup)) {
		return Null, out // too young to judge: explained, not scored
	}
	return score, out
}

func (c *Scorecard) weigh(v *Values, out []FactorResult) (float64, []FactorResult) {
	var sum, weights float64
	for _, f := range c.Factors {
		x := v[f.Metric]
		r := FactorResult{Name: f.Name, Metric: f.Metric, Value: x, Points: Null, Weight: f.Weight}
		if !IsNull(x) {
			r.Points = interpolate(f.Points, x)
			sum += f.Weight * r.Points
			weights += f.Weight
		}
		out = append(out, r)
	}
	if weights == 0 {
		return Null, out
	}
	return sum / weights, out
}

// interpolate evaluates a piecewise-linear curve, clamped outside its knots.
func interpolate(pts []Point, x float64) float64 {
	if x <= pts[0].X {
		return pts[0].Y
	}
	for i := 1; i < len(pts); i++ {
		if x <= pts[i].X {
			a, b := pts[i-1], pts[i]
			return a.Y + (b.Y-a.Y)*(x-a.X)/(b.X-a.X)
		}
	}
	return pts[len(pts)-1].Y
}

// Next returns the grade for score given the previous grade. With
// hysteresis h an account moves up only once the score reaches the higher
// threshold + h, and moves down as soon as it falls under its own
// threshold, so a score wobbling around a threshold does not flap.
func (g Grades) Next(prev Grade, score float64) Grade {
	if IsNull(score) {
		return GradeNone
	}
	raw := g.raw(score)
	if prev == GradeNone || raw <= prev {
		return raw
	}
	if up := g.raw(score - g.Hysteresis); up > prev {
		return up
	}
	return prev
}

func (g Grades) raw(score float64) Grade {
	switch {
	case score >= g.Green:
		return GradeGreen
	case score >= g.Yellow:
		return GradeYellow
	}
	return GradeRed
}

// Evaluate scores one account and steps its alerts at time now (Unix
// nanoseconds of event time): ScoreAccount, then StepAlerts. Callers that
// fill score-based metrics in between call the two themselves.
func (rs *Ruleset) Evaluate(e *Evaluator, st *State, in Input, now int64) Result {
	return rs.StepAlerts(e, st, in, rs.ScoreAccount(e, st, in), now)
}

// ScoreAccount scores one account with its scorecard and moves its grade
// (in st). The result's Factors are valid until e is used again.
func (rs *Ruleset) ScoreAccount(e *Evaluator, st *State, in Input) Scored {
	card := rs.ScorecardFor(in.Attrs)
	e.factors = e.factors[:0]
	score, factors := card.Score(in.Metrics, e.factors)
	e.factors = factors
	e.env = env{values: in.Metrics, attrs: in.Attrs, score: Null, depth: in.Depth.String()}
	prev, held := st.Grade, st.Caps
	if st.Scorecard != card.Name && st.Scorecard != "" {
		prev, held = GradeNone, 0 // new grade lines: hysteresis restarts
	}
	score, st.Caps, e.caps = card.cap(&e.env, score, held, e.caps[:0])
	st.Grade = card.Grades.Next(prev, score)
	st.Scorecard = card.Name
	return Scored{Card: card, Score: score, Grade: st.Grade, Prev: prev, Factors: factors, Caps: e.caps}
}

// Explain scores an account without moving any state: the score, its
// factors and the caps that hold, as an evaluation at the same time would,
// given the state of its last evaluation (the grade is the caller's). The
// slices are newly allocated.
func (rs *Ruleset) Explain(st *State, v *Values, attrs *[NumAttrs]string, depth Depth) (*Scorecard, float64, []FactorResult, []string) {
	c := rs.ScorecardFor(attrs)
	held := st.Caps
	if st.Scorecard != c.Name && st.Scorecard != "" {
		held = 0
	}
	score, factors := c.Score(v, nil)
	score, _, caps := c.cap(&env{values: v, attrs: attrs, score: Null, depth: depth.String()}, score, held, nil)
	return c, score, factors, caps
}

// cap applies the caps that hold to score, appending their names to names.
// held has bit i set if cap i held at the last evaluation: it goes on
// when `when` holds and off when `clear` does (or `when` no longer holds,
// without a clear). A null score stays null: a cap bounds a score, it does
// not make one.
func (c *Scorecard) cap(e *env, score float64, held uint32, names []string) (float64, uint32, []string) {
	var now uint32
	for i, cp := range c.Caps {
		bit := uint32(1) << i
		on := cp.when.eval(e)
		if held&bit != 0 && cp.clear != nil {
			on = !cp.clear.eval(e)
		}
		if !on {
			continue
		}
		now |= bit
		names = append(names, cp.Name)
		if !IsNull(score) {
			score = min(score, cp.Max)
		}
	}
	return score, now, names
}

// StepAlerts steps the account's alerts at time now, given its score (from
// ScoreAccount) and metrics. It updates st in place and returns the
// result, whose slices are valid until e is used again.
//
// An alert is pending when `when` first holds, firing once it has held at
// every evaluation for `for`, and resolved when `clear` holds (or `when` no
// longer holds, if the rule has no clear). An account that does not match
// the rule's attribute filter counts as `when` false and `clear` true.
// Transitions of an alert that a firing alert inhibits are marked
// suppressed.
func (rs *Ruleset) StepAlerts(e *Evaluator, st *State, in Input, sc Scored, now int64) Result {
	e.firing = e.firing[:0]
	e.transitions = e.transitions[:0]
	score := sc.Score
	e.env = env{values: in.Metrics, attrs: in.Attrs, score: score, grade: st.Grade.String(), depth: in.Depth.String()}

	e.states = e.states[:0]
	next := 0 // states are kept in rule order: usually the next one matches
	for _, a := range rs.Alerts {
		idx := -1
		if next < len(st.Alerts) && st.Alerts[next].Rule == a.Name {
			idx = next
			next++
		} else if len(st.Alerts) > 0 {
			idx = slices.IndexFunc(st.Alerts, func(s ActiveAlert) bool { return s.Rule == a.Name })
		}
		cur := ActiveAlert{Rule: a.Name, State: StateInactive}
		if idx >= 0 {
			cur = st.Alerts[idx]
		}
		matched := matchAttrs(a.Match, in.Attrs)
		when := matched && a.when.eval(&e.env)
		switch cur.State {
		case StateInactive:
			if !when {
				break
			}
			cur.State, cur.Since = StatePending, now
			fallthrough
		case StatePending:
			if !when {
				cur.State = StateInactive
			} else if now-cur.Since >= int64(a.For) {
				cur.State = StateFiring
				e.emit(a, in, cur, PhaseFiring, now, sc)
			}
		case StateFiring:
			clear := !when
			if a.clear != nil {
				clear = !matched || a.clear.eval(&e.env)
			}
			if clear {
				e.emit(a, in, cur, PhaseResolved, now, sc)
				cur.State = StateInactive
			}
		}
		if cur.State != StateInactive {
			e.states = append(e.states, cur)
		}
		if cur.State == StateFiring {
			e.firing = append(e.firing, a.Name)
		}
	}
	// Entries of rules that a reload removed are dropped here.
	st.Alerts = append(st.Alerts[:0], e.states...)
	slices.Sort(e.firing)
	for i := range e.transitions {
		e.transitions[i].Suppressed = rs.Inhibited(e.transitions[i].Rule, e.firing)
	}
	return Result{Scored: sc, Firing: e.firing, Transitions: e.transitions}
}

// Inhibited reports whether a firing alert in firing (sorted names)
// inhibits the rule.
func (rs *Ruleset) Inhibited(rule string, firing []string) bool {
	for _, name := range firing {
		if a := rs.alert(name); a != nil && slices.Contains(a.Inhibits, rule) {
			return true
		}
	}
	return false
}

// SplitSuppressed splits firing alert names (sorted) into the ones that
// notify and the ones an inhibiting alert suppresses, both sorted.
func (rs *Ruleset) SplitSuppressed(firing []string) (alerts, suppressed []string) {
	for _, name := range firing {
		if rs.Inhibited(name, firing) {
			suppressed = append(suppressed, name)
		} else {
			alerts = append(alerts, name)
		}
	}
	return alerts, suppressed
}

func (rs *Ruleset) alert(name string) *Alert {
	for _, a := range rs.Alerts {
		if a.Name == name {
			return a
		}
	}
	return nil
}

func (e *Evaluator) emit(a *Alert, in Input, st ActiveAlert, phase Phase, now int64, sc Scored) {
	score := sc.Score
	t := Transition{
		ID:        AlertID(in.AccountID, a.Name, st.Since),
		AccountID: in.AccountID,
		Rule:      a.Name,
		State:     phase,
		Severity:  a.Severity,
		Kind:      a.Kind,
		Ts:        now,
		Score:     score,
		Grade:     sc.Grade,
		Depth:     in.Depth,
		Attrs:     *in.Attrs,
		Scorecard: sc.Card.Name,
	}
	t.Values = make([]NamedValue, len(a.Reads))
	for i, name := range a.Reads {
		v := score
		if m, ok := MetricByName(name); ok {
			v = in.Metrics[m]
		}
		t.Values[i] = NamedValue{Name: name, Value: v}
	}
	t.Message = a.render(&t, in.Metrics)
	t.Factors = slices.Clone(e.factors)
	e.transitions = append(e.transitions, t)
}

// AlertID identifies an alert episode: the same account, rule and episode
// start give the same id across restarts and replays.
func AlertID(account, rule string, since int64) string {
	d := xxhash.New()
	d.WriteString(account)
	d.WriteString("\x00")
	d.WriteString(rule)
	d.WriteString("\x00")
	d.WriteString(strconv.FormatInt(since, 10))
	return strconv.FormatUint(d.Sum64()|1<<63, 16)
}

// Forget resolves every firing alert of an account the engine is dropping
// (no events for the whole retention), so no episode stays open forever.
// The transitions carry null metric values and say why in the message.
func (rs *Ruleset) Forget(st *State, account string, attrs *[NumAttrs]string, now int64) []Transition {
	var out []Transition
	for _, s := range st.Alerts {
		if s.State != StateFiring {
			continue
		}
		t := Transition{
			ID: AlertID(account, s.Rule, s.Since), AccountID: account, Rule: s.Rule,
			State: PhaseResolved, Ts: now, Score: Null, Attrs: *attrs, Scorecard: st.Scorecard,
			Message: s.Rule + ": resolved because the account sent no events for the whole retention period",
		}
		for _, a := range rs.Alerts {
			if a.Name == s.Rule {
				t.Severity, t.Kind = a.Severity, a.Kind
			}
		}
		out = append(out, t)
	}
	st.Alerts = nil
	return out
}

// Costliest returns up to n factors that cost the score the most points
// (weight × (100 − points)), most first; factors with a null metric (or
// points that are not finite) and factors at full points are left out.
func Costliest(factors []FactorResult, n int) []FactorResult {
	var out []FactorResult
	for _, f := range factors {
		if IsFinite(f.Points) && f.Points < 100 {
			out = append(out, f)
		}
	}
	cost := func(f FactorResult) float64 { return f.Weight * (100 - f.Points) }
	slices.SortStableFunc(out, func(a, b FactorResult) int {
		switch {
		case cost(a) > cost(b):
			return -1
		case cost(a) < cost(b):
			return 1
		}
		return 0
	})
	return out[:min(n, len(out))]
}
