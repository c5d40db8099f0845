package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulsehq/pulse/engine"
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

// Once every partition has applied what the broker holds and its newest
// event is under a minute old, the daemon logs "caught up" with how long
// it took since the start and how many partitions it owns — once. History
// applied as fast as it arrives (lag 0, old events) is not caught up.
func TestCaughtUpIsLogged(t *testing.T) {
	broker := startBrokerProcess(t)
	dir := t.TempDir()
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cfg := writeConfig(t, dir, fmt.Sprintf(`
listen: 127.0.0.1:%d
kafka: {brokers: [%s], topic: events, group: caught-up, session_timeout: 6s}
checkpoint: {dir: %s}
output: {transitions_file: "", metrics_interval: 100ms}
log: {format: json}
`, port, broker, filepath.Join(dir, "ckpt")))

	// An account in each of the 8 partitions.
	var accounts []string
	covered := map[int]bool{}
	for i := 0; len(covered) < 8; i++ {
		id := fmt.Sprintf("acct-%d", i)
		if p := engine.PartitionOf([]byte(id), 8); !covered[p] {
			covered[p] = true
			accounts = append(accounts, id)
		}
	}
	events := func(ts time.Time) [][]byte {
		var lines [][]byte
		for _, a := range accounts {
			lines = append(lines, fmt.Appendf(nil, `{"ts":%q,"account_id":%q,"type":"login","user_id":"u1"}`, ts.UTC().Format(time.RFC3339Nano), a))
		}
		return lines
	}
	p := newProducer([]string{broker}, "events")
	defer p.Close()
	if err := p.write(context.Background(), events(time.Now().Add(-10*24*time.Hour))); err != nil {
		t.Fatal(err)
	}

	d := startPulse(t, "run", "--config", cfg)
	caughtUp := func() []string {
		var recs []string
		for _, line := range strings.Split(d.output(), "\n") {
			if strings.Contains(line, `"msg":"caught up"`) {
				recs = append(recs, line)
			}
		}
		return recs
	}
	waitUntil(t, "the history applied", 60*time.Second, func() bool {
		if d.exited() {
			t.Fatalf("pulse exited:\n%s", d.output())
		}
		ok, _ := metricSum(t, base, "pulse_events_total", `result="ok"`)
		return ok == float64(len(accounts))
	})
	time.Sleep(time.Second) // ten lag reports of the daemon (a separate process) in which it must not say caught up
	if recs := caughtUp(); len(recs) > 0 {
		t.Fatalf("caught up on events ten days old:\n%s", strings.Join(recs, "\n"))
	}

	if err := p.write(context.Background(), events(time.Now())); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, `"caught up" in the log`, 30*time.Second, func() bool { return len(caughtUp()) > 0 })
	time.Sleep(time.Second) // ten more lag reports of the daemon process, in which it must not say it again
	recs := caughtUp()
	if len(recs) != 1 {
		t.Fatalf("want one caught-up record, got:\n%s", strings.Join(recs, "\n"))
	}
	var rec struct {
		Took       string
		Partitions int
	}
	if err := json.Unmarshal([]byte(recs[0]), &rec); err != nil {
		t.Fatal(err)
	}
	took, err := time.ParseDuration(rec.Took)
	if err != nil || took <= time.Second || took > 2*time.Minute || rec.Partitions != 8 {
		t.Fatalf("caught-up record %s: took %v (%v), want the time since the start; partitions %d, want 8", recs[0], took, err, rec.Partitions)
	}
	t.Log(recs[0])
	if code := d.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
}
