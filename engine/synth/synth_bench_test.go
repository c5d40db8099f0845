package synth

import (
	"fmt"
	"testing"
)

// BenchmarkDay generates and reads one working day (a Thursday) of n
// accounts, about 8.7 KB of JSONL each, with the default chunk (32 MB: the
// day of 1,000 accounts stays in memory, that of 10,000 is spilled in 3
// runs) and with chunks of 1 MB spilled to temporary files and merged;
// bytes/s are JSONL bytes produced.
func BenchmarkDay(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		for _, chunk := range []int{DefaultChunkBytes, 1 << 20} {
			b.Run(fmt.Sprintf("accounts=%d/chunk=%dMB", n, chunk>>20), func(b *testing.B) {
				g := New(Options{Accounts: n, Days: 2, Seed: 1, End: end, ChunkBytes: chunk, TempDir: b.TempDir()})
				if err := g.Day(0, func([]byte) {}); err != nil { // buffers reach their size
					b.Fatal(err)
				}
				var size, events int64
				b.ReportAllocs()
				for b.Loop() {
					size, events = 0, 0
					if err := g.Day(1, func(l []byte) { size += int64(len(l)) + 1; events++ }); err != nil {
						b.Fatal(err)
					}
				}
				b.SetBytes(size)
				b.ReportMetric(float64(events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}
