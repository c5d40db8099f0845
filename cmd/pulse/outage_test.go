package main

import (
	"bufio"
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pulsehq/pulse/sinks/clickhouse/chtest"
)

// metricSum scrapes base/metrics and sums the samples of the metric name
// whose labels contain every one of labels ("" for all).
func metricSum(t testing.TB, base, name string, labels ...string) (sum float64, found bool) {
	t.Helper()
	code, body := httpGet(base + "/metrics")
	if code != 200 {
		return 0, false
	}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(nil, 1<<20)
outer:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue outer
			}
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q", line)
		}
		sum, found = sum+v, true
	}
	return sum, found
}

// A ClickHouse outage shows: every retried INSERT counts as an error and
// a retry of the clickhouse sink, and the lag follows the backlog while the
// partitions wait (it always equals what was produced minus what was
// applied). After the outage everything is stored and a stop is clean
// (exit 0). A stop while ClickHouse is down exits non-zero and says what
// was not stored.
func TestClickHouseOutageShowsAndAStopDuringItSaysWhatWasNotStored(t *testing.T) {
	broker := startBrokerProcess(t)
	ch := chtest.Start(t)
	lines, _ := fencedStream(40, 30)
	dir := t.TempDir()
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cfg := writeConfig(t, dir, fmt.Sprintf(`
listen: 127.0.0.1:%d
rules: %s
kafka: {brokers: [%s], topic: events, group: outage-test, session_timeout: 6s}
engine: {idle_advance: "0"}
checkpoint: {dir: %s, interval: 200ms}
output: {transitions_file: "", metrics_interval: 100ms}
clickhouse: {addr: [%s], database: outage, batch_rows: 500, flush_interval: 50ms}
`, port, exampleRules, broker, filepath.Join(dir, "ckpt"), ch.Addr()))
	p := newProducer([]string{broker}, "events")
	defer p.Close()
	produced := 0
	produce := func(part [][]byte) {
		t.Helper()
		if err := p.write(context.Background(), part); err != nil {
			t.Fatal(err)
		}
		produced += len(part)
	}
	// lagIsBacklog: the lag every partition reports adds up to the events
	// produced and not applied yet (this process's counters start at
	// applied0).
	lagIsBacklog := func(applied0 int) (lag float64, ok bool) {
		applied, _ := metricSum(t, base, "pulse_events_total")
		lag, found := metricSum(t, base, "pulse_kafka_lag")
		return lag, found && int(lag) == produced-applied0-int(applied)
	}
	third := len(lines) / 3

	d := startPulse(t, "run", "--config", cfg)
	waitUntil(t, "readiness", 60*time.Second, func() bool { code, _ := httpGet(base + "/readyz"); return code == 200 })
	produce(lines[:third])
	waitUntil(t, "the first third applied and stored", 60*time.Second, func() bool {
		lag, ok := lagIsBacklog(0)
		return ok && lag == 0 && len(clickhouseRows(t, ch.Addr(), "SELECT toString(count()) FROM outage.scores")) == 1 &&
			clickhouseRows(t, ch.Addr(), "SELECT toString(count()) FROM outage.scores")[0] != "0"
	})
	errors0, _ := metricSum(t, base, "pulse_sink_errors_total", `sink="clickhouse"`)
	retries0, _ := metricSum(t, base, "pulse_sink_retries_total")

	ch.Stop()
	produce(lines[third : 2*third])
	var lag float64
	waitUntil(t, "the outage in the metrics", 30*time.Second, func() bool {
		errs, _ := metricSum(t, base, "pulse_sink_errors_total", `sink="clickhouse"`)
		retries, _ := metricSum(t, base, "pulse_sink_retries_total")
		var ok bool
		lag, ok = lagIsBacklog(0)
		return errs > errors0 && retries > retries0 && ok && lag > 0
	})
	t.Logf("during the outage: %v events wait", lag)

	if err := ch.Restart(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the backlog applied after the outage", 60*time.Second, func() bool {
		lag, ok := lagIsBacklog(0)
		return ok && lag == 0
	})
	if code := d.stop(t); code != 0 {
		t.Fatalf("exit code %d after a clean stop; log:\n%s", code, d.output())
	}

	// Again, and ClickHouse goes down before SIGTERM: the rows of the
	// last third cannot be stored.
	d = startPulse(t, "run", "--config", cfg)
	waitUntil(t, "readiness", 60*time.Second, func() bool { code, _ := httpGet(base + "/readyz"); return code == 200 })
	ch.Stop()
	produce(lines[2*third:])
	waitUntil(t, "the last third fetched as far as ClickHouse lets it", 30*time.Second, func() bool {
		applied, _ := metricSum(t, base, "pulse_events_total")
		_, ok := lagIsBacklog(2 * third)
		return applied > 0 && ok
	})
	code := d.stop(t)
	out := d.output()
	if code == 0 {
		t.Fatalf("exit code 0 after a stop with ClickHouse down; log:\n%s", out)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`pulse run: .*partition \d+: `),
		regexp.MustCompile(`\d+ events \(offsets \d+ to \d+\) not checkpointed: re-read from offset \d+`),
		regexp.MustCompile(`\d+ score rows`),
	} {
		if !want.MatchString(out) {
			t.Errorf("the log does not say %s; log:\n%s", want, out)
		}
	}
}

// Pulse starts while ClickHouse is down: it serves, scores and reports the
// outage, and once ClickHouse is up it creates the schema and stores every
// score row, exactly those of a replay.
func TestStartsWhileClickHouseIsDown(t *testing.T) {
	broker := startBrokerProcess(t)
	ch := chtest.Start(t)
	ch.Stop()
	lines, fenceIDs := fencedStream(30, 20)
	dir := t.TempDir()
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cfg := writeConfig(t, dir, fmt.Sprintf(`
listen: 127.0.0.1:%d
rules: %s
kafka: {brokers: [%s], topic: events, group: late-clickhouse, session_timeout: 6s}
engine: {idle_advance: "0"}
checkpoint: {dir: %s, interval: 200ms}
output: {transitions_file: "", metrics_interval: 100ms}
clickhouse: {addr: [%s], database: late, flush_interval: 50ms}
`, port, exampleRules, broker, filepath.Join(dir, "ckpt"), ch.Addr()))
	d := startPulse(t, "run", "--config", cfg)
	waitUntil(t, "health and readiness with ClickHouse down", 60*time.Second, func() bool {
		if d.exited() {
			t.Fatalf("pulse exited with ClickHouse down:\n%s", d.output())
		}
		health, _ := httpGet(base + "/healthz")
		ready, _ := httpGet(base + "/readyz")
		return health == 200 && ready == 200
	})
	p := newProducer([]string{broker}, "events")
	defer p.Close()
	if err := p.write(context.Background(), lines); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "every partition's fence scored", 60*time.Second, func() bool {
		for _, id := range fenceIDs {
			if code, _ := httpGet(base + "/api/accounts/" + id); code != 200 {
				return false
			}
		}
		return true
	})
	wantStates, _, wantScores := replayed(t, lines)
	sameLines(t, "states", apiStates(t, base), wantStates)
	waitUntil(t, "the outage in the metrics", 20*time.Second, func() bool {
		errs, _ := metricSum(t, base, "pulse_sink_errors_total", `sink="clickhouse"`)
		return errs > 0
	})

	if err := ch.Restart(); err != nil {
		t.Fatal(err)
	}
	query := "SELECT concat(account_id, ' ', toString(ts_ns), ' ', toString(grade), ' ', toString(round(ifNull(score, -1), 4))) FROM late.scores FINAL ORDER BY account_id, ts_ns"
	waitUntil(t, "every score row in ClickHouse", 60*time.Second, func() bool {
		return len(clickhouseRows(t, ch.Addr(), "SELECT name FROM system.tables WHERE database = 'late' AND name = 'scores'")) == 1 &&
			len(clickhouseRows(t, ch.Addr(), query)) == len(wantScores)
	})
	sameLines(t, "ClickHouse score rows", clickhouseRows(t, ch.Addr(), query), wantScores)
	if tables := clickhouseRows(t, ch.Addr(), "SELECT name FROM system.tables WHERE database = 'late'"); len(tables) < 6 {
		t.Fatalf("tables %v: the schema is incomplete", tables)
	}
	if code := d.stop(t); code != 0 {
		t.Fatalf("exit code %d; log:\n%s", code, d.output())
	}
}
