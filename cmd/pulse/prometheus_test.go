package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A real Prometheus, loaded with the shipped rules, scrapes a running
// `pulse run` and answers queries on its series via `promtool query
// instant`: the aggregates count the demo's accounts, events and lag are
// there, every alert rule has its series, and the recording rules work.
func TestPrometheusScrapesPulse(t *testing.T) {
	promBin := prometheusBin(t)
	dir := t.TempDir()
	port, kport := freePort(t), freePort(t)
	cfg := writeConfig(t, dir, fmt.Sprintf(`
listen: 127.0.0.1:%d
rules: %s
embedded: {listen: 127.0.0.1:%d, demo: {enabled: true, accounts: 30, history_days: 10, speed: 200000}}
checkpoint: {dir: %s}
output: {transitions_file: "", metrics_interval: 200ms}
`, port, exampleRules, kport, filepath.Join(dir, "ckpt")))
	startPulse(t, "run", "--config", cfg)

	query := startPrometheus(t, promBin, dir, port)
	waitUntil(t, "Prometheus to see all 30 accounts", 60*time.Second, func() bool {
		v, ok := query(`sum(pulse_accounts)`)
		return ok && v == 30
	})
	for expr, check := range map[string]func(float64) bool{
		`sum(pulse_events_total{result="ok"})`:                                func(v float64) bool { return v > 1000 },
		`count(pulse_kafka_lag{topic="events"})`:                              func(v float64) bool { return v == 8 },
		`count(pulse_alerts_firing)`:                                          func(v float64) bool { return v == float64(len(loadExampleRules(t).Alerts)) },
		`count(pulse_accounts_by_depth)`:                                      func(v float64) bool { return v == 5 },
		`pulse_score_count`:                                                   func(v float64) bool { return v == 30 },
		`count(pulse:events:rate5m)`:                                          func(v float64) bool { return v >= 1 },
		`sum(pulse_alert_transitions_total{state="firing"})`:                  func(v float64) bool { return v >= 1 },
		`count(count by (__name__) ({__name__=~"pulse_.+", account_id!=""}))`: nil, // no per-account label: no result
	} {
		var v float64
		var ok bool
		deadline := time.Now().Add(20 * time.Second)
		for {
			v, ok = query(expr)
			if check == nil || (ok && check(v)) || time.Now().After(deadline) {
				break
			}
			time.Sleep(500 * time.Millisecond) // poll the real Prometheus until it has scraped enough
		}
		if check == nil {
			if ok {
				t.Errorf("%s returned %v: a metric has a per-account label", expr, v)
			}
			continue
		}
		if !ok || !check(v) {
			t.Errorf("%s = %v (ok %v)", expr, v, ok)
		}
	}
}

// startPrometheus runs a real Prometheus, loaded with the shipped rules,
// scraping 127.0.0.1:port every second, and returns a query function that
// asks it through `promtool query instant`.
func startPrometheus(t *testing.T, promBin, dir string, port int) func(expr string) (float64, bool) {
	url := startPrometheusServer(t, promBin, dir, port)
	return func(expr string) (float64, bool) {
		out, err := exec.Command("promtool", "query", "instant", url, expr).Output()
		if err != nil {
			return 0, false
		}
		// "{labels} => 30 @[1700000000.123]"
		_, rest, ok := strings.Cut(string(out), "=> ")
		if !ok {
			return 0, false
		}
		v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
		return v, err == nil
	}
}

// startPrometheusServer runs a real Prometheus, loaded with the shipped
// rules, scraping 127.0.0.1:port every second, and returns its URL.
func startPrometheusServer(t testing.TB, promBin, dir string, port int) string {
	pport := freePort(t)
	rulesFile, _ := filepath.Abs("../../deploy/prometheus/rules.yml")
	promCfg := filepath.Join(dir, "prometheus.yml")
	os.WriteFile(promCfg, fmt.Appendf(nil, `global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
  - job_name: pulse
    static_configs: [{targets: ["127.0.0.1:%d"]}]
`, rulesFile, port), 0o644)
	prom := exec.Command(promBin, "--config.file="+promCfg, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", pport))
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prom.Process.Kill(); prom.Wait() })
	return fmt.Sprintf("http://127.0.0.1:%d", pport)
}

func prometheusBin(t testing.TB) string {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("PULSE_REQUIRE_PROMETHEUS") != "" {
			t.Fatal("prometheus is not installed; ./scripts/test.sh installs it")
		}
		t.Skip("prometheus is not installed; ./scripts/test.sh installs it and makes this test required")
	}
	return bin
}
