package stream

import (
	"testing"
	"time"
)

func TestPartitionCaughtUp(t *testing.T) {
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	ns := func(d time.Duration) int64 { return now.Add(-d).UnixNano() }
	for _, c := range []struct {
		name                string
		lag                 int64
		newest, lastApplied int64
		want                bool
	}{
		{"live", 0, ns(5 * time.Second), ns(time.Second), true},
		{"live, an event slightly ahead", 0, ns(-time.Minute), ns(0), true},
		{"backlog of fresh events", 12, ns(time.Second), ns(0), false},
		{"history applied as it arrives", 0, ns(40 * 24 * time.Hour), ns(2 * time.Second), false},
		{"event just a minute old", 0, ns(time.Minute), ns(0), false},
		{"quiet partition, nothing to read for a minute", 0, ns(3 * time.Hour), ns(time.Minute), true},
		{"empty partition a minute after the start", 0, 0, ns(time.Minute), true},
		{"empty partition just started", 0, 0, ns(time.Second), false},
	} {
		if got := partitionCaughtUp(c.lag, c.newest, c.lastApplied, now.UnixNano()); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// The first report counts from the start; after it, each generation counts
// from its assignment and reports again.
func TestCaughtUpCountsFromTheStartThenFromEachAssignment(t *testing.T) {
	start := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	cu := caughtUp{since: start}
	cu.start(1, 8, start.Add(time.Second))
	cu.start(2, 8, start.Add(5*time.Second)) // revoked before catching up
	if cu.since != start || cu.generation != 2 {
		t.Fatalf("before the first report: %+v", cu)
	}
	cu.reported, cu.once = true, true
	cu.start(3, 4, start.Add(time.Minute))
	if cu.since != start.Add(time.Minute) || cu.reported || cu.assigned != 4 {
		t.Fatalf("after a rebalance: %+v", cu)
	}
}
