package web

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
)

// The history fixture: 40 days of usage, from 2026-10-16 to the end of
// 2026-11-24, for accounts whose stories the pages must tell.
var (
	histStart = time.Date(2026, 10, 16, 0, 0, 0, 0, time.UTC)
	histEnd   = histStart.AddDate(0, 0, 40).Add(-time.Hour) // 2026-11-24 23:00
)

// historyEvents writes the fixture as JSONL:
//   - acme (strategic, li, 10 seats): 8 users on the core modules every
//     day, then from day 30 only one: its score falls to red, churn_risk
//     (high) and score_falling (low) fire, and churn_risk silences
//     usage_drop (medium);
//   - globex (normal, sam, 5 seats, stable): every seat in use on the core
//     modules every day, touched by its CSM every fortnight: green, with
//     the seats_full opportunity;
//   - initech (micro, li, 10 seats): five users for 10 days, then nothing:
//     gone_dark, which silences churn_risk.
//
// The rules are testdata/rules.yaml.
func historyEvents() []string {
	var out []string
	add := func(t time.Time, format string, a ...any) {
		out = append(out, fmt.Sprintf(`{"ts":%q,`, t.Format(time.RFC3339))+fmt.Sprintf(format, a...))
	}
	add(histStart, `"account_id":"acme","type":"account","attrs":{"seats":10,"segment":"strategic","csm":"li","stage":"stable","renewal_date":"2027-06-01"}}`)
	add(histStart, `"account_id":"acme","type":"contract","arr":120000}`)
	add(histStart, `"account_id":"globex","type":"account","attrs":{"seats":5,"segment":"normal","csm":"sam","stage":"stable"}}`)
	add(histStart, `"account_id":"initech","type":"account","attrs":{"seats":10,"segment":"micro","csm":"li","stage":"stable"}}`)
	for day := range 40 {
		at := histStart.AddDate(0, 0, day)
		users := 8
		if day >= 30 {
			users = 1
		}
		for u := range users {
			add(at.Add(9*time.Hour), `"account_id":"acme","type":"login","user_id":"a%d"}`, u)
			add(at.Add(10*time.Hour), `"account_id":"acme","type":"feature","user_id":"a%d","module":%q}`, u, []string{"pipeline", "reports", "approvals"}[(u+day)%3])
		}
		for u := range 5 {
			add(at.Add(9*time.Hour), `"account_id":"globex","type":"login","user_id":"g%d"}`, u)
			for _, m := range []string{"pipeline", "reports", "approvals", "contacts"} {
				add(at.Add(10*time.Hour), `"account_id":"globex","type":"feature","user_id":"g%d","module":%q}`, u, m)
			}
		}
		add(at.Add(11*time.Hour), `"account_id":"globex","type":"api","count":40}`)
		if day%14 == 0 {
			add(at.Add(12*time.Hour), `"account_id":"globex","type":"touch","channel":"call"}`)
			add(at.Add(12*time.Hour), `"account_id":"acme","type":"touch","channel":"qbr"}`)
		}
		if day < 10 {
			for u := range 5 {
				add(at.Add(9*time.Hour), `"account_id":"initech","type":"login","user_id":"i%d"}`, u)
			}
		}
	}
	return out
}

// historyServer feeds the fixture to two partitions (advanced to its end,
// as idle partitions follow the wall clock) and hands their transitions
// to a Recent store, twice: the engine retries a batch whole.
func historyServer(t *testing.T, now time.Time) (*httptest.Server, *Recent) {
	t.Helper()
	data, err := os.ReadFile("testdata/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Load("testdata/rules.yaml", data, rules.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	src := &partitions{rs: rs, now: func() time.Time { return now }}
	for i := range 2 {
		src.parts = append(src.parts, engine.NewPartition(int32(i), rs, engine.Config{}))
	}
	var d engine.Decoder
	var ev engine.Event
	for _, l := range historyEvents() {
		if r := d.Decode([]byte(l), &ev); r != engine.ReasonOK {
			t.Fatalf("%s: %s", l, r)
		}
		src.parts[engine.PartitionOf(ev.Account, 2)].Apply(&ev, 0)
	}
	recent := NewRecent(0, 0)
	for _, p := range src.parts {
		p.AdvanceTo(histEnd.UnixNano())
		b := &engine.Batch{Partition: p.ID(), Transitions: p.TakeTransitions()}
		for range 2 {
			if err := recent.Write(context.Background(), b); err != nil {
				t.Fatal(err)
			}
		}
	}
	ts := httptest.NewServer((&Server{View: src, Recent: recent, Now: func() time.Time { return now }}).Handler())
	t.Cleanup(ts.Close)
	return ts, recent
}

func TestHistoryEndpoint(t *testing.T) {
	ts, _ := historyServer(t, histEnd)
	code, h, body := get(t, ts.URL+"/api/accounts/acme/history")
	if code != 200 || h.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %v\n%s", code, h, body)
	}
	var points []struct {
		Date  string   `json:"date"`
		Score *float64 `json:"score"`
		Grade string   `json:"grade"`
	}
	if err := json.Unmarshal([]byte(body), &points); err != nil {
		t.Fatalf("not a JSON array of points: %v\n%s", err, body)
	}
	// One point per midnight the account was scored at: its first event
	// came at midnight on Oct 16, its last day is Nov 24.
	if len(points) != 40 || points[0].Date != "2026-10-16" || points[len(points)-1].Date != "2026-11-24" {
		t.Fatalf("%d points, %+v … %+v", len(points), points[0], points[len(points)-1])
	}
	var nulls, graded int
	for i, p := range points {
		if i > 0 && p.Date <= points[i-1].Date {
			t.Fatalf("not oldest first: %s after %s", p.Date, points[i-1].Date)
		}
		switch {
		case p.Score == nil && p.Grade == "none":
			nulls++
		case p.Score != nil && p.Grade != "none":
			graded++
		default:
			t.Fatalf("%s: score %v with grade %s", p.Date, p.Score, p.Grade)
		}
	}
	// Unscored for the scorecard's 3 days of warm-up, then graded; the
	// score falls once seven of the eight users stop.
	if nulls == 0 || graded == 0 || points[0].Score != nil {
		t.Fatalf("%d null points, %d graded: %s", nulls, graded, body)
	}
	if before, after := *points[29].Score, *points[len(points)-1].Score; after >= before-20 {
		t.Fatalf("acme's score went from %v (day 30) to %v: want a fall", before, after)
	}
	if code, _, _ := get(t, ts.URL+"/api/accounts/nobody/history"); code != 404 {
		t.Fatalf("unknown account: %d, want 404", code)
	}
}

// rows returns the status page's accounts in page order, as
// "id:grade:score".
func rows(body string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`<tr class="account" data-account="([^"]*)" data-grade="([^"]*)" data-score="([^"]*)">`).FindAllStringSubmatch(body, -1) {
		out = append(out, m[1]+":"+m[2]+":"+m[3])
	}
	return out
}

func TestStatusPageListsRiskiestFirstWithRisksApartFromOpportunities(t *testing.T) {
	ts, _ := historyServer(t, histEnd.Add(time.Minute))
	code, _, body := get(t, ts.URL+"/")
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	got := rows(body)
	if len(got) != 3 || !strings.HasPrefix(got[0], "initech:red:") || !strings.HasPrefix(got[2], "globex:green:") {
		t.Fatalf("rows %v: want initech (red, dark) first and globex (green) last", got)
	}
	for _, want := range []string{
		`href="/accounts/initech"`,
		`class="chip risk sev-high" title="high-severity risk">gone_dark</span>`,
		`class="chip opportunity sev-medium" title="medium-severity opportunity">seats_full</span>`,
		`<th>Risks</th><th>Opportunities</th>`,
		`+1 silenced`, // acme's usage_drop, inhibited by churn_risk
		`Accounts 1–3 of 3, riskiest first.`,
		`as of <b>2026-11-24 23:00:00 UTC</b>`,
		`<svg class="spark"`,
		`<option>sam</option>`, `<option>li</option>`, // the form lists the CSMs
		`<optgroup label="Opportunities">`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	// Risk chips sit in the risks column, opportunity chips in the other.
	for _, r := range regexp.MustCompile(`(?s)<tr class="account".*?</tr>`).FindAllString(body, -1) {
		cells := regexp.MustCompile(`(?s)<td>(.*?)</td>`).FindAllStringSubmatch(r, -1)
		risks, opps := cells[len(cells)-4][1], cells[len(cells)-3][1]
		if strings.Contains(risks, "chip opportunity") || strings.Contains(opps, "chip risk") {
			t.Errorf("an alert in the wrong column:\nrisks %s\nopportunities %s", risks, opps)
		}
	}
	if strings.Contains(body, "Catching up") {
		t.Error("banner with the clock a minute behind")
	}
	// Filters, and a filter that matches nothing.
	if _, _, body := get(t, ts.URL+"/?csm=sam&grade=green"); len(rows(body)) != 1 || !strings.HasPrefix(rows(body)[0], "globex:") ||
		!strings.Contains(body, "Accounts 1–1 of 1 matching the filter (3 in all)") || !strings.Contains(body, "<option selected>sam</option>") {
		t.Errorf("csm+grade filter: %v", rows(body))
	}
	if _, _, body := get(t, ts.URL+"/?alert=seats_full"); len(rows(body)) != 1 || !strings.HasPrefix(rows(body)[0], "globex:") {
		t.Errorf("alert filter: %v", rows(body))
	}
	if _, _, body := get(t, ts.URL+"/?segment=enterprise"); len(rows(body)) != 0 || !strings.Contains(body, "No account matches the filter.") {
		t.Errorf("a filter that matches nothing: %v", rows(body))
	}
	if code, _, _ := get(t, ts.URL+"/?grade=purple"); code != 400 {
		t.Errorf("bad grade: %d, want 400", code)
	}
}

func TestStatusPagePaginates(t *testing.T) {
	ts, _ := historyServer(t, histEnd)
	all := rows(func() string { _, _, b := get(t, ts.URL+"/"); return b }())
	var seen []string
	for offset := range 3 {
		_, _, body := get(t, ts.URL+fmt.Sprintf("/?csm=&limit=1&offset=%d", offset))
		page := rows(body)
		if len(page) != 1 {
			t.Fatalf("offset %d: %v", offset, page)
		}
		seen = append(seen, page[0])
		if want := fmt.Sprintf("Accounts %d–%d of 3,", offset+1, offset+1); !strings.Contains(body, want) {
			t.Errorf("offset %d: no %q", offset, want)
		}
		hasPrev, hasNext := strings.Contains(body, `rel="prev"`), strings.Contains(body, `rel="next"`)
		if hasPrev != (offset > 0) || hasNext != (offset < 2) {
			t.Errorf("offset %d: prev %v next %v", offset, hasPrev, hasNext)
		}
		if offset == 0 && !strings.Contains(body, `<a rel="next" href="/?limit=1&amp;offset=1">`) {
			t.Errorf("the next link does not keep the query:\n%s", body[strings.Index(body, "<nav"):])
		}
		if !strings.Contains(body, fmt.Sprintf(`<span class="current" aria-current="page">%d</span>`, offset+1)) {
			t.Errorf("offset %d: not marked as the current page", offset)
		}
	}
	if strings.Join(seen, " ") != strings.Join(all, " ") {
		t.Fatalf("pages %v, all %v", seen, all)
	}
}

func TestPageCatchingUpBanner(t *testing.T) {
	ts, _ := historyServer(t, histEnd.Add(CatchUpLag+time.Second))
	for _, path := range []string{"/", "/accounts/acme"} {
		_, _, body := get(t, ts.URL+path)
		if !strings.Contains(body, `id="catching-up"`) || !strings.Contains(body, "5m behind the wall clock (more than 5m0s)") {
			t.Errorf("%s: no catching-up banner", path)
		}
	}
	ts, _ = historyServer(t, histEnd.Add(CatchUpLag))
	if _, _, body := get(t, ts.URL+"/"); strings.Contains(body, `id="catching-up"`) {
		t.Error("banner at exactly the threshold")
	}
}

func TestAccountView(t *testing.T) {
	ts, _ := historyServer(t, histEnd)
	code, _, body := get(t, ts.URL+"/accounts/acme")
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	// The chart: one point per recorded midnight, coloured by grade, and
	// the bands of the strategic scorecard.
	if n := strings.Count(body, `<circle class="pt g-`); n != 40 {
		t.Errorf("%d chart points, want 40", n)
	}
	for _, want := range []string{
		`<svg class="chart" id="history"`, `<polyline points="`, `class="pt g-none"`, `class="pt g-green"`, `class="pt g-red"`, `class="band g-yellow"`,
		`scorecard <b>strategic</b>`,
		// Alerts, with severity, the message of their firing transition,
		// and the suppressed one marked.
		`<tr class="alert risk sev-high">`, `>churn_risk</span>`, `of activated users log in on a typical day`,
		`<tr class="alert risk sev-low">`, `>score_falling</span>`,
		`<tr class="alert risk sev-medium">`, `class="chip risk sev-medium suppressed"`, `>usage_drop</span> <span class="tag">silenced</span>`,
		// Factors, costliest first and marked.
		`<table id="factors">`, `<span class="tag">costs most</span>`,
		// Key metrics.
		`data-metric="score_change_7d"`, `data-metric="score_change_30d"`, `data-metric="grade_days"`, `data-metric="arr">$120,000<`,
		// Recent transitions and the attributes.
		`<tr class="transition risk sev-high">`, `<th>csm</th><td>li</td>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the account view lacks %s", want)
		}
	}
	factors := regexp.MustCompile(`<tr class="factor( costliest)?">\s*<td>([a-z_]+)`).FindAllStringSubmatch(body, -1)
	if len(factors) == 0 || factors[0][1] == "" {
		t.Fatalf("factors %v: the first is not marked costliest", factors)
	}
	var costs []float64
	for _, m := range regexp.MustCompile(`<td class="num">(?:−([0-9.]+)|0)</td>\n</tr>`).FindAllStringSubmatch(body, -1) {
		v, _ := strconv.ParseFloat(cmp.Or(m[1], "0"), 64)
		costs = append(costs, v)
	}
	if len(costs) < 4 || !slices.IsSortedFunc(costs, func(a, b float64) int { return cmp.Compare(b, a) }) || costs[0] < 10 {
		t.Errorf("factor costs %v: want the costliest first", costs)
	}
	if m := regexp.MustCompile(`data-metric="score_change_7d">([^<]*)<`).FindStringSubmatch(body); m == nil || !strings.HasPrefix(m[1], "-") {
		t.Errorf("score_change_7d %v: want a fall", m)
	}

	// Each transition once, though its batch came twice.
	trs := regexp.MustCompile(`(?s)<tr class="transition.*?</tr>`).FindAllString(body, -1)
	if len(trs) == 0 || len(trs) != len(slices.Compact(slices.Sorted(slices.Values(trs)))) {
		t.Errorf("transitions %q", trs)
	}
	code, _, body = get(t, ts.URL+"/accounts/globex")
	if code != 200 || !strings.Contains(body, `<tr class="alert opportunity sev-medium">`) || !strings.Contains(body, `class="grade green" id="grade"`) {
		t.Errorf("globex: %d, want its opportunity and grade", code)
	}
	if code, h, body := get(t, ts.URL+"/accounts/nobody"); code != 404 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") || !strings.Contains(body, "No account “nobody”") {
		t.Errorf("unknown account: %d", code)
	}
}
