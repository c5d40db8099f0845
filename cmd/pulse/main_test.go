package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulsehq/pulse/engine/synth"
	"github.com/pulsehq/pulse/rules"
)

const exampleRules = "../../deploy/rules/example.yaml"

// pulse runs the command line in-process and returns its exit status,
// standard output and standard error.
func pulse(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRulesCheck(t *testing.T) {
	if code, out, errs := pulse(t, "", "rules", "check", exampleRules); code != 0 || !strings.Contains(out, ": ok (") {
		t.Fatalf("example rules: exit %d, %s %s", code, out, errs)
	}
	bad := writeFile(t, "bad.yaml", "alerts:\n  - name: a\n    when: dau >> 1\n  - name: b\n    when: nope > 1\n")
	code, _, errs := pulse(t, "", "rules", "check", bad)
	if code != 1 || !strings.Contains(errs, "bad.yaml:3: alerts[0].when: bad expression") || !strings.Contains(errs, "bad.yaml:5: alerts[1].when: unknown metric") {
		t.Fatalf("bad rules: exit %d, stderr:\n%s", code, errs)
	}
	if code, _, _ := pulse(t, "", "rules", "check"); code != 2 {
		t.Fatalf("no file: exit %d, want 2", code)
	}
	if code, _, _ := pulse(t, "", "rules", "check", filepath.Join(t.TempDir(), "missing.yaml")); code != 1 {
		t.Fatalf("missing file: exit %d, want 1", code)
	}
}

const replayEvents = `{"ts":"2026-11-18T10:00:00Z","account_id":"zeta","type":"login","user_id":"u1"}
{"ts":"2026-11-18T10:00:00Z","account_id":"acme","type":"account","attrs":{"seats":10,"segment":"normal"}}
this is not json
{"ts":"2026-11-19T10:00:00Z","account_id":"acme","type":"login"}
{"ts":"2026-11-19T11:00:00Z","account_id":"acme","type":"login","user_id":"u1"}
{"ts":"2026-11-22T11:00:00Z","account_id":"acme","type":"login","user_id":"u2"}
`

func TestReplay(t *testing.T) {
	events := writeFile(t, "events.jsonl", replayEvents)
	code, out, errs := pulse(t, "", "replay", "--rules", exampleRules, "--events", events, "--at", "2026-11-20T00:00:00Z")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"events.jsonl:3: rejected (bad_json)", "events.jsonl:4: rejected (bad_user_id): user_id missing for login", "ignored after --at: 1"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 accounts, got:\n%s", out)
	}
	var first struct {
		AccountID string              `json:"account_id"`
		Ts        string              `json:"ts"`
		Metrics   map[string]*float64 `json:"metrics"`
		Attrs     map[string]string   `json:"attrs"`
		Factors   []map[string]any    `json:"factors"`
		Alerts    []string            `json:"alerts"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, lines[0])
	}
	if first.AccountID != "acme" || first.Ts != "2026-11-20T00:00:00Z" || *first.Metrics["dau"] != 1 || *first.Metrics["seats"] != 10 ||
		first.Metrics["usage_change_7d"] != nil || first.Attrs["segment"] != "normal" || len(first.Factors) != 10 || first.Alerts == nil {
		t.Fatalf("acme state: %+v", first)
	}
	if len(first.Metrics) != rules.NumMetrics {
		t.Fatalf("want all %d metrics, got %d", rules.NumMetrics, len(first.Metrics))
	}
	if !strings.Contains(lines[1], `"account_id":"zeta"`) {
		t.Fatalf("not sorted by account: %s", lines[1])
	}
	// Standard input works the same, byte for byte.
	if _, again, _ := pulse(t, replayEvents, "replay", "--rules", exampleRules, "--events", "-", "--at", "2026-11-20T00:00:00Z"); again != out {
		t.Fatal("replay from stdin differs")
	}
}

func TestReplayExitCodes(t *testing.T) {
	events := writeFile(t, "e.jsonl", replayEvents)
	badRules := writeFile(t, "r.yaml", "alerts:\n  - name: a\n    when: x\n")
	for _, args := range [][]string{
		{"replay"},
		{"replay", "--events", events},
		{"replay", "--rules", exampleRules, "--events", filepath.Join(t.TempDir(), "none.jsonl")},
		{"replay", "--rules", badRules, "--events", events},
		{"replay", "--rules", exampleRules, "--events", events, "--at", "yesterday"},
		{"replay", "--rules", exampleRules, "--events", events, "--bogus"},
		{"nosuch"},
	} {
		if code, _, _ := pulse(t, "", args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

func TestReplaySurvivesHugeLines(t *testing.T) {
	huge := `{"ts":"2026-11-18T10:00:00Z","account_id":"a","type":"login","user_id":"` + strings.Repeat("x", 2<<20) + `"}`
	good := `{"ts":"2026-11-18T10:00:00Z","account_id":"a","type":"login","user_id":"u"}`
	code, out, errs := pulse(t, good+"\n"+huge+"\n"+good+"\n", "replay", "--rules", exampleRules, "--events", "-")
	if code != 0 || !strings.Contains(errs, "-:2: rejected (bad_json): line longer than 1 MiB") || !strings.Contains(out, `"activated_users":1`) {
		t.Fatalf("exit %d\nstderr %s\nout %.300s", code, errs, out)
	}
}

// pulse gen | pulse replay on the example rules: every archetype raises
// the alert it stands for, and healthy accounts raise no risk alert
// (accounts that churned at a renewal are gone, whatever their archetype).
func TestGeneratedArchetypesRaiseTheirAlerts(t *testing.T) {
	const accounts, days, seed = 240, 100, 11
	code, stream, errs := pulse(t, "", "gen", "--accounts", "240", "--days", "100", "--seed", "11", "--end", "2026-11-20T00:00:00Z")
	if code != 0 {
		t.Fatalf("gen: %d %s", code, errs)
	}
	code, out, errs := pulse(t, stream, "replay", "--rules", exampleRules, "--events", "-")
	if code != 0 || errs != "" {
		t.Fatalf("replay: exit %d, stderr %s", code, errs)
	}
	firing := map[string][]string{}
	grades := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var s struct {
			ID     string   `json:"account_id"`
			Grade  string   `json:"grade"`
			Alerts []string `json:"alerts"`
		}
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatal(err)
		}
		firing[s.ID] = s.Alerts
		grades[s.Grade]++
	}
	if grades["green"] == 0 || grades["yellow"] == 0 || grades["red"] == 0 {
		t.Errorf("want every grade among the generated accounts, got %v", grades)
	}
	g := synth.New(synth.Options{Accounts: accounts, Days: days, Seed: seed, End: time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)})
	seen := map[synth.Archetype]int{}
	for _, a := range g.Accounts() {
		seen[a.Archetype]++
		if a.Outcome == "churned" {
			continue
		}
		alerts := firing[a.ID]
		want := a.Archetype.ExpectedAlert()
		if want == "" {
			for _, name := range alerts {
				if name != "renewal_prep" && name != "renewal_at_risk" {
					t.Errorf("healthy %s fires %s", a.ID, name)
				}
			}
			continue
		}
		found := false
		for _, name := range alerts {
			found = found || name == want
		}
		if !found {
			t.Errorf("%s (%s) does not fire %s; fires %v", a.ID, a.Archetype, want, alerts)
		}
	}
	if len(seen) != synth.NumArchetypes {
		t.Fatalf("only %d archetypes generated: %v", len(seen), seen)
	}
}

func TestGenIsDeterministic(t *testing.T) {
	args := []string{"gen", "--accounts", "20", "--days", "5", "--seed", "3", "--end", "2026-11-20T00:00:00Z"}
	_, a, _ := pulse(t, "", args...)
	_, b, _ := pulse(t, "", args...)
	if a != b || strings.Count(a, "\n") < 500 {
		t.Fatalf("gen output differs or is too small (%d lines)", strings.Count(a, "\n"))
	}
	_, c, _ := pulse(t, "", "gen", "--accounts", "20", "--days", "5", "--seed", "4", "--end", "2026-11-20T00:00:00Z")
	if c == a {
		t.Fatal("another seed gave the same stream")
	}
}

// The embedded demo's load, scored by the shipped model: by the end of its
// history every grade is on the page (red included) and every shipped
// alert has fired, unsuppressed, at least once — so a new user sees the
// whole model at work.
func TestDemoShowsEveryGradeAndFiresEveryAlert(t *testing.T) {
	d := defaultConfig().Embedded.Demo
	end := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	g := synth.New(synth.Options{Accounts: d.Accounts, Days: d.HistoryDays + 1, Seed: d.Seed, End: end})
	var stream strings.Builder
	for day := range g.Days() {
		g.Day(day, func(l []byte) { stream.Write(l); stream.WriteByte('\n') })
	}
	events := writeFile(t, "demo.jsonl", stream.String())
	code, states, errs := pulse(t, "", "replay", "--rules", exampleRules, "--events", events)
	if code != 0 || errs != "" {
		t.Fatalf("replay: exit %d, stderr %s", code, errs)
	}
	grades := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(states), "\n") {
		var s struct{ Grade string }
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatal(err)
		}
		grades[s.Grade]++
	}
	for _, g := range []string{"green", "yellow", "red"} {
		if grades[g] == 0 {
			t.Errorf("no %s account at the end of the demo's history: %v", g, grades)
		}
	}
	code, transitions, errs := pulse(t, "", "replay", "--rules", exampleRules, "--events", events, "--transitions")
	if code != 0 || errs != "" {
		t.Fatalf("replay --transitions: exit %d, stderr %s", code, errs)
	}
	fired := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(transitions), "\n") {
		var tr struct {
			Rule, State string
			Suppressed  bool
		}
		if err := json.Unmarshal([]byte(line), &tr); err != nil {
			t.Fatal(err)
		}
		if tr.State == "firing" && !tr.Suppressed {
			fired[tr.Rule]++
		}
	}
	rs := loadExampleRules(t)
	for _, a := range rs.Alerts {
		if fired[a.Name] == 0 {
			t.Errorf("%s never fired over the demo's history (%v)", a.Name, fired)
		}
	}
}

// `pulse run` works from any directory, as after `go install`: the built
// binary, copied alone into an empty directory and started there, serves
// the demo with the shipped model built into it, and --rules overrides it.
func TestRunWorksFromAnyDirectory(t *testing.T) {
	elsewhere := t.TempDir() // no deploy/ here: only the binary
	bin := filepath.Join(elsewhere, "pulse")
	data, err := os.ReadFile(pulseBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	port, kport := freePort(t), freePort(t)
	cfg := writeConfig(t, t.TempDir(), fmt.Sprintf(`
listen: 127.0.0.1:%d
embedded: {listen: 127.0.0.1:%d, demo: {enabled: true, accounts: 5, history_days: 2, speed: 200000}}
`, port, kport))
	d := startBinary(t, bin, elsewhere, "run", "--config", cfg)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitUntil(t, "/healthz from another directory", 30*time.Second, func() bool {
		if d.exited() {
			t.Fatalf("pulse exited:\n%s", d.output())
		}
		code, _ := httpGet(base + "/healthz")
		return code == 200
	})
	// The demo's five accounts are scored by the built-in model.
	waitUntil(t, "the demo's accounts from another directory", 30*time.Second, func() bool {
		return len(apiStates(t, base)) == 5
	})
	_, alerts := httpGet(base + "/api/alerts")
	if !bytes.HasPrefix(bytes.TrimSpace(alerts), []byte("[")) {
		t.Fatalf("/api/alerts: %s", alerts)
	}
	d.stop(t)
	if _, err := os.Stat(filepath.Join(elsewhere, "pulse-data")); err != nil {
		t.Fatalf("the default data directory was not created where pulse ran: %v", err)
	}

	// --rules names another file; a missing one is refused.
	port2, kport2 := freePort(t), freePort(t)
	cfg2 := writeConfig(t, t.TempDir(), fmt.Sprintf("listen: 127.0.0.1:%d\nembedded: {listen: 127.0.0.1:%d}\n", port2, kport2))
	code, _, errs := pulse(t, "", "run", "--config", cfg2, "--rules", filepath.Join(elsewhere, "missing.yaml"))
	if code == 0 || !strings.Contains(errs, "missing.yaml") {
		t.Fatalf("--rules with a missing file: exit %d, %s", code, errs)
	}
}
