package stream

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// lagHooks keeps the last lag reported per partition.
type lagHooks struct {
	counter
	mu  sync.Mutex
	lag map[int32]int64
}

func (h *lagHooks) Lag(_ string, p int32, lag int64) {
	h.mu.Lock()
	h.lag[p] = lag
	h.mu.Unlock()
}

func (h *lagHooks) sum() (n int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, l := range h.lag {
		n += l
	}
	return n
}

// While a failing sink holds every partition back, nothing is fetched, yet
// the lag keeps following the backlog: it is read from the brokers' high
// watermarks, so it equals what was produced minus what was applied.
func TestLagFollowsTheBacklogWhileASinkHoldsPartitionsBack(t *testing.T) {
	brokers := startBroker(t)
	rs := exampleRules(t)
	lines := generate(20, 20)
	half := len(lines) / 2
	produce(t, brokers, lines[:half])
	sink := &collector{}
	sink.fail.Store(true)
	hooks := &lagHooks{lag: map[int32]int64{}}
	cfg := testConfig(brokers, t.TempDir(), hooks)
	cfg.LagInterval = 100 * time.Millisecond
	cfg.Engine.ScoreRows = true // every partition has rows to write, so every one is held back
	r := start(t, cfg, rs, sink)
	waitFor(t, "the first batches", 30*time.Second, func() bool { return hooks.seen.Load() > 0 })
	waitFor(t, "every partition held back", 30*time.Second, func() bool { return heldBack(&hooks.counter, sink) })
	blocked := hooks.seen.Load()
	produce(t, brokers, lines[half:])
	waitFor(t, "the lag to count the events produced since", 10*time.Second, func() bool {
		return hooks.sum() == int64(len(lines))-hooks.seen.Load()
	})
	if n := hooks.seen.Load(); n != blocked {
		t.Fatalf("applied %d, then %d events: the sink did not hold the partitions back", blocked, n)
	}
	sink.fail.Store(false)
	waitFor(t, "every event", 60*time.Second, func() bool { return hooks.seen.Load() >= int64(len(lines)) })
	waitFor(t, "no lag", 10*time.Second, func() bool { return hooks.sum() == 0 })
	r.stop(t)
}

// A shutdown whose final checkpoints fail (a sink is down) returns an
// ErrNotSaved error naming each partition, what was not checkpointed and
// the outputs no sink accepted; a clean one returns nil (start's cleanup).
func TestShutdownSaysWhatWasNotSaved(t *testing.T) {
	defer func(d time.Duration) { finalSaveTimeout = d }(finalSaveTimeout)
	finalSaveTimeout = time.Second
	brokers := startBroker(t)
	rs := exampleRules(t)
	lines := generate(20, 10)
	produce(t, brokers, lines)
	sink := &collector{}
	sink.fail.Store(true)
	hooks := &counter{}
	ctx, cancel := context.WithCancel(context.Background())
	c := New(testConfig(brokers, t.TempDir(), hooks), rs, sink)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	waitFor(t, "the first batches", 30*time.Second, func() bool { return hooks.seen.Load() > 0 })
	waitFor(t, "a refused write", 30*time.Second, func() bool {
		for p := range partitions {
			if sink.refused[p].Load() > 0 {
				return true
			}
		}
		return false
	})
	cancel()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
	}
	if !errors.Is(err, ErrNotSaved) {
		t.Fatalf("Run after a shutdown with the sink down: %v, want ErrNotSaved", err)
	}
	msg := err.Error()
	named := 0
	for p := range partitions {
		if strings.Contains(msg, fmt.Sprintf("partition %d: ", p)) {
			named++
		}
	}
	if named == 0 || !strings.Contains(msg, "checkpoint") || !strings.Contains(msg, "score rows") || !strings.Contains(msg, "alert transitions") {
		t.Fatalf("the error does not say what was not saved: %v", err)
	}
	sink.fail.Store(false)
	start(t, testConfig(brokers, t.TempDir(), &counter{}), rs, sink).stop(t) // Errorf on a non-nil Run
}

// Temporary files of checkpoint writes a crash cut short are removed when
// their partition is taken on; other files stay.
func TestUnfinishedCheckpointWritesAreRemoved(t *testing.T) {
	brokers := startBroker(t)
	dir := t.TempDir()
	var leftovers []string
	for p := range partitions {
		f := filepath.Join(dir, fmt.Sprintf("%s-%d.ckpt.tmp-%d", topic, p, 1000+p))
		os.WriteFile(f, []byte("half a checkpoint"), 0o644)
		leftovers = append(leftovers, f)
	}
	other := filepath.Join(dir, "other-0.ckpt.tmp-7")
	os.WriteFile(other, []byte("not ours"), 0o644)
	r := start(t, testConfig(brokers, dir, &counter{}), exampleRules(t), &collector{})
	waitFor(t, "readiness", 30*time.Second, r.c.Ready)
	for _, f := range leftovers {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s is still there", filepath.Base(f))
		}
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another topic's file was removed: %v", err)
	}
}

// Dead letters keep the key of the message they copy.
func TestDeadLettersKeepTheirKeys(t *testing.T) {
	brokers := startBroker(t)
	good := generate(5, 2)
	var msgs []kafka.Message
	want := map[string]string{} // value → key
	for i, l := range good {
		msgs = append(msgs, kafka.Message{Key: []byte("k"), Value: l})
		if i%200 == 100 {
			bad := fmt.Sprintf(`{"ts": broken %d`, i)
			key := fmt.Sprintf("key-%d", i)
			if i%400 == 100 {
				key = "" // a message without key stays without
			}
			msgs = append(msgs, kafka.Message{Key: []byte(key), Value: []byte(bad)})
			want[bad] = key
		}
	}
	writeMessages(t, brokers, topic, &kafka.RoundRobin{}, 100, msgs)
	hooks := &counter{}
	cfg := testConfig(brokers, t.TempDir(), hooks)
	cfg.DeadLetterTopic = "dead"
	start(t, cfg, exampleRules(t), &collector{})
	waitFor(t, "dead letters", 60*time.Second, func() bool { return hooks.deadLettered.Load() >= int64(len(want)) })
	dl := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: "dead", Partition: 0, MaxWait: 100 * time.Millisecond})
	defer dl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for range len(want) {
		m, err := dl.ReadMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if key, ok := want[string(m.Value)]; !ok || string(m.Key) != key {
			t.Errorf("dead letter %q has key %q, want %q", m.Value, m.Key, key)
		}
	}
}

// hangingSink buffers, and its Flush hangs while it is down (a ClickHouse
// that does not answer).
type hangingSink struct {
	collector
	down atomic.Bool
	hung atomic.Int64 // flushes that hung
}

func (h *hangingSink) Flush(ctx context.Context) error {
	if h.down.Load() {
		h.hung.Add(1)
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

// A buffering sink that cannot store does not stop scoring: checkpoints
// give up and are retried later, nothing is checkpointed meanwhile, and
// every event is applied (until the sink's own buffer would hold the
// partitions back); once the sink stores again, checkpoints resume.
func TestASinkThatCannotFlushDoesNotStopScoring(t *testing.T) {
	brokers := startBroker(t)
	rs := exampleRules(t)
	sink := &hangingSink{}
	sink.down.Store(true)
	hooks := &counter{}
	dir := t.TempDir()
	r := start(t, testConfig(brokers, dir, hooks), rs, sink)
	waitFor(t, "readiness", 30*time.Second, r.c.Ready)
	waitFor(t, "a checkpoint to hang", 30*time.Second, func() bool { return sink.hung.Load() > 0 })
	lines := generate(20, 10)
	produce(t, brokers, lines)
	waitFor(t, "every event applied while the sink hangs", 30*time.Second, func() bool { return hooks.seen.Load() >= int64(len(lines)) })
	if ckpts, _ := filepath.Glob(filepath.Join(dir, "*.ckpt")); len(ckpts) > 0 {
		t.Fatalf("checkpointed %v while the sink could not flush", ckpts)
	}
	sink.down.Store(false)
	waitFor(t, "checkpoints", 60*time.Second, func() bool {
		ckpts, _ := filepath.Glob(filepath.Join(dir, "*.ckpt"))
		return len(ckpts) == partitions
	})
}
