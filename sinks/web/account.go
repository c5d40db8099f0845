package web

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
)

// accountView is what the partition holding an account says about it.
type accountView struct {
	state   *engine.AccountState
	history []engine.HistoryPoint
	firing  []engine.FiringAlert
	clock   clock
	snaps   []*engine.Snapshot // read
}

// find reads one account from the snapshots: its state (nil when no
// partition holds it), history and firing alerts, and the clock.
func (s *Server) find(ctx context.Context, id string) accountView {
	v := s.view(ctx)
	av := accountView{clock: v.clock(), snaps: v.snaps}
	a := v.account(id)
	if a == nil {
		return av
	}
	av.state = &a.State
	av.history = a.Snapshot.History(a.SnapshotAccount)
	for _, fa := range a.Snapshot.Firing {
		if fa.AccountID == id {
			av.firing = append(av.firing, fa)
		}
	}
	return av
}

// history is GET /api/accounts/{id}/history: the daily score history as
// [{"date":"2026-11-20","score":63.5,"grade":"yellow"}, …], oldest first
// (the score and grade recorded at each UTC midnight of the last 90 days).
func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	v := s.view(r.Context())
	setStaleness(w, s.now(), v.snaps)
	a := v.account(id)
	if a == nil {
		http.Error(w, fmt.Sprintf("no account %q on this instance", id), http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(appendHistoryJSON(nil, a.Snapshot.History(a.SnapshotAccount)))
}

func appendHistoryJSON(b []byte, h []engine.HistoryPoint) []byte {
	b = append(b, '[')
	for i, p := range h {
		if i > 0 {
			b = append(b, ",\n"...)
		}
		b = append(b, `{"date":"`...)
		b = time.Unix(0, p.Day).UTC().AppendFormat(b, "2006-01-02")
		b = append(b, `","score":`...)
		if rules.IsNull(p.Score) || math.IsInf(p.Score, 0) {
			b = append(b, "null"...)
		} else {
			b = strconv.AppendFloat(b, math.Round(p.Score*1e6)/1e6, 'f', -1, 64)
		}
		b = append(b, `,"grade":"`...)
		b = append(b, p.Grade.String()...)
		b = append(b, `"}`...)
	}
	return append(b, "]\n"...)
}

// factorRow is one factor of the account view: what it reads, the points
// it gives and the points of the score it costs.
type factorRow struct {
	rules.FactorResult
	Value string
	// Cost is the score points lost to this factor: weight × (100 −
	// points) ÷ Σ weight of the factors that apply. The costs add up to
	// 100 − the score (before caps).
	Cost      float64
	Costliest bool
	Applies   bool // the metric is not null
}

func factorRows(fs []rules.FactorResult) []factorRow {
	var weights float64
	for _, f := range fs {
		if !rules.IsNull(f.Points) {
			weights += f.Weight
		}
	}
	out := make([]factorRow, len(fs))
	for i, f := range fs {
		r := factorRow{FactorResult: f, Value: formatMetric(f.Metric.String(), f.Value), Applies: !rules.IsNull(f.Points)}
		if r.Applies && weights > 0 {
			r.Cost = f.Weight * (100 - f.Points) / weights
		}
		out[i] = r
	}
	// Costliest first; factors without data last, in rule order.
	slices.SortStableFunc(out, func(a, b factorRow) int {
		if a.Applies != b.Applies {
			if a.Applies {
				return -1
			}
			return 1
		}
		return cmp.Compare(b.Cost, a.Cost)
	})
	if len(out) > 0 && out[0].Cost >= 0.05 {
		out[0].Costliest = true
	}
	return out
}

// metricRow is one metric with its value written for reading.
type metricRow struct {
	Name, Label, Value, Class string
}

// keyMetrics are the account view's headline metrics: trend first, then
// usage, contract and relationship.
var keyMetrics = []struct{ metric, label string }{
	{"score_change_7d", "Score change, 7 days"},
	{"score_change_30d", "Score change, 30 days"},
	{"grade_days", "Days at this grade"},
	{"usage_change_7d", "Usage, week over week"},
	{"usage_vs_baseline", "Usage vs 4-week baseline"},
	{"days_since_active", "Last user activity"},
	{"mau", "Monthly active users"},
	{"seats", "Seats"},
	{"activation_rate", "Activation"},
	{"utilization", "Seat utilization (30d)"},
	{"login_ratio_7d", "Daily login ratio (7d)"},
	{"core_adoption_30d", "Core modules used (30d)"},
	{"open_tickets", "Open tickets"},
	{"nps_90d", "NPS (90d)"},
	{"days_to_renewal", "Renewal in"},
	{"arr", "ARR"},
	{"days_since_touch", "Last CSM touch"},
	{"touches_30d", "CSM touches (30d)"},
	{"champion_left_90d", "Champion left (90d)"},
	{"tenure_days", "Tenure"},
}

// formatMetric writes a metric value the way a CSM reads it.
func formatMetric(name string, v float64) string {
	if rules.IsNull(v) {
		return "—"
	}
	switch name {
	case "activation_rate", "utilization", "login_ratio_7d", "seat_login_ratio_7d", "stickiness",
		"mobile_share_30d", "module_breadth_30d", "core_adoption_30d":
		return strconv.FormatFloat(v*100, 'f', 0, 64) + "%"
	case "usage_change_7d":
		return fmt.Sprintf("%+.0f%%", v*100)
	case "usage_vs_baseline":
		return strconv.FormatFloat(v, 'f', 2, 64) + "×"
	case "score_change_7d", "score_change_30d":
		return fmt.Sprintf("%+.1f points", v)
	case "arr":
		return "$" + thousands(v)
	case "champion_left_90d":
		if v != 0 {
			return "yes"
		}
		return "no"
	case "days_since_active", "days_since_touch", "days_since_ticket", "days_since_renewal_event":
		return strconv.FormatFloat(v, 'f', 1, 64) + " days ago"
	case "grade_days", "oldest_open_ticket_days", "tenure_days", "days_to_renewal":
		return strconv.FormatFloat(v, 'f', 1, 64) + " days"
	}
	return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64)
}

// thousands writes v rounded to a whole number with thousands separators.
func thousands(v float64) string {
	s := strconv.FormatFloat(math.Round(math.Abs(v)), 'f', 0, 64)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if v < 0 {
		s = "-" + s
	}
	return s
}

// metricClass colours a trend metric: down is bad, up is good.
func metricClass(name string, v float64) string {
	if rules.IsNull(v) {
		return "muted"
	}
	switch name {
	case "score_change_7d", "score_change_30d":
		return changeDir(v)
	case "usage_change_7d":
		return changeDir(v * 10) // ±5% is flat, as on the list
	case "champion_left_90d":
		if v != 0 {
			return "down"
		}
	}
	return ""
}

type accountData struct {
	State       *engine.AccountState
	Card        string
	Grades      rules.Grades
	Caps        []string // "dark (at most 30)"
	Chart       chart
	Factors     []factorRow
	Risks       []chip
	Opps        []chip
	Transitions []transitionRow
	Recording   bool // a Recent store is wired
	Attrs       []metricRow
	Key         []metricRow
	Metrics     []metricRow
	AsOf        asOf
}

type transitionRow struct {
	rules.Transition
	Time string
}

func (s *Server) accountPage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	v := s.find(r.Context(), id)
	setStaleness(w, s.now(), v.snaps)
	if v.state == nil {
		s.render(w, http.StatusNotFound, "missing.html", struct{ ID string }{id})
		return
	}
	st := v.state
	rs := s.View.Rules()
	d := accountData{State: st, Card: st.Scorecard, AsOf: s.asOf(v.clock), Recording: s.Recent != nil, Factors: factorRows(st.Factors)}
	if card := scorecard(rs, st.Scorecard); card != nil {
		d.Grades = card.Grades
		for _, c := range st.Caps {
			label := c
			for _, cc := range card.Caps {
				if cc.Name == c {
					label = fmt.Sprintf("%s (at most %s)", c, strconv.FormatFloat(cc.Max, 'f', -1, 64))
				}
			}
			d.Caps = append(d.Caps, label)
		}
	} else {
		d.Caps = st.Caps
	}
	d.Chart = newChart(v.history, st, d.Grades)

	var recent []rules.Transition
	if s.Recent != nil {
		recent = s.Recent.Account(id)
	}
	since := map[string]engine.FiringAlert{}
	for _, fa := range v.firing {
		since[fa.Rule] = fa
	}
	fill := func(cs []chip) []chip {
		for i := range cs {
			fa, ok := since[cs[i].Name]
			if !ok {
				continue
			}
			cs[i].Since = time.Unix(0, fa.Since).UTC().Format("2006-01-02 15:04 UTC")
			for _, t := range recent { // newest first
				if t.Rule == fa.Rule && t.ID == fa.ID && t.State == rules.PhaseFiring {
					cs[i].Message = t.Message
					break
				}
			}
		}
		return cs
	}
	r1, o1 := chips(rs, st.Alerts, false)
	r2, o2 := chips(rs, st.Suppressed, true)
	d.Risks, d.Opps = fill(append(r1, r2...)), fill(append(o1, o2...))
	for _, t := range recent {
		d.Transitions = append(d.Transitions, transitionRow{Transition: t, Time: time.Unix(0, t.Ts).UTC().Format("2006-01-02 15:04 UTC")})
	}

	for a := range rules.NumAttrs {
		d.Attrs = append(d.Attrs, metricRow{Name: rules.Attr(a).String(), Value: cmp.Or(st.Attrs[a], "—")})
	}
	for _, k := range keyMetrics {
		m, ok := rules.MetricByName(k.metric)
		if !ok {
			panic("BUG: key metric " + k.metric + " is not a metric")
		}
		val := st.Metrics[m]
		d.Key = append(d.Key, metricRow{Name: k.metric, Label: k.label, Value: formatMetric(k.metric, val), Class: metricClass(k.metric, val)})
	}
	for m := range rules.NumMetrics {
		name := rules.Metric(m).String()
		d.Metrics = append(d.Metrics, metricRow{Name: name, Value: formatMetric(name, st.Metrics[m])})
	}
	s.render(w, http.StatusOK, "account.html", d)
}

func scorecard(rs *rules.Ruleset, name string) *rules.Scorecard {
	if rs == nil {
		return nil
	}
	for _, c := range rs.Scorecards {
		if c.Name == name {
			return c
		}
	}
	if rs.Default != nil && rs.Default.Name == name {
		return rs.Default
	}
	return nil
}
