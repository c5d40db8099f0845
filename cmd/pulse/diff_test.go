package main

import (
	"os"
	"strings"
	"testing"
)

// pulse replay --diff on a hand-made stream whose diff is worked out in
// the rules files' comments: eight accounts, each set by its seats (and a
// ticket, API calls), under a model whose "small" line moves from 10 to 20
// seats, whose score reaches 100 points later, and that drops one alert
// and adds another. The table and the JSON are compared byte for byte,
// whatever the partition count.
//
// By hand: "small" fired for charlie, golf (resolved at 12 seats) and
// hotel (twice: 5, 12, 5 seats) before, 4 episodes; after, for every
// account under 20 seats, once each: bravo and echo are newly flagged.
// "tickets" fired for echo only (removed: no longer flagged), the new
// "integration" for foxtrot. delta's 30 seats score 75 (green) before and
// 60 (yellow) after; echo's 18 seats 45 (yellow) and 36 (red).
func TestReplayDiff(t *testing.T) {
	args := []string{"replay", "--diff", "testdata/diff/old.yaml", "testdata/diff/new.yaml", "--events", "testdata/diff/events.jsonl"}
	for _, tc := range []struct {
		extra []string
		want  string
	}{
		{nil, "testdata/diff/want.txt"},
		{[]string{"--partitions", "1"}, "testdata/diff/want.txt"},
		{[]string{"--json"}, "testdata/diff/want.json"},
		{[]string{"--json", "--partitions", "3"}, "testdata/diff/want.json"},
	} {
		want, err := os.ReadFile(tc.want)
		if err != nil {
			t.Fatal(err)
		}
		code, out, errs := pulse(t, "", append(args, tc.extra...)...)
		if code != 0 || errs != "" || out != string(want) {
			t.Errorf("%v: exit %d, stderr %q, stdout:\n%s\nwant:\n%s", tc.extra, code, errs, out, want)
		}
	}
	// The same rules on both sides change nothing.
	code, out, _ := pulse(t, "", "replay", "--diff", "testdata/diff/old.yaml", "testdata/diff/old.yaml", "--events", "testdata/diff/events.jsonl")
	if code != 0 || !strings.Contains(out, "Newly flagged: none\n") || !strings.Contains(out, "No longer flagged: none\n") ||
		!strings.HasSuffix(out, "Grade changes: none\n") {
		t.Errorf("old against itself: exit %d\n%s", code, out)
	}
	// --max-ids shortens the lists of the table.
	_, out, _ = pulse(t, "", append(args, "--max-ids", "1")...)
	if !strings.Contains(out, "  small (2): bravo, … and 1 more\n") {
		t.Errorf("--max-ids 1:\n%s", out)
	}
}

// A rules file that does not load is exit 2 with its FILE:LINE problems
// (both files' at once); a bad command line is exit 2 too.
func TestReplayDiffBadInput(t *testing.T) {
	bad := writeFile(t, "bad.yaml", "alerts:\n  - name: a\n    when: nope > 1\n")
	events := "testdata/diff/events.jsonl"
	code, out, errs := pulse(t, "", "replay", "--diff", bad, bad, "--events", events)
	if code != 2 || out != "" || strings.Count(errs, "bad.yaml:3: alerts[0].when: unknown metric") != 2 {
		t.Errorf("bad rules: exit %d, stdout %q, stderr:\n%s", code, out, errs)
	}
	for _, args := range [][]string{
		{"replay", "--diff", "testdata/diff/old.yaml", "--events", events},
		{"replay", "--diff", "testdata/diff/old.yaml"},
		{"replay", "--diff=testdata/diff/old.yaml", "testdata/diff/new.yaml", "--events", events},
		{"replay", "--diff", "testdata/diff/old.yaml", "testdata/diff/new.yaml"},
		{"replay", "--diff", "testdata/diff/old.yaml", "testdata/diff/new.yaml", "--events", events, "--rules", "testdata/diff/old.yaml"},
		{"replay", "--diff", "testdata/diff/old.yaml", "testdata/diff/new.yaml", "--events", events, "--transitions"},
		{"replay", "--rules", "testdata/diff/old.yaml", "--events", events, "--json"},
		{"replay", "--diff", "testdata/diff/old.yaml", "testdata/diff/missing.yaml", "--events", events},
	} {
		if code, _, errs := pulse(t, "", args...); code != 2 || errs == "" {
			t.Errorf("%v: exit %d, stderr %q; want 2 and a message", args, code, errs)
		}
	}
}
