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

	"github.com/pulsehq/pulse/sinks/clickhouse/chtest"
)

// End to end, every sink at once: events → a broker process → `pulse run`
// → ClickHouse rows, Prometheus series and webhook deliveries, each
// matching `pulse replay` on the same events.
func TestAllSinksEndToEnd(t *testing.T) {
	promBin := prometheusBin(t)
	broker := startBrokerProcess(t)
	ch := chtest.Start(t)
	var mu sync.Mutex
	delivered := map[string]int{} // Idempotency-Key (alert_id:state) → deliveries
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var tr struct {
			ID    string `json:"alert_id"`
			State string `json:"state"`
			URL   string `json:"account_url"`
		}
		if json.Unmarshal(body, &tr) != nil || tr.ID+":"+tr.State != r.Header.Get("Idempotency-Key") || tr.URL == "" {
			http.Error(w, "unexpected payload", http.StatusBadRequest)
			return
		}
		mu.Lock()
		delivered[tr.ID+":"+tr.State]++
		mu.Unlock()
	}))
	defer receiver.Close()

	dir := t.TempDir()
	example, _ := os.ReadFile(exampleRules)
	rulesFile := filepath.Join(dir, "rules.yaml")
	os.WriteFile(rulesFile, append(example, fmt.Appendf(nil, "\nnotify:\n  - {name: all, type: webhook, url: %q, send_resolved: true}\n", receiver.URL)...), 0o644)
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
kafka: {brokers: [%s], topic: events, group: e2e}
engine: {idle_advance: "0"}
checkpoint: {dir: %s, interval: 200ms}
output: {transitions_file: "", metrics_interval: 200ms}
clickhouse: {addr: [%s], database: e2e, flush_interval: 50ms}
webhooks: {public_url: %q, state_file: %s, max_age: "0"}
`, port, rulesFile, broker, filepath.Join(dir, "ckpt"), ch.Addr(), base, filepath.Join(dir, "webhooks.state")))
	d := startPulse(t, "run", "--config", cfg)
	query := startPrometheus(t, promBin, dir, port)
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
	wantStates, wantTransitions, wantScores := replayed(t, lines)
	sameLines(t, "states", apiStates(t, base), wantStates)

	wantKeys := transitionKeys(wantTransitions)

	// ClickHouse: exactly the replay's score rows and transitions.
	waitUntil(t, "ClickHouse to hold every transition", 30*time.Second, func() bool {
		return len(clickhouseRows(t, ch.Addr(), "SELECT alert_id FROM e2e.alerts FINAL")) >= len(wantKeys)
	})
	sameLines(t, "ClickHouse score rows", clickhouseRows(t, ch.Addr(),
		"SELECT concat(account_id, ' ', toString(ts_ns), ' ', toString(grade), ' ', toString(round(ifNull(score, -1), 4))) FROM e2e.scores FINAL"), wantScores)
	sameLines(t, "ClickHouse transitions", clickhouseRows(t, ch.Addr(),
		"SELECT concat(alert_id, ' ', toString(state)) FROM e2e.alerts FINAL"), wantKeys)

	// Webhooks: every transition no inhibiting alert suppressed, once.
	notified := notifiedKeys(wantTransitions)
	if len(notified) == 0 || len(notified) == len(wantKeys) {
		t.Fatalf("%d of %d transitions notified: the stream should have both kinds", len(notified), len(wantKeys))
	}
	waitUntil(t, "every webhook delivery", 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(delivered) >= len(notified)
	})
	mu.Lock()
	var got []string
	for k, n := range delivered {
		if n != 1 {
			t.Errorf("%s delivered %d times", k, n)
		}
		got = append(got, strings.Replace(k, ":", " ", 1)) // alert ids are hex: the one colon parts id and state
	}
	mu.Unlock()
	slices.Sort(got)
	sameLines(t, "webhook deliveries", got, notified)

	// Prometheus: the transitions and notifications counted once each, the
	// accounts all graded, every score row inserted once.
	for expr, want := range map[string]float64{
		`sum(pulse_alert_transitions_total)`:                    float64(len(wantKeys)),
		`sum(pulse_notifications_total{outcome="sent"})`:        float64(len(notified)),
		`sum(pulse_accounts)`:                                   float64(len(wantStates)),
		`sum(pulse_sink_batches_total{sink="clickhouse"}) > 0`:  1,
		`sum(pulse_clickhouse_insert_rows_sum{table="scores"})`: float64(len(wantScores)),
	} {
		var v float64
		var ok bool
		waitUntil(t, expr, 30*time.Second, func() bool {
			v, ok = query(expr)
			if expr == `sum(pulse_sink_batches_total{sink="clickhouse"}) > 0` {
				return ok
			}
			return ok && v == want
		})
	}
	if code := d.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
}
