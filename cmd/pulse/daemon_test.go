package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"go.uber.org/goleak"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/engine/synth"
	"github.com/pulsehq/pulse/rules"
	"github.com/pulsehq/pulse/sinks/clickhouse/chtest"
)

// The daemon tests run the real pulse binary, built once, as separate
// processes, so they can be killed abruptly.
var pulseBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pulse-bin-")
	if err != nil {
		panic(err)
	}
	pulseBin = filepath.Join(dir, "pulse")
	if out, err := exec.Command("go", "build", "-o", pulseBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building pulse: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	// The tests that run pulse in process stop it: nothing it started may
	// outlive them.
	if err := goleak.Find(); code == 0 && err != nil {
		fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
		code = 1
	}
	os.Exit(code)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is a pulse process whose output goes to a log file.
type proc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has exited
}

func startPulse(t testing.TB, args ...string) *proc { return startPulseIn(t, "", args...) }

// startPulseIn runs the binary with dir as its working directory ("" is
// the test's).
func startPulseIn(t testing.TB, dir string, args ...string) *proc {
	t.Helper()
	return startBinary(t, pulseBin, dir, args...)
}

// startBinary runs a pulse binary (bin) in dir.
func startBinary(t testing.TB, bin, dir string, args ...string) *proc {
	t.Helper()
	logf, err := os.CreateTemp(t.TempDir(), "pulse-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, log: logf.Name(), done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

// stop sends SIGTERM and returns the exit code.
func (p *proc) stop(t testing.TB) int {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(40 * time.Second):
		t.Fatalf("pulse did not stop within 40 s after SIGTERM; log:\n%s", p.output())
		return -1
	}
}

func (p *proc) output() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// waitUntil checks ok every 50 ms until it holds, for at most timeout.
func waitUntil(t testing.TB, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(timeout)
	for !ok() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
	}
}

func httpGet(url string) (int, []byte) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func startBrokerProcess(t testing.TB) string {
	port := freePort(t)
	startPulse(t, "broker", "--port", fmt.Sprint(port), "--partitions", "8", "--topics", "events")
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitUntil(t, "the broker", 20*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr
}

var streamEnd = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

// fencedStream is a generated stream followed by one fence per partition.
func fencedStream(accounts, days int) (lines [][]byte, fenceIDs []string) {
	g := synth.New(synth.Options{Accounts: accounts, Days: days, Seed: 9, End: streamEnd})
	for d := range g.Days() {
		g.Day(d, func(l []byte) { lines = append(lines, bytes.Clone(l)) })
	}
	ids, fences := synth.Fences(streamEnd, 8, engine.ConfirmRun, engine.PartitionOf)
	return append(lines, fences...), ids
}

func writeConfig(t testing.TB, dir, body string) string {
	t.Helper()
	path := filepath.Join(dir, "pulse.yaml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// replayed returns what `pulse replay` says of lines: states (one JSON
// object each, sorted by account), transitions (sorted) and score rows (as
// "account ts_ns grade score", sorted).
func loadExampleRules(t testing.TB) *rules.Ruleset {
	t.Helper()
	data, _ := os.ReadFile(exampleRules)
	rs, err := rules.Load(exampleRules, data, rules.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func replayed(t testing.TB, lines [][]byte) (states, transitions, scores []string) {
	rs := loadExampleRules(t)
	r := engine.NewReplayer(rs, engine.Config{ScoreRows: true}, 8, 0, 0)
	for i, l := range lines {
		r.Line(i+1, l)
	}
	r.Finish()
	r.EachState(func(s *engine.AccountState) { states = append(states, string(s.AppendJSON(nil))) })
	for _, tr := range r.Transitions() {
		transitions = append(transitions, string(engine.AppendTransitionJSON(nil, &tr)))
	}
	slices.Sort(transitions)
	for _, s := range r.Scores() {
		score := -1.0
		if !rules.IsNull(s.Score) {
			score = math.Round(s.Score*1e4) / 1e4
		}
		scores = append(scores, fmt.Sprintf("%s %d %s %s", s.AccountID, s.Ts, s.Grade, strconv.FormatFloat(score, 'f', -1, 64)))
	}
	slices.Sort(scores)
	return states, transitions, scores
}

// apiStates returns every account state the daemon serves, sorted by id.
func apiStates(t testing.TB, base string) []string {
	code, body := httpGet(base + "/api/accounts?limit=1000")
	if code != 200 {
		t.Fatalf("/api/accounts: %d %s", code, body)
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatalf("/api/accounts is not a JSON array: %v", err)
	}
	var out []string
	for _, r := range raw {
		// The API adds where it read the state after the SPEC §5 fields
		// (partition, snapshot age); replay prints none of them.
		s, _, _ := strings.Cut(string(r), `,"partition":`)
		out = append(out, s+"}")
	}
	slices.SortFunc(out, func(a, b string) int { return strings.Compare(accountOf(a), accountOf(b)) })
	return out
}

func accountOf(state string) string {
	var s struct {
		ID string `json:"account_id"`
	}
	json.Unmarshal([]byte(state), &s)
	return s.ID
}

func sameLines(t testing.TB, what string, got, want []string) {
	t.Helper()
	if len(want) == 0 {
		t.Fatalf("%s: nothing to compare", what)
	}
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Fatalf("%s differ (%d vs %d); first difference:\n got %.500s\nwant %.500s", what, len(got), len(want), got[i], want[i])
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d, want %d", what, len(got), len(want))
	}
}

// Crash equivalence: the daemon is killed abruptly (SIGKILL, no shutdown)
// at several points while the stream arrives, restarted each time, and
// ends with the account states and the transitions of `pulse replay` on the
// same events. Transitions re-sent after a crash carry the same alert ids
// and contents, so the deduplicated set is exact.
func TestDaemonSurvivesKillsAndMatchesReplay(t *testing.T) {
	broker := startBrokerProcess(t)
	ch := chtest.Start(t)
	lines, fenceIDs := fencedStream(60, 35)
	dir := t.TempDir()
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	transitionsFile := filepath.Join(dir, "transitions.jsonl")
	cfg := writeConfig(t, dir, fmt.Sprintf(`
listen: 127.0.0.1:%d
rules: %s
kafka: {brokers: [%s], topic: events, group: crash-test, session_timeout: 6s}
engine: {idle_advance: "0"}
checkpoint: {dir: %s, interval: 100ms}
output: {transitions_file: %s}
clickhouse: {addr: [%s], database: crash, flush_interval: 50ms}
`, port, exampleRules, broker, filepath.Join(dir, "ckpt"), transitionsFile, ch.Addr()))

	ckpt := filepath.Join(dir, "ckpt")
	d := produceKillingDaemon(t, broker, cfg, base, lines, fenceIDs, 4, 5, func(part, slice, produced int) {
		t.Logf("killed during part %d, slice %d: checkpoints hold %d of %d events", part, slice, checkpointed(t, ckpt), produced)
	})
	wantStates, wantTransitions, wantScores := replayed(t, lines)
	sameLines(t, "states", apiStates(t, base), wantStates)
	if code := d.stop(t); code != 0 {
		t.Fatalf("exit code %d after SIGTERM; log:\n%s", code, d.output())
	}
	data, _ := os.ReadFile(transitionsFile)
	got := strings.Split(strings.TrimSpace(string(data)), "\n")
	slices.Sort(got)
	sameLines(t, "transitions", slices.Compact(got), wantTransitions)

	// ClickHouse holds each score row and transition once (FINAL), exactly
	// those of the replay, however often a crash made them re-sent.
	sameLines(t, "ClickHouse score rows", clickhouseRows(t, ch.Addr(),
		"SELECT concat(account_id, ' ', toString(ts_ns), ' ', toString(grade), ' ', toString(round(ifNull(score, -1), 4))) FROM crash.scores FINAL ORDER BY account_id, ts_ns"), wantScores)
	sameLines(t, "ClickHouse transitions", clickhouseRows(t, ch.Addr(),
		"SELECT concat(alert_id, ' ', toString(state)) FROM crash.alerts FINAL ORDER BY alert_id, state"), transitionKeys(wantTransitions))
}

// transitionKeys turns transitions (JSON) into sorted "alert_id state" keys.
func transitionKeys(transitions []string) []string { return keysOf(transitions, false) }

// notifiedKeys are the keys of the transitions notifiers send: the ones no
// inhibiting alert suppressed.
func notifiedKeys(transitions []string) []string { return keysOf(transitions, true) }

func keysOf(transitions []string, notifiedOnly bool) []string {
	var keys []string
	for _, tr := range transitions {
		var x struct {
			ID         string `json:"alert_id"`
			State      string `json:"state"`
			Suppressed bool   `json:"suppressed"`
		}
		json.Unmarshal([]byte(tr), &x)
		if notifiedOnly && x.Suppressed {
			continue
		}
		keys = append(keys, x.ID+" "+x.State)
	}
	slices.Sort(keys)
	return keys
}

func clickhouseRows(t testing.TB, addr, query string) []string {
	t.Helper()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rows, err := conn.Query(context.Background(), query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// Rules reload while running, by POST /-/reload and SIGHUP: a good file
// takes effect, a bad one is refused with its reason and the old rules stay.
func TestRulesReload(t *testing.T) {
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.yaml")
	orig, _ := os.ReadFile(exampleRules)
	os.WriteFile(rulesFile, orig, 0o644)
	port, kport := freePort(t), freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cfg := writeConfig(t, dir, fmt.Sprintf(`
listen: 127.0.0.1:%d
rules: %s
embedded: {listen: 127.0.0.1:%d, demo: {enabled: true, accounts: 20, history_days: 5, speed: 100000}}
checkpoint: {dir: %s}
output: {transitions_file: "", metrics_interval: 100ms}
`, port, rulesFile, kport, filepath.Join(dir, "ckpt")))
	d := startPulse(t, "run", "--config", cfg)
	waitUntil(t, "readiness", 30*time.Second, func() bool { code, _ := httpGet(base + "/readyz"); return code == 200 })
	metric := func(name string) bool { _, b := httpGet(base + "/metrics"); return bytes.Contains(b, []byte(name)) }
	post := func() (int, string) {
		resp, err := http.Post(base+"/-/reload", "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	os.WriteFile(rulesFile, append(bytes.Clone(orig), "\n  - {name: brand_new_rule, when: dau > 100000}\n"...), 0o644)
	if code, body := post(); code != 200 {
		t.Fatalf("good reload: %d %s", code, body)
	}
	waitUntil(t, "the reloaded rule in force", 10*time.Second, func() bool { return metric(`rule="brand_new_rule"`) })
	os.WriteFile(rulesFile, []byte("alerts:\n  - name: broken\n    when: nosuch > 1\n"), 0o644)
	code, body := post()
	if code != 400 || !strings.Contains(body, "rules.yaml:3: alerts[0].when: unknown metric") {
		t.Fatalf("bad reload: %d %s", code, body)
	}
	time.Sleep(300 * time.Millisecond) // three aggregate refreshes of the daemon (a separate process) in which the rules must not change
	if !metric(`rule="brand_new_rule"`) || !metric(`pulse_rules_reloads_total{result="error"} 1`) {
		t.Fatal("a refused reload changed the rules in force")
	}
	os.WriteFile(rulesFile, orig, 0o644)
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, "the SIGHUP reload", 10*time.Second, func() bool { return !metric(`rule="brand_new_rule"`) })
	if !metric(`pulse_rules_reloads_total{result="ok"} 2`) {
		t.Fatal("SIGHUP reload not counted")
	}
	if code := d.stop(t); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// checkpointed sums the next offsets of the checkpoints in dir: how many
// events their states hold.
func checkpointed(t testing.TB, dir string) int64 {
	data, _ := os.ReadFile(exampleRules)
	rs, _ := rules.Load(exampleRules, data, rules.LoadOptions{})
	files, _ := filepath.Glob(filepath.Join(dir, "*.ckpt"))
	var n int64
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if _, cp, err := engine.RestorePartition(b, rs, engine.Config{}); err == nil {
			n += cp.NextOffset
		}
	}
	return n
}

// produceKillingDaemon produces lines to the topic events of broker in
// parts, each in twenty slices paced over time, to a `pulse run --config
// cfg` started for the part and killed (SIGKILL: no final checkpoint, no
// commit, no goodbye) at slice firstKill + 5 × part, wherever it then
// stands (applying, writing, checkpointing or committing); onKill, if
// set, is told where. The last part goes to a daemon that runs on: it is
// returned once every fence account is served at base.
func produceKillingDaemon(t *testing.T, broker, cfg, base string, lines [][]byte, fenceIDs []string, parts, firstKill int,
	onKill func(part, slice, produced int)) *proc {
	t.Helper()
	p := newProducer([]string{broker}, "events")
	defer p.Close()
	size := len(lines)/parts + 1
	for i := 0; i+size < len(lines); i += size {
		d := startPulse(t, "run", "--config", cfg)
		waitUntil(t, "the daemon to own partitions", 60*time.Second, func() bool {
			if d.exited() {
				t.Fatalf("pulse exited:\n%s", d.output())
			}
			code, _ := httpGet(base + "/readyz")
			return code == 200
		})
		part := lines[i : i+size]
		slice := len(part)/20 + 1
		killAt := firstKill + 5*(i/size) // a different point each time
		for j, k := 0, 0; j < len(part); j, k = j+slice, k+1 {
			if k == killAt {
				d.kill()
				if onKill != nil {
					onKill(i/size+1, k, i+j)
				}
			}
			if err := p.write(context.Background(), part[j:min(j+slice, len(part))]); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond) // pace the producer, so the kill lands while the separate daemon process consumes
		}
	}
	if err := p.write(context.Background(), lines[(parts-1)*size:]); err != nil {
		t.Fatal(err)
	}
	d := startPulse(t, "run", "--config", cfg)
	waitUntil(t, "every partition's fence", 90*time.Second, func() bool {
		for _, id := range fenceIDs {
			if code, _ := httpGet(base + "/api/accounts/" + id); code != 200 {
				return false
			}
		}
		return true
	})
	return d
}
