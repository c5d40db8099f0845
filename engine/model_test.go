package engine

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulsehq/pulse/rules"
)

// The shipped model (deploy/rules/example.yaml) against the warning signs
// customer-success practice names: each case is an account built event by
// event, replayed with the shipped rules, and must get the grade and the
// alerts a CS lead expects. The README's "Health model" section explains
// each choice these cases pin down.

// modelEnd is the evaluation time of every case; histories start 120
// days before it.
var modelEnd = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

// history builds one account's events.
type history struct {
	id     string
	events []modelEvent
}

type modelEvent struct {
	ts   time.Time
	json string
}

func newHistory(id string) *history { return &history{id: id} }

func day(n int) time.Time { return modelEnd.AddDate(0, 0, n) }

func (h *history) add(ts time.Time, typ, fields string) *history {
	if fields != "" {
		fields = "," + fields
	}
	h.events = append(h.events, modelEvent{ts, fmt.Sprintf(`{"ts":%q,"account_id":%q,"type":%q%s}`,
		ts.Format(time.RFC3339Nano), h.id, typ, fields)})
	return h
}

func (h *history) attrs(ts time.Time, attrs string) *history {
	return h.add(ts, "account", `"attrs":{`+attrs+`}`)
}

// active makes users u<first>…u<first+n−1> active every day of [from, to):
// a login and a feature event of one module (turning through modules),
// perDay times a day.
func (h *history) active(first, n int, from, to time.Time, perDay int, modules ...string) *history {
	for d, i := from, 0; d.Before(to); d, i = d.AddDate(0, 0, 1), i+1 {
		for u := first; u < first+n; u++ {
			for k := range perDay {
				ts := d.Add(9*time.Hour + time.Duration(u)*time.Minute + time.Duration(k)*time.Hour)
				user := fmt.Sprintf(`"user_id":"u%d"`, u)
				h.add(ts, "login", user)
				h.add(ts.Add(time.Second), "feature", user+`,"module":"`+modules[(u+i+k)%len(modules)]+`"`)
			}
		}
	}
	return h
}

// routine adds what a well-run account has besides usage: a ticket opened
// and resolved every 10 days and a CSM touch every 30.
func (h *history) routine(from time.Time) *history {
	for d, i := from, 0; d.Before(modelEnd); d, i = d.AddDate(0, 0, 10), i+1 {
		ticket := fmt.Sprintf(`"ticket_id":"t%d"`, i)
		h.add(d.Add(11*time.Hour), "ticket_opened", ticket)
		h.add(d.Add(15*time.Hour), "ticket_resolved", ticket)
		if i%3 == 0 {
			h.add(d.Add(16*time.Hour), "touch", `"channel":"call"`)
		}
	}
	return h
}

var allModules = []string{"pipeline", "reports", "approvals", "contacts", "daily_report"}

// healthy is the control: 18 of 20 seats in daily use of every module for
// 120 days, tickets answered, regular contact, renewal far away.
func healthy(id, segment string) *history {
	return newHistory(id).
		attrs(day(-120), `"seats":20,"segment":"`+segment+`","stage":"stable","csm":"li","renewal_date":"2027-06-01"`).
		active(0, 18, day(-120), modelEnd, 1, allModules...).
		routine(day(-120))
}

type modelCase struct {
	name    string
	account *history
	grade   string
	alerts  []string // firing and not suppressed, sorted
	// suppressed, if set, must equal the suppressed alerts.
	suppressed []string
}

func modelCases() []modelCase {
	return []modelCase{
		{name: "healthy control", account: healthy("control", "normal"), grade: "green", alerts: nil},
		{name: "healthy strategic control", account: healthy("control-strategic", "strategic"), grade: "green", alerts: nil},
		{
			name: "100 seats bought, 30 users active daily: yellow, seats underused",
			account: newHistory("shelfware").
				attrs(day(-120), `"seats":100,"segment":"normal","stage":"stable","renewal_date":"2027-06-01"`).
				active(0, 30, day(-120), modelEnd, 1, allModules...).routine(day(-120)),
			grade: "yellow", alerts: []string{"underused_seats"},
		},
		{
			name: "every user active daily on one non-core module: very active, few functions, high risk",
			account: newHistory("shallow").
				attrs(day(-120), `"seats":20,"segment":"normal","stage":"stable","renewal_date":"2027-06-01"`).
				active(0, 20, day(-120), modelEnd, 1, "checkin").routine(day(-120)),
			grade: "red", alerts: []string{"shallow_usage"}, suppressed: []string{"seats_full"},
		},
		{
			name: "seats growing 10 → 30 → 50 over 60 days in stable: expansion",
			account: newHistory("growing").
				attrs(day(-120), `"seats":10,"segment":"normal","stage":"stable","renewal_date":"2027-06-01"`).
				attrs(day(-40), `"seats":30`).attrs(day(-10), `"seats":50`).
				active(0, 9, day(-120), modelEnd, 1, allModules...).
				active(9, 18, day(-40), modelEnd, 1, allModules...).
				active(27, 18, day(-10), modelEnd, 1, allModules...).routine(day(-120)),
			grade: "green", alerts: []string{"expansion"},
		},
		{
			name: "the same growth during rollout: no expansion yet",
			account: newHistory("growing-in-rollout").
				attrs(day(-120), `"seats":10,"segment":"normal","stage":"rollout","renewal_date":"2027-06-01"`).
				attrs(day(-40), `"seats":30`).attrs(day(-10), `"seats":50`).
				active(0, 9, day(-120), modelEnd, 1, allModules...).
				active(9, 18, day(-40), modelEnd, 1, allModules...).
				active(27, 18, day(-10), modelEnd, 1, allModules...).routine(day(-120)),
			grade: "green", alerts: nil,
		},
		{
			name: "usage up 700% in a week: a sharp rise is worth a call",
			account: newHistory("surge").
				attrs(day(-120), `"seats":20,"segment":"normal","stage":"stable","renewal_date":"2027-06-01"`).
				active(0, 12, day(-120), day(-7), 1, allModules...).
				active(0, 16, day(-7), modelEnd, 6, allModules...).routine(day(-120)),
			grade: "green", alerts: []string{"usage_surge"},
		},
		{
			name: "40 seats bought, 1 in use: red, low adoption",
			account: newHistory("one-of-forty").
				attrs(day(-120), `"seats":40,"segment":"normal","stage":"stable","renewal_date":"2027-06-01"`).
				active(0, 1, day(-120), modelEnd, 1, allModules...).routine(day(-120)),
			grade: "red", alerts: []string{"low_adoption"}, suppressed: []string{"underused_seats"},
		},
		{
			name: "still onboarding after 120 days",
			account: newHistory("stalled").
				attrs(day(-120), `"seats":20,"segment":"normal","stage":"onboarding","renewal_date":"2027-06-01"`).
				active(0, 15, day(-120), modelEnd, 1, allModules...).routine(day(-120)),
			grade: "green", alerts: []string{"stalled_onboarding"},
		},
		{
			name: "never opened a ticket: silence is not always happiness",
			account: newHistory("never-asked").
				attrs(day(-120), `"seats":20,"segment":"normal","stage":"stable","renewal_date":"2027-06-01"`).
				active(0, 18, day(-120), modelEnd, 1, allModules...).
				add(day(-30), "touch", `"channel":"qbr"`),
			grade: "green", alerts: []string{"gone_silent"},
		},
		{
			name:    "healthy, 80 days from renewal: prepare it",
			account: healthy("renewing", "normal").attrs(day(-100), `"renewal_date":"2027-02-08"`),
			grade:   "green", alerts: []string{"renewal_prep"},
		},
		{
			name:    "healthy micro account 80 days from renewal: too early (30-day window)",
			account: healthy("renewing-micro-early", "micro").attrs(day(-100), `"renewal_date":"2027-02-08"`),
			grade:   "green", alerts: nil,
		},
		{
			name:    "healthy micro account 20 days from renewal: prepare it",
			account: healthy("renewing-micro", "micro").attrs(day(-100), `"renewal_date":"2026-12-10"`),
			grade:   "green", alerts: []string{"renewal_prep"},
		},
		{
			name: "fading account 60 days from renewal: red, churn risk, renewal at risk",
			account: newHistory("fading").
				attrs(day(-120), `"seats":20,"segment":"normal","stage":"stable","renewal_date":"2027-01-19"`).
				active(0, 18, day(-120), day(-30), 1, allModules...).
				active(0, 6, day(-30), day(-14), 1, allModules...).
				active(0, 1, day(-14), modelEnd, 1, allModules...).routine(day(-120)),
			grade: "red", alerts: []string{"churn_risk", "renewal_at_risk"}, suppressed: []string{"score_falling", "underused_seats"},
		},
		{
			name: "seats 10 → 50, then dark for 20 days: gone dark, no expansion",
			account: newHistory("grew-then-dark").
				attrs(day(-120), `"seats":10,"segment":"normal","stage":"stable","renewal_date":"2027-06-01"`).
				attrs(day(-40), `"seats":50`).
				active(0, 9, day(-120), day(-20), 1, allModules...).
				active(9, 36, day(-40), day(-20), 1, allModules...).routine(day(-120)),
			grade: "red", alerts: []string{"gone_dark"},
		},
		{
			name: "nobody active for a week: red, usage dropped",
			account: newHistory("dark-week").
				attrs(day(-120), `"seats":20,"segment":"normal","stage":"stable","renewal_date":"2027-06-01"`).
				active(0, 18, day(-120), day(-7), 1, allModules...).routine(day(-120)),
			grade: "red", alerts: []string{"churn_risk", "usage_drop"}, suppressed: []string{"score_falling"},
		},
		{
			name: "dark for two weeks: red",
			account: newHistory("dark-fortnight").
				attrs(day(-120), `"seats":20,"segment":"normal","stage":"stable","renewal_date":"2027-06-01"`).
				active(0, 18, day(-120), day(-15), 1, allModules...).routine(day(-120)),
			grade: "red", alerts: []string{"gone_dark"},
		},
		{
			name: "a single event, renewal in 30 days: no grade and no alert before 7 days of tenure",
			account: newHistory("newcomer").
				attrs(day(-1), `"segment":"normal","renewal_date":"2026-12-20"`).
				add(day(-1).Add(10*time.Hour), "login", `"user_id":"u1"`),
			grade: "none", alerts: nil,
		},
		{
			name: "the champion left: high risk though usage is fine",
			account: healthy("champion-gone", "normal").
				add(day(-10), "stakeholder", `"role":"champion","change":"left","user_id":"u3"`),
			grade: "green", alerts: []string{"champion_left"},
		},
		{
			name: "a strategic customer nobody reached for 4 months: avoids contact",
			account: newHistory("unreached").
				attrs(day(-120), `"seats":20,"segment":"strategic","stage":"stable","renewal_date":"2027-06-01"`).
				active(0, 18, day(-120), modelEnd, 1, allModules...).
				add(day(-119), "touch", `"channel":"meeting"`).
				add(day(-5), "ticket_opened", `"ticket_id":"t1"`).add(day(-5).Add(time.Hour), "ticket_resolved", `"ticket_id":"t1"`),
			grade: "green", alerts: []string{"no_contact"},
		},
	}
}

func TestShippedModelFlagsThePracticesWarningSigns(t *testing.T) {
	rs := exampleRules(t)
	for _, c := range modelCases() {
		t.Run(c.name, func(t *testing.T) {
			r := NewReplayer(rs, Config{}, 1, modelEnd.UnixNano(), 0)
			evs := slices.Clone(c.account.events)
			slices.SortStableFunc(evs, func(a, b modelEvent) int { return a.ts.Compare(b.ts) })
			r.OnReject = func(line int, reason Reason, detail string) {
				t.Fatalf("event %d rejected: %s (%s)", line, reason, detail)
			}
			for i, e := range evs {
				r.Line(i+1, []byte(e.json))
			}
			r.Finish()
			var st *AccountState
			r.EachState(func(s *AccountState) { c := *s; st = &c })
			if st == nil {
				t.Fatal("no account")
			}
			explain := fmt.Sprintf("score %.1f, caps %v, scorecard %s, factors %s", st.Score, st.Caps, st.Scorecard, factorLine(st.Factors))
			if st.Grade.String() != c.grade {
				t.Errorf("grade %s, want %s (%s)", st.Grade, c.grade, explain)
			}
			if !slices.Equal(st.Alerts, c.alerts) && !(len(st.Alerts) == 0 && len(c.alerts) == 0) {
				t.Errorf("alerts %v, want %v (%s)", st.Alerts, c.alerts, explain)
			}
			if c.suppressed != nil && !slices.Equal(st.Suppressed, c.suppressed) {
				t.Errorf("suppressed %v, want %v", st.Suppressed, c.suppressed)
			}
		})
	}
}

func factorLine(fs []rules.FactorResult) string {
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "%s=%.3g→%.0f ", f.Name, f.Value, f.Points)
	}
	return b.String()
}

// The transitions each case raised over its history, for reading: a CS
// lead reviewing the model wants the whole story, not just the end.
func TestShippedModelTransitionsAreOrdered(t *testing.T) {
	rs := exampleRules(t)
	r := NewReplayer(rs, Config{}, 4, modelEnd.UnixNano(), 0)
	var all []modelEvent
	for _, c := range modelCases() {
		all = append(all, c.account.events...)
	}
	slices.SortStableFunc(all, func(a, b modelEvent) int { return a.ts.Compare(b.ts) })
	for i, e := range all {
		r.Line(i+1, []byte(e.json))
	}
	r.Finish()
	trs := r.Transitions()
	if len(trs) == 0 {
		t.Fatal("no transitions")
	}
	if !slices.IsSortedFunc(trs, func(a, b rules.Transition) int { return cmp.Compare(a.Ts, b.Ts) }) {
		t.Fatal("transitions out of order")
	}
}
