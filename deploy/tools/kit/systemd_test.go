package kit

import (
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/coreos/go-systemd/v22/unit"
)

// systemdUnit parses deploy/systemd/pulse.service into section → key →
// values (a key may repeat).
func systemdUnit(t *testing.T) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(deployPath(t, "systemd", "pulse.service"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	opts, err := unit.DeserializeOptions(f)
	if err != nil {
		t.Fatalf("pulse.service: %v", err)
	}
	u := map[string]map[string][]string{}
	for _, o := range opts {
		if u[o.Section] == nil {
			u[o.Section] = map[string][]string{}
		}
		u[o.Section][o.Name] = append(u[o.Section][o.Name], o.Value)
	}
	return u
}

// TestSystemdUnit checks that the unit runs `pulse run --config`, as an
// unprivileged user, hardened, and that the config it runs writes only
// where the unit lets it.
func TestSystemdUnit(t *testing.T) {
	u := systemdUnit(t)
	svc := u["Service"]
	last := func(key string) string {
		if v := svc[key]; len(v) > 0 {
			return v[len(v)-1]
		}
		return ""
	}

	exec := strings.Fields(last("ExecStart"))
	if len(exec) != 4 || path.Base(exec[0]) != "pulse" || !path.IsAbs(exec[0]) || exec[1] != "run" || exec[2] != "--config" {
		t.Fatalf("ExecStart=%s: want /PATH/pulse run --config FILE", last("ExecStart"))
	}
	configPath := exec[3]

	if last("DynamicUser") != "yes" && (last("User") == "" || last("User") == "root" || last("User") == "0") {
		t.Error("the service runs as root: set DynamicUser=yes or a dedicated User=")
	}
	for key, want := range map[string]string{
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"ProtectKernelLogs":       "yes",
		"ProtectControlGroups":    "yes",
		"ProtectClock":            "yes",
		"ProtectHostname":         "yes",
		"RestrictNamespaces":      "yes",
		"RestrictRealtime":        "yes",
		"RestrictSUIDSGID":        "yes",
		"LockPersonality":         "yes",
		"MemoryDenyWriteExecute":  "yes",
		"SystemCallArchitectures": "native",
		"CapabilityBoundingSet":   "",
		"StateDirectory":          "pulse",
		"ConfigurationDirectory":  "pulse",
	} {
		if _, ok := svc[key]; !ok || last(key) != want {
			t.Errorf("%s=%q (set: %v), want %q", key, last(key), ok, want)
		}
	}
	if families := strings.Fields(last("RestrictAddressFamilies")); !slices.Contains(families, "AF_INET") || !slices.Contains(families, "AF_INET6") ||
		slices.ContainsFunc(families, func(f string) bool { return !slices.Contains([]string{"AF_INET", "AF_INET6", "AF_UNIX"}, f) }) {
		t.Errorf("RestrictAddressFamilies=%s: want IPv4 and IPv6 (and AF_UNIX) only", last("RestrictAddressFamilies"))
	}
	if filters := svc["SystemCallFilter"]; len(filters) == 0 || filters[0] != "@system-service" {
		t.Errorf("SystemCallFilter=%v: want @system-service first", filters)
	}
	if stop := last("TimeoutStopSec"); stop == "" || mustSeconds(t, stop) <= 30 {
		t.Errorf("TimeoutStopSec=%q: more than the 30 s a stop may take to checkpoint and commit", stop)
	}
	if u["Install"]["WantedBy"] == nil {
		t.Error("[Install] WantedBy is missing: systemctl enable would do nothing")
	}

	// The shipped config is the one ExecStart names, and under
	// ProtectSystem=strict it may write only in the state directory.
	if configPath != "/etc/"+last("ConfigurationDirectory")+"/pulse.yaml" {
		t.Errorf("ExecStart names %s, outside ConfigurationDirectory=%s", configPath, last("ConfigurationDirectory"))
	}
	cfg := readPulseConfig(t, deployPath(t, "pulse.yaml"))
	state := "/var/lib/" + last("StateDirectory")
	for key, w := range cfg.writablePaths(t) {
		if !under(w, state) {
			t.Errorf("deploy/pulse.yaml %s %s is outside the state directory %s, read-only under ProtectSystem=strict", key, w, state)
		}
	}
	if !under(cfg.Rules, path.Dir(configPath)) {
		t.Errorf("deploy/pulse.yaml rules %s is outside %s", cfg.Rules, path.Dir(configPath))
	}
}

func mustSeconds(t *testing.T, v string) int {
	m := regexp.MustCompile(`^(\d+)(s|min)?$`).FindStringSubmatch(v)
	if m == nil {
		t.Fatalf("cannot read %q as a time span", v)
	}
	n, _ := strconv.Atoi(m[1])
	if m[2] == "min" {
		n *= 60
	}
	return n
}

// TestSystemdAnalyze runs systemd's own checks where systemd is installed:
// `systemd-analyze verify` (unknown keys, bad values) and `systemd-analyze
// security`, whose exposure score must stay "OK". The binary is not
// installed here, so a stand-in takes its path for verify.
func TestSystemdAnalyze(t *testing.T) {
	analyze, ok := tool(t, "systemd-analyze", "")
	if !ok {
		return
	}
	src, err := os.ReadFile(deployPath(t, "systemd", "pulse.service"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	standIn := filepath.Join(dir, "pulse")
	if err := os.WriteFile(standIn, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	binary := strings.Fields(systemdUnit(t)["Service"]["ExecStart"][0])[0]
	unitFile := filepath.Join(dir, "pulse.service")
	if err := os.WriteFile(unitFile, []byte(strings.ReplaceAll(string(src), "ExecStart="+binary, "ExecStart="+standIn)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", unitFile).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	out, err = exec.Command(analyze, "security", "--offline=yes", unitFile).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for pulse.service: (\d+\.\d+) (\S+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security printed no exposure level:\n%s", out)
	}
	level, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("systemd-analyze security: exposure %.1f %s", level, m[2])
	if level > 2.0 {
		t.Errorf("exposure level %.1f %s: want at most 2.0 (OK)\n%s", level, m[2], out)
	}
}
