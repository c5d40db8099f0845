package stream

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/pulsehq/pulse/engine/changelog"
	"github.com/pulsehq/pulse/rules"
)

// restoreHooks records how each partition was taken on.
type restoreHooks struct {
	counter
	mu       sync.Mutex
	restores []restored
}

type restored struct {
	partition      int32
	fromCheckpoint bool
	offset         int64
}

func (h *restoreHooks) Restored(p int32, fromCheckpoint bool, offset int64, _ int) {
	h.mu.Lock()
	h.restores = append(h.restores, restored{p, fromCheckpoint, offset})
	h.mu.Unlock()
}

// since returns the restores recorded after the first n.
func (h *restoreHooks) since(n int) []restored {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]restored(nil), h.restores[n:]...)
}

func (h *restoreHooks) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.restores)
}

// changelogInstance starts a consumer that checkpoints to the changelog
// topic, with a checkpoint directory of its own that stays empty: the
// instances share nothing but the broker.
func changelogInstance(t *testing.T, brokers []string, rs *rules.Ruleset, sink *collector, hooks Hooks) *running {
	cfg := testConfig(brokers, t.TempDir(), hooks)
	cfg.Checkpoints = changelog.New(changelog.Config{Brokers: brokers, Topic: changelog.DefaultTopic(topic), Source: topic, Group: cfg.Group, Log: testLog()})
	return start(t, cfg, rs, sink)
}

// endOffsets returns each partition's high watermark.
func endOffsets(t *testing.T, brokers []string) map[int32]int64 {
	t.Helper()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr}
	var req []kafka.OffsetRequest
	for p := range partitions {
		req = append(req, kafka.LastOffsetOf(p))
	}
	resp, err := c.ListOffsets(context.Background(), &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: req}})
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	for _, po := range resp.Topics[topic] {
		out[int32(po.Partition)] = po.LastOffset
	}
	return out
}

// checkResumedAt fails unless every restore resumed from a checkpoint at
// the partition's end: where its former owner stopped, not the start.
func checkResumedAt(t *testing.T, who string, rs []restored, end map[int32]int64) {
	t.Helper()
	if len(rs) == 0 {
		t.Fatalf("%s restored no partition", who)
	}
	for _, r := range rs {
		if !r.fromCheckpoint || r.offset != end[r.partition] || r.offset <= 0 {
			t.Errorf("%s took partition %d on from a checkpoint: %v, at offset %d; want a checkpoint at %d, where its former owner stopped",
				who, r.partition, r.fromCheckpoint, r.offset, end[r.partition])
		}
	}
}

// Two instances with no shared disk, checkpointing to the changelog
// topic: partitions that move — when B joins and when A leaves — are
// restored from the topic at the offset their former owner reached, so
// nothing is re-read from the start; the end states and transitions are
// those of a replay, and every event is applied exactly once.
func TestPartitionsMoveThroughTheChangelogTopic(t *testing.T) {
	brokers := startBroker(t)
	rs := exampleRules(t)
	lines := generate(40, 35)
	third := len(lines) / 3
	sink := &collector{}
	hooksA, hooksB := &restoreHooks{}, &restoreHooks{}
	seen := func() int64 { return hooksA.seen.Load() + hooksB.seen.Load() }

	produce(t, brokers, lines[:third])
	a := changelogInstance(t, brokers, rs, sink, hooksA)
	waitFor(t, "A to apply the first third", 60*time.Second, func() bool { return seen() >= int64(third) })
	for _, r := range hooksA.since(0) {
		if r.fromCheckpoint {
			t.Fatalf("partition %d restored from a checkpoint before any was written", r.partition)
		}
	}

	// B joins while nothing new arrives: every partition stands at its end.
	end := endOffsets(t, brokers)
	firstA := hooksA.count()
	b := changelogInstance(t, brokers, rs, sink, hooksB)
	waitFor(t, "B to own partitions", 60*time.Second, func() bool {
		return b.c.Ready() && a.c.Ready() && ownedBy(b.c) > 0 && ownedBy(a.c)+ownedBy(b.c) == partitions
	})
	checkResumedAt(t, "B", hooksB.since(0), end)
	checkResumedAt(t, "A, after the rebalance,", hooksA.since(firstA), end)

	produce(t, brokers, lines[third:2*third])
	waitFor(t, "the second third", 60*time.Second, func() bool { return seen() >= int64(2*third) })

	// A leaves: B takes its partitions over from the topic.
	end = endOffsets(t, brokers)
	firstB := hooksB.count()
	a.stop(t)
	waitFor(t, "B to own every partition", 60*time.Second, func() bool { return ownedBy(b.c) == partitions && b.c.Ready() })
	checkResumedAt(t, "B, once A left,", hooksB.since(firstB), end)

	produce(t, brokers, lines[2*third:])
	waitFor(t, "every event", 60*time.Second, func() bool { return seen() >= int64(len(lines)) })
	states, final := snapshot(t, b.c)
	wantStates, wantTransitions := replay(t, rs, lines)
	equalLines(t, "states", states, wantStates)
	equalLines(t, "transitions", sortedUnique(append(sink.sorted(), final...)), wantTransitions)
	if n := seen(); n != int64(len(lines)) {
		t.Fatalf("applied %d events in all, want %d: a handover re-read or skipped some", n, len(lines))
	}
}

// A group that moves its checkpoints from a directory to the changelog
// topic rebuilds nothing: the first start with the topic restores each
// partition from its file (the topic has none yet) and copies the
// checkpoint to the topic, which the next owner, without the files,
// restores from — even though no event came in between.
func TestMovingToTheChangelogTopicRebuildsNothing(t *testing.T) {
	brokers := startBroker(t)
	rs := exampleRules(t)
	lines := generate(20, 20)
	half := len(lines) / 2
	sink := &collector{}
	dir := t.TempDir()

	produce(t, brokers, lines[:half])
	files := &restoreHooks{}
	first := start(t, testConfig(brokers, dir, files), rs, sink)
	waitFor(t, "the first half", 60*time.Second, func() bool { return files.seen.Load() >= int64(half) })
	first.stop(t)

	end := endOffsets(t, brokers)
	moved := &restoreHooks{}
	cfg := testConfig(brokers, dir, moved)
	cfg.Checkpoints = WithFallback(
		changelog.New(changelog.Config{Brokers: brokers, Topic: changelog.DefaultTopic(topic), Source: topic, Group: cfg.Group, Log: testLog()}),
		NewDirStore(dir, topic, testLog()), testLog())
	second := start(t, cfg, rs, sink)
	waitFor(t, "the partitions restored", 60*time.Second, func() bool { return second.c.Ready() && ownedBy(second.c) == partitions })
	checkResumedAt(t, "the first start with the topic", moved.since(0), end)
	second.stop(t) // nothing new applied: no final checkpoint

	produce(t, brokers, lines[half:])
	last := &restoreHooks{}
	third := changelogInstance(t, brokers, rs, sink, last) // no files
	waitFor(t, "every event", 60*time.Second, func() bool {
		return files.seen.Load()+moved.seen.Load()+last.seen.Load() >= int64(len(lines))
	})
	checkResumedAt(t, "an instance without the files", last.since(0), end)
	states, final := snapshot(t, third.c)
	wantStates, wantTransitions := replay(t, rs, lines)
	equalLines(t, "states", states, wantStates)
	equalLines(t, "transitions", sortedUnique(append(sink.sorted(), final...)), wantTransitions)
	if n := files.seen.Load() + moved.seen.Load() + last.seen.Load(); n != int64(len(lines)) {
		t.Fatalf("applied %d events in all, want %d", n, len(lines))
	}
}

// The consumer's config chooses the checkpoint store: files, the topic,
// or the topic reading the files of a group that used them before.
func TestConfigChoosesTheCheckpointStore(t *testing.T) {
	base := Config{Brokers: []string{"k:9092"}, Topic: topic, Group: "g", Log: testLog()}
	for _, c := range []struct {
		store, dir string
		want       string
	}{
		{"", "d", "*stream.DirStore"},
		{CheckpointsInDir, "d", "*stream.DirStore"},
		{CheckpointsInKafka, "", "*changelog.Store"},
		{CheckpointsInKafka, "d", "stream.fallback"},
	} {
		cfg := base
		cfg.CheckpointStore, cfg.CheckpointDir = c.store, c.dir
		if got := fmt.Sprintf("%T", cfg.WithDefaults().Checkpoints); got != c.want {
			t.Errorf("store %q, dir %q: %s, want %s", c.store, c.dir, got, c.want)
		}
	}
	cfg := DefaultConfig()
	cfg.Brokers, cfg.CheckpointStore = []string{"k:9092"}, "disk"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), `checkpoint_store: "disk" must be dir or kafka`) {
		t.Fatalf("a bad store: %v", err)
	}
}
