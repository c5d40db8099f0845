package prom

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func promtool(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("PULSE_REQUIRE_PROMETHEUS") != "" {
			t.Fatal("promtool is not installed; ./scripts/test.sh installs it")
		}
		t.Skip("promtool is not installed; ./scripts/test.sh installs it and makes this test required")
	}
	return bin
}

// The shipped recording rules and alerts load, and their unit tests pass.
func TestShippedPrometheusRules(t *testing.T) {
	bin := promtool(t)
	for _, args := range [][]string{{"check", "rules", "rules.yml"}, {"test", "rules", "rules_test.yml"}} {
		cmd := exec.Command(bin, args...)
		cmd.Dir = "../../deploy/prometheus"
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "SUCCESS") {
			t.Fatalf("promtool %v: %v\n%s", args, err, out)
		}
	}
}

// What /metrics serves passes `promtool check metrics` (names, types, help,
// units) with nothing to report.
func TestMetricsPassPromtoolLint(t *testing.T) {
	bin := promtool(t)
	m, _ := populated(t)
	cmd := exec.Command(bin, "check", "metrics")
	cmd.Stdin = strings.NewReader(scrape(t, m))
	out, err := cmd.CombinedOutput()
	var ours []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "pulse_") {
			ours = append(ours, line)
		}
	}
	if len(ours) > 0 {
		t.Fatalf("promtool check metrics (%v):\n%s", err, strings.Join(ours, "\n"))
	}
}
