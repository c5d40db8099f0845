package changelog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/pulsehq/pulse/engine"
)

// The tests run against kfake, an in-process broker speaking the Kafka
// protocol, which enforces max.message.bytes and compacts topics with
// cleanup.policy=compact when asked (Cluster.Compact).

const (
	source     = "events"
	partitions = 8
)

type broker struct {
	*kfake.Cluster
	addrs []string
}

func startBroker(t testing.TB) *broker {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, source))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return &broker{c, c.ListenAddrs()}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// createTopic creates a topic with the given configs (the way an operator
// would), over a client of its own.
func (b *broker) createTopic(t testing.TB, topic string, partitions int, configs ...string) {
	t.Helper()
	var entries []kafka.ConfigEntry
	for i := 0; i+1 < len(configs); i += 2 {
		entries = append(entries, kafka.ConfigEntry{ConfigName: configs[i], ConfigValue: configs[i+1]})
	}
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(b.addrs...), Transport: tr}
	resp, err := c.CreateTopics(context.Background(), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: partitions, ReplicationFactor: 1, ConfigEntries: entries}}})
	if err == nil {
		err = resp.Errors[topic]
	}
	if err != nil {
		t.Fatal(err)
	}
}

func (b *broker) store(t testing.TB, topic, group string) *Store {
	t.Helper()
	s := New(Config{Brokers: b.addrs, Topic: topic, Source: source, Group: group, Log: quiet()})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// smallChunks is a changelog topic whose records may be 16 KiB at most,
// so that a checkpoint of a few hundred KiB takes dozens of chunks; its
// tombstones go at the first compaction.
func smallChunks(t testing.TB, b *broker) *Store {
	b.createTopic(t, "ckpt", partitions, "cleanup.policy", "compact", "max.message.bytes", "16384", "delete.retention.ms", "0")
	return b.store(t, "ckpt", "pulse")
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// load returns what Load restores (nil with ErrNoCheckpoint) and the
// unusable checkpoints it reported; refuse makes restore refuse data.
func load(t testing.TB, s *Store, partition int32, refuse ...[]byte) ([]byte, []error) {
	t.Helper()
	var got []byte
	unusable, err := s.Load(context.Background(), partition, func(data []byte) error {
		for _, r := range refuse {
			if bytes.Equal(data, r) {
				return fmt.Errorf("%w: refused by the test", engine.ErrCorruptCheckpoint)
			}
		}
		got = bytes.Clone(data)
		return nil
	})
	if errors.Is(err, engine.ErrNoCheckpoint) {
		return nil, unusable
	}
	if err != nil {
		t.Fatal(err)
	}
	return got, unusable
}

func save(t testing.TB, s *Store, partition int32, data []byte) {
	t.Helper()
	if err := s.Save(context.Background(), partition, data); err != nil {
		t.Fatal(err)
	}
}

// record is a record of the changelog topic as a test sees it.
type record struct {
	offset int64
	key    string
	value  []byte // nil: a tombstone
}

func records(t testing.TB, s *Store, cp int) []record {
	t.Helper()
	first, end, err := s.bounds(context.Background(), cp)
	if err != nil {
		t.Fatal(err)
	}
	var out []record
	if err := s.scan(context.Background(), cp, first, end, func(off int64, k, v []byte) bool {
		out = append(out, record{off, string(k), v})
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// live counts the records that are not tombstones, by checkpoint nonce.
func live(recs []record) map[string]int {
	n := map[string]int{}
	for _, r := range recs {
		if r.value != nil {
			parts := strings.Split(r.key, "/")
			n[parts[len(parts)-2]]++
		}
	}
	return n
}

// A checkpoint larger than the topic's record limit is written in chunks
// under it, followed by its manifest, and read back byte for byte.
func TestChunkedRoundTrip(t *testing.T) {
	b := startBroker(t)
	s := smallChunks(t, b)
	data := randomBytes(300_000, 1)
	save(t, s, 3, data)

	recs := records(t, s, 3)
	wantChunks := (len(data) + s.payload - 1) / s.payload
	if len(recs) != wantChunks+1 || wantChunks < 20 {
		t.Fatalf("%d records for %d bytes in chunks of %d, want %d chunks and a manifest", len(recs), len(data), s.payload, wantChunks)
	}
	for _, r := range recs[:wantChunks] {
		if len(r.value) > 16384 {
			t.Fatalf("a chunk of %d bytes is over the topic's limit", len(r.value))
		}
	}
	if !strings.HasSuffix(recs[len(recs)-1].key, "/m") {
		t.Fatalf("the last record is %q, want the manifest", recs[len(recs)-1].key)
	}
	got, unusable := load(t, s, 3)
	if !bytes.Equal(got, data) || len(unusable) > 0 {
		t.Fatalf("restored %d bytes (want %d), unusable %v", len(got), len(data), unusable)
	}
	// An empty checkpoint is one empty chunk.
	save(t, s, 3, nil)
	if got, _ := load(t, s, 3); got == nil || len(got) != 0 {
		t.Fatalf("an empty checkpoint restored as %v", got)
	}
	if got, unusable := load(t, s, 4); got != nil || len(unusable) > 0 {
		t.Fatal("partition 4 has a checkpoint it never saved")
	}
}

// Open creates a missing changelog topic, compacted, with the events
// topic's partition count; an existing topic that is not compacted is
// refused with a message that names it and says what to do.
func TestOpenCreatesACompactedTopicAndRefusesAnotherPolicy(t *testing.T) {
	b := startBroker(t)
	s := b.store(t, DefaultTopic(source), "pulse")
	if s.partitions != partitions {
		t.Fatalf("created with %d partitions, want %d", s.partitions, partitions)
	}
	policy, limit, err := s.settings(context.Background())
	if err != nil || policy != "compact" || limit < 1<<20 {
		t.Fatalf("created with cleanup.policy=%q, max.message.bytes=%d (%v)", policy, limit, err)
	}
	// A second instance finds it.
	b.store(t, DefaultTopic(source), "pulse")

	for _, policy := range []string{"delete", "compact,delete"} {
		topic := "ckpt-" + strings.ReplaceAll(policy, ",", "-")
		b.createTopic(t, topic, 1, "cleanup.policy", policy)
		err := New(Config{Brokers: b.addrs, Topic: topic, Source: source, Group: "pulse", Log: quiet()}).Open(context.Background())
		if !errors.Is(err, ErrNotCompacted) || !strings.Contains(err.Error(), topic+" has cleanup.policy="+policy) || !strings.Contains(err.Error(), "checkpoint.topic") {
			t.Errorf("cleanup.policy=%s: %v", policy, err)
		}
	}
}

// A save cut short (chunks written, no manifest) is reported and skipped:
// the previous checkpoint is restored, and the next save deletes the
// unfinished chunks.
func TestAnUnfinishedSaveLeavesThePreviousCheckpoint(t *testing.T) {
	b := startBroker(t)
	s := smallChunks(t, b)
	a := randomBytes(100_000, 2)
	save(t, s, 0, a)
	// A crash after three chunks of the next checkpoint.
	prefix := s.prefix(0)
	for i := range 3 {
		chunk := appendChunk(nil, 77, uint32(i), randomBytes(s.payload, 3))
		if _, err := s.produce(context.Background(), 0, kafka.Record{Key: kafka.NewBytes(chunkKey(prefix, 77, i)), Value: kafka.NewBytes(chunk)}); err != nil {
			t.Fatal(err)
		}
	}
	got, unusable := load(t, s, 0)
	if !bytes.Equal(got, a) {
		t.Fatal("the previous checkpoint was not restored")
	}
	if len(unusable) != 1 || !errors.Is(unusable[0], engine.ErrCorruptCheckpoint) || !strings.Contains(unusable[0].Error(), "unfinished checkpoint 000000000000004d") {
		t.Fatalf("unusable %v, want the unfinished checkpoint", unusable)
	}
	c := randomBytes(50_000, 4)
	save(t, s, 0, c)
	b.Compact()
	if n := live(records(t, s, 0)); n["000000000000004d"] != 0 || len(n) != 2 {
		t.Fatalf("live records by checkpoint after compaction: %v, want the restored and the new one only", n)
	}
	if got, unusable := load(t, s, 0); !bytes.Equal(got, c) || len(unusable) > 0 {
		t.Fatalf("after the next save: %d bytes, unusable %v", len(got), unusable)
	}
}

// saveCorrupt writes data as a checkpoint like Save, but damages its
// chunk i after the chunk's checksum was computed, as a bad disk would.
func saveCorrupt(t *testing.T, s *Store, partition int32, data []byte, i int) {
	t.Helper()
	prefix := s.prefix(partition)
	cp := s.changelogPartition(partition)
	r := ref{nonce: rand.Uint64() | 1, chunks: uint32((len(data) + s.payload - 1) / s.payload)}
	m := manifest{partition: partition, ref: r, size: uint64(len(data)), crc: crc32.Checksum(data, castagnoli)}
	for k := range int(r.chunks) {
		chunk := appendChunk(nil, r.nonce, uint32(k), data[k*s.payload:min((k+1)*s.payload, len(data))])
		if k == i {
			chunk[len(chunk)-1] ^= 0x20
		}
		off, err := s.produce(context.Background(), cp, kafka.Record{Key: kafka.NewBytes(chunkKey(prefix, r.nonce, k)), Value: kafka.NewBytes(chunk)})
		if err != nil {
			t.Fatal(err)
		}
		if k == 0 {
			m.first = off
		}
	}
	if _, err := s.produce(context.Background(), cp, kafka.Record{Key: kafka.NewBytes(manifestKey(prefix, r.nonce)), Value: kafka.NewBytes(m.append(nil))}); err != nil {
		t.Fatal(err)
	}
}

// A checkpoint whose chunk fails its checksum, one whose chunk is gone,
// one whose manifest is damaged or of an unknown version, and one the
// engine refuses are each reported and skipped for the previous good
// one; when none is good, the partition has no checkpoint. The next save
// deletes them all.
func TestDamagedCheckpointsFallBackToThePreviousGoodOne(t *testing.T) {
	b := startBroker(t)
	s := smallChunks(t, b)
	good := randomBytes(60_000, 5)
	save(t, s, 1, good)

	// A chunk that fails its checksum.
	saveCorrupt(t, s, 1, randomBytes(60_000, 6), 2)
	got, unusable := load(t, s, 1)
	if !bytes.Equal(got, good) || len(unusable) != 1 || !strings.Contains(unusable[0].Error(), "chunk 2 fails its checksum") {
		t.Fatalf("chunk checksum: restored the good one %v, unusable %v", bytes.Equal(got, good), unusable)
	}

	// A manifest of a later version, and one that fails its checksum.
	m := manifest{partition: 1, ref: ref{nonce: 5, chunks: 1}}
	newer := m.append(nil)
	newer[len(manifestMagic)+1] = 2
	flipped := m.append(nil)
	flipped[20] ^= 1
	for _, v := range [][]byte{newer, flipped} {
		if _, err := s.produce(context.Background(), 1, kafka.Record{Key: kafka.NewBytes(manifestKey(s.prefix(1), 5)), Value: kafka.NewBytes(v)}); err != nil {
			t.Fatal(err)
		}
	}
	got, unusable = load(t, s, 1)
	if !bytes.Equal(got, good) || len(unusable) != 3 || !mentions(unusable, "manifest version 2, this Pulse reads 1", "manifest fails its checksum", "chunk 2 fails its checksum") {
		t.Fatalf("bad manifests: restored the good one %v, unusable %v", bytes.Equal(got, good), unusable)
	}

	// A checkpoint the engine refuses (a newer format, another partition's).
	// The save deleted the damaged ones, but until compaction removes
	// them they are read (and refused) again when nothing newer is good.
	refused := randomBytes(30_000, 7)
	save(t, s, 1, refused)
	got, unusable = load(t, s, 1, refused)
	if !bytes.Equal(got, good) || len(unusable) != 4 || !mentions(unusable, "refused by the test") {
		t.Fatalf("refused: restored the good one %v, unusable %v", bytes.Equal(got, good), unusable)
	}

	// Nothing good: no checkpoint.
	if got, unusable = load(t, s, 1, refused, good); got != nil || len(unusable) != 5 {
		t.Fatalf("all refused: restored %d bytes, unusable %d: %v", len(got), len(unusable), unusable)
	}
	for _, err := range unusable {
		if !errors.Is(err, engine.ErrCorruptCheckpoint) {
			t.Errorf("%v does not wrap ErrCorruptCheckpoint", err)
		}
	}

	// The next save deletes every one of them; compaction removes them.
	fresh := randomBytes(20_000, 8)
	save(t, s, 1, fresh)
	b.Compact()
	if n := live(records(t, s, 1)); len(n) != 1 {
		t.Fatalf("live records by checkpoint: %v, want the new one only", n)
	}
	if got, unusable := load(t, s, 1); !bytes.Equal(got, fresh) || len(unusable) > 0 {
		t.Fatalf("after the save: unusable %v", unusable)
	}
}

// A chunk that compaction removed (its key overwritten by a stray
// producer) makes the checkpoint unusable, not a half-restored one.
func TestAMissingChunkIsDetected(t *testing.T) {
	b := startBroker(t)
	s := smallChunks(t, b)
	good, later := randomBytes(40_000, 9), randomBytes(40_000, 10)
	save(t, s, 2, good)
	save(t, s, 2, later)
	var key string
	for _, r := range records(t, s, 2) {
		if strings.HasSuffix(r.key, "/1") {
			key = r.key // chunk 1 of the later checkpoint (the good one's went first)
		}
	}
	// kfake never compacts the last record batch (its active segment):
	// another record follows the stray one.
	for _, k := range []string{key, "unrelated"} {
		if _, err := s.produce(context.Background(), 2, kafka.Record{Key: kafka.NewBytes([]byte(k)), Value: kafka.NewBytes([]byte("stray"))}); err != nil {
			t.Fatal(err)
		}
	}
	b.Compact()
	got, unusable := load(t, s, 2)
	if !bytes.Equal(got, good) || len(unusable) != 1 || !mentions(unusable, "1 of its 4 chunks are missing") {
		t.Fatalf("restored the good one %v, unusable %v", bytes.Equal(got, good), unusable)
	}
}

// However many checkpoints are saved, compaction keeps two per partition
// (the newest and the one it replaced); partitions that share a changelog
// partition, and groups that share the topic, keep apart.
func TestCompactionKeepsTwoCheckpointsPerPartition(t *testing.T) {
	b := startBroker(t)
	s := smallChunks(t, b)
	other := b.store(t, "ckpt", "another-group")
	var last [3][]byte
	for i := range 10 {
		for k, p := range []int32{0, 8} { // 8 mod 8: the same changelog partition
			last[k] = randomBytes(30_000+1000*i+k, uint64(100*i+k))
			save(t, s, p, last[k])
		}
		last[2] = randomBytes(20_000, uint64(1000+i))
		save(t, other, 0, last[2])
	}
	b.Compact()
	n := live(records(t, s, 0))
	if len(n) != 6 {
		t.Fatalf("live checkpoints after compaction: %d (%v), want 2 for each of 3 partitions", len(n), n)
	}
	for k, got := range [][]byte{first(load(t, s, 0)), first(load(t, s, 8)), first(load(t, other, 0))} {
		if !bytes.Equal(got, last[k]) {
			t.Fatalf("checkpoint %d is not the last one saved", k)
		}
	}
}

func first[A, B any](a A, _ B) A { return a }

// A save that fails (the broker refuses the record) leaves the previous
// checkpoint in force.
func TestAFailedSaveKeepsThePreviousCheckpoint(t *testing.T) {
	b := startBroker(t)
	s := smallChunks(t, b)
	good := randomBytes(30_000, 11)
	save(t, s, 5, good)
	s.payload = 64 << 10 // larger than the topic accepts: the broker refuses the chunk
	if err := s.Save(context.Background(), 5, randomBytes(200_000, 12)); err == nil || !errors.Is(err, kafka.MessageSizeTooLarge) {
		t.Fatalf("save of an oversized chunk: %v", err)
	}
	s.payload = 16384 - recordSlack
	if got, unusable := load(t, s, 5); !bytes.Equal(got, good) || len(unusable) != 0 {
		t.Fatalf("after a failed save: restored the good one %v, unusable %v", bytes.Equal(got, good), unusable)
	}
}

// mentions reports whether every one of substrs is in some error of errs.
func mentions(errs []error, substrs ...string) bool {
	for _, sub := range substrs {
		found := false
		for _, err := range errs {
			found = found || strings.Contains(err.Error(), sub)
		}
		if !found {
			return false
		}
	}
	return true
}

// Reading crosses the gaps compaction leaves, also inside a record batch
// whose last records were superseded.
func TestReadingCrossesCompactedGaps(t *testing.T) {
	b := startBroker(t)
	s := smallChunks(t, b)
	rec := func(k string, n int) kafka.Record {
		return kafka.Record{Key: kafka.NewBytes([]byte(k)), Value: kafka.NewBytes(randomBytes(n, uint64(len(k))))}
	}
	for _, batch := range [][]kafka.Record{
		{rec("a", 10), rec("b", 10), rec("c", 10), rec("d", 10), rec("e", 10)},
		{rec("d", 10), rec("e", 10)},
		{rec("big", 12000)},
		{rec("f", 10)},
	} {
		if _, err := s.produce(context.Background(), 6, batch...); err != nil {
			t.Fatal(err)
		}
	}
	b.Compact()
	var keys []string
	for _, r := range records(t, s, 6) {
		keys = append(keys, r.key)
	}
	if strings.Join(keys, " ") != "a b c d e big f" {
		t.Fatalf("read %v", keys)
	}
}
