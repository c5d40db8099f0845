package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The status page, rendered by a real browser (headless Chromium), lists
// the real accounts the embedded default scores. The screenshot is kept in
// the test's directory (and copied to $PULSE_SCREENSHOT if set).
func TestStatusPageInChromium(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("PULSE_REQUIRE_BROWSER") != "" {
			t.Fatal("chromium is not installed; ./scripts/test.sh installs it")
		}
		t.Skip("chromium is not installed; ./scripts/test.sh installs it and makes this test required")
	}
	dir := t.TempDir()
	port, kport := freePort(t), freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cfg := writeConfig(t, dir, fmt.Sprintf(`
listen: 127.0.0.1:%d
rules: %s
embedded: {listen: 127.0.0.1:%d, demo: {enabled: true, accounts: 40, history_days: 21, speed: 200000}}
checkpoint: {dir: %s}
output: {transitions_file: ""}
`, port, exampleRules, kport, filepath.Join(dir, "ckpt")))
	d := startPulse(t, "run", "--config", cfg)
	var accounts []struct {
		ID    string `json:"account_id"`
		Grade string `json:"grade"`
	}
	waitUntil(t, "40 scored accounts", 60*time.Second, func() bool {
		_, body := httpGet(base + "/api/accounts?limit=1000")
		return json.Unmarshal(body, &accounts) == nil && len(accounts) == 40
	})

	browse := func(args ...string) []byte {
		t.Helper()
		args = append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
			"--disable-component-update", "--disable-sync", "--no-first-run", "--user-data-dir=" + t.TempDir()}, args...)
		out, err := exec.Command(chromium, append(args, base+"/")...).Output()
		if err != nil {
			t.Fatalf("chromium %v: %v\n%s", args, err, d.output())
		}
		return out
	}
	dom := string(browse("--dump-dom"))
	if !strings.Contains(dom, "Pulse — account health") {
		t.Fatalf("not the status page:\n%.500s", dom)
	}
	// The riskiest account comes first, with its grade.
	first := accounts[0]
	if !strings.Contains(dom, ">"+first.ID+"<") || !strings.Contains(dom, `class="grade `+first.Grade+`"`) {
		t.Fatalf("the page does not list %s (%s)", first.ID, first.Grade)
	}
	if n := strings.Count(dom, "/api/accounts/"); n != 40 {
		t.Fatalf("the page lists %d accounts, want 40", n)
	}
	shot := filepath.Join(dir, "status.png")
	browse("--screenshot="+shot, "--window-size=1400,900", "--hide-scrollbars")
	info, err := os.Stat(shot)
	if err != nil || info.Size() < 20_000 {
		t.Fatalf("screenshot %s: %v (%d bytes)", shot, err, sizeOf(info))
	}
	if dst := os.Getenv("PULSE_SCREENSHOT"); dst != "" {
		data, _ := os.ReadFile(shot)
		os.WriteFile(dst, data, 0o644)
	}
	t.Logf("screenshot: %s (%d bytes)", shot, info.Size())
}

func sizeOf(info os.FileInfo) int64 {
	if info == nil {
		return 0
	}
	return info.Size()
}
