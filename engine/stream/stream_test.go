package stream

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/engine/synth"
	"github.com/pulsehq/pulse/rules"
)

const (
	topic      = "events"
	partitions = 8
)

var streamEnd = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

func startBroker(t testing.TB) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic), kfake.SeedTopics(1, "dead"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

func exampleRules(t testing.TB) *rules.Ruleset {
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

// generate returns a synthetic stream followed by one fence event per
// partition at streamEnd (a sweep boundary), so every partition's clock
// ends at the same time as a replay's.
func generate(accounts, days int) [][]byte {
	g := synth.New(synth.Options{Accounts: accounts, Days: days, Seed: 3, End: streamEnd})
	var lines [][]byte
	for d := range g.Days() {
		g.Day(d, func(l []byte) { lines = append(lines, bytes.Clone(l)) })
	}
	return append(lines, fences()...)
}

func fences() [][]byte {
	_, lines := synth.Fences(streamEnd, partitions, engine.ConfirmRun, engine.PartitionOf)
	return lines
}

func produce(t testing.TB, brokers []string, lines [][]byte) {
	t.Helper()
	var d engine.Decoder
	var ev engine.Event
	msgs := make([]kafka.Message, 0, len(lines))
	for _, l := range lines {
		var key []byte
		if d.Decode(l, &ev) == engine.ReasonOK {
			key = bytes.Clone(ev.Account)
		}
		msgs = append(msgs, kafka.Message{Key: key, Value: l})
	}
	writeMessages(t, brokers, topic, AccountBalancer{}, 2000, msgs)
}

// writeMessages writes msgs in order, in producer batches of batchSize.
// Each batch waits for the broker's acknowledgement: unacknowledged
// batches may reach the broker out of order. The writer has a transport of
// its own, because the shared default one caches metadata by address, and
// a later in-process broker of the same test binary may listen on a port an
// earlier one used.
func writeMessages(t testing.TB, brokers []string, topic string, balancer kafka.Balancer, batchSize int, msgs []kafka.Message) {
	t.Helper()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{
		Addr: kafka.TCP(brokers...), Topic: topic, Balancer: balancer, Transport: tr,
		BatchSize: batchSize, BatchTimeout: 5 * time.Millisecond, RequiredAcks: kafka.RequireAll,
	}
	defer w.Close()
	for start := 0; start < len(msgs); start += 20000 {
		if err := w.WriteMessages(context.Background(), msgs[start:min(start+20000, len(msgs))]...); err != nil {
			t.Fatal(err)
		}
	}
}

// collector is a sink that keeps every transition it accepts; while fail
// is set it refuses every write, counting them by partition.
type collector struct {
	mu      sync.Mutex
	lines   []string
	fail    atomic.Bool
	refused [partitions]atomic.Int64
}

func (c *collector) Write(_ context.Context, b *engine.Batch) error {
	if c.fail.Load() {
		c.refused[b.Partition].Add(1)
		return fmt.Errorf("sink down")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range b.Transitions {
		c.lines = append(c.lines, string(engine.AppendTransitionJSON(nil, &b.Transitions[i])))
	}
	return nil
}

func (c *collector) Close(context.Context) error { return nil }

func (c *collector) sorted() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return sortedUnique(c.lines)
}

func sortedUnique(in []string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	return slices.Compact(out)
}

// counter is Hooks that counts the events each partition has seen.
type counter struct {
	NopHooks
	seen         atomic.Int64
	byPartition  [partitions]atomic.Int64
	byReason     [engine.NumReasons]atomic.Int64
	deadLettered atomic.Int64
}

func (c *counter) Events(p int32, r engine.Reason, n int) {
	c.seen.Add(int64(n))
	c.byPartition[p].Add(int64(n))
	c.byReason[r].Add(int64(n))
}

// heldBack reports whether every partition that applied events has had
// its sink write refused three times (two retries after the first
// failure): a task applies at most one batch while its write is in
// flight, so by then each waits for the sink and applies nothing more.
func heldBack(hooks *counter, sink *collector) bool {
	for p := range partitions {
		if hooks.byPartition[p].Load() > 0 && sink.refused[p].Load() < 3 {
			return false
		}
	}
	return true
}

func (c *counter) DeadLettered(n int) { c.deadLettered.Add(int64(n)) }

func testConfig(brokers []string, dir string, hooks Hooks) Config {
	return Config{
		Brokers: brokers, Topic: topic, Group: "pulse-test", CheckpointDir: dir,
		CheckpointInterval: 200 * time.Millisecond, Hooks: hooks,
		Log: testLog(),
	}
}

type running struct {
	c      *Consumer
	cancel context.CancelFunc
	done   chan error
}

func start(t testing.TB, cfg Config, rs *rules.Ruleset, sink engine.Sink) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{c: New(cfg, rs, sink), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- r.c.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t testing.TB) {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("consumer did not stop within 30 s")
	}
}

// waitFor checks ok every 20 ms until it holds, for at most timeout.
func waitFor(t testing.TB, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(timeout)
	for !ok() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// snapshot evaluates every owned account at its partition's clock (as a
// replay's end does) and returns the states, sorted, and the transitions
// that evaluation emitted.
func snapshot(t testing.TB, cs ...*Consumer) (states, transitions []string) {
	t.Helper()
	for _, c := range cs {
		err := c.do(context.Background(), func(p *engine.Partition) {
			p.EvaluateAll()
			for _, tr := range p.TakeTransitions() {
				transitions = append(transitions, string(engine.AppendTransitionJSON(nil, &tr)))
			}
			states = append(states, stateLines(p)...)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(states)
	return states, transitions
}

func replay(t testing.TB, rs *rules.Ruleset, lines [][]byte) (states, transitions []string) {
	r := engine.NewReplayer(rs, engine.Config{}, partitions, 0, 0)
	for i, l := range lines {
		r.Line(i+1, l)
	}
	r.Finish()
	r.EachState(func(s *engine.AccountState) { states = append(states, string(s.AppendJSON(nil))) })
	for _, tr := range r.Transitions() {
		transitions = append(transitions, string(engine.AppendTransitionJSON(nil, &tr)))
	}
	return states, sortedUnique(transitions)
}

func equalLines(t testing.TB, what string, got, want []string) {
	t.Helper()
	if len(want) == 0 {
		t.Fatalf("%s: nothing to compare", what)
	}
	if !slices.Equal(got, want) {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("%s differ (%d vs %d lines); first difference:\n got %.400s\nwant %.400s", what, len(got), len(want), got[i], want[i])
			}
		}
		t.Fatalf("%s: %d lines, want %d", what, len(got), len(want))
	}
}

// The daemon's consumer, fed through a real Kafka-protocol broker, ends
// with the states and transitions of `pulse replay` on the same events —
// also when it is stopped and restarted from its checkpoints mid-stream.
func TestConsumerMatchesReplayAcrossRestarts(t *testing.T) {
	brokers := startBroker(t)
	rs := exampleRules(t)
	lines := generate(40, 35)
	dir := t.TempDir()
	sink := &collector{}

	half := len(lines) / 2
	produce(t, brokers, lines[:half])
	hooks := &counter{}
	first := start(t, testConfig(brokers, dir, hooks), rs, sink)
	waitFor(t, "the first half", 60*time.Second, func() bool { return hooks.seen.Load() >= int64(half/3) })
	first.stop(t) // graceful: checkpoints and commits what it applied

	ckpts, _ := filepath.Glob(filepath.Join(dir, "*.ckpt"))
	if len(ckpts) == 0 {
		t.Fatal("no checkpoint written on shutdown")
	}
	produce(t, brokers, lines[half:])
	hooks2 := &counter{}
	second := start(t, testConfig(brokers, dir, hooks2), rs, sink)
	waitFor(t, "the rest", 60*time.Second, func() bool { return hooks.seen.Load()+hooks2.seen.Load() >= int64(len(lines)) })

	states, final := snapshot(t, second.c)
	wantStates, wantTransitions := replay(t, rs, lines)
	equalLines(t, "states", states, wantStates)
	got := sortedUnique(append(sink.sorted(), final...))
	equalLines(t, "transitions", got, wantTransitions)
	if seen := hooks.seen.Load() + hooks2.seen.Load(); seen != int64(len(lines)) {
		t.Fatalf("applied %d events over the two runs, want %d: a restart re-read or skipped some", seen, len(lines))
	}
}

// Malformed JSON, unknown types, huge fields, invalid UTF-8 and future
// timestamps between good events: the good ones are all applied, the bad
// ones counted and dead-lettered with their reason, nothing stops.
func TestBadInputIsCountedAndDeadLettered(t *testing.T) {
	brokers := startBroker(t)
	rs := exampleRules(t)
	good := generate(10, 3)
	now := time.Now().UTC()
	bad := [][]byte{
		[]byte(`{"ts": not json`),
		[]byte(`{"ts":"2026-11-18T10:00:00Z","account_id":"a","type":"teleport"}`),
		[]byte(`{"ts":"2026-11-18T10:00:00Z","account_id":"a","type":"login","user_id":"` + string(bytes.Repeat([]byte("x"), 300)) + `"}`),
		[]byte("{\"ts\":\"2026-11-18T10:00:00Z\",\"account_id\":\"bad\xff\xfe\",\"type\":\"login\",\"user_id\":\"u\"}"),
		fmt.Appendf(nil, `{"ts":%q,"account_id":"a","type":"login","user_id":"u"}`, now.Add(time.Hour).Format(time.RFC3339)),
		bytes.Repeat([]byte("z"), 900_000), // longer than the room a fetch keeps for the next value
		bytes.Repeat([]byte("y"), 100_000),
	}
	var lines [][]byte
	every := len(good) / (len(bad) + 1)
	for i, l := range good {
		lines = append(lines, l)
		if k := i / every; i%every == every-1 && k < len(bad) {
			lines = append(lines, bad[k])
		}
	}
	if len(lines) != len(good)+len(bad) {
		t.Fatalf("interleaved %d bad events, want %d", len(lines)-len(good), len(bad))
	}
	produce(t, brokers, lines)
	hooks := &counter{}
	cfg := testConfig(brokers, t.TempDir(), hooks)
	cfg.DeadLetterTopic = "dead"
	r := start(t, cfg, rs, &collector{})
	waitFor(t, "every event", 60*time.Second, func() bool { return hooks.seen.Load() >= int64(len(lines)) })
	waitFor(t, "dead letters", 30*time.Second, func() bool { return hooks.deadLettered.Load() >= int64(len(bad)) })
	if ok := hooks.byReason[engine.ReasonOK].Load(); ok != int64(len(good)) {
		t.Fatalf("%d good events applied, want %d", ok, len(good))
	}
	for _, reason := range []engine.Reason{engine.ReasonJSON, engine.ReasonType, engine.ReasonUser, engine.ReasonAccount, engine.ReasonFuture} {
		if hooks.byReason[reason].Load() == 0 {
			t.Errorf("no event counted as %s", reason)
		}
	}
	states, _ := snapshot(t, r.c)
	wantStates, _ := replay(t, rs, good)
	equalLines(t, "states", states, wantStates)

	dl := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: "dead", Partition: 0, MaxWait: 100 * time.Millisecond})
	defer dl.Close()
	reasons := map[string]int{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var values []string
	for range len(bad) {
		m, err := dl.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("reading dead letters: %v (got %v)", err, reasons)
		}
		values = append(values, string(m.Value))
		for _, h := range m.Headers {
			if h.Key == "pulse-reason" {
				reasons[string(h.Value)]++
			}
		}
	}
	if reasons["bad_json"] != 3 || reasons["bad_type"] != 1 || reasons["future"] != 1 {
		t.Fatalf("dead-letter reasons %v", reasons)
	}
	var want []string
	for _, b := range bad {
		want = append(want, string(b))
	}
	slices.Sort(want)
	slices.Sort(values)
	if !slices.Equal(values, want) {
		t.Fatal("the dead letters are not the bad events byte for byte")
	}
}

// A corrupt checkpoint is set aside and the partition rebuilt from Kafka;
// one that cannot be set aside is rebuilt too, and the log says so.
func TestCorruptCheckpointRebuildsFromKafka(t *testing.T) {
	brokers := startBroker(t)
	rs := exampleRules(t)
	lines := generate(15, 10)
	produce(t, brokers, lines)
	dir := t.TempDir()
	for p := range partitions {
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d.ckpt", topic, p)), []byte("PULSECKP garbage"), 0o644)
	}
	// Partition 0's place aside is taken by a directory that is not empty.
	if err := os.MkdirAll(filepath.Join(dir, topic+"-0.ckpt.corrupt", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	var log lockedBuffer
	hooks := &counter{}
	cfg := testConfig(brokers, dir, hooks)
	cfg.Log = slog.New(slog.NewTextHandler(&log, nil))
	r := start(t, cfg, rs, &collector{})
	waitFor(t, "every event", 60*time.Second, func() bool { return hooks.seen.Load() >= int64(len(lines)) })
	states, _ := snapshot(t, r.c)
	wantStates, _ := replay(t, rs, lines)
	equalLines(t, "states", states, wantStates)
	if aside, _ := filepath.Glob(filepath.Join(dir, "*.ckpt.corrupt")); len(aside) != partitions {
		t.Fatalf("%d corrupt checkpoints set aside, want %d", len(aside), partitions)
	}
	set, kept := 0, 0
	for _, l := range strings.Split(log.String(), "\n") {
		switch {
		case strings.Contains(l, `msg="checkpoint unusable; set aside"`) && strings.Contains(l, ".ckpt moved to "):
			set++
		case strings.Contains(l, `msg="checkpoint unusable; set aside"`) && strings.Contains(l, "partition=0") &&
			strings.Contains(l, "could not be moved aside"):
			kept++
		}
	}
	if set != partitions-1 || kept != 1 {
		t.Fatalf("%d checkpoints logged as set aside (want %d), %d as not (want 1):\n%s", set, partitions-1, kept, log.String())
	}
}

// lockedBuffer is a bytes.Buffer safe for concurrent use, for logs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// While the sink fails, a partition neither checkpoints, commits nor
// fetches past the batch whose transitions wait; when the sink recovers,
// every transition arrives.
func TestFailingSinkAppliesBackpressure(t *testing.T) {
	brokers := startBroker(t)
	data, _ := os.ReadFile("../../deploy/rules/example.yaml")
	rs, err := rules.Load("rules.yaml", bytes.Replace(data, []byte("\nalerts:\n"), []byte("\nalerts:\n  - {name: active, when: dau >= 1, clear: dau < 1, severity: low}\n"), 1), rules.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lines := generate(20, 30)
	half := len(lines) / 2
	produce(t, brokers, lines[:half])
	sink := &collector{}
	sink.fail.Store(true)
	hooks := &lagHooks{lag: map[int32]int64{}}
	dir := t.TempDir()
	cfg := testConfig(brokers, dir, hooks)
	cfg.LagInterval = 100 * time.Millisecond
	r := start(t, cfg, rs, sink)
	waitFor(t, "the first batches", 30*time.Second, func() bool { return hooks.seen.Load() > 0 })
	waitFor(t, "every partition held back", 30*time.Second, func() bool { return heldBack(&hooks.counter, sink) })
	blocked := hooks.seen.Load()
	produce(t, brokers, lines[half:])
	// The consumer sees the new events (the lag counts them) and applies none.
	waitFor(t, "the lag to count the events produced since", 10*time.Second, func() bool {
		return hooks.sum() == int64(len(lines))-hooks.seen.Load()
	})
	if n := hooks.seen.Load(); n != blocked || n > int64(half) {
		t.Fatalf("applied %d events, then %d, while the sink was down: no backpressure", blocked, n)
	}
	if ckpts, _ := filepath.Glob(filepath.Join(dir, "*.ckpt")); len(ckpts) > 0 {
		t.Fatalf("checkpointed %v past transitions the sink never accepted", ckpts)
	}
	sink.fail.Store(false)
	waitFor(t, "every event", 60*time.Second, func() bool { return hooks.seen.Load() >= int64(len(lines)) })
	_, final := snapshot(t, r.c)
	_, want := replay(t, rs, lines)
	equalLines(t, "transitions", sortedUnique(append(sink.sorted(), final...)), want)
}

func testLog() *slog.Logger {
	if os.Getenv("PULSE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Two instances in one group over 8 partitions, sharing a checkpoint
// directory: one joins mid-stream, the other leaves; they end with the
// states of one instance (and of a replay).
func TestScaleOutAndInMatchesOneInstance(t *testing.T) {
	brokers := startBroker(t)
	rs := exampleRules(t)
	lines := generate(40, 35)
	third := len(lines) / 3
	dir := t.TempDir()
	sink := &collector{}
	hooksA, hooksB := &counter{}, &counter{}
	seen := func() int64 { return hooksA.seen.Load() + hooksB.seen.Load() }

	produce(t, brokers, lines[:third])
	a := start(t, testConfig(brokers, dir, hooksA), rs, sink)
	waitFor(t, "A to apply the first third", 60*time.Second, func() bool { return seen() >= int64(third) })

	b := start(t, testConfig(brokers, dir, hooksB), rs, sink)
	produce(t, brokers, lines[third:2*third])
	waitFor(t, "B to own partitions", 60*time.Second, func() bool { return b.c.Ready() && ownedBy(b.c) > 0 && ownedBy(a.c) > 0 })
	waitFor(t, "the second third", 60*time.Second, func() bool { return seen() >= int64(2*third) })

	a.stop(t) // A leaves: B takes over its partitions from A's checkpoints
	produce(t, brokers, lines[2*third:])
	waitFor(t, "B to own every partition", 60*time.Second, func() bool { return ownedBy(b.c) == partitions && b.c.Ready() })
	waitFor(t, "every event", 60*time.Second, func() bool { return seen() >= int64(len(lines)) })

	states, final := snapshot(t, b.c)
	wantStates, wantTransitions := replay(t, rs, lines)
	equalLines(t, "states", states, wantStates)
	equalLines(t, "transitions", sortedUnique(append(sink.sorted(), final...)), wantTransitions)
	if n := seen(); n != int64(len(lines)) {
		t.Fatalf("applied %d events in all, want %d: a handover re-read or skipped some", n, len(lines))
	}
}

func ownedBy(c *Consumer) int {
	n := 0
	c.do(context.Background(), func(*engine.Partition) { n++ })
	return n
}

// bufferingSink accepts every Write but makes nothing durable until Flush
// succeeds, which it refuses while down.
type bufferingSink struct {
	collector
	down    atomic.Bool
	flushes atomic.Int64
	refused atomic.Int64 // flushes refused while down
}

func (b *bufferingSink) Flush(context.Context) error {
	if b.down.Load() {
		b.refused.Add(1)
		return fmt.Errorf("sink down")
	}
	b.flushes.Add(1)
	return nil
}

// A sink that buffers is flushed before every checkpoint: while its Flush
// fails, the partitions go on applying but nothing is checkpointed or
// committed.
func TestCheckpointsWaitForBufferingSinks(t *testing.T) {
	brokers := startBroker(t)
	rs := exampleRules(t)
	lines := generate(20, 10)
	produce(t, brokers, lines)
	sink := &bufferingSink{}
	sink.down.Store(true)
	hooks := &counter{}
	dir := t.TempDir()
	start(t, testConfig(brokers, dir, hooks), rs, sink)
	waitFor(t, "every event", 60*time.Second, func() bool { return hooks.seen.Load() >= int64(len(lines)) })
	// Checkpoints are attempted (twice a partition), and each stops at
	// the refused flush.
	waitFor(t, "checkpoint attempts", 30*time.Second, func() bool { return sink.refused.Load() >= 2*partitions })
	if ckpts, _ := filepath.Glob(filepath.Join(dir, "*.ckpt")); len(ckpts) > 0 {
		t.Fatalf("checkpointed %v while the sink could not flush", ckpts)
	}
	sink.down.Store(false)
	waitFor(t, "checkpoints", 30*time.Second, func() bool {
		ckpts, _ := filepath.Glob(filepath.Join(dir, "*.ckpt"))
		return len(ckpts) > 0
	})
	if sink.flushes.Load() == 0 {
		t.Fatal("checkpointed without a flush")
	}
}
