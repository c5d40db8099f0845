package clickhouse

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/sinks/clickhouse/chtest"
)

// revenueRows makes n renewal outcomes, every outcome among them.
func revenueRows(n int) []engine.RevenueRow {
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	var rows []engine.RevenueRow
	for i := range n {
		rows = append(rows, engine.RevenueRow{
			AccountID: fmt.Sprintf("acct-%03d", i%17),
			Ts:        start + int64(i)*int64(time.Hour) + int64(i), // nanoseconds kept
			Outcome:   engine.Outcome(1 + i%4),
			ArrBefore: float64(1000 * (i + 1)),
			ArrAfter:  float64(1000*(i+1)) * []float64{1, 0, 1.25, 0.5}[i%4],
			Segment:   []string{"smb", "enterprise", ""}[i%3],
			CSM:       []string{"li", "mo"}[i%2],
		})
	}
	return rows
}

func revenueText(r engine.RevenueRow) string {
	return fmt.Sprintf("%s %d %s %g %g %q %q", r.AccountID, r.Ts, r.Outcome, r.ArrBefore, r.ArrAfter, r.Segment, r.CSM)
}

// storedRevenue reads the revenue table back, each row once (FINAL), as
// revenueText, sorted; with the second of ts checked against ts_ns.
func storedRevenue(t *testing.T, sink *Sink, db string) []string {
	t.Helper()
	rows, err := sink.conn.Query(context.Background(), fmt.Sprintf(
		"SELECT account_id, ts, ts_ns, toString(outcome), arr_before, arr_after, segment, csm FROM %s.revenue FINAL", db))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var r engine.RevenueRow
		var ts time.Time
		var tsNs uint64
		var outcome string
		if err := rows.Scan(&r.AccountID, &ts, &tsNs, &outcome, &r.ArrBefore, &r.ArrAfter, &r.Segment, &r.CSM); err != nil {
			t.Fatal(err)
		}
		r.Ts = int64(tsNs)
		if ts.Unix() != r.Ts/1e9 {
			t.Fatalf("%s: ts %v for ts_ns %d", r.AccountID, ts, tsNs)
		}
		for o, name := range engine.OutcomeNames {
			if name == outcome && name != "" {
				r.Outcome = engine.Outcome(o)
			}
		}
		out = append(out, revenueText(r))
	}
	slices.Sort(out)
	return out
}

// Renewal outcomes are buffered like the other rows and stored on Flush,
// each column as written; written twice (a replay), they read once.
func TestRevenueIsStoredOnFlushAndReplaySafe(t *testing.T) {
	srv := chtest.Start(t)
	ctx := context.Background()
	var mu sync.Mutex
	inserted := map[string][]int{}
	// A flush interval far beyond the test: only Flush stores.
	sink, err := Open(ctx, Config{Addr: []string{srv.Addr()}, Database: "rev", FlushInterval: time.Hour, Log: quiet,
		Inserted: func(table string, rows int) {
			mu.Lock()
			inserted[table] = append(inserted[table], rows)
			mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close(ctx)
	rows := revenueRows(40)
	var want []string
	for _, r := range rows {
		want = append(want, revenueText(r))
	}
	slices.Sort(want)

	// Revenue alone, and revenue beside scores and transitions.
	bs, _, _ := batches(t, 5, 3)
	writes := []engine.Batch{{Revenue: rows[:15]}, {Scores: bs[0].Scores, Transitions: bs[0].Transitions, Revenue: rows[15:]}}
	for round := range 2 {
		for i := range writes {
			if err := sink.Write(ctx, &writes[i]); err != nil {
				t.Fatal(err)
			}
		}
		if n := count(t, sink, "SELECT count() FROM rev.revenue"); n != uint64(round*len(rows)) {
			t.Fatalf("round %d: %d revenue rows stored before Flush", round, n)
		}
		if err := sink.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if n := count(t, sink, "SELECT count() FROM rev.revenue"); n != uint64((round+1)*len(rows)) {
			t.Fatalf("round %d: %d revenue rows stored after Flush, want %d", round, n, (round+1)*len(rows))
		}
		if got := storedRevenue(t, sink, "rev"); !slices.Equal(got, want) {
			t.Fatalf("round %d: revenue reads back as\n%s\nwant\n%s", round, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if got := inserted["revenue"]; !slices.Equal(got, []int{len(rows), len(rows)}) {
		t.Fatalf("revenue INSERTs of %v rows, want one of %d per Flush", got, len(rows))
	}
}

// Revenue rows count toward batch_rows, and Close stores what is buffered.
func TestRevenueBatchesAreCutBySizeAndStoredOnClose(t *testing.T) {
	srv := chtest.Start(t)
	ctx := context.Background()
	full := make(chan int, 10)
	sink, err := Open(ctx, Config{Addr: []string{srv.Addr()}, Database: "rev", BatchRows: 10, FlushInterval: time.Hour, Log: quiet,
		Inserted: func(table string, rows int) {
			if table == "revenue" {
				full <- rows
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close(ctx)
	rows := revenueRows(13)
	for i := range 10 {
		if err := sink.Write(ctx, &engine.Batch{Revenue: rows[i : i+1]}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case n := <-full:
		if n != 10 {
			t.Fatalf("a full batch stored %d revenue rows, want 10", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a batch of batch_rows revenue rows was not stored without a Flush")
	}
	if err := sink.Write(ctx, &engine.Batch{Revenue: rows[10:]}); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(ctx); err != nil {
		t.Fatal(err)
	}
	check := open(t, srv, "rev")
	if n := count(t, check, "SELECT count() FROM rev.revenue"); n != uint64(len(rows)) {
		t.Fatalf("%d revenue rows stored after Close, want %d", n, len(rows))
	}
}

// An outcome the table has not is a broken invariant (the decoder refuses
// such renewals): it would fail every retry of the INSERT.
func TestRevenueWithoutOutcomeIsABug(t *testing.T) {
	sink := newSink(Config{}, nil)
	defer func() {
		if r := recover(); r == nil || !strings.HasPrefix(fmt.Sprint(r), "BUG:") {
			t.Fatalf("a revenue row without an outcome: recovered %v", r)
		}
	}()
	sink.Write(context.Background(), &engine.Batch{Revenue: []engine.RevenueRow{{AccountID: "a", Ts: 1}}})
}
