package rules

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func lookupTestEnv(name string) (string, bool) {
	if name == "SLACK_WEBHOOK_URL" {
		return "https://hooks.example.com/T000", true
	}
	return "", false
}

func TestGoodRuleFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/good/*.good.yaml")
	if len(files) < 3 {
		t.Fatalf("found %d good files", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Load(filepath.Base(f), data, LoadOptions{LookupEnv: lookupTestEnv}); err != nil {
				t.Fatalf("want it to load, got:\n%v", err)
			}
		})
	}
}

// Each bad file's first line says the error it must produce:
// "# error: FILE:LINE: KEY: MESSAGE".
func TestBadRuleFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/bad/*.bad.yaml")
	if len(files) < 15 {
		t.Fatalf("found %d bad files", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(data), "\n")
			want, ok := strings.CutPrefix(first, "# error: ")
			if !ok {
				t.Fatalf("first line must be '# error: ...', got %q", first)
			}
			rs, err := Load(filepath.Base(f), data, LoadOptions{LookupEnv: lookupTestEnv})
			if err == nil {
				t.Fatalf("loaded a bad file: %+v", rs)
			}
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("want an error containing\n  %s\ngot\n  %v", want, err)
			}
			var e *Error
			if !errors.As(err, &e) || e.File != filepath.Base(f) {
				t.Fatalf("want a *rules.Error naming the file, got %T %v", err, err)
			}
		})
	}
}

func TestLoadErrorsWrapSentinels(t *testing.T) {
	_, err := Load("r.yaml", []byte("alerts:\n  - name: a\n    when: nope > 1\n"), LoadOptions{})
	if !errors.Is(err, ErrUnknownMetric) {
		t.Fatalf("want ErrUnknownMetric, got %v", err)
	}
	_, err = Load("r.yaml", []byte("alerts:\n  - name: a\n    when: dau > 1\n  - name: a\n    when: dau > 2\n"), LoadOptions{})
	if !errors.Is(err, ErrDuplicateName) {
		t.Fatalf("want ErrDuplicateName, got %v", err)
	}
}

func TestLoadReportsEveryProblem(t *testing.T) {
	src := "alerts:\n  - name: a\n    when: x > 1\n  - name: b\n    when: dau >\n"
	_, err := Load("r.yaml", []byte(src), LoadOptions{})
	msg := err.Error()
	if !strings.Contains(msg, "r.yaml:3: alerts[0].when") || !strings.Contains(msg, "r.yaml:5: alerts[1].when") {
		t.Fatalf("want both problems with lines, got:\n%s", msg)
	}
}

func TestNotifyExpandsEnvironment(t *testing.T) {
	src := "notify:\n  - name: n\n    type: webhook\n    url: ${SLACK_WEBHOOK_URL}/x\n    secret: s3\n"
	rs, err := Load("r.yaml", []byte(src), LoadOptions{LookupEnv: lookupTestEnv})
	if err != nil {
		t.Fatal(err)
	}
	if got := rs.Notify[0].URL; got != "https://hooks.example.com/T000/x" {
		t.Fatalf("url = %q", got)
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"24h": 24 * time.Hour, "7d": 7 * 24 * time.Hour, "90m": 90 * time.Minute, "1d12h": 36 * time.Hour,
		"2d30m": 48*time.Hour + 30*time.Minute, "1d1h1m1s": 25*time.Hour + time.Minute + time.Second, "-2d": -48 * time.Hour,
		"0d": 0, "0": 0, "250ms": 250 * time.Millisecond, "+3d": 72 * time.Hour,
	} {
		d, err := ParseDuration(in)
		if err != nil || d != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, d, err, want)
		}
	}
	for _, in := range []string{"1.5d", "d", "7", "1d-2h", "1d+2h", "1dd", "7days", "d7", "", "1d12", "999999999d", "soon"} {
		if d, err := ParseDuration(in); err == nil {
			t.Errorf("%q parsed as %v", in, d)
		} else if !strings.Contains(err.Error(), "e.g. 90s, 5m, 7d, 1d12h") {
			t.Errorf("%q: the error does not say what is expected: %v", in, err)
		}
	}
}

// FormatDuration writes what ParseDuration reads, in days where it can.
func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		90 * 24 * time.Hour: "90d", 36 * time.Hour: "1d12h", 90 * time.Minute: "1h30m", 30 * time.Minute: "30m",
		250 * time.Millisecond: "250ms", 0: "0s", -48 * time.Hour: "-2d", 24*time.Hour + 90*time.Second: "1d1m30s", time.Hour: "1h",
	} {
		got := FormatDuration(d)
		if got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
		if back, err := ParseDuration(got); err != nil || back != d {
			t.Errorf("ParseDuration(FormatDuration(%v)) = %v, %v", d, back, err)
		}
	}
}

// A rules file must never take the daemon down: huge files, long and
// deeply nested expressions are refused with the file, line and key (a
// parser recursing through two million parentheses overflowed the stack).
func TestHostileRuleFilesAreRefused(t *testing.T) {
	deep := strings.Repeat("(", 2_000_000) + "dau > 1" + strings.Repeat(")", 2_000_000)
	if _, err := Load("huge.yaml", []byte("alerts:\n  - name: a\n    when: "+deep+"\n"), LoadOptions{}); err == nil ||
		!strings.Contains(err.Error(), "huge.yaml: too large") {
		t.Fatalf("a 4 MB file: %v", err)
	}
	nested := strings.Repeat("(", 500) + "dau > 1" + strings.Repeat(")", 500)
	_, err := Load("nested.yaml", []byte("alerts:\n  - name: a\n    when: "+nested+"\n"), LoadOptions{})
	if err == nil || !strings.Contains(err.Error(), "nested.yaml:3: alerts[0].when: bad expression: brackets nested 500 deep") {
		t.Fatalf("500 nested brackets: %v", err)
	}
	long := "dau > 1" + strings.Repeat(" || dau > 1", 500)
	_, err = Load("long.yaml", []byte("alerts:\n  - name: a\n    when: "+long+"\n"), LoadOptions{})
	if err == nil || !strings.Contains(err.Error(), "long.yaml:3: alerts[0].when: bad expression: 5507 characters, at most 4096") {
		t.Fatalf("a long expression: %v", err)
	}
	// Brackets inside string literals do not count.
	if _, err := Load("ok.yaml", []byte("alerts:\n  - name: a\n    when: 'segment == \"((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((\" && dau > 1'\n"), LoadOptions{}); err != nil {
		t.Fatal(err)
	}
}
