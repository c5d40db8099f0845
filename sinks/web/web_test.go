package web

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
	"github.com/pulsehq/pulse/sinks/webhook"
)

// partitions is an engine.View over in-process partitions fed with real events:
// each request gets fresh snapshots of them, taken at now (time.Now when
// nil).
type partitions struct {
	parts      []*engine.Partition
	rs         *rules.Ruleset
	now        func() time.Time
	previewErr error // what Preview answers, when set
}

func (p *partitions) Snapshots(context.Context, time.Duration) []*engine.Snapshot {
	now := time.Now
	if p.now != nil {
		now = p.now
	}
	var out []*engine.Snapshot
	for _, part := range p.parts {
		out = append(out, part.Snapshot(now().UnixNano()))
	}
	return out
}
func (p *partitions) Ready() bool           { return true }
func (p *partitions) Rules() *rules.Ruleset { return p.rs }

const events = `{"ts":"2026-11-01T09:00:00Z","account_id":"healthy","type":"account","attrs":{"seats":2,"segment":"normal","csm":"li"}}
{"ts":"2026-11-01T09:00:00Z","account_id":"dark","type":"account","attrs":{"seats":5,"segment":"strategic","csm":"sam"}}
{"ts":"2026-11-01T09:00:00Z","account_id":"dark","type":"login","user_id":"a"}
{"ts":"2026-11-01T09:00:00Z","account_id":"nothing","type":"account","attrs":{"segment":"micro"}}
{"ts":"2026-11-19T09:00:00Z","account_id":"healthy","type":"feature","user_id":"a","module":"reports"}
{"ts":"2026-11-19T09:00:00Z","account_id":"healthy","type":"feature","user_id":"b","module":"pipeline"}
{"ts":"2026-11-19T10:00:00Z","account_id":"healthy","type":"login","user_id":"b"}`

func server(t *testing.T) *httptest.Server {
	ts, _ := serverOf(t)
	return ts
}

// serverOf serves the events over the example rules; src may be changed.
// Each option adjusts the Server before it starts.
func serverOf(t *testing.T, options ...func(*Server)) (*httptest.Server, *partitions) {
	rs := exampleRules(t)
	src := &partitions{rs: rs}
	for i := range 2 {
		src.parts = append(src.parts, engine.NewPartition(int32(i), rs, engine.Config{}))
	}
	var d engine.Decoder
	var ev engine.Event
	for _, l := range strings.Split(events, "\n") {
		if r := d.Decode([]byte(l), &ev); r != engine.ReasonOK {
			t.Fatalf("%s: %s", l, r)
		}
		src.parts[engine.PartitionOf(ev.Account, 2)].Apply(&ev, 0)
	}
	reloads := 0
	s := &Server{View: src, Reload: func() error {
		if reloads++; reloads > 1 {
			return errors.New("r.yaml:3: alerts[0].when: unknown metric")
		}
		return nil
	}}
	for _, o := range options {
		o(s)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts, src
}

func get(t *testing.T, url string) (int, http.Header, string) {
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func ids(t *testing.T, body string) []string {
	var states []struct {
		ID     string   `json:"account_id"`
		Grade  string   `json:"grade"`
		Alerts []string `json:"alerts"`
	}
	if err := json.Unmarshal([]byte(body), &states); err != nil {
		t.Fatalf("not a JSON array: %v\n%s", err, body)
	}
	var out []string
	for _, s := range states {
		out = append(out, s.ID+":"+s.Grade)
	}
	return out
}

func TestAccountsRiskiestFirstFilteredAndPaginated(t *testing.T) {
	ts := server(t)
	code, h, body := get(t, ts.URL+"/api/accounts")
	if code != 200 || h.Get("X-Total-Count") != "3" {
		t.Fatalf("%d %v", code, h)
	}
	got := strings.Join(ids(t, body), " ")
	// Red before yellow; within red, the lower score (dark, gone for 18
	// days) before the account that has no activity data yet.
	if got != "dark:red nothing:red healthy:yellow" {
		t.Fatalf("order %s", got)
	}
	if _, _, body := get(t, ts.URL+"/api/accounts?grade=yellow"); strings.Join(ids(t, body), " ") != "healthy:yellow" {
		t.Fatalf("grade filter: %s", body)
	}
	if _, _, body := get(t, ts.URL+"/api/accounts?csm=sam&alert=gone_dark"); strings.Join(ids(t, body), " ") != "dark:red" {
		t.Fatalf("csm+alert filter: %s", body)
	}
	if _, h, body := get(t, ts.URL+"/api/accounts?limit=1&offset=1"); strings.Join(ids(t, body), " ") != "nothing:red" || h.Get("X-Total-Count") != "3" {
		t.Fatalf("pagination: %s", body)
	}
	for _, q := range []string{"grade=purple", "limit=-1", "offset=x", "depth=deep"} {
		if code, _, body := get(t, ts.URL+"/api/accounts?"+q); code != 400 || body == "" {
			t.Errorf("%s: %d, want 400 with a reason", q, code)
		}
	}
}

func TestOneAccountAlertsPageAndProbes(t *testing.T) {
	ts := server(t)
	code, _, body := get(t, ts.URL+"/api/accounts/dark")
	if code != 200 || !strings.Contains(body, `"account_id":"dark"`) || !strings.Contains(body, `"gone_dark"`) {
		t.Fatalf("%d %s", code, body)
	}
	if code, _, _ := get(t, ts.URL+"/api/accounts/nobody"); code != 404 {
		t.Fatalf("unknown account: %d", code)
	}
	code, _, body = get(t, ts.URL+"/api/alerts")
	var alerts []map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &alerts) != nil || len(alerts) == 0 {
		t.Fatalf("alerts: %d %s", code, body)
	}
	if alerts[0]["account_id"] != "dark" || alerts[0]["severity"] != "high" || alerts[0]["csm"] != "sam" || alerts[0]["alert_id"] == "" {
		t.Fatalf("alerts[0] = %v", alerts[0])
	}
	code, _, body = get(t, ts.URL+"/")
	if code != 200 || !strings.Contains(body, `href="/accounts/dark"`) || !strings.Contains(body, `class="grade red"`) {
		t.Fatalf("page: %d %.300s", code, body)
	}
	if code, _, _ := get(t, ts.URL+"/healthz"); code != 200 {
		t.Fatal("healthz")
	}
	if code, _, _ := get(t, ts.URL+"/readyz"); code != 200 {
		t.Fatal("readyz")
	}
	for i, want := range []int{200, 400} {
		resp, err := http.Post(ts.URL+"/-/reload", "application/json", nil)
		if err != nil || resp.StatusCode != want {
			t.Fatalf("reload %d: %v %v, want %d", i, err, resp.StatusCode, want)
		}
		resp.Body.Close()
	}
}

// do sends a request with a body of type ctype ("" for none) and headers
// given as name, value pairs.
func do(t *testing.T, method, url, ctype, body string, headers ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func snoozeServer(t *testing.T, options ...func(*Server)) (*httptest.Server, *webhook.Sink) {
	notify, err := webhook.New(webhook.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { notify.Close(context.Background()) })
	ts, _ := serverOf(t, append([]func(*Server){func(s *Server) { s.Snoozer = notify }}, options...)...)
	return ts, notify
}

func TestSnoozeEndpoint(t *testing.T) {
	ts, notify := snoozeServer(t)
	form := "application/x-www-form-urlencoded"
	if code, body := do(t, "POST", ts.URL+"/api/accounts/dark/snooze?for=2h", form, ""); code != 200 || !strings.Contains(body, `"snoozed_until":"`) {
		t.Fatalf("snooze: %d %s", code, body)
	}
	if notify.Snoozed("dark").Before(time.Now().Add(119 * time.Minute)) {
		t.Fatal("the webhook sink is not snoozed for 2h")
	}
	if code, body := do(t, "GET", ts.URL+"/api/accounts/dark/snooze", "", ""); code != 200 || !strings.Contains(body, `"account_id":"dark"`) {
		t.Fatalf("read: %d %s", code, body)
	}
	if code, body := do(t, "DELETE", ts.URL+"/api/accounts/dark/snooze", "application/json", ""); code != 200 || !strings.Contains(body, `"snoozed_until":null`) {
		t.Fatalf("unsnooze: %d %s", code, body)
	}
	if code, _ := do(t, "POST", ts.URL+"/api/accounts/dark/snooze?for=soon", form, ""); code != 400 {
		t.Fatalf("bad duration: %d", code)
	}
	until := time.Now().Add(30 * 24 * time.Hour).UTC().Truncate(time.Second)
	if code, _ := do(t, "POST", ts.URL+"/api/accounts/healthy/snooze", "application/json", `{"until":"`+until.Format(time.RFC3339)+`"}`); code != 200 || !notify.Snoozed("healthy").Equal(until) {
		t.Fatalf("until in a JSON body: %d, snoozed until %v", code, notify.Snoozed("healthy"))
	}
	if code, _ := do(t, "POST", ts.URL+"/api/accounts/nothing/snooze", form, "for=1d"); code != 200 || notify.Snoozed("nothing").IsZero() {
		t.Fatalf("for in a form: %d", code)
	}
}

// TestSnoozeLimits: only accounts the instance holds, for at most
// max_snooze, at most max_snoozes at once.
func TestSnoozeLimits(t *testing.T) {
	ts, notify := snoozeServer(t, func(s *Server) { s.MaxSnoozes = 2 })
	form := "application/x-www-form-urlencoded"
	if code, body := do(t, "POST", ts.URL+"/api/accounts/nobody/snooze?for=1h", form, ""); code != 404 || !notify.Snoozed("nobody").IsZero() {
		t.Errorf("unknown account: %d %s, want 404 and no snooze", code, body)
	}
	for _, q := range []string{"for=3650d", "until=2099-01-01T00:00:00Z", "for=91d"} {
		if code, body := do(t, "POST", ts.URL+"/api/accounts/dark/snooze?"+q, form, ""); code != 400 || !strings.Contains(body, "http.max_snooze") || !notify.Snoozed("dark").IsZero() {
			t.Errorf("%s: %d %s, want 400 naming http.max_snooze", q, code, body)
		}
	}
	if code, _ := do(t, "POST", ts.URL+"/api/accounts/dark/snooze?for=90d", form, ""); code != 200 {
		t.Errorf("90d, the most: %d", code)
	}
	if code, _ := do(t, "POST", ts.URL+"/api/accounts/healthy/snooze?for=1h", form, ""); code != 200 {
		t.Errorf("a second account: %d", code)
	}
	if code, body := do(t, "POST", ts.URL+"/api/accounts/nothing/snooze?for=1h", form, ""); code != 429 || !strings.Contains(body, "http.max_snoozes") || !notify.Snoozed("nothing").IsZero() {
		t.Errorf("a third account past max_snoozes 2: %d %s, want 429", code, body)
	}
	if code, _ := do(t, "POST", ts.URL+"/api/accounts/healthy/snooze?for=2h", form, ""); code != 200 {
		t.Errorf("a snoozed account snoozed again at the cap: %d", code)
	}
}

// TestCrossSiteChangesAreRefused: the cross-site POST of the issue (a
// text/plain form snoozing an account for 10 years) and its variants are
// refused; the same request from the server's own page is accepted.
func TestCrossSiteChangesAreRefused(t *testing.T) {
	ts, notify := snoozeServer(t)
	url := ts.URL + "/api/accounts/dark/snooze?for=1d"
	for _, c := range []struct {
		name, ctype string
		headers     []string
		want        int
	}{
		{"text/plain, cross-site", "text/plain", []string{"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"}, 403},
		{"text/plain, no browser headers", "text/plain", nil, 415},
		{"no content type", "", nil, 415},
		{"form, cross-site by Sec-Fetch-Site", "application/x-www-form-urlencoded", []string{"Sec-Fetch-Site", "cross-site"}, 403},
		{"form, cross-site by Origin", "application/x-www-form-urlencoded", []string{"Origin", "https://evil.example"}, 403},
		{"form, cross-site by Referer", "application/x-www-form-urlencoded", []string{"Referer", "https://evil.example/page"}, 403},
		{"JSON, same-site subdomain", "application/json", []string{"Sec-Fetch-Site", "same-site"}, 403},
	} {
		if code, body := do(t, "POST", url, c.ctype, "", c.headers...); code != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, code, body, c.want)
		}
	}
	if !notify.Snoozed("dark").IsZero() {
		t.Fatal("a refused request snoozed the account")
	}
	if code, _ := do(t, "POST", ts.URL+"/-/reload", "text/plain", "", "Origin", "https://evil.example"); code != 403 {
		t.Errorf("cross-site reload: %d, want 403", code)
	}
	if code, _ := do(t, "GET", url, "", ""); code != 200 || !notify.Snoozed("dark").IsZero() {
		t.Errorf("GET changed the snooze")
	}
	if code, body := do(t, "POST", url, "application/json", "", "Origin", ts.URL, "Sec-Fetch-Site", "same-origin", "Referer", ts.URL+"/accounts/dark"); code != 200 || notify.Snoozed("dark").IsZero() {
		t.Errorf("same-origin JSON POST: %d %s, want 200", code, body)
	}
}

// TestTokensAndBasicAuth: with credentials configured, reads need the
// read or write ones, changes the write ones; probes stay open.
func TestTokensAndBasicAuth(t *testing.T) {
	ts, notify := snoozeServer(t, func(s *Server) {
		s.Auth = Auth{Read: Credentials{Token: "read-secret"}, Write: Credentials{Token: "write-secret", User: "ops", Password: "pw"}}
	})
	bearer := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }
	basic := func(u, p string) []string {
		r, _ := http.NewRequest("GET", "/", nil)
		r.SetBasicAuth(u, p)
		return []string{"Authorization", r.Header.Get("Authorization")}
	}
	for _, path := range []string{"/api/accounts", "/api/accounts/dark", "/api/alerts", "/", "/accounts/dark", "/api/accounts/dark/history"} {
		if code, _ := do(t, "GET", ts.URL+path, "", ""); code != 401 {
			t.Errorf("GET %s without a token: %d, want 401", path, code)
		}
		if code, _ := do(t, "GET", ts.URL+path, "", "", bearer("wrong")...); code != 401 {
			t.Errorf("GET %s with a wrong token: %d, want 401", path, code)
		}
		if code, _ := do(t, "GET", ts.URL+path, "", "", bearer("read-secret")...); code != 200 {
			t.Errorf("GET %s with the read token: %d, want 200", path, code)
		}
		if code, _ := do(t, "GET", ts.URL+path, "", "", bearer("write-secret")...); code != 200 {
			t.Errorf("GET %s with the write token: %d, want 200", path, code)
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, _ := do(t, "GET", ts.URL+path, "", ""); code != 200 {
			t.Errorf("probe %s: %d, want 200 without credentials", path, code)
		}
	}
	url := ts.URL + "/api/accounts/dark/snooze?for=1d"
	json := "application/json"
	for name, h := range map[string][]string{"none": nil, "the read token": bearer("read-secret"), "a wrong password": basic("ops", "nope")} {
		if code, _ := do(t, "POST", url, json, "", h...); code != 401 {
			t.Errorf("snooze with %s: %d, want 401", name, code)
		}
	}
	if !notify.Snoozed("dark").IsZero() {
		t.Fatal("snoozed without the write credentials")
	}
	if code, _ := do(t, "POST", url, json, "", bearer("write-secret")...); code != 200 {
		t.Errorf("snooze with the write token: %d", code)
	}
	if code, _ := do(t, "DELETE", url, json, "", basic("ops", "pw")...); code != 200 || !notify.Snoozed("dark").IsZero() {
		t.Errorf("unsnooze with basic auth: %d", code)
	}
}

func TestPprofOnlyWhenEnabled(t *testing.T) {
	ts := server(t)
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/profile?seconds=1"} {
		if code, _, _ := get(t, ts.URL+path); code != 404 {
			t.Errorf("%s: %d, want 404 by default", path, code)
		}
	}
	on, _ := serverOf(t, func(s *Server) { s.Pprof = true; s.Auth.Read.Token = "t" })
	if code, _ := do(t, "GET", on.URL+"/debug/pprof/heap", "", ""); code != 401 {
		t.Errorf("enabled pprof without the read token: %d, want 401", code)
	}
	if code, body := do(t, "GET", on.URL+"/debug/pprof/heap?debug=1", "", "", "Authorization", "Bearer t"); code != 200 || !strings.Contains(body, "heap profile") {
		t.Errorf("enabled pprof: %d %.100s", code, body)
	}
}

func TestHugeOffsetIsAnEmptyPage(t *testing.T) {
	ts := server(t)
	for _, path := range []string{"/api/accounts?offset=9223372036854775807", "/api/accounts?offset=9223372036854775807&limit=1000", "/?offset=9223372036854775807"} {
		code, h, body := get(t, ts.URL+path)
		if code != 200 {
			t.Errorf("%s: %d %.200s", path, code, body)
			continue
		}
		if strings.HasPrefix(path, "/api/") && (strings.TrimSpace(body) != "[]" || h.Get("X-Total-Count") != "3") {
			t.Errorf("%s: %q, total %q; want [] of 3", path, body, h.Get("X-Total-Count"))
		}
	}
}

// TestAlertsListOnlyRulesInForce: a reload that removes every rule ends
// every listed alert at once, though the partitions keep the alert state
// until the accounts are evaluated again.
func TestAlertsListOnlyRulesInForce(t *testing.T) {
	ts, src := serverOf(t)
	if _, _, body := get(t, ts.URL+"/api/alerts"); !strings.Contains(body, `"rule":"gone_dark"`) {
		t.Fatalf("before the reload: %s", body)
	}
	empty, err := rules.Load("empty.yaml", nil, rules.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	src.rs = empty
	if code, _, body := get(t, ts.URL+"/api/alerts"); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Fatalf("after a reload without rules: %d %s", code, body)
	}
}

// poisoned is an engine.View whose snapshots hold NaN and infinities where the
// engine keeps numbers: the score, every metric and every factor.
type poisoned struct{ *partitions }

func (p poisoned) Snapshots(ctx context.Context, maxAge time.Duration) []*engine.Snapshot {
	snaps := p.partitions.Snapshots(ctx, maxAge)
	for _, s := range snaps {
		for i := range s.Accounts {
			st := &s.Accounts[i].State
			st.Score = math.Inf(1 - 2*(i%2))
			for m := range st.Metrics {
				st.Metrics[m] = []float64{math.Inf(1), math.Inf(-1), math.NaN()}[m%3]
			}
			for f := range st.Factors {
				st.Factors[f].Value, st.Factors[f].Points = math.Inf(1), math.Inf(-1)
			}
		}
	}
	return snaps
}

// A value that is not a finite number is written as null in the JSON API
// and as "no value" on the pages, which stay well-formed.
func TestNonFiniteNumbersAreNull(t *testing.T) {
	ts, _ := serverOf(t, func(s *Server) { s.View = poisoned{s.View.(*partitions)} })
	for _, path := range []string{"/api/accounts", "/api/accounts/dark", "/api/alerts"} {
		code, _, body := get(t, ts.URL+path)
		var v any
		if err := json.Unmarshal([]byte(body), &v); code != 200 || err != nil {
			t.Fatalf("%s: %d %v\n%s", path, code, err, body)
		}
		if !strings.Contains(body, `"score":null`) {
			t.Errorf("%s: the infinite score is not null:\n%.400s", path, body)
		}
	}
	for _, path := range []string{"/", "/accounts/dark", "/accounts/healthy"} {
		code, _, body := get(t, ts.URL+path)
		if code != 200 || strings.Contains(body, "Inf") || strings.Contains(body, "NaN") {
			t.Errorf("%s: %d\n%s", path, code, body)
		}
	}
}

// The lists the API and the page offer come from the rules' enums, in the
// order and words they always had.
func TestFilterListsFollowTheRules(t *testing.T) {
	ts := server(t)
	for query, want := range map[string]string{
		"grade=blue": `grade "blue": want red, yellow, green or none`,
		"depth=deep": `depth "deep": want none, record, process, integration or custom`,
	} {
		if code, _, body := get(t, ts.URL+"/api/accounts?"+query); code != 400 || strings.TrimSpace(body) != want {
			t.Errorf("%s: %d %q, want 400 %q", query, code, body, want)
		}
	}
	_, _, body := get(t, ts.URL+"/")
	if !strings.Contains(body, "<option>red</option><option>yellow</option><option>green</option><option>none</option>") {
		t.Errorf("the grade filter does not offer red, yellow, green, none in that order:\n%s", body)
	}
	if got := []int{severityRank("high"), severityRank("medium"), severityRank("low")}; !slices.IsSorted(got) || got[0] == got[2] {
		t.Errorf("severity ranks %v: want high before medium before low", got)
	}
}
