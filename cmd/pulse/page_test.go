package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The status page and an account view, rendered by a real browser
// (headless Chromium), show the accounts the embedded default scores: the
// riskiest first, risks apart from opportunities, pages, and per account
// a score-history chart, the factors and the alerts with their severity.
// The portfolio page shows the book, as /api/portfolio has it. The
// screenshots are kept in the test's directory (and copied to
// $PULSE_SCREENSHOT, $PULSE_SCREENSHOT_ACCOUNT and
// $PULSE_SCREENSHOT_PORTFOLIO if set).
func TestStatusPageInChromium(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("PULSE_REQUIRE_BROWSER") != "" {
			t.Fatal("chromium is not installed; ./scripts/test.sh installs it")
		}
		t.Skip("chromium is not installed; ./scripts/test.sh installs it and makes this test required")
	}
	rs := loadExampleRules(t)
	severity := map[string]string{}
	for _, a := range rs.Alerts {
		severity[a.Name] = a.Kind.String() + " sev-" + a.Severity.String()
	}

	dir := t.TempDir()
	port, kport := freePort(t), freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	// 21 days of history replayed fast: the accounts are scored through
	// 21 UTC midnights, so each has a daily score history. Partitions
	// without events follow the wall clock after 2s (not a minute), so
	// the catch-up ends soon after the replay.
	cfg := writeConfig(t, dir, fmt.Sprintf(`
listen: 127.0.0.1:%d
rules: %s
engine: {idle_advance: 2s}
embedded: {listen: 127.0.0.1:%d, demo: {enabled: true, accounts: 40, history_days: 21, speed: 200000}}
checkpoint: {dir: %s}
output: {transitions_file: ""}
`, port, exampleRules, kport, filepath.Join(dir, "ckpt")))
	d := startPulse(t, "run", "--config", cfg)
	var accounts []struct {
		ID string `json:"account_id"`
	}
	waitUntil(t, "40 scored accounts", 60*time.Second, func() bool {
		_, body := httpGet(base + "/api/accounts?limit=1000")
		return json.Unmarshal(body, &accounts) == nil && len(accounts) == 40
	})
	// The demo replays its history, then goes live: while it replays, the
	// pages say they are catching up; wait until the partitions' clock has
	// caught up with the wall clock.
	if _, body := httpGet(base + "/"); !strings.Contains(string(body), `id="catching-up"`) {
		t.Fatalf("no catching-up banner while the demo replays 21 days:\n%s", body)
	}
	waitUntil(t, "the catch-up", 90*time.Second, func() bool {
		_, body := httpGet(base + "/")
		return strings.Contains(string(body), `id="as-of"`) && !strings.Contains(string(body), `id="catching-up"`)
	})

	browse := func(path string, args ...string) string {
		t.Helper()
		args = append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
			"--disable-component-update", "--disable-sync", "--no-first-run", "--user-data-dir=" + t.TempDir()}, args...)
		out, err := exec.Command(chromium, append(args, base+path)...).Output()
		if err != nil {
			t.Fatalf("chromium %v %s: %v\n%s", args, path, err, d.output())
		}
		return string(out)
	}
	screenshot := func(path, name, env string) {
		t.Helper()
		shot := filepath.Join(dir, name)
		browse(path, "--screenshot="+shot, "--window-size=1400,1800", "--hide-scrollbars")
		info, err := os.Stat(shot)
		if err != nil || info.Size() < 20_000 {
			t.Fatalf("screenshot %s: %v (%d bytes)", shot, err, sizeOf(info))
		}
		if dst := os.Getenv(env); dst != "" {
			data, _ := os.ReadFile(shot)
			os.WriteFile(dst, data, 0o644)
		}
		t.Logf("screenshot of %s: %s (%d bytes)", path, shot, info.Size())
	}

	// The list: every account, riskiest first.
	dom := browse("/", "--dump-dom")
	if !strings.Contains(dom, "Pulse — account health") || !strings.Contains(dom, "Scores as of <b>") {
		t.Fatalf("not the status page:\n%.500s", dom)
	}
	list := pageRows(t, dom)
	if len(list) != 40 || !strings.Contains(dom, "Accounts 1–40 of 40, riskiest first.") {
		t.Fatalf("the page lists %d accounts, want 40", len(list))
	}
	for i := 1; i < len(list); i++ {
		if riskier(list[i], list[i-1]) {
			t.Fatalf("%v is listed after %v, which is less at risk", list[i], list[i-1])
		}
	}
	if !strings.Contains(dom, `<th>Risks</th><th>Opportunities</th>`) || !strings.Contains(dom, `<form class="filters" method="get" action="/">`) {
		t.Fatal("no risk and opportunity columns, or no filter form")
	}
	if n := strings.Count(dom, `href="/accounts/`); n != 40 {
		t.Fatalf("%d links to account views, want 40", n)
	}
	screenshot("/", "status.png", "PULSE_SCREENSHOT")

	// The second of three pages.
	page := browse("/?limit=15&offset=15", "--dump-dom")
	if rows := pageRows(t, page); len(rows) != 15 || !strings.Contains(page, "Accounts 16–30 of 40") ||
		!strings.Contains(page, `rel="prev"`) || !strings.Contains(page, `rel="next"`) {
		t.Fatalf("page 2: %d rows\n%s", len(rows), page[strings.Index(page, `<p class="count"`):][:300])
	}

	// An account with a firing alert: its view has the chart, the factors
	// and the alert in its severity's colours. (The stream is live: an
	// alert may resolve between the API's answer and the page.)
	var alerts []struct {
		Account string `json:"account_id"`
		Rule    string `json:"rule"`
	}
	if _, body := httpGet(base + "/api/alerts"); json.Unmarshal(body, &alerts) != nil || len(alerts) == 0 {
		t.Fatalf("no firing alerts: %s", body)
	}
	var view, id string
	for _, a := range alerts[:min(len(alerts), 5)] {
		id = a.Account
		var history []struct {
			Date  string   `json:"date"`
			Score *float64 `json:"score"`
		}
		code, body := httpGet(base + "/api/accounts/" + id + "/history")
		if code != 200 || json.Unmarshal(body, &history) != nil {
			t.Fatalf("history of %s: %d %s", id, code, body)
		}
		if len(history) < 14 {
			t.Fatalf("history of %s: %d days, want one per midnight of the demo's 21 days\n%s", id, len(history), body)
		}
		view = browse("/accounts/"+id, "--dump-dom")
		if strings.Contains(view, `<tr class="alert `) {
			break
		}
	}
	if n := strings.Count(view, `<circle class="pt g-`); !strings.Contains(view, `<svg class="chart" id="history"`) || n < 14 {
		t.Fatalf("%s: no chart, or %d points, want one per recorded midnight", id, n)
	}
	if !strings.Contains(view, `<polyline points="`) {
		t.Fatalf("%s: the chart draws no line", id)
	}
	if !strings.Contains(view, `<table id="factors">`) || strings.Count(view, `<tr class="factor`) < 5 || !strings.Contains(view, "costs most") {
		t.Fatalf("%s: no factors table", id)
	}
	shown := regexp.MustCompile(`<tr class="alert ([a-z]+ sev-[a-z]+)">\s*<td><span class="chip [^"]*"[^>]*>([a-z0-9_]+)</span>`).FindAllStringSubmatch(view, -1)
	if len(shown) == 0 {
		t.Fatalf("%s: no firing alert shown", id)
	}
	for _, m := range shown {
		if severity[m[2]] != m[1] {
			t.Errorf("%s: %s shown as %q, the rules say %q", id, m[2], m[1], severity[m[2]])
		}
		// Pulse started empty: the alert's firing transition was seen,
		// and its message is shown.
		if !regexp.MustCompile(`(?s)<tr class="transition ` + m[1] + `">.{0,120}>` + m[2] + `</span>`).MatchString(view) {
			t.Errorf("%s: %s is not among the recent transitions", id, m[2])
		}
	}
	for _, metric := range []string{"score_change_7d", "score_change_30d", "grade_days"} {
		if !strings.Contains(view, `data-metric="`+metric+`"`) {
			t.Errorf("%s: no %s among the key metrics", id, metric)
		}
	}
	screenshot("/accounts/"+id, "account.png", "PULSE_SCREENSHOT_ACCOUNT")

	// The portfolio: the headline figures, the book by grade, segment and
	// CSM, and the renewals due ranked by ARR × risk, as the API has them.
	var pf struct {
		Total struct {
			Accounts int `json:"accounts"`
		} `json:"total"`
		Segments []struct {
			Segment string `json:"segment"`
		} `json:"segments"`
		Renewals struct {
			Due    int `json:"due"`
			Ranked []struct {
				ID string `json:"account_id"`
			} `json:"ranked"`
		} `json:"renewals"`
	}
	if code, body := httpGet(base + "/api/portfolio"); code != 200 || json.Unmarshal(body, &pf) != nil || pf.Total.Accounts != 40 || len(pf.Segments) == 0 {
		t.Fatalf("/api/portfolio: %d %s", code, body)
	}
	if pf.Renewals.Due == 0 {
		t.Fatal("/api/portfolio: no renewal due in 90 days among the demo's 40 accounts")
	}
	folio := browse("/portfolio", "--dump-dom")
	if !strings.Contains(folio, "Pulse — portfolio") || !strings.Contains(folio, `<div class="cards" id="headline">`) {
		t.Fatalf("not the portfolio page:\n%.500s", folio)
	}
	if n := strings.Count(folio, `<tr class="grade-row"`); n != 4 {
		t.Errorf("the portfolio lists %d grades, want 4", n)
	}
	if n := strings.Count(folio, `<tr class="group"`); n < len(pf.Segments)+1 {
		t.Errorf("the portfolio lists %d segments and CSMs, want at least %d segments and a CSM", n, len(pf.Segments))
	}
	var ranked []string
	for _, m := range regexp.MustCompile(`<tr class="renewal" data-account="([^"]+)">`).FindAllStringSubmatch(folio, -1) {
		ranked = append(ranked, m[1])
	}
	// The stream is live: a score may move between the two reads, and
	// with it the order; the accounts due are the same.
	if len(ranked) != min(pf.Renewals.Due, 50) {
		t.Errorf("the portfolio ranks %d renewals, the API %d", len(ranked), pf.Renewals.Due)
	}
	screenshot("/portfolio", "portfolio.png", "PULSE_SCREENSHOT_PORTFOLIO")
}

// listed is one row of the status page.
type listed struct {
	id, grade string
	score     float64 // NaN when null
}

func pageRows(t *testing.T, dom string) []listed {
	t.Helper()
	var out []listed
	for _, m := range regexp.MustCompile(`<tr class="account" data-account="([^"]*)" data-grade="([a-z]+)" data-score="([0-9.]*)">`).FindAllStringSubmatch(dom, -1) {
		score, err := strconv.ParseFloat(cmp.Or(m[3], "NaN"), 64)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, listed{m[1], m[2], score})
	}
	return out
}

// riskier reports whether a ranks before b: red, yellow, green, then no
// grade; within a grade the lower score, then the account id.
func riskier(a, b listed) bool {
	rank := map[string]int{"red": 0, "yellow": 1, "green": 2, "none": 3}
	score := func(l listed) float64 {
		if math.IsNaN(l.score) {
			return 1e9
		}
		return l.score
	}
	return cmp.Or(cmp.Compare(rank[a.grade], rank[b.grade]), cmp.Compare(score(a), score(b)), cmp.Compare(a.id, b.id)) < 0
}

func sizeOf(info os.FileInfo) int64 {
	if info == nil {
		return 0
	}
	return info.Size()
}
