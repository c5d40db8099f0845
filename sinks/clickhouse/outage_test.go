package clickhouse

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/sinks/clickhouse/chtest"
)

// Pulse starts while ClickHouse is down: Open returns, every failed
// attempt is reported, Flush waits (nothing may be committed past what is
// stored), and once the server answers the schema is created and every
// row written meanwhile arrives.
func TestOpenWhileClickHouseIsDown(t *testing.T) {
	srv := chtest.Start(t)
	srv.Stop()
	ctx := context.Background()
	var failed atomic.Int64
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	sink, err := Open(octx, Config{Addr: []string{srv.Addr()}, Database: "late", FlushInterval: 50 * time.Millisecond, Log: quiet,
		Failed: func(error) { failed.Add(1) }})
	cancel()
	if err != nil {
		t.Fatalf("Open with ClickHouse down: %v", err)
	}
	defer sink.Close(ctx)
	if d := sink.Dialect(); d != "" {
		t.Fatalf("dialect %q before the server answered", d)
	}
	days, nScores, nTransitions := batches(t, 5, 3)
	for i := range days {
		if err := sink.Write(ctx, &days[i]); err != nil {
			t.Fatal(err)
		}
	}
	flushed := make(chan error, 1)
	go func() { flushed <- sink.Flush(ctx) }()
	select {
	case err := <-flushed:
		t.Fatalf("Flush returned (%v) before ClickHouse was up", err)
	case <-time.After(1500 * time.Millisecond):
	}
	if n := failed.Load(); n < 2 {
		t.Fatalf("%d failures reported in 1.5 s of retrying", n)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-flushed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Flush did not return after ClickHouse came up")
	}
	if n := count(t, sink, "SELECT count() FROM late.scores FINAL"); n != uint64(nScores) {
		t.Fatalf("%d score rows, want %d", n, nScores)
	}
	if n := count(t, sink, "SELECT count() FROM late.alerts FINAL"); n != uint64(nTransitions) {
		t.Fatalf("%d transitions, want %d", n, nTransitions)
	}
	if n := count(t, sink, "SELECT toUInt64(max(version)) FROM late.pulse_schema"); n != uint64(len(migrations("late", compatDialect()))) {
		t.Fatalf("schema version %d, want %d", n, len(migrations("late", compatDialect())))
	}
	if sink.Dialect() == "" {
		t.Fatal("no dialect once the schema is ready")
	}
}

// The schema is created once the server answers even when no row is due.
func TestSchemaIsCreatedWhenClickHouseComesUp(t *testing.T) {
	srv := chtest.Start(t)
	srv.Stop()
	var failed atomic.Int64
	sink, err := Open(context.Background(), Config{Addr: []string{srv.Addr()}, Database: "idle", Log: quiet, Failed: func(error) { failed.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close(context.Background())
	// Open found it down, and a retry too.
	if !eventually(30*time.Second, func() bool { return failed.Load() >= 2 }) {
		t.Fatalf("%d failures reported, want Open's and a retry's", failed.Load())
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if !eventually(30*time.Second, func() bool { return sink.Dialect() != "" }) {
		t.Fatal("no schema 30 s after ClickHouse came up")
	}
	if n := count(t, sink, "SELECT count() FROM system.tables WHERE database = 'idle' AND name IN ('scores', 'alerts', 'revenue', 'daily')"); n != 4 {
		t.Fatalf("%d of the 4 tables", n)
	}
}

// Close says what it could not store: a shutdown while ClickHouse is down
// must not look like a clean one.
func TestCloseCountsRowsNotStored(t *testing.T) {
	srv := chtest.Start(t)
	ctx := context.Background()
	sink := open(t, srv, "pulse")
	srv.Stop()
	days, _, _ := batches(t, 3, 2)
	var scores, transitions int
	for i := range days {
		scores += len(days[i].Scores)
		transitions += len(days[i].Transitions)
		if err := sink.Write(ctx, &days[i]); err != nil {
			t.Fatal(err)
		}
	}
	err := sink.Close(ctx)
	if !errors.Is(err, ErrNotStored) {
		t.Fatalf("Close with ClickHouse down: %v, want ErrNotStored", err)
	}
	for _, want := range []string{itoa(scores) + " score rows", itoa(transitions) + " alert transitions"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Close: %v; want it to count %q", err, want)
		}
	}
	// A clean close says nothing.
	srv2 := chtest.Start(t)
	sink2 := open(t, srv2, "pulse")
	if err := sink2.Write(ctx, &engine.Batch{Scores: days[0].Scores}); err != nil {
		t.Fatal(err)
	}
	if err := sink2.Close(ctx); err != nil {
		t.Fatalf("clean Close: %v", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
