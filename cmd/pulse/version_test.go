package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

func TestBuildFrom(t *testing.T) {
	const rev = "0123456789abcdef0123456789abcdef01234567"
	stamped := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "github.com/pulsehq/pulse", Version: "v0.0.0-20261120100000-0123456789ab+dirty"},
		Settings: []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.time", Value: "2026-11-20T10:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	for _, c := range []struct {
		name         string
		bi           *debug.BuildInfo
		ver, rev     string
		wantVersion  string
		wantCommit   string
		wantInString string
	}{
		{"stamped", stamped, "", "", "v0.0.0-20261120100000-0123456789ab+dirty", rev + "+dirty", "commit: " + rev + "+dirty (2026-11-20T10:00:00Z)\ngo: go1.26.0 "},
		{"clean", &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}, Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: "false"}}},
			"", "", "v1.4.0", rev, "pulse v1.4.0\ncommit: " + rev + "\n"},
		{"devel", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "", "", "(devel)", "unknown", "commit: unknown (built without VCS information"},
		{"no build info", nil, "", "", "(devel)", "unknown", "pulse (devel)\n"},
		{"ldflags", stamped, "v2.0.0", "fedcba9876543210fedcba9876543210fedcba98", "v2.0.0", "fedcba9876543210fedcba9876543210fedcba98", "pulse v2.0.0\ncommit: fedcba9876543210fedcba9876543210fedcba98\n"},
		{"ldflags dirty", nil, "", "abc+dirty", "(devel)", "abc+dirty", "commit: abc+dirty\n"},
	} {
		b := buildFrom(c.bi, c.ver, c.rev)
		if b.Version != c.wantVersion || b.commit() != c.wantCommit || !strings.Contains(b.String(), c.wantInString) {
			t.Errorf("%s: version %q commit %q, want %q %q; printed\n%s", c.name, b.Version, b.commit(), c.wantVersion, c.wantCommit, b)
		}
	}
}

// pulse version and pulse --version print the same; the commit is the one
// the Go toolchain stamped into the binary, as `go version -m` reads it.
func TestVersionCommand(t *testing.T) {
	code, out, errs := pulse(t, "", "version")
	if code != 0 || errs != "" || !strings.HasPrefix(out, "pulse ") || !strings.Contains(out, "go: "+runtime.Version()+" ") {
		t.Fatalf("pulse version: exit %d, %q %q", code, out, errs)
	}
	if _, again, _ := pulse(t, "", "--version"); again != out {
		t.Fatalf("pulse --version printed %q, pulse version %q", again, out)
	}
	bin, err := exec.Command(pulseBin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	mod, err := exec.Command("go", "version", "-m", pulseBin).Output()
	if err != nil {
		t.Fatal(err)
	}
	want := "commit: unknown"
	if m := regexp.MustCompile(`vcs\.revision=(\S+)`).FindSubmatch(mod); m != nil {
		want = "commit: " + string(m[1])
		if strings.Contains(string(mod), "vcs.modified=true") {
			want += "+dirty"
		}
	}
	if !strings.Contains(string(bin), want+"\n") && !strings.Contains(string(bin), want+" (") {
		t.Fatalf("the binary says\n%s\nits build info (go version -m):\n%s\nwant %q", bin, mod, want)
	}
}

// A packager's -ldflags version and revision show in `pulse version` and
// in pulse_build_info on /metrics.
func TestBuildInfoInVersionAndMetrics(t *testing.T) {
	const ver, rev = "v1.2.3-test", "0123456789abcdef0123456789abcdef01234567+dirty"
	bin := filepath.Join(t.TempDir(), "pulse")
	build := exec.Command("go", "build", "-o", bin, "-ldflags", "-X main.version="+ver+" -X main.revision="+rev, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "pulse "+ver+"\ncommit: "+rev+"\ngo: "+runtime.Version()+" ") {
		t.Fatalf("pulse --version: %v\n%s", err, out)
	}
	port, kport := freePort(t), freePort(t)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, fmt.Sprintf(`
listen: 127.0.0.1:%d
embedded: {listen: 127.0.0.1:%d, partitions: 1, demo: {enabled: false}}
checkpoint: {dir: %s}
output: {transitions_file: ""}
`, port, kport, filepath.Join(dir, "ckpt")))
	d := startBinary(t, bin, "", "run", "--config", cfg)
	want := fmt.Sprintf(`pulse_build_info{goversion=%q,revision=%q,version=%q} 1`, runtime.Version(), rev, ver)
	var metrics []byte
	waitUntil(t, "pulse_build_info on /metrics", 30*time.Second, func() bool {
		if d.exited() {
			t.Fatalf("pulse exited:\n%s", d.output())
		}
		_, metrics = httpGet(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
		return strings.Contains(string(metrics), "pulse_build_info")
	})
	if !strings.Contains(string(metrics), want+"\n") {
		t.Fatalf("/metrics lacks %s:\n%s", want, grepLines(string(metrics), "pulse_build_info"))
	}
	d.stop(t)
}

// grepLines returns the lines of s that contain substr.
func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
