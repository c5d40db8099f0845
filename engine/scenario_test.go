package engine

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pulsehq/pulse/rules"
)

// Scenario files (testdata/scenarios/*.txt) are scripts of events and the
// states and transitions they must produce, in sections:
//
//	-- rules --        a rules file (optional)
//	-- events --       JSONL events, applied in order
//	-- at --           the evaluation time (RFC 3339)
//	-- expect --       lines "ACCOUNT name=value ...": metrics, score, grade,
//	                   depth, attributes and alerts (comma-separated)
//	-- transitions --  every transition, in order: "TS ACCOUNT RULE STATE",
//	                   followed by "suppressed" when an inhibiting alert fired
//	-- rejects --      lines "LINE REASON" for rejected events
//
// Numbers compare within 1e-6; "null" is a null metric. A rules section
// that is just "@example" stands for the shipped deploy/rules/example.yaml.
func TestScenarios(t *testing.T) {
	files, _ := filepath.Glob("testdata/scenarios/*.txt")
	if len(files) < 4 {
		t.Fatalf("found %d scenarios", len(files))
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { runScenario(t, f) })
	}
}

func parseSections(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	name := ""
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if s, ok := strings.CutPrefix(strings.TrimSpace(line), "-- "); ok && strings.HasSuffix(s, " --") {
			name = strings.TrimSuffix(s, " --")
			continue
		}
		if name != "" {
			out[name] += line
		}
	}
	return out
}

func runScenario(t *testing.T, path string) {
	sec := parseSections(t, path)
	rulesData := []byte(sec["rules"])
	if strings.TrimSpace(sec["rules"]) == "@example" {
		var err error
		if rulesData, err = os.ReadFile("../deploy/rules/example.yaml"); err != nil {
			t.Fatal(err)
		}
	}
	rs, err := rules.Load("rules", rulesData, rules.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	at, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(sec["at"]))
	if err != nil {
		t.Fatalf("at: %v", err)
	}
	r := NewReplayer(rs, Config{}, 1, at.UnixNano(), 0)
	var rejects []string
	r.OnReject = func(line int, reason Reason, _ string) { rejects = append(rejects, fmt.Sprintf("%d %s", line, reason)) }
	lineNo := 0
	for _, line := range strings.Split(sec["events"], "\n") {
		lineNo++
		if strings.TrimSpace(line) != "" {
			r.Line(lineNo, []byte(line))
		}
	}
	r.Finish()

	if want := fields(sec["rejects"]); strings.Join(want, "\n") != strings.Join(rejects, "\n") {
		t.Errorf("rejects:\n got %q\nwant %q", rejects, want)
	}
	states := map[string]AccountState{}
	r.EachState(func(s *AccountState) { states[s.AccountID] = *s })
	for _, line := range fields(sec["expect"]) {
		parts := strings.Fields(line)
		s, ok := states[parts[0]]
		if !ok {
			t.Errorf("no account %q", parts[0])
			continue
		}
		for _, kv := range parts[1:] {
			k, want, _ := strings.Cut(kv, "=")
			if got := stateField(t, &s, k); !sameValue(got, want) {
				t.Errorf("%s %s = %s, want %s", parts[0], k, got, want)
			}
		}
	}
	if _, ok := sec["transitions"]; ok {
		var got []string
		for _, tr := range r.Transitions() {
			line := fmt.Sprintf("%s %s %s %s", time.Unix(0, tr.Ts).UTC().Format(time.RFC3339Nano), tr.AccountID, tr.Rule, tr.State)
			if tr.Suppressed {
				line += " suppressed"
			}
			got = append(got, line)
		}
		if want := fields(sec["transitions"]); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("transitions:\n got:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
	}
}

// fields returns the non-empty, non-comment lines of a section.
func fields(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

func stateField(t *testing.T, s *AccountState, k string) string {
	switch k {
	case "score":
		return num(s.Score)
	case "grade":
		return s.Grade.String()
	case "depth":
		return s.Depth.String()
	case "alerts":
		return strings.Join(s.Alerts, ",")
	case "suppressed":
		return strings.Join(s.Suppressed, ",")
	case "scorecard":
		return s.Scorecard
	case "caps":
		return strings.Join(s.Caps, ",")
	}
	if m, ok := rules.MetricByName(k); ok {
		return num(s.Metrics[m])
	}
	if a, ok := rules.AttrByName(k); ok {
		return s.Attrs[a]
	}
	t.Fatalf("unknown field %q", k)
	return ""
}

func num(v float64) string {
	if rules.IsNull(v) {
		return "null"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func sameValue(got, want string) bool {
	g, err1 := strconv.ParseFloat(got, 64)
	w, err2 := strconv.ParseFloat(want, 64)
	if err1 == nil && err2 == nil {
		return math.Abs(g-w) <= 1e-6
	}
	return got == want
}
