package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/engine/stream"
	"github.com/pulsehq/pulse/rules"
	"github.com/pulsehq/pulse/sinks/prom"
)

// These tests run the real consumer on a Kafka-protocol broker (kfake, in
// process) behind the real server.

const streamPartitions = 8

// live is a consumer on its own broker, served by a Server.
type live struct {
	brokers []string
	c       *stream.Consumer
	url     string
}

func startLive(t *testing.T, sink engine.Sink, checkpointEvery time.Duration) *live {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(streamPartitions, "events"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	l := &live{brokers: cluster.ListenAddrs()}
	cfg := stream.Config{
		Brokers: l.brokers, Topic: "events", Group: "web-test", CheckpointDir: t.TempDir(),
		CheckpointInterval: checkpointEvery,
		Engine:             engine.Config{ScoreRows: true}, // as with ClickHouse: every new account writes a score row
		Log:                slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	l.c = stream.New(cfg, exampleRules(t), sink)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.c.Run(ctx) }()
	ts := httptest.NewServer((&Server{View: l.c}).Handler())
	l.url = ts.URL
	t.Cleanup(func() {
		ts.Close()
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("the consumer did not stop within 30 s")
		}
	})
	return l
}

func exampleRules(t *testing.T) *rules.Ruleset {
	t.Helper()
	data, err := os.ReadFile("../../deploy/rules/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Load("example.yaml", data, rules.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// toPartition sends each message to the partition its Partition field
// names (a producer that does not partition by account).
type toPartition struct{}

func (toPartition) Balance(msg kafka.Message, _ ...int) int { return msg.Partition }

// produce writes events: each to the account's partition (xxhash of the
// account id, as Pulse's producers do), or to forced[i] when that is ≥ 0.
func (l *live) produce(t *testing.T, lines []string, forced ...int) {
	t.Helper()
	var d engine.Decoder
	var ev engine.Event
	msgs := make([]kafka.Message, len(lines))
	for i, line := range lines {
		if r := d.Decode([]byte(line), &ev); r != engine.ReasonOK {
			t.Fatalf("%s: %s", line, r)
		}
		p := engine.PartitionOf(ev.Account, streamPartitions)
		if i < len(forced) && forced[i] >= 0 {
			p = forced[i]
		}
		msgs[i] = kafka.Message{Key: slices.Clone(ev.Account), Value: []byte(line), Partition: p}
	}
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(l.brokers...), Topic: "events", Balancer: toPartition{}, Transport: tr,
		BatchTimeout: 5 * time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
}

// accountEvents returns an account event and a login for each id, at ts.
func accountEvents(ts time.Time, ids ...string) []string {
	var out []string
	at := ts.UTC().Format(time.RFC3339)
	for _, id := range ids {
		out = append(out,
			fmt.Sprintf(`{"ts":%q,"account_id":%q,"type":"account","attrs":{"seats":5,"segment":"normal","csm":"li"}}`, at, id),
			fmt.Sprintf(`{"ts":%q,"account_id":%q,"type":"login","user_id":"u1"}`, at, id))
	}
	return out
}

// timed is one answer and how long it took.
type timed struct {
	code int
	h    http.Header
	body string
	took time.Duration
}

func fetch(t *testing.T, url string) timed {
	t.Helper()
	began := time.Now()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return timed{resp.StatusCode, resp.Header, string(b), time.Since(began)}
}

// apiAccounts returns the accounts /api/accounts lists, by id.
func apiAccounts(t *testing.T, body string) map[string]map[string]any {
	t.Helper()
	var list []map[string]any
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatalf("/api/accounts is not a JSON array: %v\n%.300s", err, body)
	}
	out := map[string]map[string]any{}
	for _, a := range list {
		id, _ := a["account_id"].(string)
		if _, dup := out[id]; dup {
			t.Errorf("/api/accounts lists %q twice", id)
		}
		out[id] = a
	}
	return out
}

func waitFor(t *testing.T, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// gate is a sink that can be made to block: Write for the partitions
// listed in blockWrites, Flush (every partition's checkpoint) while
// blockFlush — as a ClickHouse that is down blocks a catch-up.
type gate struct {
	mu          sync.Mutex
	blockWrites map[int32]bool
	blockFlush  bool
	release     chan struct{} // closed to let every blocked call go
	blocked     map[int32]bool
	flushing    int
}

func newGate() *gate {
	return &gate{blockWrites: map[int32]bool{}, blocked: map[int32]bool{}, release: make(chan struct{})}
}

func (g *gate) Write(ctx context.Context, b *engine.Batch) error {
	g.mu.Lock()
	block, release := g.blockWrites[b.Partition], g.release
	if block {
		g.blocked[b.Partition] = true
	}
	g.mu.Unlock()
	if block {
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (g *gate) Flush(ctx context.Context) error {
	g.mu.Lock()
	block, release := g.blockFlush, g.release
	if block {
		g.flushing++
	}
	g.mu.Unlock()
	if block {
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (g *gate) Close(context.Context) error { return nil }

// open lets every blocked call go and blocks nothing more.
func (g *gate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.blockWrites, g.blockFlush = map[int32]bool{}, false
	close(g.release)
	g.release = make(chan struct{})
}

// TestAnswersWithinASecondWhileSinksBlock: partitions held back by a sink
// whose Write blocks, then by a Flush that blocks every checkpoint, still
// answer every endpoint within a second, with every account (those the
// blocked partitions applied last included) and with how stale each
// answer may be.
func TestAnswersWithinASecondWhileSinksBlock(t *testing.T) {
	g := newGate()
	// Checkpoints every 10 s: a save waits up to that long for a blocked
	// flush (then gives up and scores on), long enough to see stale answers.
	l := startLive(t, g, 10*time.Second)
	defer g.open()
	ts := time.Now().Add(-time.Hour).Truncate(time.Minute)
	at := func(d time.Duration) string { return ts.Add(d).UTC().Format(time.RFC3339) }

	// Accounts on every partition, and which partition each is on.
	var ids []string
	part := map[string]int{}
	for i := range 40 {
		id := fmt.Sprintf("acct-%02d", i)
		ids = append(ids, id)
		part[id] = engine.PartitionOf([]byte(id), streamPartitions)
	}
	l.produce(t, accountEvents(ts, ids...))
	waitFor(t, "every account in /api/accounts", 60*time.Second, func() bool {
		r := fetch(t, l.url+"/api/accounts?limit=1000")
		return r.code == 200 && len(apiAccounts(t, r.body)) == len(ids)
	})

	// Block the writes of two partitions, and give every partition new
	// accounts: the blocked ones apply theirs, hand the outputs to the
	// sink and then wait for it.
	blockedParts := []int32{int32(part["acct-00"]), int32((part["acct-00"] + 1) % streamPartitions)}
	g.mu.Lock()
	for _, p := range blockedParts {
		g.blockWrites[p] = true
	}
	g.mu.Unlock()
	var fresh []string
	for i := 0; len(fresh) < 24; i++ {
		id := fmt.Sprintf("new-%02d", i)
		fresh = append(fresh, id)
		part[id] = engine.PartitionOf([]byte(id), streamPartitions)
	}
	// Two rounds, so a blocked partition's second flush waits for its
	// first write.
	l.produce(t, accountEvents(ts.Add(time.Minute), fresh...))
	l.produce(t, accountEvents(ts.Add(2*time.Minute), fresh...))
	waitFor(t, "the blocked partitions' writes", 30*time.Second, func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.blocked[blockedParts[0]] && g.blocked[blockedParts[1]]
	})
	// A checkpoint's flush is waiting for the write now, and every
	// snapshot is older than a request accepts without asking.
	time.Sleep(SnapshotMaxAge + 200*time.Millisecond)

	all := append(slices.Clone(ids), fresh...)
	var onBlocked string
	for _, id := range fresh {
		if slices.Contains(blockedParts, int32(part[id])) {
			onBlocked = id
		}
	}
	if onBlocked == "" {
		t.Fatal("no new account on a blocked partition")
	}
	checkEndpoints := func(phase string) map[string]map[string]any {
		t.Helper()
		r := fetch(t, l.url+"/api/accounts?limit=1000")
		if r.code != 200 || r.took > time.Second {
			t.Fatalf("%s: /api/accounts: %d in %v", phase, r.code, r.took)
		}
		got := apiAccounts(t, r.body)
		for _, id := range all {
			if _, ok := got[id]; !ok {
				t.Errorf("%s: /api/accounts has no %s (partition %d)", phase, id, part[id])
			}
		}
		if r.h.Get("X-Total-Count") != strconv.Itoa(len(all)) {
			t.Errorf("%s: X-Total-Count %q, want %d", phase, r.h.Get("X-Total-Count"), len(all))
		}
		if _, err := strconv.ParseFloat(r.h.Get("X-Pulse-Snapshot-Age"), 64); err != nil {
			t.Errorf("%s: X-Pulse-Snapshot-Age %q", phase, r.h.Get("X-Pulse-Snapshot-Age"))
		}
		for _, path := range []string{"/api/accounts/" + onBlocked, "/api/accounts/" + onBlocked + "/history", "/api/alerts", "/", "/accounts/" + onBlocked} {
			r := fetch(t, l.url+path)
			if r.code != 200 || r.took > time.Second {
				t.Errorf("%s: %s: %d in %v, want 200 within 1 s", phase, path, r.code, r.took)
			}
			if r.h.Get("X-Pulse-Snapshot-Age") == "" {
				t.Errorf("%s: %s does not say how stale it is", phase, path)
			}
		}
		return got
	}

	got := checkEndpoints("writes blocked")
	// Answered while blocked: the new accounts, which the blocked
	// partitions applied after their writes began to block, are there, as
	// of the first or second round (a checkpoint between the two waits for
	// the blocked write before the second round is applied).
	if a := got[onBlocked]; a == nil || (a["ts"] != at(time.Minute) && a["ts"] != at(2*time.Minute)) {
		t.Errorf("writes blocked: %s reads ts %v, want its partition's clock at a new round", onBlocked, got[onBlocked]["ts"])
	}

	// Now every checkpoint's flush blocks: partitions with new events stop
	// in it and cannot answer; their last snapshots are served, and grow
	// stale, which the answers say.
	g.mu.Lock()
	g.blockFlush = true
	g.mu.Unlock()
	close(g.release) // the blocked writes go through
	g.mu.Lock()
	g.release = make(chan struct{})
	g.blockWrites = map[int32]bool{}
	g.mu.Unlock()
	l.produce(t, accountEvents(ts.Add(3*time.Minute), all...))
	waitFor(t, "checkpoints stopped in the sink's flush", 30*time.Second, func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.flushing >= streamPartitions
	})
	time.Sleep(1500 * time.Millisecond)
	got = checkEndpoints("flush blocked")
	r := fetch(t, l.url+"/api/accounts?limit=1000")
	if age, _ := strconv.ParseFloat(r.h.Get("X-Pulse-Snapshot-Age"), 64); age < 1.4 {
		t.Errorf("X-Pulse-Snapshot-Age %q while every partition is stuck for 1.5 s; want ≥ 1.4", r.h.Get("X-Pulse-Snapshot-Age"))
	}
	if n := strings.Count(r.h.Get("X-Pulse-Snapshot-Ages"), "="); n != streamPartitions {
		t.Errorf("X-Pulse-Snapshot-Ages %q: want every partition's", r.h.Get("X-Pulse-Snapshot-Ages"))
	}
	if a := got[onBlocked]; a == nil {
		t.Fatalf("flush blocked: %s is missing", onBlocked)
	} else if age, _ := a["snapshot_age_seconds"].(float64); age < 1.4 {
		t.Errorf("%s: snapshot_age_seconds %v, want ≥ 1.4", onBlocked, a["snapshot_age_seconds"])
	}
}

// TestAccountInTwoPartitionsIsListedOnceAndFlagged: a producer that sent
// one account's events to two partitions leaves two records of it; the
// API lists it once — the most recently updated record — flagged with the
// partitions, and Prometheus counts it.
func TestAccountInTwoPartitionsIsListedOnceAndFlagged(t *testing.T) {
	l := startLive(t, engine.Sinks{}, 200*time.Millisecond)
	ts := time.Now().Add(-time.Hour).Truncate(time.Minute)
	at := func(d time.Duration) string { return ts.Add(d).UTC().Format(time.RFC3339) }
	lines := append(accountEvents(ts, "single-a", "single-b"),
		fmt.Sprintf(`{"ts":%q,"account_id":"twofold","type":"account","attrs":{"seats":10,"segment":"normal"}}`, at(0)),
		fmt.Sprintf(`{"ts":%q,"account_id":"twofold","type":"login","user_id":"u1"}`, at(0)),
		fmt.Sprintf(`{"ts":%q,"account_id":"twofold","type":"account","attrs":{"seats":40,"segment":"normal"}}`, at(time.Minute)),
		fmt.Sprintf(`{"ts":%q,"account_id":"twofold","type":"login","user_id":"u2"}`, at(time.Minute)))
	l.produce(t, lines, -1, -1, -1, -1, 1, 1, 5, 5)

	var got map[string]map[string]any
	var r timed
	waitFor(t, "every account in /api/accounts", 60*time.Second, func() bool {
		r = fetch(t, l.url+"/api/accounts?limit=1000")
		if r.code != 200 {
			return false
		}
		var list []map[string]any
		json.Unmarshal([]byte(r.body), &list)
		twofold := 0
		for _, a := range list {
			if a["account_id"] == "twofold" {
				twofold++
			}
		}
		got = apiAccounts(t, r.body)
		return len(got) == 3 && twofold == 1 && fmt.Sprint(got["twofold"]["split_partitions"]) == "[1 5]"
	})
	if r.h.Get("X-Total-Count") != "3" {
		t.Errorf("X-Total-Count %q, want 3", r.h.Get("X-Total-Count"))
	}
	tw := got["twofold"]
	if seats := tw["metrics"].(map[string]any)["seats"]; seats != 40.0 || tw["partition"] != 5.0 {
		t.Errorf("twofold: seats %v from partition %v; want the latest record: 40 seats, partition 5", seats, tw["partition"])
	}
	if _, split := got["single-a"]["split_partitions"]; split {
		t.Errorf("single-a is flagged: %v", got["single-a"])
	}
	r = fetch(t, l.url+"/api/accounts/twofold")
	if r.code != 200 || !strings.Contains(r.body, `"split_partitions":[1,5]`) {
		t.Errorf("/api/accounts/twofold: %d %s", r.code, r.body)
	}

	agg := &prom.Aggregates{View: l.c, Interval: time.Hour}
	reg := prometheus.NewRegistry()
	reg.MustRegister(agg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go agg.Run(ctx)
	gauge := func(name string, labels ...string) float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
		metrics:
			for _, m := range mf.GetMetric() {
				for i := 0; i+1 < len(labels); i += 2 {
					for _, lp := range m.GetLabel() {
						if lp.GetName() == labels[i] && lp.GetValue() != labels[i+1] {
							continue metrics
						}
					}
				}
				return m.GetGauge().GetValue()
			}
		}
		return -1
	}
	waitFor(t, "the aggregates", 10*time.Second, func() bool { return gauge("pulse_accounts_split") >= 0 })
	if n := gauge("pulse_accounts_split"); n != 1 {
		t.Errorf("pulse_accounts_split = %v, want 1", n)
	}
	total := 0.0
	for _, g := range []string{"red", "yellow", "green", "none"} {
		total += gauge("pulse_accounts", "grade", g)
	}
	if total != 3 {
		t.Errorf("pulse_accounts adds up to %v, want 3 (the split account once)", total)
	}
}
