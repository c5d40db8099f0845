package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulsehq/pulse/sinks/webhook"
)

// `pulse rules check` never prints a notifier url taken from the
// environment: the path of a Slack webhook is its secret.
func TestRulesCheckDoesNotEchoWebhookURL(t *testing.T) {
	t.Setenv("PULSE_TEST_SLACK_URL", "hooks.slack.com/services/T0AAAA/B0BBBB/xoxsecret123")
	f := writeFile(t, "rules.yaml", "notify:\n  - {name: csm, type: slack, url: \"${PULSE_TEST_SLACK_URL}\"}\n")
	code, _, errs := pulse(t, "", "rules", "check", f)
	if code != 1 || !strings.Contains(errs, "rules.yaml:2: notify[0].url") {
		t.Fatalf("exit %d, want 1 with the url's line; stderr:\n%s", code, errs)
	}
	if strings.Contains(errs, "xoxsecret123") || strings.Contains(errs, "B0BBBB") {
		t.Fatalf("the secret url is echoed:\n%s", errs)
	}
}

// slowReceiver is a webhook receiver that takes 0.3 s per request and
// records when each began and ended, by path and Idempotency-Key.
type slowReceiver struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []hookRequest
}

type hookRequest struct {
	path, key  string
	body       []byte
	began, end time.Time // end is zero while the request is being answered
}

func newSlowReceiver(t *testing.T) *slowReceiver {
	r := &slowReceiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		i := len(r.reqs)
		r.reqs = append(r.reqs, hookRequest{path: req.URL.Path, key: req.Header.Get("Idempotency-Key"), body: body, began: time.Now()})
		r.mu.Unlock()
		time.Sleep(300 * time.Millisecond)
		io.WriteString(w, "ok")
		r.mu.Lock()
		r.reqs[i].end = time.Now()
		r.mu.Unlock()
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *slowReceiver) requests() []hookRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reqs)
}

// delivered returns the "alert_id state" keys a request carried: one for a
// generic webhook, every transition of a Slack message.
func (h *hookRequest) delivered(t *testing.T) []string {
	if h.path != "/slack" {
		var tr struct {
			ID    string `json:"alert_id"`
			State string `json:"state"`
		}
		if err := json.Unmarshal(h.body, &tr); err != nil {
			t.Fatalf("%s: %v: %s", h.path, err, h.body)
		}
		return []string{tr.ID + " " + tr.State}
	}
	// Slack: each transition is a header ("… (high, resolved)") followed by
	// a section and a context ("alert ID · …").
	var msg struct {
		Blocks []struct {
			Type     string `json:"type"`
			Text     struct{ Text string }
			Elements []struct{ Text string }
		} `json:"blocks"`
	}
	if err := json.Unmarshal(h.body, &msg); err != nil {
		t.Fatalf("slack: %v: %s", err, h.body)
	}
	var keys []string
	state := ""
	for _, b := range msg.Blocks {
		switch b.Type {
		case "header":
			state = "firing"
			if strings.Contains(b.Text.Text, ", resolved)") {
				state = "resolved"
			}
		case "context":
			id, _, _ := strings.Cut(strings.TrimPrefix(b.Elements[0].Text, "alert "), " ")
			keys = append(keys, id+" "+state)
		}
	}
	return keys
}

// Notifications survive kill -9 and SIGTERM: while a slow receiver (0.3 s a
// request) works through them, the daemon is killed at several points and
// restarted; in the end every transition each notifier's match selects
// (replay's transitions, less the suppressed ones) has arrived at least
// once, and a notification arrived twice only if it was in flight at a
// kill — at most one per kill and notifier, with the same Idempotency-Key.
func TestNotificationsSurviveKills(t *testing.T) {
	broker := startBrokerProcess(t)
	rcv := newSlowReceiver(t)
	dir := t.TempDir()
	example, _ := os.ReadFile(exampleRules)
	rulesFile := filepath.Join(dir, "rules.yaml")
	os.WriteFile(rulesFile, append(example, fmt.Appendf(nil, `
notify:
  - {name: all, type: webhook, url: %q, send_resolved: true}
  - {name: high, type: webhook, url: %q, match: {severity: [high]}}
  - {name: slack, type: slack, url: %q, send_resolved: true, match: {severity: [high]}}
`, rcv.URL+"/all", rcv.URL+"/high", rcv.URL+"/slack")...), 0o644)
	lines, fenceIDs := fencedStream(40, 35)
	p := newProducer([]string{broker}, "events")
	defer p.Close()
	if err := p.write(context.Background(), lines); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cfg := writeConfig(t, dir, fmt.Sprintf(`
listen: 127.0.0.1:%d
rules: %s
kafka: {brokers: [%s], topic: events, group: hooks, session_timeout: 6s}
engine: {idle_advance: "0"}
checkpoint: {dir: %s, interval: 100ms}
output: {transitions_file: ""}
webhooks: {group_wait: 200ms, state_file: %s, max_age: "0"}
`, port, rulesFile, broker, filepath.Join(dir, "ckpt"), filepath.Join(dir, "webhooks.state")))

	_, wantTransitions, _ := replayed(t, lines)
	want := map[string][]string{} // path → keys
	for _, tr := range wantTransitions {
		var x struct {
			ID         string `json:"alert_id"`
			State      string `json:"state"`
			Severity   string `json:"severity"`
			Suppressed bool   `json:"suppressed"`
		}
		json.Unmarshal([]byte(tr), &x)
		if x.Suppressed {
			continue
		}
		key := x.ID + " " + x.State
		want["/all"] = append(want["/all"], key)
		if x.Severity == "high" {
			want["/slack"] = append(want["/slack"], key)
			if x.State == "firing" {
				want["/high"] = append(want["/high"], key)
			}
		}
	}
	if len(want["/all"]) < 30 || len(want["/high"]) == 0 || len(want["/high"]) == len(want["/slack"]) {
		t.Fatalf("the stream should give many notifications, firing and resolved: %d, %d high, %d high firing", len(want["/all"]), len(want["/slack"]), len(want["/high"]))
	}

	type kill struct{ before, after time.Time }
	var kills []kill
	start := func() *proc {
		d := startPulse(t, "run", "--config", cfg)
		waitUntil(t, "readiness", 60*time.Second, func() bool {
			if d.exited() {
				t.Fatalf("pulse exited:\n%s", d.output())
			}
			code, _ := httpGet(base + "/readyz")
			return code == 200
		})
		return d
	}
	// Kill -9 after a few more deliveries each time, one SIGTERM between.
	// (Where nothing more arrives, the kill comes after 20 s.)
	for i, after := range []int{4, 12, 22, 34} {
		d := start()
		for deadline := time.Now().Add(20 * time.Second); len(rcv.requests()) < after && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		if i == 2 {
			if code := d.stop(t); code != 0 {
				t.Fatalf("exit code %d after SIGTERM; log:\n%s", code, d.output())
			}
			continue
		}
		k := kill{before: time.Now()}
		d.kill()
		k.after = time.Now()
		kills = append(kills, k)
	}
	d := start()
	waitUntil(t, "every partition's fence", 90*time.Second, func() bool {
		for _, id := range fenceIDs {
			if code, _ := httpGet(base + "/api/accounts/" + id); code != 200 {
				return false
			}
		}
		return true
	})
	got := func() map[string]map[string]int {
		out := map[string]map[string]int{}
		for _, r := range rcv.requests() {
			if out[r.path] == nil {
				out[r.path] = map[string]int{}
			}
			for _, k := range r.delivered(t) {
				out[r.path][k]++
			}
		}
		return out
	}
	missing := func() (n int) {
		g := got()
		for path, keys := range want {
			for _, k := range keys {
				if g[path][k] == 0 {
					n++
				}
			}
		}
		return n
	}
	// Reading the stream again takes seconds; delivering what the kills
	// left undelivered, 0.3 s each, a minute at most.
	deadline := time.Now().Add(90 * time.Second)
	for missing() > 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	g := got()
	for path, keys := range want {
		var lost []string
		for _, k := range keys {
			if g[path][k] == 0 {
				lost = append(lost, k)
			}
		}
		if len(lost) > 0 {
			t.Errorf("%s: %d of %d notifications never arrived, e.g. %v", path, len(lost), len(keys), lost[:min(3, len(lost))])
		}
		for k := range g[path] {
			if !slices.Contains(keys, k) {
				t.Errorf("%s: %s arrived, but the notifier's match excludes it (or replay has no such transition)", path, k)
			}
		}
	}

	// Duplicates: a request whose Idempotency-Key arrived before, to the
	// same path, is allowed only if that earlier request was in flight at a
	// kill; each kill allows one per notifier.
	reqs := rcv.requests()
	seen := map[string]hookRequest{}
	perKill := map[string]int{} // kill index|path → duplicates
	dups := 0
	for _, r := range reqs {
		id := r.path + " " + r.key
		first, again := seen[id]
		if !again {
			seen[id] = r
			continue
		}
		dups++
		// In flight at a kill: begun before it, answered after it (or
		// just before: the daemon records a delivery once it has read the
		// answer, a moment after the receiver wrote it).
		k := slices.IndexFunc(kills, func(k kill) bool {
			return first.began.Before(k.after) && (first.end.IsZero() || first.end.Add(100*time.Millisecond).After(k.before))
		})
		if k < 0 {
			t.Errorf("%s %s delivered again, though no kill interrupted its first delivery", r.path, r.key)
			continue
		}
		if perKill[fmt.Sprint(k, r.path)]++; perKill[fmt.Sprint(k, r.path)] > 1 {
			t.Errorf("kill %d: more than one duplicate to %s", k+1, r.path)
		}
	}
	t.Logf("%d requests for %d+%d+%d notifications, %d duplicates after %d kills", len(reqs), len(want["/all"]), len(want["/high"]), len(want["/slack"]), dups, len(kills))
	if code := d.stop(t); code != 0 {
		t.Fatalf("exit code %d after SIGTERM; log:\n%s", code, d.output())
	}
}

func TestWebhookConfig(t *testing.T) {
	webhooks := func(rc *runConfig) webhook.Config { return checkedConfig(t, rc, "webhook").(webhook.Config) }
	rc, err := loadConfig("", noEnv)
	if err != nil || webhooks(rc).MaxRetryTime != time.Hour || webhooks(rc).MaxAge != 6*time.Hour {
		t.Fatalf("default webhooks %+v, %v; want max_retry_time 1h and max_age 6h", webhooks(rc), err)
	}
	path := filepath.Join(t.TempDir(), "pulse.yaml")
	os.WriteFile(path, []byte("webhooks: {max_retry_time: 3h}\n"), 0o644)
	if rc, err = loadConfig(path, noEnv); err != nil || webhooks(rc).MaxRetryTime != 3*time.Hour {
		t.Fatalf("webhooks.max_retry_time: 3h gave %v", err)
	}
	os.WriteFile(path, []byte("webhooks: {max_age: \"0\"}\n"), 0o644)
	if rc, err = loadConfig(path, noEnv); err != nil || webhooks(rc).MaxAge != 0 {
		t.Fatalf("webhooks.max_age: 0 gave %v", err)
	}
	os.WriteFile(path, []byte("webhooks: {max_retry_time: 0s}\n"), 0o644)
	if _, err = loadConfig(path, noEnv); err == nil || !strings.Contains(err.Error(), "webhooks.max_retry_time") {
		t.Fatalf("max_retry_time 0s: %v", err)
	}
}

// With the default webhooks.max_age (6 h), a stream of history — events
// days behind the wall clock — is scored and its transitions stored, but
// none is sent to chat: each is counted as too_old instead.
func TestHistoryIsNotNotified(t *testing.T) {
	broker := startBrokerProcess(t)
	rcv := newSlowReceiver(t)
	dir := t.TempDir()
	example, _ := os.ReadFile(exampleRules)
	rulesFile := filepath.Join(dir, "rules.yaml")
	os.WriteFile(rulesFile, append(example, fmt.Appendf(nil, "\nnotify:\n  - {name: all, type: webhook, url: %q, send_resolved: true}\n", rcv.URL)...), 0o644)
	lines, fenceIDs := fencedStream(20, 35) // ends 2026-11-20
	if age := time.Since(streamEnd); age < 7*time.Hour {
		t.Fatalf("the stream ends %v ago: not history", age)
	}
	p := newProducer([]string{broker}, "events")
	defer p.Close()
	if err := p.write(context.Background(), lines); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cfg := writeConfig(t, dir, fmt.Sprintf(`
listen: 127.0.0.1:%d
rules: %s
kafka: {brokers: [%s], topic: events, group: history}
engine: {idle_advance: "0"}
checkpoint: {dir: %s, interval: 100ms}
output: {transitions_file: %s}
webhooks: {group_wait: 100ms, state_file: %s}
`, port, rulesFile, broker, filepath.Join(dir, "ckpt"), filepath.Join(dir, "transitions.jsonl"), filepath.Join(dir, "webhooks.state")))
	d := startPulse(t, "run", "--config", cfg)
	waitUntil(t, "every partition's fence", 90*time.Second, func() bool {
		if d.exited() {
			t.Fatalf("pulse exited:\n%s", d.output())
		}
		for _, id := range fenceIDs {
			if code, _ := httpGet(base + "/api/accounts/" + id); code != 200 {
				return false
			}
		}
		return true
	})
	_, wantTransitions, _ := replayed(t, lines)
	notified := notifiedKeys(wantTransitions)
	if len(notified) == 0 {
		t.Fatal("the stream has no transition to notify")
	}
	want := fmt.Sprintf(`pulse_notifications_total{notifier="all",outcome="too_old"} %d`, len(notified))
	waitUntil(t, want, 30*time.Second, func() bool {
		_, b := httpGet(base + "/metrics")
		return strings.Contains(string(b), want)
	})
	if code := d.stop(t); code != 0 {
		t.Fatalf("exit code %d; log:\n%s", code, d.output())
	}
	if n := len(rcv.requests()); n != 0 {
		t.Fatalf("%d notifications of history sent", n)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "transitions.jsonl"))
	if got := strings.Count(string(data), "\n"); got < len(wantTransitions) {
		t.Fatalf("%d transitions stored, want %d: history is stored, only not notified", got, len(wantTransitions))
	}
}
