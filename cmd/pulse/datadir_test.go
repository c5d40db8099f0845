package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// With no paths configured, pulse run creates its default data directory
// where it runs: pulse-data/ with the checkpoints, the transitions file
// and (with notifiers) the webhook state file. A directory that cannot be
// created stops the start, naming the key.
func TestDataDirectoriesAreCreated(t *testing.T) {
	work := t.TempDir()
	notify := writeFile(t, "notify.yaml", "notify:\n  - {name: ops, type: webhook, url: \"http://127.0.0.1:9/hook\"}\n")
	port, kport := freePort(t), freePort(t)
	cfg := writeConfig(t, t.TempDir(), fmt.Sprintf(`
listen: 127.0.0.1:%d
embedded: {listen: 127.0.0.1:%d, partitions: 1, demo: {enabled: true, accounts: 3, history_days: 1, speed: 200000}}
`, port, kport))
	d := startPulseIn(t, work, "run", "--config", cfg, "--rules", notify)
	waitUntil(t, "readiness", 30*time.Second, func() bool {
		if d.exited() {
			t.Fatalf("pulse exited:\n%s", d.output())
		}
		code, _ := httpGet(fmt.Sprintf("http://127.0.0.1:%d/readyz", port))
		return code == 200
	})
	if code := d.stop(t); code != 0 {
		t.Fatalf("exit %d:\n%s", code, d.output())
	}
	for _, f := range []string{"pulse-data/checkpoints", "pulse-data/transitions.jsonl", "pulse-data/webhooks.state"} {
		if _, err := os.Stat(filepath.Join(work, f)); err != nil {
			t.Errorf("%s was not created: %v", f, err)
		}
	}

	blocker := writeFile(t, "a-file", "")
	for key, setting := range map[string]string{
		"checkpoint.dir":          "checkpoint: {dir: %s/ckpt}",
		"output.transitions_file": "output: {transitions_file: %s/t.jsonl}",
		"webhooks.state_file":     "webhooks: {state_file: %s/w.state}",
	} {
		port, kport := freePort(t), freePort(t)
		body := fmt.Sprintf("listen: 127.0.0.1:%d\nembedded: {listen: 127.0.0.1:%d}\n", port, kport) + fmt.Sprintf(setting, blocker) + "\n"
		if key != "checkpoint.dir" {
			body += fmt.Sprintf("checkpoint: {dir: %s}\n", filepath.Join(t.TempDir(), "ckpt"))
		}
		cfg := writeConfig(t, t.TempDir(), body)
		code, _, errs := pulse(t, "", "run", "--config", cfg, "--rules", notify)
		if code != 2 || !strings.HasPrefix(errs, "pulse run: "+key+": creating "+blocker) || !strings.Contains(errs, "not a directory") {
			t.Errorf("%s under a file: exit %d, %s", key, code, errs)
		}
	}
}
