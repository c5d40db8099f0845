package main

import (
	"strings"
	"testing"
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
