package engine

import (
	"slices"

	"github.com/pulsehq/pulse/rules"
)

// Revenue retention in memory. Every renewal outcome of the trailing
// twelve months is kept with the segment and CSM the account had when
// the renewal was applied — the values of its revenue row — first in the
// account's CRM state and, once the account is evicted (a churned
// customer stops sending events long before its renewal leaves the
// twelve months), in the partition's list of retired outcomes. Both are
// part of the checkpoint, so the numbers a partition gives depend on the
// events applied alone: a replay equals a run, across restarts and
// rebalances.

// RetentionDays is the trailing period of the in-memory retention
// numbers: twelve months, counted as 365 days.
const RetentionDays = 365

// renewalOutcome is one renewal event (SPEC §1 `renewal`).
type renewalOutcome struct {
	ts                  int64
	outcome             Outcome
	arrBefore, arrAfter float64
	segment, csm        string
}

// outcomesFrom is the oldest ts an outcome list kept at a clock in day
// must hold: no trailing period that ends at or after day reaches further.
func outcomesFrom(day int32) int64 {
	return (int64(day) - RetentionDays - 1) * nsPerDay
}

// addOutcome records a renewal in the account's list. A second event of
// the same time and outcome replaces the first, as the revenue table's
// ReplacingMergeTree keeps one row per (account, ts, outcome): the numbers
// agree with a query of that table with FINAL.
func (a *account) addOutcome(o renewalOutcome) {
	c := a.crmState()
	for i := range c.outcomes {
		if c.outcomes[i].ts == o.ts && c.outcomes[i].outcome == o.outcome {
			c.outcomes[i] = o
			return
		}
	}
	c.outcomes = appendWithin(c.outcomes, o, outcomesFrom(a.head), func(o renewalOutcome) int64 { return o.ts })
}

// retire keeps the outcomes of an account being evicted.
func (p *Partition) retire(a *account) {
	if a.crm == nil {
		return
	}
	from := outcomesFrom(dayOf(p.clock))
	for _, o := range a.crm.outcomes {
		if o.ts >= from {
			p.retired = append(p.retired, o)
		}
	}
}

// pruneRetired drops the retired outcomes no trailing period reaches any
// more. Sweeps call it: they run at event times, so the list, and the
// checkpoint, depend on the events alone.
func (p *Partition) pruneRetired() {
	if len(p.retired) == 0 {
		return
	}
	from := outcomesFrom(dayOf(p.clock))
	p.retired = slices.DeleteFunc(p.retired, func(o renewalOutcome) bool { return o.ts < from })
}

// Owner is who an outcome counts for: the account's segment and CSM
// when the renewal was applied ("" where unknown).
type Owner struct {
	Segment, CSM string
}

// Retention adds up renewal outcomes (SPEC §5 "Revenue"). Sums are kept,
// not ratios, so that partitions, segments and CSMs add up exactly.
type Retention struct {
	Outcomes, Churned int
	ARRBefore         float64 // Σ arr_before
	ARRAfter          float64 // Σ arr_after
	ARRKept           float64 // Σ min(arr_after, arr_before)
}

func (r *Retention) add(o *renewalOutcome) {
	r.Outcomes++
	if o.outcome == OutcomeChurned {
		r.Churned++
	}
	r.ARRBefore += o.arrBefore
	r.ARRAfter += o.arrAfter
	r.ARRKept += min(o.arrAfter, o.arrBefore)
}

// Add adds the outcomes of o to r.
func (r *Retention) Add(o Retention) {
	r.Outcomes += o.Outcomes
	r.Churned += o.Churned
	r.ARRBefore += o.ARRBefore
	r.ARRAfter += o.ARRAfter
	r.ARRKept += o.ARRKept
}

// NDR is the net dollar retention, Σ arr_after ÷ Σ arr_before; null where
// no ARR was up for renewal.
func (r Retention) NDR() float64 { return ratio(r.ARRAfter, r.ARRBefore) }

// GRR is the gross revenue retention, Σ min(arr_after, arr_before) ÷
// Σ arr_before: expansions count as kept, not more; null as NDR.
func (r Retention) GRR() float64 { return ratio(r.ARRKept, r.ARRBefore) }

// LogoChurn is the share of outcomes that are churned; null without any.
func (r Retention) LogoChurn() float64 {
	if r.Outcomes == 0 {
		return rules.Null
	}
	return float64(r.Churned) / float64(r.Outcomes)
}

// retention adds up the partition's outcomes of the trailing period that
// ends at its clock, by owner.
func (p *Partition) retention() map[Owner]Retention {
	from := p.clock - RetentionDays*nsPerDay
	out := map[Owner]Retention{}
	add := func(o *renewalOutcome) {
		if o.ts <= from || o.ts > p.clock {
			return
		}
		k := Owner{o.segment, o.csm}
		r := out[k]
		r.add(o)
		out[k] = r
	}
	for _, a := range p.order {
		if a.crm != nil {
			for i := range a.crm.outcomes {
				add(&a.crm.outcomes[i])
			}
		}
	}
	for i := range p.retired {
		add(&p.retired[i])
	}
	return out
}

// activeDays counts the days of the 7-day window ending with day on which
// the account had user activity (login, feature or session events).
func (a *account) activeDays(day int32) uint8 {
	var n uint8
	from := max(day-6, a.head-eventDays+1, 1)
	for d := min(day, a.head); d >= from; d-- {
		if a.events[d%eventDays] > 0 {
			n++
		}
	}
	return n
}
