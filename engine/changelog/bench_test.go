package changelog

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/engine/synth"
	"github.com/pulsehq/pulse/rules"
)

// checkpoint100k returns the checkpoint of a partition holding 100,000
// accounts after a day of generated events, and the rules it evaluates.
func checkpoint100k(b *testing.B) ([]byte, *rules.Ruleset) {
	b.Helper()
	data, err := os.ReadFile("../../deploy/rules/example.yaml")
	if err != nil {
		b.Fatal(err)
	}
	rs, err := rules.Load("example.yaml", data, rules.LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	// Evaluation off, as in the engine's BenchmarkRestore100kAccounts: the
	// state is what a day of events leaves.
	p := engine.NewPartition(0, rs, engine.Config{EvalInterval: 1 << 62, SweepInterval: 1 << 62})
	g := synth.New(synth.Options{Accounts: 100_000, Days: 1, Seed: 7, End: time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)})
	var dec engine.Decoder
	var ev engine.Event
	for d := range g.Days() {
		g.Day(d, func(l []byte) {
			if dec.Decode(l, &ev) == engine.ReasonOK {
				p.Apply(&ev, 0)
			}
		})
	}
	if p.Len() != 100_000 {
		b.Fatalf("%d accounts", p.Len())
	}
	return p.AppendCheckpoint(nil, 1), rs
}

// BenchmarkRestore100kAccounts restores a partition of 100,000 accounts
// from the changelog topic of an in-process broker (kfake, whose default
// max.message.bytes of 1 MiB sizes the chunks): the newest manifest is
// found, the chunks read and checked, and the partition decoded. It
// reports the time per restore (target ≤ 3 s) and the part of it spent
// reading the topic, the bytes one checkpoint writes (keys and values as
// handed to the client, and as the codec compresses each chunk: about
// what the broker stores and replicates) and the time a save takes.
func BenchmarkRestore100kAccounts(b *testing.B) {
	data, rs := checkpoint100k(b)
	for _, codec := range []struct {
		name string
		c    kafka.Compression
	}{{"none", 0}, {"lz4", kafka.Lz4}, {"zstd", kafka.Zstd}} {
		b.Run("compression="+codec.name, func(b *testing.B) {
			br := startBroker(b)
			s := New(Config{Brokers: br.addrs, Topic: DefaultTopic(source), Source: source, Group: "pulse", Compression: codec.c, Log: quiet()})
			ctx := context.Background()
			if err := s.Open(ctx); err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			// Three saves, as in steady state: the third deletes the first.
			var saveTook time.Duration
			var written int64
			for range 3 {
				before := s.written.Load()
				began := time.Now()
				if err := s.Save(ctx, 0, data); err != nil {
					b.Fatal(err)
				}
				saveTook, written = time.Since(began), s.written.Load()-before
			}
			compressed := written
			if codec.c != 0 {
				compressed = 0
				for i := 0; i < len(data); i += s.payload {
					var buf bytes.Buffer
					w := codec.c.Codec().NewWriter(&buf)
					w.Write(data[i:min(i+s.payload, len(data))])
					w.Close()
					compressed += int64(buf.Len())
				}
			}
			b.SetBytes(int64(len(data)))
			var reading time.Duration
			b.ResetTimer()
			for b.Loop() {
				began := time.Now()
				unusable, err := s.Load(ctx, 0, func(d []byte) error {
					reading += time.Since(began)
					p, _, err := engine.RestorePartition(d, rs, engine.Config{})
					if err == nil && p.Len() != 100_000 {
						b.Fatalf("restored %d accounts", p.Len())
					}
					return err
				})
				if err != nil || len(unusable) > 0 {
					b.Fatal(err, unusable)
				}
			}
			b.ReportMetric(reading.Seconds()/float64(b.N), "s-reading/op")
			b.ReportMetric(float64(written), "bytes/checkpoint")
			b.ReportMetric(float64(compressed), "compressed-bytes/checkpoint")
			b.ReportMetric(saveTook.Seconds(), "s/save")
		})
	}
}
