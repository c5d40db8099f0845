package clickhouse

import (
	"bytes"
	"context"
	"flag"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/engine/synth"
	"github.com/pulsehq/pulse/rules"
	"github.com/pulsehq/pulse/sinks/clickhouse/chtest"
)

var update = flag.Bool("update", false, "rewrite the golden DDL files")

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func open(t testing.TB, s *chtest.Server, db string) *Sink {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sink, err := Open(ctx, Config{Addr: []string{s.Addr()}, Database: db, FlushInterval: 50 * time.Millisecond, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close(context.Background()) })
	return sink
}

func count(t testing.TB, sink *Sink, query string) uint64 {
	t.Helper()
	var n uint64
	if err := sink.conn.QueryRow(context.Background(), query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// The DDL of both dialects is kept as text: the compat one runs for real on
// the test machines' ClickHouse 18.16; the modern one (LowCardinality, TTL,
// codecs, monthly partitions) is checked here against its golden file.
func TestDDLText(t *testing.T) {
	for name, d := range map[string]dialect{"compat": compatDialect(), "modern": modernDialect(24)} {
		got := strings.Join(migrations("pulse", d), ";\n\n") + ";\n"
		path := "testdata/schema_" + name + ".sql"
		if *update {
			os.WriteFile(path, []byte(got), 0o644)
		}
		want, err := os.ReadFile(path)
		if err != nil || got != string(want) {
			t.Errorf("%s DDL differs from %s (go test -update rewrites it):\n%s", name, path, got)
		}
	}
	if !strings.Contains(strings.Join(migrations("pulse", modernDialect(24)), ""), "LowCardinality(String)") || !modern(24, 3) || modern(18, 16) || modern(19, 17) {
		t.Fatal("dialect choice is wrong")
	}
}

func TestSchemaIsCreatedOnceOnThisServer(t *testing.T) {
	srv := chtest.Start(t)
	sink := open(t, srv, "pulse")
	if sink.Dialect() != "compat" && sink.Dialect() != "modern" {
		t.Fatalf("dialect %q", sink.Dialect())
	}
	again := open(t, srv, "pulse")
	if n := count(t, again, "SELECT count() FROM pulse.pulse_schema"); n != uint64(len(migrations("pulse", sink.dialect))) {
		t.Fatalf("%d migrations recorded after two opens, want each once", n)
	}
	if n := count(t, sink, "SELECT count() FROM system.tables WHERE database = 'pulse' AND name IN ('scores', 'alerts', 'daily', 'daily_mv')"); n != 4 {
		t.Fatalf("%d of the 4 tables exist", n)
	}
}

// batches replays a generated stream with score rows on and returns what
// the partitions hand to the sinks.
func batches(t testing.TB, accounts, days int) ([]engine.Batch, int, int) {
	return batchesFrom(t, accounts, days, time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC))
}

func batchesFrom(t testing.TB, accounts, days int, end time.Time) ([]engine.Batch, int, int) {
	data, _ := os.ReadFile("../../deploy/rules/example.yaml")
	rs, err := rules.Load("example.yaml", data, rules.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g := synth.New(synth.Options{Accounts: accounts, Days: days, Seed: 5, End: end})
	p := engine.NewPartition(0, rs, engine.Config{ScoreRows: true})
	var d engine.Decoder
	var ev engine.Event
	var out []engine.Batch
	scores, transitions := 0, 0
	for day := range g.Days() {
		g.Day(day, func(l []byte) {
			if d.Decode(l, &ev) == engine.ReasonOK {
				p.Apply(&ev, 0)
			}
		})
		b := engine.Batch{Scores: p.TakeScores(), Transitions: p.TakeTransitions()}
		scores += len(b.Scores)
		transitions += len(b.Transitions)
		out = append(out, b)
	}
	return out, scores, transitions
}

// Every row arrives; writing the same batches again (a replay, or a batch
// re-sent after a crash) leaves no visible duplicate with FINAL, and the
// daily rollup is unchanged.
func TestWritesAreReplaySafe(t *testing.T) {
	srv := chtest.Start(t)
	sink := open(t, srv, "pulse")
	bs, nScores, nAlerts := batches(t, 30, 20)
	if nAlerts == 0 || nScores == 0 {
		t.Fatal("the stream produced nothing to write")
	}
	ctx := context.Background()
	rollup := func() string {
		rows, err := sink.conn.Query(ctx, "SELECT account_id, toString(day), round(argMaxMerge(score), 3), argMaxMerge(grade), maxMerge(dau) FROM pulse.daily GROUP BY account_id, day ORDER BY account_id, day")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var b strings.Builder
		for rows.Next() {
			var id, day, grade string
			var score, dau float64
			if err := rows.Scan(&id, &day, &score, &grade, &dau); err != nil {
				t.Fatal(err)
			}
			b.WriteString(strings.Join([]string{id, day, grade}, " "))
			b.WriteString("\n")
		}
		return b.String()
	}
	for round := range 2 {
		for i := range bs {
			if err := sink.Write(ctx, &bs[i]); err != nil {
				t.Fatal(err)
			}
		}
		if n := count(t, sink, "SELECT count() FROM pulse.scores FINAL"); n != uint64(nScores) {
			t.Fatalf("round %d: %d score rows, want %d", round, n, nScores)
		}
		if n := count(t, sink, "SELECT count() FROM pulse.alerts FINAL"); n != uint64(nAlerts) {
			t.Fatalf("round %d: %d alert rows, want %d", round, n, nAlerts)
		}
	}
	first := rollup()
	if strings.Count(first, "\n") < 30 {
		t.Fatalf("daily rollup has %d rows", strings.Count(first, "\n"))
	}
	// The last score row of each account-day matches the rollup's grade.
	var last bytes.Buffer
	rows, err := sink.conn.Query(ctx, "SELECT account_id, toString(toDate(ts)), toString(argMax(grade, ts_ns)) FROM pulse.scores FINAL GROUP BY account_id, toDate(ts) ORDER BY account_id, toDate(ts)")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, day, grade string
		rows.Scan(&id, &day, &grade)
		last.WriteString(id + " " + day + " " + grade + "\n")
	}
	rows.Close()
	if last.String() != first {
		t.Fatalf("daily rollup disagrees with the score history:\n%s\nvs\n%s", first[:min(400, len(first))], last.String()[:min(400, last.Len())])
	}
}

// While ClickHouse is down, Write does not return (so the consumer commits
// nothing past it); when ClickHouse is back, the rows arrive.
func TestBackpressureWhileClickHouseIsDown(t *testing.T) {
	srv := chtest.Start(t)
	sink := open(t, srv, "pulse")
	bs, nScores, _ := batches(t, 5, 3)
	srv.Stop()

	done := make(chan error, len(bs))
	for i := range bs {
		go func() { done <- sink.Write(context.Background(), &bs[i]) }()
	}
	select {
	case err := <-done:
		t.Fatalf("Write returned (%v) while ClickHouse was down", err)
	case <-time.After(2 * time.Second):
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	for range bs {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("writes did not complete after ClickHouse came back")
		}
	}
	if n := count(t, sink, "SELECT count() FROM pulse.scores FINAL"); n != uint64(nScores) {
		t.Fatalf("%d score rows after recovery, want %d", n, nScores)
	}
}
