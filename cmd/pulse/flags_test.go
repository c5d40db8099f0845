package main

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// Every command answers --help and -h with its help on stdout and exit 0:
// its synopsis and every flag as --flag with its default, never Go's
// "Usage of run:" with single-dash flags. A check's --help is not a file.
func TestEveryCommandHasHelp(t *testing.T) {
	singleDash := regexp.MustCompile(`(?m)^\s+-[a-z]`)
	for _, c := range commandTable() {
		for _, h := range []string{"--help", "-h"} {
			args := append(strings.Fields(c.name), h)
			code, out, errs := pulse(t, "", args...)
			if code != 0 || errs != "" {
				t.Errorf("pulse %s: exit %d, stderr %q", strings.Join(args, " "), code, errs)
			}
			if !strings.HasPrefix(out, strings.TrimSpace("Usage: pulse "+c.name+" "+c.synopsis)+"\n\n") || strings.Contains(out, "Usage of") || singleDash.MatchString(out) {
				t.Errorf("pulse %s:\n%s", strings.Join(args, " "), out)
			}
		}
	}
	for args, want := range map[string][]string{
		"run --help":    {"--config FILE", "--listen ADDR", "--rules FILE"},
		"replay --help": {"--rules FILE", "--events FILE", "--retention DURATION", "(default 90d)", "--eval-interval DURATION", "(default 1m)", "--partitions N", "(default 8)", "--transitions "},
		"gen --help":    {"--accounts N", "(default 100)", "--out FILE", "(default -)", "--topic TOPIC", "(default events)"},
		"broker --help": {"--port PORT", "(default 9092)"},
	} {
		_, out, _ := pulse(t, "", strings.Fields(args)...)
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("pulse %s lacks %q:\n%s", args, w, out)
			}
		}
	}
	code, out, _ := pulse(t, "", "--help")
	for _, c := range commandTable() {
		if code != 0 || !strings.Contains(out, "\n  "+strings.TrimSpace("pulse "+c.name+" "+c.synopsis)+"\n") {
			t.Errorf("pulse --help (exit %d) does not list %s:\n%s", code, c.name, out)
		}
	}
	if code, out, _ := pulse(t, "", "help", "config", "check"); code != 0 || !strings.HasPrefix(out, "Usage: pulse config check FILE\n") {
		t.Errorf("pulse help config check: exit %d\n%s", code, out)
	}
	if code, out, _ := pulse(t, "", "rules", "--help"); code != 0 || !strings.Contains(out, "pulse rules check FILE") {
		t.Errorf("pulse rules --help: exit %d\n%s", code, out)
	}
}

// A bad flag is named as --flag, with a pointer to the help: exit 2.
func TestBadFlagsAreNamedWithDoubleDashes(t *testing.T) {
	for args, want := range map[string]string{
		"replay --bogus":            "pulse replay: unknown flag: --bogus\nRun 'pulse replay --help' for its flags.\n",
		"gen --accounts":            "pulse gen: flag needs an argument: --accounts\n",
		"replay --retention soon":   `pulse replay: invalid value "soon" for flag --retention: bad duration "soon"`,
		"rules check --strict FILE": "pulse rules check: unknown flag: --strict\n",
		"run --log-format xml":      `pulse run: invalid value "xml" for flag --log-format: must be text or json`,
	} {
		code, out, errs := pulse(t, "", strings.Fields(args)...)
		if code != 2 || out != "" || !strings.HasPrefix(errs, want) {
			t.Errorf("pulse %s: exit %d, stdout %q, stderr %q; want exit 2 and %q", args, code, out, errs, want)
		}
	}
	if code, _, errs := pulse(t, "", "rules", "check", "a.yaml", "b.yaml"); code != 2 || !strings.Contains(errs, "Usage: pulse rules check FILE") {
		t.Errorf("two files: exit %d, %s", code, errs)
	}
}

// Duration flags take days as the config files do: 7d, 1d12h.
func TestDurationFlagsTakeDays(t *testing.T) {
	fs := newFlagSet("replay")
	d := durationVar(fs, "window", time.Hour, "a window")
	for _, c := range []struct {
		in   string
		want time.Duration
	}{{"7d", 7 * 24 * time.Hour}, {"1d12h", 36 * time.Hour}, {"90s", 90 * time.Second}} {
		if err := fs.Parse([]string{"--window", c.in}); err != nil || *d != c.want {
			t.Errorf("--window %s: %v, %v; want %v", c.in, *d, err, c.want)
		}
	}
	if got := fs.Lookup("window").Value.String(); got != "1m30s" {
		t.Errorf("shown as %q", got)
	}
	events := writeFile(t, "e.jsonl", replayEvents)
	if code, _, errs := pulse(t, "", "replay", "--rules", exampleRules, "--events", events, "--retention", "120d", "--sweep-interval", "1d", "--eval-interval", "1h30m"); code != 0 {
		t.Fatalf("day flags: exit %d, %s", code, errs)
	}
	// 1d12h is read (36 hours), and refused only for being too short.
	if code, _, errs := pulse(t, "", "replay", "--rules", exampleRules, "--events", events, "--retention", "1d12h"); code != 2 || !strings.HasPrefix(errs, "pulse replay: --retention: 1d12h is too short") {
		t.Fatalf("--retention 1d12h: exit %d, %s", code, errs)
	}
}
