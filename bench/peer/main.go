// Command peer measures Pulse against the peer a data team would pick
// instead: ClickHouse's Kafka table engine with materialized views that
// roll the topic up per account and UTC day. With a broker in its own
// process (`pulse broker`) and the topic pre-filled with a `pulse gen`
// stream, it times, in rotation, each in a new consumer group from offset
// 0 and with a new ClickHouse server:
//
//   - the peer: from its first CREATE until both rollup tables hold every
//     event, checked against totals the harness counted while producing;
//   - `pulse run` with every sink (ClickHouse score history, transitions
//     and daily rollup; webhooks to a receiver in this harness; the
//     transitions file; /metrics, scraped by this harness four times a
//     second): from its start until it has applied every event, and until
//     its last INSERT or webhook delivery.
//
// It prints a Markdown report with the CPU and peak memory of every
// process involved. It exits non-zero, saying which step, when a step does
// not reach its count within --timeout.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/pulsehq/pulse/bench"
	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/sinks/clickhouse/chtest"
)

func main() {
	pulse := flag.String("pulse", "./pulse", "pulse binary")
	rulesFile := flag.String("rules", "deploy/rules/example.yaml", "rules file for `pulse run`")
	accounts := flag.Int("accounts", 20000, "accounts to generate")
	days := flag.Int("days", 4, "days to generate")
	runs := flag.Int("runs", 3, "runs of each, in rotation")
	consumers := flag.Int("consumers", 1, "kafka_num_consumers of the peer's Kafka table (2 double-counts here: see bench/results/peer.md)")
	blockSize := flag.Int("block", 0, "kafka_max_block_size of the peer's Kafka table (0: the engine's default, max_insert_block_size)")
	only := flag.String("only", "", "run only this side (peer, pulse), for experiments")
	timeout := flag.Duration("timeout", 10*time.Minute, "time each step may take to reach its count")
	timeline := flag.Bool("timeline", true, "log the peer's server at trace level, for the timeline of its passes")
	short := flag.Bool("short", false, "print only the table and what each computed (to add a second size to a report)")
	flag.Parse()
	absRules, err := filepath.Abs(*rulesFile)
	check(err, "rules file")

	broker, err := bench.StartBroker(*pulse)
	check(err, "starting the broker")
	atExit(broker.Stop)
	defer exit(0)

	began := time.Now()
	var want totals
	n, err := bench.Fill(broker.Addr, *accounts, *days, want.add)
	check(err, "producing the stream")
	want.events = n
	log.Printf("produced %d events in %.1f s", n, time.Since(began).Seconds())

	cfg := peerConfig{broker: broker.Addr, consumers: *consumers, blockSize: *blockSize, timeout: *timeout, timeline: *timeline}
	var peers, pulses []result
	for i := range *runs {
		if *only == "" || *only == "peer" {
			r := runPeer(cfg, &want, fmt.Sprintf("peer-%d", i), broker.Cmd.Process.Pid)
			log.Printf("peer: %s", r.line())
			peers = append(peers, r)
		}
		if *only == "" || *only == "pulse" {
			r := runPulse(*pulse, absRules, broker.Addr, n, fmt.Sprintf("pulse-peer-%d", i), broker.Cmd.Process.Pid, *timeout)
			log.Printf("pulse: %s", r.line())
			pulses = append(pulses, r)
		}
	}
	report(reportArgs{n: n, accounts: *accounts, days: *days, runs: *runs, cfg: cfg, want: &want, peers: peers, pulses: pulses, rules: filepath.Base(*rulesFile), short: *short})
}

// totals are what the peer's rollups must hold, counted from the events
// the harness produced: the check that it read every event, and the same
// ones.
type totals struct {
	events, logins, features, sessions, tickets, apiCalls int
	sessionSeconds                                        float64
	accountDays                                           map[dayKey]struct{}
	userDays, moduleDays                                  map[dayKey3]struct{}
	ids                                                   map[string]int32 // accounts, users and modules, numbered
}

type dayKey struct{ account, day int32 }

type dayKey3 struct {
	dayKey
	id int32 // user or module
}

// id numbers a name; m[string(b)] does not copy b when it is found.
func (t *totals) id(b []byte) int32 {
	if id, ok := t.ids[string(b)]; ok {
		return id
	}
	id := int32(len(t.ids))
	t.ids[string(b)] = id
	return id
}

// add counts one event. The day is its UTC day, as the peer's toDate of
// the parsed ts in a server whose time zone is UTC.
func (t *totals) add(ev *engine.Event) {
	if t.ids == nil {
		t.accountDays, t.userDays, t.moduleDays, t.ids = map[dayKey]struct{}{}, map[dayKey3]struct{}{}, map[dayKey3]struct{}{}, map[string]int32{}
	}
	key := dayKey{t.id(ev.Account), int32(ev.Ts / int64(24*time.Hour))}
	t.accountDays[key] = struct{}{}
	if len(ev.User) > 0 {
		// User ids are per account ("u7"): the account in the key keeps them apart.
		t.userDays[dayKey3{key, t.id(ev.User)}] = struct{}{}
	}
	switch ev.Type {
	case engine.TypeLogin:
		t.logins++
	case engine.TypeFeature:
		t.features++
		t.moduleDays[dayKey3{key, t.id(ev.Module)}] = struct{}{}
	case engine.TypeSession:
		t.sessions++
		t.sessionSeconds += ev.Duration
	case engine.TypeAPI:
		t.apiCalls += int(ev.Count)
	case engine.TypeTicketOpened:
		t.tickets++
	}
}

// result is one run of either side.
type result struct {
	caughtUp time.Duration // pulse: from its start until it had applied every event
	stored   time.Duration // until every row was stored: the peer's rollups full, pulse's last INSERT
	events   int
	// CPU seconds (user+sys) of each process over the run, and peak
	// resident memory (VmHWM) of the consumer and of ClickHouse.
	cpu                  map[string]float64
	peakRSS, clickhouseR int64
	clickhouseIdle       int64    // ClickHouse's resident memory before the run
	load                 float64  // the machine's load average when the run began
	facts                []string // what the run produced
	passes               []pass   // peer: the Kafka engine's passes that carried messages
	emptyPasses          int      // peer: passes without messages before the first one
	// peer: CPU seconds of ClickHouse's Kafka stream (a task of its
	// background schedule pool, whose threads take turns running it), of
	// librdkafka's threads, and of merges (the background pool).
	streamCPU, kafkaCPU, mergeCPU float64
}

func (r result) rate() float64 { return float64(r.events) / r.stored.Seconds() }

func (r result) totalCPU() float64 {
	t := 0.0
	for _, v := range r.cpu {
		t += v
	}
	return t
}

func (r result) line() string {
	var cpu []string
	for _, k := range []string{"pulse", "clickhouse", "broker", "harness"} {
		if v, ok := r.cpu[k]; ok {
			cpu = append(cpu, fmt.Sprintf("%s %.1f", k, v))
		}
	}
	return fmt.Sprintf("%.1f s (caught up %.1f s), %.0f events/s, CPU s: %s; peak RSS %d MB, ClickHouse %d MB", r.stored.Seconds(), r.caughtUp.Seconds(), r.rate(), strings.Join(cpu, ", "), r.peakRSS>>20, r.clickhouseR>>20)
}

// usage samples the CPU of named processes at the start and end of a run.
type usage struct {
	pids  map[string]int
	start map[string]float64
}

func startUsage(pids map[string]int) *usage {
	u := &usage{pids: pids, start: map[string]float64{}}
	for k, pid := range pids {
		u.start[k], _ = bench.ProcessUsage(pid)
	}
	return u
}

func (u *usage) since() map[string]float64 {
	out := map[string]float64{}
	for k, pid := range u.pids {
		c, _ := bench.ProcessUsage(pid)
		out[k] = c - u.start[k]
	}
	return out
}

type peerConfig struct {
	broker               string
	consumers, blockSize int
	timeout              time.Duration
	timeline             bool // log at trace level, for the timeline of passes
}

// peerDDL is the peer's schema in the order it is created. A Kafka table
// consumes once a view reads it and every view's target table exists, and
// a view created while it streams misses the blocks already read. So the
// views come first and their target tables last: the last CREATE starts
// the stream with both views attached. (ClickHouse 18.16 does not cascade
// a view into a Null table's views, the usual way to feed two tables.)
// kafka_num_consumers parses in that many threads; each block is inserted
// into both views when it holds kafka_max_block_size rows or the topic
// has nothing more to give (or stream_flush_interval_ms passed).
func peerDDL(c peerConfig, group string) []string {
	block := ""
	if c.blockSize > 0 {
		block = fmt.Sprintf(",\n    kafka_max_block_size = %d", c.blockSize)
	}
	return []string{
		fmt.Sprintf(`CREATE TABLE events_queue (
    ts String,
    account_id String,
    type String,
    user_id String,
    module String,
    duration_s Float64,
    count UInt64
) ENGINE = Kafka SETTINGS
    kafka_broker_list = '%s',
    kafka_topic_list = 'events',
    kafka_group_name = '%s',
    kafka_format = 'JSONEachRow',
    kafka_num_consumers = %d%s`, c.broker, group, c.consumers, block),
		`CREATE MATERIALIZED VIEW account_daily_mv TO account_daily AS
SELECT
    toDate(parseDateTimeBestEffort(ts)) AS day,
    account_id,
    countState() AS events,
    uniqExactIfState(user_id, user_id != '') AS users,
    countIfState(type = 'login') AS logins,
    countIfState(type = 'feature') AS features,
    countIfState(type = 'session') AS sessions,
    sumIfState(duration_s, type = 'session') AS session_seconds,
    sumIfState(count, type = 'api') AS api_calls,
    countIfState(type = 'ticket_opened') AS tickets_opened
FROM events_queue
GROUP BY day, account_id`,
		`CREATE MATERIALIZED VIEW account_module_daily_mv TO account_module_daily AS
SELECT
    toDate(parseDateTimeBestEffort(ts)) AS day,
    account_id,
    module,
    count() AS events
FROM events_queue
WHERE type = 'feature'
GROUP BY day, account_id, module`,
		`CREATE TABLE account_daily (
    day Date,
    account_id String,
    events AggregateFunction(count),
    users AggregateFunction(uniqExactIf, String, UInt8),
    logins AggregateFunction(countIf, UInt8),
    features AggregateFunction(countIf, UInt8),
    sessions AggregateFunction(countIf, UInt8),
    session_seconds AggregateFunction(sumIf, Float64, UInt8),
    api_calls AggregateFunction(sumIf, UInt64, UInt8),
    tickets_opened AggregateFunction(countIf, UInt8)
) ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (account_id, day)`,
		`CREATE TABLE account_module_daily (
    day Date,
    account_id String,
    module String,
    events UInt64
) ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (account_id, day, module)`,
	}
}

// kafkaConfig makes a new consumer group start at the earliest offset
// (librdkafka's default is the latest). ClickHouse reads it from
// config.d/ beside the server's config file; only this harness's servers
// get it.
const kafkaConfig = `<yandex><kafka><auto_offset_reset>smallest</auto_offset_reset></kafka></yandex>
`

// traceConfig logs the Kafka engine's passes (trace level), for the
// timeline of the report: a few lines a pass, and a dozen per count query.
const traceConfig = `<yandex><logger><level>trace</level></logger></yandex>
`

func runPeer(c peerConfig, want *totals, group string, brokerPid int) result {
	dir := tempDir("pulse-peer-")
	defer atExit(func() { os.RemoveAll(dir) })()
	check(os.MkdirAll(filepath.Join(dir, "config.d"), 0o755), "peer: config.d")
	check(os.WriteFile(filepath.Join(dir, "config.d", "kafka.xml"), []byte(kafkaConfig), 0o644), "peer: config.d")
	if c.timeline {
		check(os.WriteFile(filepath.Join(dir, "config.d", "trace.xml"), []byte(traceConfig), 0o644), "peer: config.d")
	}
	ch, err := chtest.Launch(dir)
	check(err, "peer: starting ClickHouse")
	stop := atExit(ch.Stop)
	defer stop()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{ch.Addr()}})
	check(err, "peer: connecting to ClickHouse")
	defer conn.Close()
	ctx := context.Background()

	idle, _ := bench.Memory(ch.Pid())
	load := loadAverage()
	u := startUsage(map[string]int{"clickhouse": ch.Pid(), "broker": brokerPid, "harness": os.Getpid()})
	start := time.Now()
	for _, stmt := range peerDDL(c, group) {
		check(conn.Exec(ctx, stmt), "peer: "+strings.SplitN(stmt, "\n", 2)[0])
	}
	// Each block is inserted into one view, then the other: both tables
	// must be full.
	var events, features uint64
	for {
		err := conn.QueryRow(ctx, `SELECT
    (SELECT countMerge(events) FROM account_daily),
    (SELECT sum(events) FROM account_module_daily)`).Scan(&events, &features)
		check(err, "peer: counting the rollups")
		if events >= uint64(want.events) && features >= uint64(want.features) {
			break
		}
		if time.Since(start) > c.timeout {
			fail("peer: after %v the rollups hold %d of %d events and %d of %d feature events%s",
				c.timeout, events, want.events, features, want.features, tail(filepath.Join(dir, "error.log")))
		}
		time.Sleep(200 * time.Millisecond)
	}
	r := result{stored: time.Since(start), events: want.events, cpu: u.since(), clickhouseIdle: idle, load: load}
	r.caughtUp = r.stored
	// The server is new: its threads' CPU is almost all this run's.
	for _, t := range threads(ch.Pid()) {
		switch {
		case t.name == "BackgrSchedPool":
			r.streamCPU += t.cpu
		case strings.HasPrefix(t.name, "rdk:"):
			r.kafkaCPU += t.cpu
		case t.name == "BackgrProcPool":
			r.mergeCPU += t.cpu
		}
	}
	_, r.clickhouseR = bench.Memory(ch.Pid())
	r.peakRSS = r.clickhouseR
	r.facts = verifyPeer(ctx, conn, want)
	r.passes, r.emptyPasses = timeline(filepath.Join(dir, "server.log"))
	return r
}

// verifyPeer checks the rollups against the produced events, and returns
// what they hold.
func verifyPeer(ctx context.Context, conn clickhouse.Conn, want *totals) []string {
	var rows, events, users, logins, features, sessions, apiCalls, tickets uint64
	var seconds float64
	err := conn.QueryRow(ctx, `SELECT count(), sum(e), sum(u), sum(l), sum(f), sum(s), sum(ss), sum(a), sum(t) FROM (
    SELECT countMerge(events) AS e, uniqExactIfMerge(users) AS u, countIfMerge(logins) AS l,
        countIfMerge(features) AS f, countIfMerge(sessions) AS s, sumIfMerge(session_seconds) AS ss,
        sumIfMerge(api_calls) AS a, countIfMerge(tickets_opened) AS t
    FROM account_daily GROUP BY account_id, day)`).Scan(&rows, &events, &users, &logins, &features, &sessions, &seconds, &apiCalls, &tickets)
	check(err, "peer: reading the daily rollup")
	var moduleRows, moduleEvents uint64
	err = conn.QueryRow(ctx, `SELECT count(), sum(n) FROM (SELECT sum(events) AS n FROM account_module_daily GROUP BY account_id, day, module)`).Scan(&moduleRows, &moduleEvents)
	check(err, "peer: reading the module rollup")
	if events > uint64(want.events) {
		fail("peer: the rollups hold %d events, %d more than the stream has: some were read twice", events, events-uint64(want.events))
	}
	type pair struct {
		name      string
		got, want uint64
	}
	for _, p := range []pair{
		{"account-day rows", rows, uint64(len(want.accountDays))},
		{"events", events, uint64(want.events)},
		{"distinct users summed over account-days", users, uint64(len(want.userDays))},
		{"logins", logins, uint64(want.logins)},
		{"feature events", features, uint64(want.features)},
		{"sessions", sessions, uint64(want.sessions)},
		{"API calls", apiCalls, uint64(want.apiCalls)},
		{"tickets opened", tickets, uint64(want.tickets)},
		{"account-day-module rows", moduleRows, uint64(len(want.moduleDays))},
		{"feature events by module", moduleEvents, uint64(want.features)},
	} {
		if p.got != p.want {
			fail("peer: the rollups hold %d %s, the stream has %d", p.got, p.name, p.want)
		}
	}
	if math.Abs(seconds-want.sessionSeconds) > 1e-6*want.sessionSeconds {
		fail("peer: the rollups hold %.0f session seconds, the stream has %.0f", seconds, want.sessionSeconds)
	}
	return []string{
		fmt.Sprintf("%d account-day rows (events, distinct users, logins, feature events, sessions and their seconds, API calls, tickets opened)", rows),
		fmt.Sprintf("%d account-day-module rows (feature events per module)", moduleRows),
		"every total equal to the produced stream's",
	}
}

// pass is one pass of the Kafka engine's stream thread (ClickHouse
// 18.16): it reads blocks of max_block_size rows (65,536) until polling
// finds nothing more or stream_flush_interval_ms (7.5 s) has passed,
// checked between blocks; the views' INSERT gathers the blocks up
// to min_insert_block_size_rows (1,048,576) and runs each view's GROUP BY
// on them; the pass commits its offsets when its reading ends.
type pass struct {
	start, read, done time.Duration // since the first CREATE
	messages          int
	groupBys          int           // the views' aggregations, two per gathered block
	groupBy           time.Duration // time they took, in the pass's thread
}

// timeline reads the passes that carried messages from the server's log,
// and counts the empty ones before the first.
func timeline(logFile string) (passes []pass, empty int) {
	b, err := os.ReadFile(logFile)
	if err != nil {
		return nil, 0
	}
	var t0 time.Time
	var cur *pass
	var thread string // "[ 28 ]": the pass's thread
	for line := range strings.Lines(string(b)) {
		if len(line) < 26 {
			continue
		}
		t, err := time.Parse("2006.01.02 15:04:05.000000", line[:26])
		if err != nil {
			continue
		}
		switch {
		case strings.Contains(line, "executeQuery") && strings.Contains(line, "CREATE TABLE events_queue"):
			t0 = t
		case t0.IsZero():
		case strings.Contains(line, "StorageKafka (events_queue): Started streaming"):
			cur = &pass{start: t.Sub(t0)}
			thread, _, _ = strings.Cut(line[27:], "]")
		case cur == nil:
		case strings.Contains(line, "Aggregator: Aggregated.") && strings.HasPrefix(line[27:], thread+"]"):
			var in, out int
			var sec float64
			if _, err := fmt.Sscanf(line[strings.Index(line, "Aggregated.")+len("Aggregated."):], " %d to %d rows", &in, &out); err == nil && in > 0 {
				fmt.Sscanf(line[strings.Index(line, " in ")+4:], "%f", &sec)
				cur.groupBys++
				cur.groupBy += time.Duration(sec * float64(time.Second))
			}
		case !strings.Contains(line, "StorageKafka (events_queue)"):
		case strings.Contains(line, "Committing "):
			// One line per consumer.
			var n int
			fmt.Sscanf(line[strings.Index(line, "Committing ")+len("Committing "):], "%d", &n)
			cur.messages += n
			cur.read = t.Sub(t0)
		case strings.Contains(line, "Execution took"):
			cur.done = t.Sub(t0)
			if cur.messages > 0 {
				passes = append(passes, *cur)
			} else if len(passes) == 0 {
				empty++
			}
			cur = nil
		}
	}
	return passes, empty
}

// thread is one thread of a process: its name and the CPU seconds it has
// used.
type thread struct {
	name string
	cpu  float64
}

func threads(pid int) []thread {
	dirs, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var out []thread
	for _, d := range dirs {
		name, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/comm", pid, d.Name()))
		tid, _ := strconv.Atoi(d.Name())
		cpu, _ := bench.ThreadUsage(pid, tid)
		out = append(out, thread{strings.TrimSpace(string(name)), cpu})
	}
	return out
}

// loadAverage is the machine's load average over the last minute.
func loadAverage() float64 {
	b, _ := os.ReadFile("/proc/loadavg")
	var l float64
	fmt.Sscanf(string(b), "%f", &l)
	return l
}

// pulseConfig is `pulse run` with every sink. webhooks.max_age 0 notifies
// transitions of any age: by default a catch-up of history is stored but
// not notified, and the webhook sink would have nothing to do.
const pulseConfig = `listen: 127.0.0.1:%d
rules: %s
kafka: {brokers: [%s], group: %s}
engine: {idle_advance: "0"}
checkpoint: {dir: %s, interval: 30s}
log: {level: warn}
clickhouse: {addr: [%s]}
webhooks: {state_file: %s, max_age: "0"}
output: {transitions_file: %s}
`

// notifyBlock posts every transition, resolved ones too, to the harness.
const notifyBlock = `notify:
  - {name: all, type: webhook, url: "http://%s/", send_resolved: true}
`

func runPulse(bin, rulesFile, addr string, n int, group string, brokerPid int, timeout time.Duration) result {
	dir := tempDir("pulse-peer-run-")
	defer atExit(func() { os.RemoveAll(dir) })()
	ch, err := chtest.Launch(dir)
	check(err, "pulse: starting ClickHouse")
	stopCH := atExit(ch.Stop)
	defer stopCH()

	var hooks atomic.Int64
	receiver := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		hooks.Add(1)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	check(err, "pulse: webhook receiver")
	go receiver.Serve(ln)
	defer receiver.Close()
	rules, err := os.ReadFile(rulesFile)
	check(err, "pulse: rules file")
	withNotify := filepath.Join(dir, "rules.yaml")
	rules = append(rules, fmt.Appendf(nil, "\n"+notifyBlock, ln.Addr())...)
	check(os.WriteFile(withNotify, rules, 0o644), "pulse: rules file")
	port, err := bench.FreePort()
	check(err, "pulse: port")
	transitions := filepath.Join(dir, "transitions.jsonl")
	cfg := filepath.Join(dir, "pulse.yaml")
	check(os.WriteFile(cfg, fmt.Appendf(nil, pulseConfig, port, withNotify, addr, group, filepath.Join(dir, "ckpt"), ch.Addr(), filepath.Join(dir, "webhooks.state"), transitions), 0o644), "pulse: config")

	start := time.Now()
	cmd := exec.Command(bin, "run", "--config", cfg)
	cmd.Stderr = os.Stderr
	check(cmd.Start(), "pulse: starting pulse run")
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopPulse := atExit(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	})
	defer stopPulse()
	load := loadAverage()
	u := startUsage(map[string]int{"pulse": cmd.Process.Pid, "clickhouse": ch.Pid(), "broker": brokerPid, "harness": os.Getpid()})

	// Caught up: every event applied (pulse_events_total, as the
	// streaming harness counts). Stored: the rows INSERTed into
	// ClickHouse and the webhook deliveries stop growing for three flush
	// intervals; the last change seen is when the last INSERT or delivery
	// ended.
	r := result{events: n, load: load}
	var rows float64
	var delivered int64
	var changed time.Time
	for {
		select {
		case err := <-exited:
			fail("pulse: `pulse run` exited before it was done: %v", err)
		default:
		}
		now := time.Now()
		if r.caughtUp == 0 {
			if seen := bench.MetricSum(port, "pulse_events_total{"); seen >= float64(n) {
				r.caughtUp, changed = now.Sub(start), now
			} else if now.Sub(start) > timeout {
				fail("pulse: after %v `pulse run` has applied %.0f of %d events", timeout, seen, n)
			}
		} else {
			v, d := bench.MetricSum(port, "pulse_clickhouse_insert_rows_sum{"), hooks.Load()
			if v != rows || d != delivered {
				rows, delivered, changed = v, d, now
			}
			if now.Sub(changed) > 3*time.Second {
				break
			}
			if now.Sub(start) > r.caughtUp+timeout {
				fail("pulse: %v after catching up, its ClickHouse rows or webhook deliveries still grow", timeout)
			}
		}
		time.Sleep(250 * time.Millisecond) // a scrape visits every account: keep it rare
	}
	r.stored = changed.Sub(start)
	r.cpu = u.since()
	_, r.peakRSS = bench.Memory(cmd.Process.Pid)
	_, r.clickhouseR = bench.Memory(ch.Pid())

	metric := func(prefix string) float64 { return bench.MetricSum(port, prefix) }
	var daily uint64
	if conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{ch.Addr()}}); err == nil {
		conn.QueryRow(context.Background(), "SELECT count() FROM (SELECT 1 FROM pulse.daily FINAL)").Scan(&daily)
		conn.Close()
	}
	r.facts = []string{
		fmt.Sprintf("%.0f score-history rows in %.0f INSERTs", metric(`pulse_clickhouse_insert_rows_sum{table="scores"}`), metric(`pulse_clickhouse_insert_rows_count{table="scores"}`)),
		fmt.Sprintf("%.0f alert transitions (%.0f rows in ClickHouse, %d lines in the transitions file, %d webhook deliveries)", metric("pulse_alert_transitions_total{"), metric(`pulse_clickhouse_insert_rows_sum{table="alerts"}`), lines(transitions), hooks.Load()),
		fmt.Sprintf("%d account-day rows in its daily rollup (last score, grade, DAU, MAU, events over 7 days)", daily),
	}
	return r
}

// lines counts the lines of a file.
func lines(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		n++
	}
	return n
}

// tail is the end of a log file, for a failure's message, or "" when it
// is empty.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	if b = bytes.TrimSpace(b); len(b) == 0 {
		return ""
	}
	return "; the server's error log ends:\n" + string(b)
}

type reportArgs struct {
	n, accounts, days, runs int
	cfg                     peerConfig
	want                    *totals
	peers, pulses           []result
	rules                   string
	short                   bool
}

func report(a reportArgs) {
	if a.short {
		fmt.Printf("\n## At %d events (%d accounts, %d days)\n\n", a.n, a.accounts, a.days)
	} else {
		fmt.Printf("## The peer a data team would pick: ClickHouse's Kafka engine and materialized views, next to `pulse run` with every sink\n\n")
	}
	fmt.Printf("`go run ./bench/peer %s` (after `go build -o pulse ./cmd/pulse`). ", strings.Join(os.Args[1:], " "))
	fmt.Printf("Machine: %d CPUs (%s/%s), %s, shared with other work: the load column is the machine's load average as each run began. Wall times move with it, and CPU seconds move too when the host is busy: the broker serves the same fetches in every run of a side, and its CPU shows by how much. "+
		"Topic: 8 partitions, %d events, the stream of `pulse gen --accounts %d --days %d --end 2026-11-20T00:00:00Z` (%d account-days), pre-filled; broker: `pulse broker` in its own process. "+
		"Each side ran %d times in rotation, each in a new consumer group from offset 0 and with a new ClickHouse server (18.16); one row per run.\n\n",
		runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), a.n, a.accounts, a.days, len(a.want.accountDays), a.runs)
	fmt.Printf("| run | load | wall: caught up / all stored | events/s (to stored) | CPU s: consumer | ClickHouse | broker | harness | total | CPU µs per event | peak RSS: consumer / ClickHouse |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	mb := func(b int64) string { return fmt.Sprintf("%d MB", b>>20) }
	for i, r := range a.peers {
		fmt.Printf("| peer %d: Kafka engine + 2 views, kafka_num_consumers = %d | %.1f | %.1f s | **%.0f k** | – | %.1f | %.1f | %.1f | %.1f | %.1f | – / %s (idle: %s) |\n",
			i+1, a.cfg.consumers, r.load, r.stored.Seconds(), r.rate()/1e3, r.cpu["clickhouse"], r.cpu["broker"], r.cpu["harness"], r.totalCPU(), r.totalCPU()/float64(r.events)*1e6, mb(r.clickhouseR), mb(r.clickhouseIdle))
	}
	for i, r := range a.pulses {
		fmt.Printf("| pulse %d: `pulse run`, every sink | %.1f | %.1f s / %.1f s | **%.0f k** | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %s / %s |\n",
			i+1, r.load, r.caughtUp.Seconds(), r.stored.Seconds(), r.rate()/1e3, r.cpu["pulse"], r.cpu["clickhouse"], r.cpu["broker"], r.cpu["harness"], r.totalCPU(), r.totalCPU()/float64(r.events)*1e6, mb(r.peakRSS), mb(r.clickhouseR))
	}
	fmt.Printf("\nWall time runs from the peer's first CREATE, and from the start of `pulse run`: both include joining the group. " +
		"Caught up is when `pulse run` had applied every event (pulse_events_total); all stored is, for the peer, when both rollup tables held every event, " +
		"and for Pulse when its ClickHouse rows and webhook deliveries stopped growing (the last INSERT or delivery; the sink flushes every second). " +
		"CPU is user+system time of each process over the same interval; the harness is this program (it counts the peer's rows five times a second; " +
		"for Pulse it receives the webhooks and reads /metrics four times a second, more often than a Prometheus would). " +
		"Peak RSS is VmHWM; the peer's is its ClickHouse server's, shown beside the same server idle before the run.\n\n")

	fmt.Printf("### What each computed\n\n")
	if len(a.peers) > 0 {
		r := a.peers[len(a.peers)-1]
		fmt.Printf("- The peer: %s.\n", strings.Join(r.facts, "; "))
	}
	if len(a.pulses) > 0 {
		r := a.pulses[len(a.pulses)-1]
		fmt.Printf("- `pulse run` (rules: %s, plus a webhook notifier on every transition, with `webhooks.max_age: 0` so that a catch-up notifies too): "+
			"every account's metrics, score, grade and alert states, kept current per event and evaluated on event time; %s.\n", a.rules, strings.Join(r.facts, "; "))
	}
	if a.short {
		return
	}
	fmt.Printf("\nThe peer answers how much each account used the product each day; scores, grades and alerts are left to queries or jobs on top of it. " +
		"Pulse keeps each account's health current and says when it changes.\n\n")

	fmt.Printf("### What bounds each\n\n")
	if len(a.peers) > 0 {
		r := a.peers[len(a.peers)-1]
		fmt.Printf("**The peer.** ClickHouse 18.16's Kafka engine streams in one thread, in passes: a pass polls librdkafka a message at a time and parses each JSON row into blocks of 65,536 rows (max_block_size), "+
			"until polling finds nothing more or stream_flush_interval_ms (7.5 s) has passed, checked between blocks; "+
			"the views' INSERT gathers blocks up to 1,048,576 rows (min_insert_block_size_rows) and runs each view's GROUP BY on them, in the same thread; the pass commits its offsets at its end, and the next starts 0.5 s later. "+
			"A pass that finds nothing lasts 2.5 s (the server's log shows them once caught up), and so the last pass of a catch-up waits about as long for more. "+
			"Rows appear a gathered block at a time, and with kafka_num_consumers = %d one thread does all of it. "+
			"More consumers parse in more threads, but on 18.16 the second consumer joins the group while the first is reading: the partitions it takes over are read again from the last commit, "+
			"and the rollups count those events twice (ClickHouse issue 7259, fixed in later releases; `--consumers 2` shows it, and the harness then fails).",
			a.cfg.consumers)
		if len(r.passes) > 0 {
			empty := ""
			if r.emptyPasses > 0 {
				empty = fmt.Sprintf("; %d empty passes came first, while the group formed", r.emptyPasses)
			}
			fmt.Printf(" The last run, from its server's log (seconds since the first CREATE%s):\n\n", empty)
			fmt.Printf("| pass | started | reading ended | views written | messages | read rate | views' GROUP BYs |\n|---|---|---|---|---|---|---|\n")
			var groupBy time.Duration
			idle := r.passes[0].start // the group forming
			for i, p := range r.passes {
				fmt.Printf("| %d | %.1f s | %.1f s | %.1f s | %d | %.0f k/s | %d, %.1f s |\n", i+1, p.start.Seconds(), p.read.Seconds(), p.done.Seconds(), p.messages, float64(p.messages)/(p.read-p.start).Seconds()/1e3, p.groupBys, p.groupBy.Seconds())
				groupBy += p.groupBy
				if i > 0 {
					idle += p.start - r.passes[i-1].done
				}
			}
			fmt.Printf("\nOf its %.1f s, the start and the gaps between passes took %.1f s and the views' GROUP BYs %.1f s; the rest is reading, the last pass's wait for more included.", r.stored.Seconds(), idle.Seconds(), groupBy.Seconds())
		}
		fmt.Printf(" ClickHouse used %.1f CPU seconds (%.1f µs per event): the stream %.1f s, on a core %.0f%% of the run; librdkafka's threads %.1f s; merges %.1f s; the rest, queries and housekeeping. "+
			"The stream spends the rest of its time waiting: in librdkafka's poll for the next message (where stack samples of it find it on a quiet machine) and, on a busy machine, for a core. "+
			"So the peer is bound by its one-message-at-a-time read loop in one thread and by its fixed waits, not by the machine's CPU.\n\n",
			r.cpu["clickhouse"], r.cpu["clickhouse"]/float64(r.events)*1e6, r.streamCPU, 100*r.streamCPU/r.stored.Seconds(), r.kafkaCPU, r.mergeCPU)
	}
	if len(a.pulses) > 0 {
		r := a.pulses[len(a.pulses)-1]
		busy := r.totalCPU() - r.cpu["harness"]
		fmt.Printf("**Pulse.** `pulse run` fetches the 8 partitions and spreads them over both cores: in its %.1f s to stored, it, its ClickHouse server and the broker used %.1f CPU seconds, %.0f%% of the machine's %d cores, so it is bound by the CPU. "+
			"Its own %.1f CPU seconds (%.1f µs per event) go to decoding and applying each event to its account, evaluating metrics, score and alerts on event time, and feeding the sinks; "+
			"its ClickHouse server spent %.1f s storing the score history, transitions and daily rollup. The score history is the bulk of what is stored: one row per account at least every hour of event time, and on every change.\n\n",
			r.stored.Seconds(), busy, 100*busy/r.stored.Seconds()/float64(runtime.NumCPU()), runtime.NumCPU(), r.cpu["pulse"], r.cpu["pulse"]/float64(r.events)*1e6, r.cpu["clickhouse"])
	}

	fmt.Printf("### The peer's SQL\n\n```sql\n")
	for _, stmt := range peerDDL(peerConfig{broker: "BROKER", consumers: a.cfg.consumers, blockSize: a.cfg.blockSize}, "GROUP") {
		fmt.Printf("%s;\n\n", stmt)
	}
	fmt.Printf("```\n\nand in the server's configuration (a file in config.d/), so that a new group reads from the start:\n\n```xml\n%s```\n", kafkaConfig)
	fmt.Printf("\n### `pulse run`'s configuration\n\n```yaml\n%s```\n\nwith the rules file followed by\n\n```yaml\n%s```\n",
		fmt.Sprintf(pulseConfig, 9900, "rules.yaml", "BROKER", "GROUP", "ckpt", "CLICKHOUSE", "webhooks.state", "transitions.jsonl"), fmt.Sprintf(notifyBlock, "RECEIVER"))
}

// tempDir makes a temporary directory, or fails.
func tempDir(pattern string) string {
	dir, err := os.MkdirTemp("", pattern)
	check(err, "temporary directory")
	return dir
}

// cleanups run at exit, last registered first.
var cleanups []func()

// atExit registers f to run at exit, and returns a function that runs it
// now and unregisters it.
func atExit(f func()) func() {
	cleanups = append(cleanups, f)
	i := len(cleanups) - 1
	return func() {
		if cleanups[i] != nil {
			cleanups[i] = nil
			f()
		}
	}
}

func exit(code int) {
	for i := len(cleanups) - 1; i >= 0; i-- {
		if cleanups[i] != nil {
			cleanups[i]()
		}
	}
	os.Exit(code)
}

// fail stops everything this harness started and exits with status 1.
func fail(format string, args ...any) {
	log.Printf("FAIL: "+format, args...)
	exit(1)
}

func check(err error, what string) {
	if err != nil {
		fail("%s: %.500s", what, err.Error())
	}
}
