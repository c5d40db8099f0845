package stream

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The fetcher hands over every value byte for byte with its offset, in
// order: small ones packed into slabs, ones longer than a slab's room read
// on their own by the next fetch, all while chunks are recycled.
func TestFetcherReadsEveryValueAcrossSlabs(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "mixed"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var values [][]byte
	for i := range 3000 {
		values = append(values, fmt.Appendf(nil, `{"n":%d}`, i))
		switch i {
		case 10, 11, 1500: // two 600 KB values in a row cannot share a 1 MiB slab
			values = append(values, bytes.Repeat([]byte{byte('a' + i%26)}, 600_000))
		case 12, 2000:
			values = append(values, bytes.Repeat([]byte{'m'}, 70_000))
		case 13:
			values = append(values, nil)
		}
	}
	f, ctx := fetchFrom(t, c, "mixed", values, 100, 4<<20, kafka.FirstOffset)
	var got [][]byte
	chunks := 0
	for len(got) < len(values) {
		select {
		case ch := <-f.out:
			for i, v := range ch.values {
				if ch.offsets[i] != int64(len(got)) {
					t.Fatalf("value %d has offset %d", len(got), ch.offsets[i])
				}
				got = append(got, bytes.Clone(v))
			}
			if ch.next != int64(len(got)) {
				t.Fatalf("chunk ends at %d after %d values", ch.next, len(got))
			}
			chunks++
			f.recycle(ch)
		case <-ctx.Done():
			t.Fatalf("fetched %d of %d values", len(got), len(values))
		}
	}
	for i := range values {
		if !bytes.Equal(got[i], values[i]) {
			t.Fatalf("value %d: %d bytes %.20q, want %d bytes %.20q", i, len(got[i]), got[i], len(values[i]), values[i])
		}
	}
	if chunks < 2 {
		t.Fatalf("%d chunks: the slab boundary went untested", chunks)
	}
}

// A fetch larger than a chunk reaches the task in chunks of at most
// chunkBytes, in order, while the rest of the fetch is still being read:
// a partition holds a few chunks, not a few whole fetches.
func TestFetcherCutsLargeFetchesIntoChunks(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "big"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var fetches atomic.Int64
	c.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		fetches.Add(1)
		return nil, nil, false // count only
	})
	const n, size = 40_000, 200 // 8 MB: four chunks and more
	values := make([][]byte, n)
	for i := range values {
		values[i] = fmt.Appendf(nil, "%0*d", size, i)
	}
	f, ctx := fetchFrom(t, c, "big", values, 5000, 16<<20, kafka.FirstOffset)
	got, chunks := 0, 0
	for got < n {
		select {
		case ch := <-f.out:
			if held := len(ch.slabs) * slabSize; held > chunkBytes {
				t.Fatalf("chunk %d holds %d bytes of slabs, over %d", chunks, held, chunkBytes)
			}
			for i, v := range ch.values {
				if ch.offsets[i] != int64(got) || string(v) != string(values[got]) {
					t.Fatalf("value %d: offset %d, %d bytes ending %q", got, ch.offsets[i], len(v), v[max(len(v)-12, 0):])
				}
				got++
			}
			if ch.next != int64(got) {
				t.Fatalf("chunk ends at %d after %d values", ch.next, got)
			}
			chunks++
			f.recycle(ch)
		case <-ctx.Done():
			t.Fatalf("fetched %d of %d values", got, n)
		}
	}
	// The first fetch returns the whole log; every chunk but the last is full.
	if want := n * size / chunkBytes; chunks < want {
		t.Fatalf("%d chunks, want at least %d", chunks, want)
	}
	if k := fetches.Load(); k >= int64(chunks) {
		t.Fatalf("%d fetches for %d chunks: fetches were not cut into chunks", k, chunks)
	}
}

// A fetch from an offset inside a record batch (where a checkpoint taken
// between two chunks left it) starts at that offset: the broker sends the
// whole record batch, and what precedes the offset was applied already.
func TestFetcherStartsInsideARecordBatch(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "batched"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	values := make([][]byte, 3000)
	for i := range values {
		values[i] = fmt.Appendf(nil, `{"n":%d}`, i)
	}
	const from = 1437 // inside the second record batch of 1000
	f, ctx := fetchFrom(t, c, "batched", values, 1000, 16<<20, from)
	got := int64(from)
	for got < int64(len(values)) {
		select {
		case ch := <-f.out:
			for i, v := range ch.values {
				if ch.offsets[i] != got || string(v) != string(values[got]) {
					t.Fatalf("value %d: offset %d, %q", got, ch.offsets[i], v)
				}
				got++
			}
			f.recycle(ch)
		case <-ctx.Done():
			t.Fatalf("fetched up to %d of %d values", got, len(values))
		}
	}
}

// fetchFrom writes values to the topic's only partition, in producer
// batches of batchSize, and starts a fetcher reading it from offset.
func fetchFrom(t *testing.T, c *kfake.Cluster, topic string, values [][]byte, batchSize, fetchMaxBytes int, offset int64) (*fetcher, context.Context) {
	t.Helper()
	msgs := make([]kafka.Message, len(values))
	for i, v := range values {
		msgs[i].Value = v
	}
	writeMessages(t, c.ListenAddrs(), topic, nil, batchSize, msgs)
	cfg := Config{Brokers: c.ListenAddrs(), Topic: topic, FetchMaxBytes: fetchMaxBytes, Log: testLog()}.WithDefaults()
	f := newFetcher(&cfg, 0, cfg.Log)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	go f.run(ctx, offset)
	return f, ctx
}
