package kafka

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/engine/synth"
	"github.com/pulsehq/pulse/rules"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// batches runs a synthetic stream through one partition of the example
// model and returns its outputs a day at a time. The engine is
// deterministic: every call returns the same batches.
func batches(t testing.TB, accounts, days int) []engine.Batch {
	data, err := os.ReadFile("../../deploy/rules/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Load("example.yaml", data, rules.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g := synth.New(synth.Options{Accounts: accounts, Days: days, Seed: 5, End: time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)})
	p := engine.NewPartition(0, rs, engine.Config{ScoreRows: true})
	var d engine.Decoder
	var ev engine.Event
	var out []engine.Batch
	for day := range g.Days() {
		g.Day(day, func(l []byte) {
			if d.Decode(l, &ev) == engine.ReasonOK {
				p.Apply(&ev, 0)
			}
		})
		out = append(out, engine.Batch{Scores: p.TakeScores(), Transitions: p.TakeTransitions()})
	}
	return out
}

// record is a message as a second client reads it back.
type record struct {
	topic     string
	partition int32
	key, id   string // id: the pulse-id header
	value     []byte
}

// readAll reads every message of the topics with franz-go (not the
// library the sink writes with), from the start, until want have come.
func readAll(t *testing.T, brokers []string, want int, topics ...string) []record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []record
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d messages", len(out), want)
		}
		fs.EachRecord(func(r *kgo.Record) {
			rec := record{topic: r.Topic, partition: r.Partition, key: string(r.Key), value: r.Value}
			for _, h := range r.Headers {
				if h.Key == IDHeader {
					rec.id = string(h.Value)
				}
			}
			out = append(out, rec)
		})
	}
	return out
}

func writeAll(t *testing.T, s *Sink, bs []engine.Batch) {
	t.Helper()
	ctx := context.Background()
	for i := range bs {
		if err := s.Write(ctx, &bs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// Every score row and transition arrives, as the JSON the engine encodes,
// keyed by account_id, with the id in the JSON and the header; an
// account's messages share a partition, in order; and a replay of the
// same stream writes the same ids with the same bytes, so a consumer that
// deduplicates by id sees each output once.
func TestScoresAndTransitionsReadBack(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "scores", "transitions"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	bs := batches(t, 30, 40)
	want := map[string][]byte{} // id → value
	nScores, nTransitions := 0, 0
	for _, b := range bs {
		for i := range b.Scores {
			r := &b.Scores[i]
			want[engine.ScoreRowID(r.AccountID, r.Ts)] = engine.AppendScoreRowJSON(nil, r)
			nScores++
		}
		for i := range b.Transitions {
			want[TransitionID(&b.Transitions[i])] = AppendTransitionJSON(nil, &b.Transitions[i])
			nTransitions++
		}
	}
	if nScores == 0 || nTransitions == 0 {
		t.Fatalf("the stream made %d score rows and %d transitions", nScores, nTransitions)
	}
	if len(want) != nScores+nTransitions {
		t.Fatalf("%d distinct ids for %d outputs: ids collide", len(want), nScores+nTransitions)
	}

	s, err := Open(Config{Brokers: brokers, ScoresTopic: "scores", TransitionsTopic: "transitions", Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, s, bs)
	got := readAll(t, brokers, nScores+nTransitions, "scores", "transitions")
	if len(got) != nScores+nTransitions {
		t.Fatalf("read %d messages, want %d", len(got), nScores+nTransitions)
	}
	partitionOf := map[string]int32{}
	lastTs := map[string]string{}
	for _, r := range got {
		var m struct {
			ID        string `json:"id"`
			AccountID string `json:"account_id"`
			AlertID   string `json:"alert_id"`
			State     string `json:"state"`
			Ts        string `json:"ts"`
		}
		if err := json.Unmarshal(r.value, &m); err != nil {
			t.Fatalf("%s: not JSON: %v\n%s", r.topic, err, r.value)
		}
		if r.key != m.AccountID || r.id != m.ID || !bytes.Equal(r.value, want[m.ID]) {
			t.Fatalf("%s message key %q, header id %q:\n%s\nwant the value\n%s", r.topic, r.key, r.id, r.value, want[m.ID])
		}
		switch r.topic {
		case "scores":
			ts, err := time.Parse(time.RFC3339Nano, m.Ts)
			if err != nil || m.ID != engine.ScoreRowID(m.AccountID, ts.UnixNano()) {
				t.Fatalf("score row id %s is not the account's and time's: %s", m.ID, r.value)
			}
			// Timestamps of one account arrive in order (RFC 3339 in UTC
			// sorts as text).
			if m.Ts < lastTs[m.AccountID] {
				t.Fatalf("%s: score row at %s after one at %s", m.AccountID, m.Ts, lastTs[m.AccountID])
			}
			lastTs[m.AccountID] = m.Ts
		case "transitions":
			if m.ID != m.AlertID+":"+m.State {
				t.Fatalf("transition id %s is not alert_id:state: %s", m.ID, r.value)
			}
		}
		k := r.topic + "/" + r.key
		if p, ok := partitionOf[k]; ok && p != r.partition {
			t.Fatalf("%s is in partitions %d and %d", k, p, r.partition)
		}
		partitionOf[k] = r.partition
		delete(want, m.ID)
	}
	if len(want) > 0 {
		t.Fatalf("%d outputs never arrived", len(want))
	}

	// A replay: the same stream through a fresh engine and a fresh sink.
	again, err := Open(Config{Brokers: brokers, ScoresTopic: "scores", TransitionsTopic: "transitions", Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, again, batches(t, 30, 40))
	all := readAll(t, brokers, 2*(nScores+nTransitions), "scores", "transitions")
	byID := map[string][][]byte{}
	for _, r := range all {
		byID[r.id] = append(byID[r.id], r.value)
	}
	if len(byID) != nScores+nTransitions {
		t.Fatalf("after the replay, %d distinct ids; want the %d of the first run", len(byID), nScores+nTransitions)
	}
	for id, vs := range byID {
		if len(vs) != 2 || !bytes.Equal(vs[0], vs[1]) {
			t.Fatalf("id %s: %d messages, want 2 identical ones:\n%s", id, len(vs), bytes.Join(vs, []byte("\n")))
		}
	}
	for _, s := range []*Sink{s, again} {
		if err := s.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// While the brokers cannot be reached, Flush does not pass what is not
// acknowledged (so no offset is committed past it), every failed attempt
// is reported, and once BufferMessages wait, Write waits too
// (backpressure). When the broker comes, everything is stored and read
// back once.
func TestUnreachableBrokersHoldFlushAndWrites(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close() // nothing listens there yet
	var failed atomic.Int64
	s, err := Open(Config{Brokers: []string{fmt.Sprintf("127.0.0.1:%d", port)}, TransitionsTopic: "transitions",
		BufferMessages: 4, RetryWait: 20 * time.Millisecond, MaxRetryWait: 50 * time.Millisecond,
		Log: quiet, Failed: func(error) { failed.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	var ts []rules.Transition
	for _, b := range batches(t, 30, 40) {
		ts = append(ts, b.Transitions...)
	}
	if len(ts) < 7 {
		t.Fatalf("%d transitions: too few for the test", len(ts))
	}
	ctx := context.Background()
	if err := s.Write(ctx, &engine.Batch{Transitions: ts[:3]}); err != nil {
		t.Fatalf("a write within the buffer: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := s.Flush(short); err == nil || !strings.Contains(err.Error(), "3 messages not acknowledged") {
		t.Fatalf("Flush with the broker down: %v", err)
	}
	if failed.Load() == 0 {
		t.Fatal("no failed attempt was reported")
	}
	short, cancel = context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := s.Write(short, &engine.Batch{Transitions: ts[3:7]}); err == nil {
		t.Fatal("a write past the buffer returned while nothing is acknowledged")
	}

	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.SeedTopics(2, "transitions"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	if err := s.Write(ctx, &engine.Batch{Transitions: ts[3:7]}); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range readAll(t, cluster.ListenAddrs(), 7, "transitions") {
		ids = append(ids, r.id)
	}
	var want []string
	for i := range ts[:7] {
		want = append(want, TransitionID(&ts[i]))
	}
	slices.Sort(ids)
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("read back\n%v\nwant\n%v", ids, want)
	}
}

// A sink with only one topic writes only that output.
func TestOneTopic(t *testing.T) {
	s := &Sink{cfg: Config{ScoresTopic: "scores"}}
	b := batches(t, 5, 35)
	var n, nScores int
	for i := range b {
		n += len(s.encode(&b[i]))
		nScores += len(b[i].Scores)
	}
	if n != nScores {
		t.Fatalf("%d messages for %d score rows", n, nScores)
	}
}
