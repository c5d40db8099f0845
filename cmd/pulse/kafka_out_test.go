package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/sinks/kafka"
)

// The Kafka output across crashes: the daemon writes scores and
// transitions to topics of a `pulse broker` and is killed with SIGKILL
// twice while the stream arrives. Offsets are committed only once the
// brokers acknowledged the outputs, so nothing is lost; what a kill made
// the daemon send again carries the same id and the same bytes. Read back
// with a second client (franz-go) and deduplicated by id, the topics hold
// exactly the score rows and transitions of `pulse replay`, byte for byte.
func TestKafkaOutputSurvivesKillsAndMatchesReplay(t *testing.T) {
	broker := startBrokerProcess(t)
	lines, fenceIDs := fencedStream(40, 35)
	dir := t.TempDir()
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cfg := writeConfig(t, dir, fmt.Sprintf(`
listen: 127.0.0.1:%d
rules: %s
kafka: {brokers: [%s], topic: events, group: kafka-out-test, session_timeout: 6s}
engine: {idle_advance: "0"}
checkpoint: {dir: %s, interval: 100ms}
output: {transitions_file: ""}
kafka_out: {scores_topic: pulse.scores, transitions_topic: pulse.transitions}
`, port, exampleRules, broker, filepath.Join(dir, "ckpt")))

	d := produceKillingDaemon(t, broker, cfg, base, lines, fenceIDs, 3, 6, nil)
	if code := d.stop(t); code != 0 {
		t.Fatalf("exit code %d after SIGTERM; log:\n%s", code, d.output())
	}
	// What the replay emits, encoded as the output encodes it.
	r := engine.NewReplayer(loadExampleRules(t), engine.Config{ScoreRows: true}, 8, 0, 0)
	for i, l := range lines {
		r.Line(i+1, l)
	}
	r.Finish()
	var wantScores, wantTransitions []string
	for _, s := range r.Scores() {
		wantScores = append(wantScores, string(engine.AppendScoreRowJSON(nil, &s)))
	}
	for _, tr := range r.Transitions() {
		wantTransitions = append(wantTransitions, string(kafka.AppendTransitionJSON(nil, &tr)))
	}
	slices.Sort(wantScores)
	slices.Sort(wantTransitions)

	byID := map[string][]byte{}
	var scores, transitions []string
	again := 0
	for _, r := range readTopics(t, broker, "pulse.scores", "pulse.transitions") {
		var m struct {
			ID        string `json:"id"`
			AccountID string `json:"account_id"`
		}
		if err := json.Unmarshal(r.Value, &m); err != nil || string(r.Key) != m.AccountID || m.ID == "" {
			t.Fatalf("%s: key %q, %v:\n%s", r.Topic, r.Key, err, r.Value)
		}
		if seen, ok := byID[m.ID]; ok {
			if !bytes.Equal(seen, r.Value) {
				t.Fatalf("id %s sent twice with different contents:\n%s\n%s", m.ID, seen, r.Value)
			}
			again++
			continue
		}
		byID[m.ID] = r.Value
		switch r.Topic {
		case "pulse.scores":
			scores = append(scores, string(r.Value))
		case "pulse.transitions":
			transitions = append(transitions, string(r.Value))
		}
	}
	t.Logf("%d messages sent again after a kill, each identical to its first", again)
	slices.Sort(scores)
	slices.Sort(transitions)
	sameLines(t, "score rows in Kafka", scores, wantScores)
	sameLines(t, "transitions in Kafka", transitions, wantTransitions)
}

// readTopics reads every message of the topics from the start, until a
// poll brings nothing new for two seconds (after the first messages; all
// are there already).
func readTopics(t *testing.T, broker string, topics ...string) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r); n++ })
		if n == 0 && len(out) > 0 {
			return out
		}
	}
	t.Fatalf("reading %v: still reading after a minute (%d messages)", topics, len(out))
	return nil
}

// kafka_out is off by default; with a topic it writes to the cluster the
// events come from, with its dialer, unless it names brokers of its own,
// and it has the engine emit score rows only for a scores topic.
func TestKafkaOutputConfig(t *testing.T) {
	rc, err := loadConfig("", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if on, _ := builtinPlan(t, rc); on["kafka"] {
		t.Fatal("kafka_out is on by default")
	}
	for _, c := range []struct {
		src       string
		brokers   string
		scoreRows bool
	}{
		{"kafka: {brokers: [k1:9092, k2:9092]}\nkafka_out: {scores_topic: s, transitions_topic: tr}\n", "k1:9092,k2:9092", true},
		{"kafka_out: {transitions_topic: tr}\n", "127.0.0.1:9092", false},
		{"kafka: {brokers: [k1:9092]}\nkafka_out: {brokers: [out:9092], scores_topic: s}\n", "out:9092", true},
	} {
		rc, err := loadConfig(writeConfig(t, t.TempDir(), c.src), noEnv)
		if err != nil {
			t.Fatalf("%s: %v", c.src, err)
		}
		kc := checkedConfig(t, rc, "kafka").(kafka.Config)
		on, scoreRows := builtinPlan(t, rc)
		if !on["kafka"] || strings.Join(kc.Brokers, ",") != c.brokers || kc.Dialer != rc.stream.Dialer || scoreRows != c.scoreRows {
			t.Errorf("%s: on %v, brokers %v, score rows %v", c.src, on["kafka"], kc.Brokers, scoreRows)
		}
	}
}
