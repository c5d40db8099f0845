package web

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
	"github.com/pulsehq/pulse/sinks/webhook"
)

// partitions is a Source over in-process partitions fed with real events:
// each request gets fresh snapshots of them, taken at now (time.Now when
// nil).
type partitions struct {
	parts []*engine.Partition
	rs    *rules.Ruleset
	now   func() time.Time
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
func serverOf(t *testing.T) (*httptest.Server, *partitions) {
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
	s := &Server{Source: src, Reload: func() error {
		if reloads++; reloads > 1 {
			return errors.New("r.yaml:3: alerts[0].when: unknown metric")
		}
		return nil
	}}
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
		resp, err := http.Post(ts.URL+"/-/reload", "", nil)
		if err != nil || resp.StatusCode != want {
			t.Fatalf("reload %d: %v %v, want %d", i, err, resp.StatusCode, want)
		}
		resp.Body.Close()
	}
}

func TestSnoozeEndpoint(t *testing.T) {
	notify, err := webhook.New(webhook.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close(context.Background())
	ts := httptest.NewServer((&Server{Source: &partitions{}, Snoozer: notify}).Handler())
	defer ts.Close()
	do := func(method, path string) (int, string) {
		req, _ := http.NewRequest(method, ts.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := do("POST", "/api/accounts/acme%20co/snooze?for=2h"); code != 200 || !strings.Contains(body, `"snoozed_until":"`) {
		t.Fatalf("snooze: %d %s", code, body)
	}
	if notify.Snoozed("acme co").Before(time.Now().Add(119 * time.Minute)) {
		t.Fatal("the webhook sink is not snoozed for 2h")
	}
	if code, body := do("GET", "/api/accounts/acme%20co/snooze"); code != 200 || !strings.Contains(body, `"account_id":"acme co"`) {
		t.Fatalf("read: %d %s", code, body)
	}
	if code, body := do("DELETE", "/api/accounts/acme%20co/snooze"); code != 200 || !strings.Contains(body, `"snoozed_until":null`) {
		t.Fatalf("unsnooze: %d %s", code, body)
	}
	if code, _ := do("POST", "/api/accounts/acme/snooze?for=soon"); code != 400 {
		t.Fatalf("bad duration: %d", code)
	}
	if code, _ := do("POST", "/api/accounts/acme/snooze?until=2030-01-01T00:00:00Z"); code != 200 || notify.Snoozed("acme").Year() != 2030 {
		t.Fatalf("until: %d", code)
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
