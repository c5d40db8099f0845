package stream

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
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
	w := &kafka.Writer{Addr: kafka.TCP(c.ListenAddrs()...), Topic: "mixed", BatchSize: 100, BatchTimeout: time.Millisecond}
	msgs := make([]kafka.Message, len(values))
	for i, v := range values {
		msgs[i].Value = v
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
	w.Close()

	cfg := &Config{Brokers: c.ListenAddrs(), Topic: "mixed", FetchMaxBytes: 4 << 20, Log: testLog()}
	cfg.Defaults()
	f := newFetcher(cfg, 0, cfg.Log)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go f.run(ctx, kafka.FirstOffset)
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
