package main

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// smallDaemonConfig is a config of the embedded broker on free ports with
// a small demo load, for tests that need a running daemon.
func smallDaemonConfig(t *testing.T, extra string) (cfg, base string) {
	t.Helper()
	dir := t.TempDir()
	port, kport := freePort(t), freePort(t)
	cfg = writeConfig(t, dir, fmt.Sprintf(`
listen: 127.0.0.1:%d
embedded: {listen: 127.0.0.1:%d, partitions: 2, demo: {enabled: true, accounts: 5, history_days: 2, speed: 200000}}
checkpoint: {dir: %s}
output: {transitions_file: ""}
%s`, port, kport, filepath.Join(dir, "ckpt"), extra))
	return cfg, fmt.Sprintf("http://127.0.0.1:%d", port)
}

// log.format: json makes every line the daemon writes a JSON object with
// time, level and msg, from the start to a clean stop; --log-format
// overrides the config.
func TestLogFormat(t *testing.T) {
	cfg, base := smallDaemonConfig(t, "log: {format: json}\n")
	run := func(args ...string) string {
		d := startPulse(t, append([]string{"run", "--config", cfg}, args...)...)
		waitUntil(t, "readiness", 30*time.Second, func() bool {
			if d.exited() {
				t.Fatalf("pulse exited:\n%s", d.output())
			}
			code, _ := httpGet(base + "/readyz")
			return code == 200
		})
		if code := d.stop(t); code != 0 {
			t.Fatalf("exit %d:\n%s", code, d.output())
		}
		return d.output()
	}
	if msgs := jsonLogMessages(t, run()); !msgs["serving"] || !msgs["stopped"] {
		t.Fatalf("the JSON log lacks the start or the stop: %v", msgs)
	}
	out := run("--log-format", "text")
	if !strings.HasPrefix(out, "time=") || !strings.Contains(out, " msg=serving ") {
		t.Fatalf("--log-format text did not override log.format json:\n%s", out)
	}

	// A start that fails says why in a JSON record too, and nothing else.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	d := startPulse(t, "run", "--config", cfg, "--listen", taken.Addr().String())
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatal("pulse did not exit on a listen address in use")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 2 || !jsonLogMessages(t, d.output())["pulse run failed"] {
		t.Fatalf("exit %d:\n%s", code, d.output())
	}
}

// jsonLogMessages checks that every line of out is a JSON log record with
// time, level and msg, and returns the messages.
func jsonLogMessages(t *testing.T, out string) map[string]bool {
	t.Helper()
	msgs := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var rec struct{ Time, Level, Msg string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Time == "" || rec.Level == "" || rec.Msg == "" {
			t.Fatalf("not a JSON log record (%v): %s\nlog:\n%s", err, line, out)
		}
		msgs[rec.Msg] = true
	}
	return msgs
}
