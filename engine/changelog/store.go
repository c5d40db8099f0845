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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/pulsehq/pulse/engine"
)

// Config configures a Store. Brokers, Topic, Source and Group are
// required.
type Config struct {
	Brokers []string
	// Dialer carries TLS, SASL and the dial timeout; nil: plain TCP.
	Dialer *kafka.Dialer
	// Topic is the changelog topic, created compacted when missing.
	Topic string
	// Source is the events topic: keys name it, and a new changelog topic
	// gets its partition count.
	Source string
	// Group is the consumer group: keys name it, so groups that read one
	// topic with different rules never restore each other's state.
	Group string
	// Compression of the records (kafka.Lz4, …); 0: none.
	Compression kafka.Compression
	Log         *slog.Logger
}

// DefaultTopic is the changelog topic of an events topic when none is
// configured.
func DefaultTopic(source string) string { return source + ".pulse-checkpoints" }

// ErrNotCompacted is returned by Open when the changelog topic exists
// with another cleanup policy than compact.
var ErrNotCompacted = errors.New("the checkpoint topic is not compacted")

const (
	// maxRecord caps a chunk even where the topic accepts larger records:
	// a restore holds a fetch of them in memory, and beyond a few MiB
	// larger records save no time.
	maxRecord = 4 << 20
	// recordSlack is room for what Kafka adds to a value in a record
	// batch (batch header, record framing, the key).
	recordSlack = 4 << 10
	// segmentBytes is the segment size of a topic Open creates. Kafka
	// compacts closed segments only: with its 1 GiB default, replaced
	// checkpoints of a small partition would stay on disk for days.
	segmentBytes = 64 << 20
	// scanBytes and readBytes bound one fetch when looking for the newest
	// manifest (a few records are read, backwards from the end) and when
	// reading a checkpoint's chunks (larger fetches were slower: the
	// client grows its buffers for each).
	scanBytes = 1 << 20
	readBytes = 4 << 20
)

// Store keeps each partition's checkpoint in a compacted Kafka topic. It
// implements the consumer's stream.CheckpointStore; see the package doc
// for the layout and the guarantees. It is safe for concurrent use by the
// tasks of different partitions.
type Store struct {
	cfg       Config
	transport *kafka.Transport
	client    *kafka.Client

	// Set by Open.
	partitions int // of the changelog topic
	payload    int // checkpoint bytes per chunk

	mu    sync.Mutex
	parts map[int32]*partState

	written atomic.Int64 // bytes produced (keys and values), for benchmarks
}

// partState is what a Store knows of one partition's checkpoints. Only the
// task owning the partition touches it (through Load, then Save).
type partState struct {
	current ref      // the checkpoint restored or saved last: never deleted before a newer one is complete
	prev    ref      // the one current replaced: deleted by the next save
	stale   [][]byte // keys of unusable or unfinished checkpoints: deleted by the next save
}

// New returns a store; Open must succeed before it is used.
func New(cfg Config) *Store {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	d := cfg.Dialer
	if d == nil {
		d = &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true}
	}
	tr := &kafka.Transport{Dial: d.DialFunc, TLS: d.TLS, SASL: d.SASLMechanism, ClientID: "pulse-checkpoints"}
	return &Store{
		cfg:       cfg,
		transport: tr,
		client:    &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Timeout: 30 * time.Second, Transport: tr},
		parts:     map[int32]*partState{},
	}
}

// Open makes sure the changelog topic exists and is compacted — it
// creates it, compacted, with the events topic's partition count when it
// is missing — and reads its record size limit (max.message.bytes), which
// sizes the chunks. While the brokers cannot be reached (or the events
// topic does not exist yet) it retries until ctx ends; a topic with
// another cleanup policy (ErrNotCompacted), or one it may not create or
// describe, is an error at once.
func (s *Store) Open(ctx context.Context) error {
	wait := 200 * time.Millisecond
	for {
		err := s.open(ctx)
		if err == nil || !retriable(err) || ctx.Err() != nil {
			return err
		}
		s.cfg.Log.Warn("checkpoint topic not ready; retrying", "topic", s.cfg.Topic, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// retriable tells errors that time may cure (brokers unreachable, a
// leader moving, a topic not created yet) from those it will not.
func retriable(err error) bool {
	if errors.Is(err, ErrNotCompacted) {
		return false
	}
	var ke kafka.Error
	if errors.As(err, &ke) {
		return ke.Temporary()
	}
	return true // the network
}

func (s *Store) open(ctx context.Context) error {
	own, source, err := s.topics(ctx)
	if err != nil {
		return err
	}
	if errors.Is(own.Error, kafka.UnknownTopicOrPartition) {
		if source.Error != nil || len(source.Partitions) == 0 {
			return fmt.Errorf("the events topic %q, whose partition count a new checkpoint topic takes: %w", s.cfg.Source, cmpErr(source.Error, kafka.UnknownTopicOrPartition))
		}
		if err := s.create(ctx, len(source.Partitions)); err != nil {
			return err
		}
		if own, _, err = s.topics(ctx); err != nil {
			return err
		}
	}
	if own.Error != nil {
		return fmt.Errorf("topic %s: %w", s.cfg.Topic, own.Error)
	}
	if len(own.Partitions) == 0 {
		return fmt.Errorf("topic %s: %w (no partitions listed yet)", s.cfg.Topic, kafka.LeaderNotAvailable)
	}
	policy, limit, err := s.settings(ctx)
	if err != nil {
		return err
	}
	if policy != "compact" {
		return fmt.Errorf("%w: %s has cleanup.policy=%s; it needs compact alone (with delete too, a partition without new events would lose its only checkpoint to retention). "+
			"Set cleanup.policy=compact on it, or name another topic in checkpoint.topic", ErrNotCompacted, s.cfg.Topic, policy)
	}
	s.partitions = len(own.Partitions)
	s.payload = min(limit, maxRecord) - recordSlack
	if s.cfg.Compression != 0 {
		// The limit applies to the compressed batch, and a codec may grow
		// an incompressible chunk (snappy by up to a sixth).
		s.payload = s.payload * 5 / 6
	}
	if s.payload < 4<<10 {
		return fmt.Errorf("%s: max.message.bytes %d is too small for checkpoint chunks", s.cfg.Topic, limit)
	}
	s.cfg.Log.Info("checkpoint topic", "topic", s.cfg.Topic, "partitions", s.partitions, "chunk_bytes", s.payload)
	return nil
}

func cmpErr(err, fallback error) error {
	if err != nil {
		return err
	}
	return fallback
}

// topics returns the metadata of the changelog and events topics (a
// missing one with its Error set).
func (s *Store) topics(ctx context.Context) (own, source kafka.Topic, err error) {
	md, err := s.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{s.cfg.Topic, s.cfg.Source}})
	if err != nil {
		return own, source, err
	}
	own.Error, source.Error = kafka.UnknownTopicOrPartition, kafka.UnknownTopicOrPartition
	for _, t := range md.Topics {
		switch t.Name {
		case s.cfg.Topic:
			own = t
		case s.cfg.Source:
			source = t
		}
	}
	return own, source, nil
}

func (s *Store) create(ctx context.Context, partitions int) error {
	resp, err := s.client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: s.cfg.Topic, NumPartitions: partitions, ReplicationFactor: -1, // the brokers' default.replication.factor
		ConfigEntries: []kafka.ConfigEntry{
			{ConfigName: "cleanup.policy", ConfigValue: "compact"},
			{ConfigName: "segment.bytes", ConfigValue: strconv.Itoa(segmentBytes)},
		},
	}}})
	if err == nil {
		err = resp.Errors[s.cfg.Topic]
	}
	switch {
	case errors.Is(err, kafka.TopicAlreadyExists): // another instance was first
	case err != nil:
		return fmt.Errorf("creating the checkpoint topic %s (create it yourself with cleanup.policy=compact, or allow Pulse to): %w", s.cfg.Topic, err)
	default:
		s.cfg.Log.Info("created the checkpoint topic", "topic", s.cfg.Topic, "partitions", partitions, "cleanup.policy", "compact")
	}
	return nil
}

// settings reads the topic's cleanup policy and record size limit.
func (s *Store) settings(ctx context.Context) (policy string, limit int, err error) {
	resp, err := s.client.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: s.cfg.Topic, ConfigNames: []string{"cleanup.policy", "max.message.bytes"},
	}}})
	if err != nil {
		return "", 0, fmt.Errorf("describing %s: %w", s.cfg.Topic, err)
	}
	limit = 1 << 20 // Kafka's default, should the broker not say
	for _, r := range resp.Resources {
		if r.Error != nil {
			return "", 0, fmt.Errorf("describing %s: %w", s.cfg.Topic, r.Error)
		}
		for _, e := range r.ConfigEntries {
			switch e.ConfigName {
			case "cleanup.policy":
				policy = strings.ReplaceAll(e.ConfigValue, " ", "")
			case "max.message.bytes":
				if n, err := strconv.Atoi(e.ConfigValue); err == nil && n > 0 {
					limit = n
				}
			}
		}
	}
	return policy, limit, nil
}

// Close closes the store's connections.
func (s *Store) Close() error {
	s.transport.CloseIdleConnections()
	return nil
}

func (s *Store) prefix(partition int32) string {
	return keyPrefix(s.cfg.Group, s.cfg.Source, partition)
}

// changelogPartition is where a partition's checkpoints go. The topic is
// created with as many partitions as the events topic, one each; should
// the events topic grow, its new partitions share (keys keep them apart).
// Adding partitions to the changelog topic would move checkpoints out of
// sight: don't.
func (s *Store) changelogPartition(partition int32) int { return int(partition) % s.partitions }

func (s *Store) state(partition int32) *partState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.parts[partition]
	if st == nil {
		st = &partState{}
		s.parts[partition] = st
	}
	return st
}

// where names a checkpoint in messages.
func (s *Store) where(cp int, m *manifest) string {
	return fmt.Sprintf("checkpoint %016x in %s/%d at offset %d", m.nonce, s.cfg.Topic, cp, m.offset)
}

// keyAt is a record of a partition's checkpoints seen by Load.
type keyAt struct {
	offset int64
	nonce  uint64
	key    []byte
}

// Load finds the partition's newest manifest by reading the changelog
// partition backwards from its end — a few records after a clean save,
// where the manifest is the last record — and hands restore the
// checkpoint it names, read from its first chunk on. A checkpoint that is
// damaged (a missing or corrupt chunk, a bad manifest) or that restore
// refuses is returned among the unusable ones, and the next older one is
// tried, down to the start of the log; its records are deleted by the
// next Save. With none usable, the error wraps engine.ErrNoCheckpoint.
func (s *Store) Load(ctx context.Context, partition int32, restore func([]byte) error) ([]error, error) {
	st := &partState{}
	s.mu.Lock()
	s.parts[partition] = st // a partition taken on again starts from what the topic says
	s.mu.Unlock()
	prefix, cp := s.prefix(partition), s.changelogPartition(partition)
	first, end, err := s.bounds(ctx, cp)
	if err != nil {
		return nil, err
	}
	var unusable []error
	var seen []keyAt // this partition's records from hi to end, in offset order
	hi, window := end, int64(1)
	for hi > first {
		from := max(first, hi-window)
		var found []manifest
		var keys []keyAt
		err := s.scan(ctx, cp, from, hi, func(offset int64, key, value []byte) bool {
			nonce, index, ok := parseKey(prefix, key)
			if !ok || value == nil { // another partition's, or a tombstone
				return true
			}
			keys = append(keys, keyAt{offset, nonce, key})
			if index >= 0 {
				return true
			}
			m, err := parseManifest(value)
			m.offset = offset
			if err == nil && m.partition != partition {
				err = fmt.Errorf("%w: the manifest is of partition %d", engine.ErrCorruptCheckpoint, m.partition)
			}
			if err != nil {
				unusable = append(unusable, fmt.Errorf("manifest %q in %s/%d at offset %d (deleted by the next checkpoint): %w", key, s.cfg.Topic, cp, offset, err))
				return true
			}
			found = append(found, m)
			return true
		})
		if err != nil {
			return unusable, fmt.Errorf("reading %s/%d: %w", s.cfg.Topic, cp, err)
		}
		seen = append(keys, seen...)
		for i := len(found) - 1; i >= 0; i-- {
			m := &found[i]
			data, err := s.read(ctx, cp, prefix, m)
			if ctx.Err() != nil {
				return unusable, ctx.Err()
			}
			if err == nil {
				err = restore(data)
			}
			if err != nil {
				unusable = append(unusable, fmt.Errorf("%s (deleted by the next checkpoint): %w", s.where(cp, m), err))
				continue
			}
			st.current, st.prev = m.ref, m.prev
			st.stale = staleKeys(seen, m.offset, m.nonce)
			return append(unusable, s.unfinished(cp, seen, m.offset)...), nil
		}
		hi, window = from, window*4
	}
	st.stale = staleKeys(seen, -1, 0)
	return append(unusable, s.unfinished(cp, seen, -1)...), fmt.Errorf("%s partition %d: %w", s.cfg.Topic, cp, engine.ErrNoCheckpoint)
}

// unfinished reports the checkpoints seen after offset whose manifest is
// missing: saves a crash (or a failed write) cut short.
func (s *Store) unfinished(cp int, seen []keyAt, offset int64) []error {
	chunks, manifests := map[uint64]int{}, map[uint64]bool{}
	var order []uint64
	for _, k := range seen {
		if k.offset <= offset {
			continue
		}
		if bytes.HasSuffix(k.key, []byte("/m")) {
			manifests[k.nonce] = true
			continue
		}
		if chunks[k.nonce] == 0 {
			order = append(order, k.nonce)
		}
		chunks[k.nonce]++
	}
	var errs []error
	for _, nonce := range order {
		if !manifests[nonce] {
			errs = append(errs, fmt.Errorf("%w: unfinished checkpoint %016x in %s/%d: %d chunks and no manifest, a save cut short (deleted by the next checkpoint)",
				engine.ErrCorruptCheckpoint, nonce, s.cfg.Topic, cp, chunks[nonce]))
		}
	}
	return errs
}

// staleKeys returns the distinct keys seen after offset that are not of
// checkpoint nonce: unfinished or unusable checkpoints, to be deleted.
func staleKeys(seen []keyAt, offset int64, nonce uint64) [][]byte {
	var keys [][]byte
	dup := map[string]bool{}
	for _, k := range seen {
		if k.offset > offset && k.nonce != nonce && !dup[string(k.key)] {
			dup[string(k.key)] = true
			keys = append(keys, k.key)
		}
	}
	return keys
}

// bounds returns the first offset and the end (high watermark) of a
// changelog partition.
func (s *Store) bounds(ctx context.Context, cp int) (first, end int64, err error) {
	for _, at := range []kafka.OffsetRequest{kafka.FirstOffsetOf(cp), kafka.LastOffsetOf(cp)} {
		resp, err := s.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{s.cfg.Topic: {at}}})
		if err != nil {
			return 0, 0, err
		}
		po := resp.Topics[s.cfg.Topic]
		if len(po) != 1 {
			return 0, 0, fmt.Errorf("listing the offsets of %s/%d: no answer", s.cfg.Topic, cp)
		}
		if po[0].Error != nil {
			return 0, 0, fmt.Errorf("listing the offsets of %s/%d: %w", s.cfg.Topic, cp, po[0].Error)
		}
		if at.Timestamp == kafka.FirstOffset {
			first = po[0].FirstOffset
		} else {
			end = po[0].LastOffset
		}
	}
	return first, end, nil
}

// scan calls fn for each record of changelog partition cp in [from, to),
// in offset order, until fn returns false. value is nil for a tombstone.
func (s *Store) scan(ctx context.Context, cp int, from, to int64, fn func(offset int64, key, value []byte) bool) error {
	maxBytes := int64(scanBytes)
	if to-from > 16 {
		maxBytes = readBytes
	}
	for off := from; off < to; {
		resp, err := s.client.Fetch(ctx, &kafka.FetchRequest{Topic: s.cfg.Topic, Partition: cp, Offset: off, MinBytes: 1, MaxBytes: maxBytes, MaxWait: 100 * time.Millisecond})
		if err == nil {
			err = resp.Error
		}
		if err != nil {
			return err
		}
		next := off
		for {
			r, err := resp.Records.ReadRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return err
			}
			if r.Offset < off { // a record batch may start before the offset asked for
				continue
			}
			if r.Offset >= to {
				return nil
			}
			key, err := readBytesOf(r.Key)
			if err != nil {
				return err
			}
			value, err := readBytesOf(r.Value)
			if err != nil {
				return err
			}
			next = r.Offset + 1
			if !fn(r.Offset, key, value) {
				return nil
			}
		}
		if next > off {
			off = next
			continue
		}
		// Nothing at or after off. Either the log ends, or compaction
		// emptied a record batch from off on and the broker sent that
		// batch alone (its header still spans off; the client does not
		// say where it ends): ask for enough to hold the next batch too.
		// Still nothing, then nothing is left below to.
		if resp.HighWatermark <= off || maxBytes > readBytes {
			return nil
		}
		maxBytes = 2*readBytes + maxRecord
	}
	return nil
}

func readBytesOf(b kafka.Bytes) ([]byte, error) {
	if b == nil {
		return nil, nil
	}
	buf := make([]byte, b.Len())
	_, err := io.ReadFull(b, buf)
	return buf, err
}

// read returns the checkpoint m names, checked chunk by chunk and whole.
func (s *Store) read(ctx context.Context, cp int, prefix string, m *manifest) ([]byte, error) {
	parts := make([][]byte, m.chunks)
	missing := int(m.chunks)
	var bad error
	err := s.scan(ctx, cp, m.first, m.offset, func(_ int64, key, value []byte) bool {
		nonce, index, ok := parseKey(prefix, key)
		if !ok || nonce != m.nonce || index < 0 || index >= len(parts) || value == nil {
			return true
		}
		payload, err := parseChunk(value, m.nonce, uint32(index))
		if err != nil {
			bad = err
			return false
		}
		if parts[index] == nil {
			missing--
		}
		parts[index] = payload
		return missing > 0
	})
	switch {
	case err != nil:
		return nil, err
	case bad != nil:
		return nil, bad
	case missing > 0:
		return nil, fmt.Errorf("%w: %d of its %d chunks are missing", engine.ErrCorruptCheckpoint, missing, m.chunks)
	}
	data := make([]byte, 0, m.size)
	for _, p := range parts {
		data = append(data, p...)
	}
	if uint64(len(data)) != m.size || crc32.Checksum(data, castagnoli) != m.crc {
		return nil, fmt.Errorf("%w: the chunks do not add up to the checkpoint (size or checksum)", engine.ErrCorruptCheckpoint)
	}
	return data, nil
}

// Save writes the checkpoint as chunks, then its manifest, each
// acknowledged by every in-sync replica before the next is sent: when
// the manifest is, the checkpoint is complete and durable, and Save
// returns nil. Before the chunks it deletes (with tombstones) the
// checkpoint the current one replaced and any unusable or unfinished
// ones: the current checkpoint stays until a newer one is complete, so a
// crash at any point leaves a usable checkpoint, and compaction keeps
// about two per partition.
func (s *Store) Save(ctx context.Context, partition int32, data []byte) error {
	st := s.state(partition)
	prefix, cp := s.prefix(partition), s.changelogPartition(partition)
	if tomb := append(st.prev.keys(prefix), st.stale...); len(tomb) > 0 {
		if err := s.tombstone(ctx, cp, tomb); err != nil {
			return fmt.Errorf("deleting replaced checkpoints from %s/%d: %w", s.cfg.Topic, cp, err)
		}
		st.prev, st.stale = ref{}, nil
	}
	next := ref{nonce: rand.Uint64() | 1, chunks: uint32(max(1, (len(data)+s.payload-1)/s.payload))}
	m := manifest{partition: partition, ref: next, size: uint64(len(data)), crc: crc32.Checksum(data, castagnoli), prev: st.current}
	buf := make([]byte, 0, chunkHeader+min(s.payload, len(data)))
	for i := range int(next.chunks) {
		payload := data[i*s.payload : min((i+1)*s.payload, len(data))]
		buf = appendChunk(buf[:0], next.nonce, uint32(i), payload)
		offset, err := s.produce(ctx, cp, kafka.Record{Key: kafka.NewBytes(chunkKey(prefix, next.nonce, i)), Value: kafka.NewBytes(buf)})
		if err != nil {
			st.stale = append(st.stale, next.keys(prefix)...)
			return fmt.Errorf("writing chunk %d of %d to %s/%d: %w", i+1, next.chunks, s.cfg.Topic, cp, err)
		}
		if i == 0 {
			m.first = offset
		}
	}
	if _, err := s.produce(ctx, cp, kafka.Record{Key: kafka.NewBytes(manifestKey(prefix, next.nonce)), Value: kafka.NewBytes(m.append(nil))}); err != nil {
		// It may have been written all the same: then it is the newest
		// checkpoint until the next save deletes it (current stays).
		st.stale = append(st.stale, next.keys(prefix)...)
		return fmt.Errorf("writing the manifest to %s/%d: %w", s.cfg.Topic, cp, err)
	}
	st.prev, st.current = st.current, next
	return nil
}

// tombstone writes a tombstone for each key, in batches under the limit.
func (s *Store) tombstone(ctx context.Context, cp int, keys [][]byte) error {
	for len(keys) > 0 {
		var recs []kafka.Record
		size := 0
		for len(keys) > 0 && size < s.payload/2 {
			recs = append(recs, kafka.Record{Key: kafka.NewBytes(keys[0])})
			size += len(keys[0]) + 32
			keys = keys[1:]
		}
		if _, err := s.produce(ctx, cp, recs...); err != nil {
			return err
		}
	}
	return nil
}

// produce writes one record batch with acks from every in-sync replica
// and returns the offset of its first record.
func (s *Store) produce(ctx context.Context, cp int, recs ...kafka.Record) (int64, error) {
	now := time.Now()
	n := 0
	for i := range recs {
		recs[i].Time = now // tombstones expire delete.retention.ms after this
		n += recs[i].Key.Len()
		if recs[i].Value != nil {
			n += recs[i].Value.Len()
		}
	}
	resp, err := s.client.Produce(ctx, &kafka.ProduceRequest{
		Topic: s.cfg.Topic, Partition: cp, RequiredAcks: kafka.RequireAll,
		Records: kafka.NewRecordReader(recs...), Compression: s.cfg.Compression,
	})
	if err == nil {
		err = resp.Error
	}
	if err == nil {
		for _, e := range resp.RecordErrors {
			err = e
			break
		}
	}
	if err != nil {
		return 0, err
	}
	s.written.Add(int64(n))
	return resp.BaseOffset, nil
}
