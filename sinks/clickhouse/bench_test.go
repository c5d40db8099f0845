package clickhouse

import (
	"context"
	"sync"
	"testing"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/sinks/clickhouse/chtest"
)

// BenchmarkInsert compares the sink (8 partitions writing 10,000-row
// batches concurrently, then a Flush) with bare clickhouse-go batch
// inserts of the same score rows, 100,000 at a time, turned into columns
// the same way, on the same server in the same run (target: sink ≥ 0.8×
// bare).
func BenchmarkInsert(b *testing.B) {
	srv := chtest.Start(b)
	sink := open(b, srv, "bench")
	const rowsPerRun, writeRows = 400_000, 10_000
	proto, _, _ := batches(b, 40, 20)
	var rows []engine.ScoreRow
	for len(rows) < rowsPerRun {
		for _, bt := range proto {
			for _, r := range bt.Scores {
				r.Ts += int64(len(rows)) // distinct keys
				rows = append(rows, r)
			}
		}
	}
	rows = rows[:rowsPerRun]
	ctx := context.Background()

	b.Run("bare", func(b *testing.B) {
		n := 0
		for b.Loop() {
			for start := 0; start < len(rows); start += 100_000 {
				if err := sink.insert(ctx, batchOf(rows[start:min(start+100_000, len(rows))])); err != nil {
					b.Fatal(err)
				}
			}
			n += len(rows)
		}
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "rows/s")
	})
	b.Run("sink", func(b *testing.B) {
		n := 0
		for b.Loop() {
			var wg sync.WaitGroup
			for p := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for start := p * writeRows; start < len(rows); start += 8 * writeRows {
						bt := engine.Batch{Partition: int32(p), Scores: rows[start:min(start+writeRows, len(rows))]}
						if err := sink.Write(ctx, &bt); err != nil {
							panic(err)
						}
					}
				}()
			}
			wg.Wait()
			if err := sink.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			n += len(rows)
		}
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "rows/s")
	})
}
