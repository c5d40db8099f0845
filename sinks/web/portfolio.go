package web

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
)

// The portfolio (GET /api/portfolio and the page /portfolio) is computed
// by the engine from the same snapshots as every other answer
// (engine.NewPortfolio), once per view: it answers as fast, says as much
// about its staleness, and counts each account once.

// portfolio returns the view's portfolio, computed on first use.
func (v *view) portfolio() *engine.Portfolio {
	v.pfOnce.Do(func() { v.pf = engine.NewPortfolio(v.snaps, v.accounts) })
	return v.pf
}

// Renewals listed where the request names no limit, and at most.
const (
	renewalsLimit    = 100
	maxRenewalsLimit = 1000
)

// num is a JSON number rounded to 6 decimals, or null.
type num float64

func (n num) MarshalJSON() ([]byte, error) {
	v := float64(n)
	if rules.IsNull(v) || math.IsInf(v, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, math.Round(v*1e6)/1e6, 'f', -1, 64), nil
}

// bookJSON is an engine.Book in the API.
type bookJSON struct {
	Accounts            int `json:"accounts"`
	ARR                 num `json:"arr"`
	ARRUnknown          int `json:"arr_unknown"`
	Graded              int `json:"graded"`
	Red                 int `json:"red"`
	RedShare            num `json:"red_share"`
	RedARR              num `json:"red_arr"`
	HighRisk            int `json:"high_risk"`
	HighRiskARR         num `json:"high_risk_arr"`
	AtRisk              int `json:"at_risk"`
	AtRiskARR           num `json:"at_risk_arr"`
	SteadilyActive      int `json:"steadily_active"`
	SteadilyActiveShare num `json:"steadily_active_share"`
}

func book(b engine.Book) bookJSON {
	return bookJSON{Accounts: b.Accounts, ARR: num(b.ARR), ARRUnknown: b.NoARR, Graded: b.Graded, Red: b.Red,
		RedShare: num(b.RedShare()), RedARR: num(b.RedARR), HighRisk: b.HighRisk, HighRiskARR: num(b.HighRiskARR),
		AtRisk: b.AtRisk, AtRiskARR: num(b.AtRiskARR), SteadilyActive: b.SteadilyActive, SteadilyActiveShare: num(b.SteadyShare())}
}

// retentionJSON is an engine.Retention in the API.
type retentionJSON struct {
	Outcomes  int `json:"outcomes"`
	Churned   int `json:"churned"`
	ARRBefore num `json:"arr_before"`
	ARRAfter  num `json:"arr_after"`
	ARRKept   num `json:"arr_kept"`
	NDR       num `json:"ndr"`
	GRR       num `json:"grr"`
	LogoChurn num `json:"logo_churn"`
}

func retention(r engine.Retention) retentionJSON {
	return retentionJSON{Outcomes: r.Outcomes, Churned: r.Churned, ARRBefore: num(r.ARRBefore), ARRAfter: num(r.ARRAfter),
		ARRKept: num(r.ARRKept), NDR: num(r.NDR()), GRR: num(r.GRR()), LogoChurn: num(r.LogoChurn())}
}

type gradeJSON struct {
	Grade string `json:"grade"`
	bookJSON
}

type segmentJSON struct {
	Segment string `json:"segment"`
	bookJSON
	Retention retentionJSON `json:"retention"`
}

type csmJSON struct {
	CSM string `json:"csm"`
	bookJSON
	Retention retentionJSON `json:"retention"`
}

type renewalJSON struct {
	AccountID     string `json:"account_id"`
	RenewalDate   string `json:"renewal_date"`
	DaysToRenewal num    `json:"days_to_renewal"`
	ARR           num    `json:"arr"`
	Score         num    `json:"score"`
	Grade         string `json:"grade"`
	Risk          num    `json:"risk"`
	Exposure      num    `json:"arr_x_risk"`
	Segment       string `json:"segment"`
	CSM           string `json:"csm"`
}

type portfolioJSON struct {
	AsOf      *string       `json:"as_of"`
	Total     bookJSON      `json:"total"`
	Grades    []gradeJSON   `json:"grades"`
	Segments  []segmentJSON `json:"segments"`
	CSMs      []csmJSON     `json:"csms"`
	Renewals  renewalsJSON  `json:"renewals"`
	Retention struct {
		Days int `json:"days"`
		retentionJSON
	} `json:"retention"`
}

type renewalsJSON struct {
	WithinDays int           `json:"within_days"`
	Due        int           `json:"due"`
	ARR        num           `json:"arr"`
	Ranked     []renewalJSON `json:"ranked"`
}

// gradeOrder is the order grades are listed in: best first, as the
// replay diff does.
var gradeOrder = []rules.Grade{rules.GradeGreen, rules.GradeYellow, rules.GradeRed, rules.GradeNone}

func portfolioOf(pf *engine.Portfolio, limit int) portfolioJSON {
	var out portfolioJSON
	if pf.Clock != 0 {
		t := time.Unix(0, pf.Clock).UTC().Format(time.RFC3339Nano)
		out.AsOf = &t
	}
	out.Total = book(pf.Total)
	for _, g := range gradeOrder {
		out.Grades = append(out.Grades, gradeJSON{g.String(), book(pf.Grades[g])})
	}
	out.Segments, out.CSMs = []segmentJSON{}, []csmJSON{}
	for _, g := range pf.Segments {
		out.Segments = append(out.Segments, segmentJSON{g.Name, book(g.Book), retention(g.Retention)})
	}
	for _, g := range pf.CSMs {
		out.CSMs = append(out.CSMs, csmJSON{g.Name, book(g.Book), retention(g.Retention)})
	}
	out.Renewals = renewalsJSON{WithinDays: engine.RenewalDays, Due: len(pf.Renewals), Ranked: []renewalJSON{}}
	var due float64
	for i, r := range pf.Renewals {
		if !rules.IsNull(r.ARR) {
			due += r.ARR
		}
		if i < limit {
			out.Renewals.Ranked = append(out.Renewals.Ranked, renewalJSON{AccountID: r.AccountID,
				RenewalDate: time.Unix(0, r.RenewalNs).UTC().Format(time.DateOnly), DaysToRenewal: num(r.DaysToRenewal),
				ARR: num(r.ARR), Score: num(r.Score), Grade: r.Grade.String(), Risk: num(r.Risk), Exposure: num(r.Exposure),
				Segment: r.Segment, CSM: r.CSM})
		}
	}
	out.Renewals.ARR = num(due)
	out.Retention.Days = engine.RetentionDays
	out.Retention.retentionJSON = retention(pf.Retention)
	return out
}

// portfolioAPI is GET /api/portfolio[?renewals=N]: the portfolio as JSON,
// with the N renewals most at stake (100 by default, at most 1000).
func (s *Server) portfolioAPI(w http.ResponseWriter, r *http.Request) {
	limit := renewalsLimit
	if q := r.URL.Query().Get("renewals"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 0 {
			http.Error(w, fmt.Sprintf("renewals %q: want a whole number ≥ 0", q), http.StatusBadRequest)
			return
		}
		limit = min(n, maxRenewalsLimit)
	}
	v := s.view(r.Context())
	setStaleness(w, s.now(), v.snaps)
	b, err := json.MarshalIndent(portfolioOf(v.portfolio(), limit), "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(b, '\n'))
}

// portfolioPage is the data of /portfolio.
type portfolioPage struct {
	AsOf      asOf
	P         *engine.Portfolio
	Grades    []gradeRow
	Renewals  []engine.Renewal // the first renewalsOnPage
	More      int              // renewals due beyond them
	DueARR    float64
	Retention engine.Retention
}

type gradeRow struct {
	Grade string
	engine.Book
}

// renewalsOnPage bounds the renewals the page lists.
const renewalsOnPage = 50

func (s *Server) portfolioPage(w http.ResponseWriter, r *http.Request) {
	v := s.view(r.Context())
	setStaleness(w, s.now(), v.snaps)
	pf := v.portfolio()
	d := portfolioPage{AsOf: s.asOf(v.clock()), P: pf, Renewals: pf.Renewals[:min(len(pf.Renewals), renewalsOnPage)]}
	d.More = len(pf.Renewals) - len(d.Renewals)
	for _, g := range gradeOrder {
		d.Grades = append(d.Grades, gradeRow{g.String(), pf.Grades[g]})
	}
	for _, r := range pf.Renewals {
		if !rules.IsNull(r.ARR) {
			d.DueARR += r.ARR
		}
	}
	s.render(w, http.StatusOK, "portfolio.html", d)
}

// groupTable is a table of segments or CSMs on the page; Key is the
// filter of the status page that lists a group's accounts.
type groupTable struct {
	Title, Key string
	Groups     []engine.Group
}

// money writes an amount of ARR: $1,234,567, or — when unknown.
func money(v float64) string {
	if rules.IsNull(v) {
		return "—"
	}
	return "$" + thousands(v)
}

// percent writes a share: 66.7%, or — when null.
func percent(v float64) string {
	if rules.IsNull(v) {
		return "—"
	}
	return strconv.FormatFloat(v*100, 'f', 1, 64) + "%"
}
