package web

import (
	"bytes"
	"cmp"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
)

// CatchUpLag is how far the partitions' clock may trail the wall clock
// before the pages say Pulse is catching up: what they show is then the
// state of an earlier time (a backlog, a restart, a replay of history).
// Live, the clock trails by the time events take to arrive and be applied,
// and an idle partition's clock follows the wall clock, so the lag stays
// far under it.
const CatchUpLag = 5 * time.Minute

// pageLimit is the status page's page size when the query names none.
const pageLimit = 50

// clock is the event time the partitions have reached.
type clock struct {
	oldest int64 // Unix ns: the earliest clock of the partitions that hold accounts; 0 if none
}

// asOf is the "as of" line of a page: the clock of the partition furthest
// behind (every account is at least that current), and how far it trails
// the wall clock.
type asOf struct {
	Known      bool
	Time       string
	Behind     string // the lag, rounded for reading
	CatchingUp bool   // behind by more than CatchUpLag
	Threshold  string
}

func (s *Server) asOf(c clock) asOf {
	now := s.now
	a := asOf{Threshold: CatchUpLag.String()}
	if c.oldest == 0 {
		return a
	}
	a.Known = true
	a.Time = time.Unix(0, c.oldest).UTC().Format("2006-01-02 15:04:05 UTC")
	lag := now().Sub(time.Unix(0, c.oldest))
	a.CatchingUp = lag > CatchUpLag
	if lag > 0 {
		a.Behind = roundLag(lag)
	}
	return a
}

// roundLag writes a lag the way a person says it: 3d 4h, 2h 5m, 40s.
func roundLag(d time.Duration) string {
	switch {
	case d >= 24*time.Hour:
		return fmt.Sprintf("%dd %dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%dh %dm", d/time.Hour, d%time.Hour/time.Minute)
	case d >= time.Minute:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}

// chip is one alert as a page shows it: its name coloured by severity.
type chip struct {
	Name     string
	Severity string // high | medium | low
	Kind     string // risk | opportunity
	Message  string
	Since    string
	// Suppressed: firing, but silenced by an inhibiting alert.
	Suppressed bool
}

// chips splits firing alerts into risks and opportunities, most severe
// first, by the kinds of the current rules (an alert the rules no longer
// name counts as a medium risk).
func chips(rs *rules.Ruleset, names []string, suppressed bool) (risks, opps []chip) {
	for _, n := range names {
		c := chip{Name: n, Severity: rules.SeverityMedium.String(), Kind: rules.KindRisk.String(), Suppressed: suppressed}
		if a := alertRule(rs, n); a != nil {
			c.Severity, c.Kind = a.Severity.String(), a.Kind.String()
		}
		if c.Kind == rules.KindOpportunity.String() {
			opps = append(opps, c)
		} else {
			risks = append(risks, c)
		}
	}
	bySeverity := func(a, b chip) int { return cmp.Compare(severityRank(a.Severity), severityRank(b.Severity)) }
	slices.SortStableFunc(risks, bySeverity)
	slices.SortStableFunc(opps, bySeverity)
	return risks, opps
}

// severityRank orders severities by name, the highest first.
func severityRank(name string) int {
	for s := range rules.NumSeverities {
		if rules.Severity(s).String() == name {
			return rules.NumSeverities - 1 - s
		}
	}
	return rules.NumSeverities
}

func alertRule(rs *rules.Ruleset, name string) *rules.Alert {
	if rs == nil {
		return nil
	}
	for _, a := range rs.Alerts {
		if a.Name == name {
			return a
		}
	}
	return nil
}

// row is one account of the status page.
type row struct {
	*engine.AccountState
	Risks, Opportunities []chip
	Spark                spark
}

// pageLink is one link of the pagination bar.
type pageLink struct {
	Label   string
	URL     string // "" for the current page and gaps
	Current bool
}

type pageData struct {
	Form struct { // the filter, for the form
		Grade, Segment, CSM, Alert string
		Limit                      int
	}
	GradeNames []string
	Rows       []row
	Total      int // matching the filter
	From, To   int // 1-based range of Rows in the matching accounts
	Pages      []pageLink
	Prev       string
	Next       string
	All        int
	Grades     map[string]int
	Firing     int
	AsOf       asOf
	Segments   []string // in the data, for the filter form
	CSMs       []string
	AlertKind  map[string][]string // rule names by kind, for the filter form
	Limits     []int
}

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilter(r, pageLimit)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if f.limit == 0 {
		f.limit = pageLimit
	}
	v := s.view(r.Context())
	setStaleness(w, s.now(), v.snaps)
	rs := s.View.Rules()
	d := pageData{GradeNames: gradeNames(), All: len(v.accounts), Grades: map[string]int{}, AsOf: s.asOf(v.clock()),
		AlertKind: map[string][]string{}, Limits: []int{25, 50, 100, 200}}
	if !slices.Contains(d.Limits, f.limit) {
		d.Limits = append(d.Limits, f.limit)
		slices.Sort(d.Limits)
	}
	d.Form.Grade, d.Form.Segment, d.Form.CSM, d.Form.Alert, d.Form.Limit = f.grade, f.segment, f.csm, f.alert, f.limit
	segments, csms := map[string]bool{}, map[string]bool{}
	var matching []*engine.MergedAccount
	for i := range v.accounts {
		st := &v.accounts[i].State
		d.Grades[st.Grade.String()]++
		d.Firing += len(st.Alerts)
		segments[st.Attrs[rules.Segment]] = true
		csms[st.Attrs[rules.CSM]] = true
		if f.match(st) {
			matching = append(matching, &v.accounts[i])
		}
	}
	d.Segments, d.CSMs = sortedKeys(segments, f.segment), sortedKeys(csms, f.csm)
	if rs != nil {
		for _, a := range rs.Alerts {
			d.AlertKind[a.Kind.String()] = append(d.AlertKind[a.Kind.String()], a.Name)
		}
	}
	d.Total = len(matching)
	start, end := min(f.offset, d.Total), min(f.offset+f.limit, d.Total)
	if start < end {
		d.From, d.To = start+1, end
	}
	d.Prev, d.Next, d.Pages = paginate(r.URL.Query(), f, d.Total)

	for _, a := range matching[start:end] {
		rw := row{AccountState: &a.State, Spark: newSpark(a.Snapshot.History(a.SnapshotAccount), 30)}
		rw.Risks, rw.Opportunities = chips(rs, a.State.Alerts, false)
		d.Rows = append(d.Rows, rw)
	}
	s.render(w, http.StatusOK, "page.html", d)
}

// sortedKeys returns the non-empty keys, sorted, with keep among them.
func sortedKeys(m map[string]bool, keep string) []string {
	if keep != "" {
		m[keep] = true
	}
	var out []string
	for k := range m {
		if k != "" {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// paginate builds the previous and next links and a bar of page numbers
// (the first, the last and two either side of the current one) for total
// matching accounts, keeping the rest of the query.
func paginate(q url.Values, f filter, total int) (prev, next string, pages []pageLink) {
	at := func(offset int) string {
		v := url.Values{}
		for k, vs := range q {
			if k != "offset" && len(vs) > 0 && vs[0] != "" {
				v.Set(k, vs[0])
			}
		}
		if offset > 0 {
			v.Set("offset", strconv.Itoa(offset))
		}
		if len(v) == 0 {
			return "/"
		}
		return "/?" + v.Encode()
	}
	if f.offset > 0 {
		prev = at(max(f.offset-f.limit, 0))
	}
	if f.offset+f.limit < total {
		next = at(f.offset + f.limit)
	}
	n := (total + f.limit - 1) / f.limit
	cur := f.offset / f.limit
	if n <= 1 {
		return prev, next, nil
	}
	gap := false
	for i := range n {
		if i != 0 && i != n-1 && (i < cur-2 || i > cur+2) {
			if !gap {
				pages = append(pages, pageLink{Label: "…"})
			}
			gap = true
			continue
		}
		gap = false
		l := pageLink{Label: strconv.Itoa(i + 1), Current: i == cur && f.offset%f.limit == 0}
		if !l.Current {
			l.URL = at(i * f.limit)
		}
		pages = append(pages, l)
	}
	return prev, next, pages
}

//go:embed page.html account.html common.html portfolio.html
var templateFS embed.FS

var templates = template.Must(template.New("").Funcs(template.FuncMap{
	"score": func(v float64) string {
		if !rules.IsFinite(v) {
			return "—"
		}
		return strconv.FormatFloat(v, 'f', 0, 64)
	},
	"usageTrend": func(s *engine.AccountState) string {
		v := s.Metrics[rules.UsageChange7d]
		switch {
		case !rules.IsFinite(v):
			return "—"
		case v > 0.05:
			return fmt.Sprintf("▲ %.0f%%", v*100)
		case v < -0.05:
			return fmt.Sprintf("▼ %.0f%%", -v*100)
		}
		return "▬ flat"
	},
	"change":     change,
	"changeDir":  changeDir,
	"worst":      worstFactor,
	"pathEscape": url.PathEscape,
	"attr": func(s *engine.AccountState, name string) string {
		a, _ := rules.AttrByName(name)
		return s.Attrs[a]
	},
	"metric": func(s *engine.AccountState, name string) float64 {
		m, ok := rules.MetricByName(name)
		if !ok {
			panic("BUG: no metric " + name)
		}
		return s.Metrics[m]
	},
	"fmtMetric": formatMetric,
	"money":     money,
	"percent":   percent,
	"date":      func(ns int64) string { return time.Unix(0, ns).UTC().Format(time.DateOnly) },
	"inc":       func(i int) int { return i + 1 },
	"groups": func(title, key string, g []engine.Group) groupTable {
		return groupTable{Title: title, Key: key, Groups: g}
	},
	"steadyDays":    func() int { return engine.SteadyDays },
	"renewalDays":   func() int { return engine.RenewalDays },
	"retentionDays": func() int { return engine.RetentionDays },
	"scoreRaw": func(v float64) string { // exact, for scripts and tests
		if !rules.IsFinite(v) {
			return ""
		}
		return strconv.FormatFloat(v, 'f', -1, 64)
	},
}).ParseFS(templateFS, "*.html"))

// change writes a score change in points: +4, −12, or — when null.
func change(v float64) string {
	switch {
	case !rules.IsFinite(v):
		return "—"
	case v >= 0.5:
		return fmt.Sprintf("▲ %.0f", v)
	case v <= -0.5:
		return fmt.Sprintf("▼ %.0f", -v)
	}
	return "▬ 0"
}

// changeDir is the CSS class of a score change.
func changeDir(v float64) string {
	switch {
	case !rules.IsFinite(v):
		return "muted"
	case v >= 0.5:
		return "up"
	case v <= -0.5:
		return "down"
	}
	return "flat"
}

// worstFactor names the factor that costs the account most points.
func worstFactor(s *engine.AccountState) string {
	worst := rules.Costliest(s.Factors, 1)
	if len(worst) == 0 {
		return "—"
	}
	return fmt.Sprintf("%s (%.0f/100)", worst[0].Name, worst[0].Points)
}

// render executes a page into memory first, so a failing template
// answers 500 rather than half a page.
func (s *Server) render(w http.ResponseWriter, code int, name string, data any) {
	var b bytes.Buffer
	if err := templates.ExecuteTemplate(&b, name, data); err != nil {
		if s.Log != nil {
			s.Log.Error("BUG: page template", "template", name, "err", err)
		}
		http.Error(w, "the page could not be rendered: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write(b.Bytes())
}
