package clickhouse

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/sinks/clickhouse/chtest"
)

// BenchmarkInsert compares the sink (8 partitions writing 10,000-row
// batches concurrently, then a Flush) with bare clickhouse-go batch
// inserts of the same score rows, 100,000 at a time in arrival order, one
// PrepareBatch/Append/Send each, on the same server in the same run
// (target: sink ≥ 0.8× bare). Both report the server's CPU per row.
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

	serverCPU := func() time.Duration {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", srv.Pid()))
		if err != nil {
			b.Fatal(err)
		}
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
		utime, _ := strconv.Atoi(f[11])
		stime, _ := strconv.Atoi(f[12])
		return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
	}
	report := func(b *testing.B, n int, cpu time.Duration) {
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "rows/s")
		b.ReportMetric(float64(cpu.Microseconds())/float64(n), "server-µs/row")
	}
	b.Run("bare", func(b *testing.B) {
		n, cpu0 := 0, serverCPU()
		var c scoreColumns
		for b.Loop() {
			for start := 0; start < len(rows); start += 100_000 {
				c.reset()
				c.append(rows[start:min(start+100_000, len(rows))])
				c.order = c.order[:0]
				for i := range c.len() {
					c.order = append(c.order, int32(i))
				}
				ib, err := sink.conn.PrepareBatch(ctx, "INSERT INTO bench.scores ("+scoreColumnNames+")")
				if err != nil {
					b.Fatal(err)
				}
				for i := range numScoreColumns {
					if err := ib.Column(i).Append(c.column(i)); err != nil {
						b.Fatal(err)
					}
				}
				if err := ib.Send(); err != nil {
					b.Fatal(err)
				}
			}
			n += len(rows)
		}
		report(b, n, serverCPU()-cpu0)
	})
	b.Run("sink", func(b *testing.B) {
		n, cpu0 := 0, serverCPU()
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
		report(b, n, serverCPU()-cpu0)
	})
}
