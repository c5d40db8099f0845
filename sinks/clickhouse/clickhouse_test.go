package clickhouse

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

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
		var stmts []string
		for _, m := range migrations("pulse", d) {
			stmts = append(stmts, m.String())
		}
		got := strings.Join(stmts, ";\n\n") + ";\n"
		path := "testdata/schema_" + name + ".sql"
		if *update {
			os.WriteFile(path, []byte(got), 0o644)
		}
		want, err := os.ReadFile(path)
		if err != nil || got != string(want) {
			t.Errorf("%s DDL differs from %s (go test -update rewrites it):\n%s", name, path, got)
		}
	}
	if !strings.Contains(fmt.Sprint(migrations("pulse", modernDialect(24))), "LowCardinality(String)") || !modern(24, 3) || modern(18, 16) || modern(19, 17) {
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
	if n := count(t, sink, "SELECT count() FROM system.tables WHERE database = 'pulse' AND name IN ('scores', 'alerts', 'daily', 'daily_mv', 'revenue')"); n != 5 {
		t.Fatalf("%d of the 5 tables exist", n)
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
	want := wantDaily(bs)
	for round := range 2 {
		for i := range bs {
			if err := sink.Write(ctx, &bs[i]); err != nil {
				t.Fatal(err)
			}
		}
		if err := sink.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if n := count(t, sink, "SELECT count() FROM pulse.scores FINAL"); n != uint64(nScores) {
			t.Fatalf("round %d: %d score rows, want %d", round, n, nScores)
		}
		if n := count(t, sink, "SELECT count() FROM pulse.alerts FINAL"); n != uint64(nAlerts) {
			t.Fatalf("round %d: %d alert rows, want %d", round, n, nAlerts)
		}
		sameDaily(t, sink, "pulse", want)
	}
}

// scoreRows returns the score rows of bs, in order.
func scoreRows(bs []engine.Batch) []engine.ScoreRow {
	var rows []engine.ScoreRow
	for _, b := range bs {
		rows = append(rows, b.Scores...)
	}
	return rows
}

func batchOf(rows []engine.ScoreRow) *batch {
	b := &batch{rows: len(rows)}
	b.scores.append(rows)
	return b
}

// wantDaily computes the daily rollup from score rows: per account and UTC
// day, the last row's grade and DAU, a row at midnight closing the day
// before.
func wantDaily(bs []engine.Batch) []string {
	type key struct{ id, day string }
	last := map[key]engine.ScoreRow{}
	for _, b := range bs {
		for _, r := range b.Scores {
			k := key{r.AccountID, time.Unix(0, r.Ts-1).UTC().Format(time.DateOnly)}
			if r.Ts >= last[k].Ts {
				last[k] = r
			}
		}
	}
	var out []string
	for k, r := range last {
		out = append(out, fmt.Sprintf("%s %s %d %s %g %s", k.id, k.day, r.Ts, r.Grade, r.Metrics[rules.DAU], r.Attrs[rules.CSM]))
	}
	slices.Sort(out)
	return out
}

func sameDaily(t *testing.T, sink *Sink, db string, want []string) {
	t.Helper()
	rows, err := sink.conn.Query(context.Background(), fmt.Sprintf("SELECT account_id, toString(day), ts_ns, toString(grade), ifNull(dau, -1), csm FROM %s.daily FINAL", db))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var id, day, grade, csm string
		var ts uint64
		var dau float64
		if err := rows.Scan(&id, &day, &ts, &grade, &dau, &csm); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s %s %d %s %g %s", id, day, ts, grade, dau, csm))
	}
	slices.Sort(got)
	if len(want) < 30 || !slices.Equal(got, want) {
		t.Fatalf("daily rollup (%d rows) differs from the score history's last row per day (%d):\n%.600s\nvs\n%.600s",
			len(got), len(want), strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A database made by the first schema (aggregate-state rollup) migrates to
// the current one on start, its rollup rebuilt from the score history.
func TestUpgradeRebuildsTheDailyRollup(t *testing.T) {
	srv := chtest.Start(t)
	ctx := context.Background()
	conn, err := ch.Open(&ch.Options{Addr: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close() // an open connection holds the server's shutdown back
	old := newSink(Config{Database: "up", Log: quiet, Inserted: func(string, int) {}}, conn)
	if err := old.migrate(ctx, 4); err != nil {
		t.Fatal(err)
	}
	bs, _, _ := batches(t, 20, 10)
	insertV1(t, old, "up", scoreRows(bs), nil)
	if n := count(t, old, "SELECT count() FROM system.columns WHERE database = 'up' AND table = 'daily' AND type LIKE 'AggregateFunction%'"); n == 0 {
		t.Fatal("the first schema has no aggregate-state rollup")
	}
	sink := open(t, srv, "up")
	if n := count(t, sink, "SELECT toUInt64(max(version)) FROM up.pulse_schema"); n != uint64(len(migrations("up", sink.dialect))) {
		t.Fatalf("schema at version %d after the upgrade", n)
	}
	sameDaily(t, sink, "up", wantDaily(bs))
}

// Every column of a score row reads back as written: the columns go to the
// driver whole, so an order slip would put one metric under another's name.
func TestScoreRowsReadBackColumnByColumn(t *testing.T) {
	srv := chtest.Start(t)
	sink := open(t, srv, "pulse")
	bs, _, _ := batches(t, 12, 10)
	ctx := context.Background()
	want := map[string]engine.ScoreRow{}
	nulls := 0
	withScorecardAndARR(bs)
	for i := range bs {
		if err := sink.Write(ctx, &bs[i]); err != nil {
			t.Fatal(err)
		}
		for _, r := range bs[i].Scores {
			want[fmt.Sprint(r.AccountID, r.Ts)] = r
			for _, m := range historyMetrics {
				if rules.IsNull(r.Metrics[m]) {
					nulls++
				}
			}
		}
	}
	if nulls == 0 {
		t.Fatal("no null metric in the stream: the null path goes untested")
	}
	if err := sink.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := sink.conn.Query(ctx, "SELECT "+scoreColumnNames+" FROM pulse.scores FINAL")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var id, grade, depth, scorecard string
		var ts time.Time
		var tsNs uint64
		var score *float64
		attrs := make([]string, len(historyAttrs))
		metrics := make([]*float64, len(historyMetrics))
		dest := []any{&id, &ts, &tsNs, &score, &grade, &depth, &scorecard}
		for i := range attrs {
			dest = append(dest, &attrs[i])
		}
		for i := range metrics {
			dest = append(dest, &metrics[i])
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		r, ok := want[fmt.Sprint(id, tsNs)]
		if !ok {
			t.Fatalf("row %s@%d was never written", id, tsNs)
		}
		seen++
		same := func(col string, got *float64, want float64) {
			if (got == nil) != rules.IsNull(want) || got != nil && *got != want {
				t.Fatalf("%s@%d: %s = %v, want %v", id, tsNs, col, got, want)
			}
		}
		same("score", score, r.Score)
		for i, m := range historyMetrics {
			same(m.String(), metrics[i], r.Metrics[m])
		}
		if grade != r.Grade.String() || depth != r.Depth.String() || ts.UnixNano() != r.Ts/1e9*1e9 || scorecard != r.Scorecard {
			t.Fatalf("%s@%d: grade %s depth %s ts %v scorecard %q, want %s %s %v %q", id, tsNs, grade, depth, ts, scorecard, r.Grade, r.Depth, time.Unix(0, r.Ts), r.Scorecard)
		}
		for i, a := range historyAttrs {
			if attrs[i] != r.Attrs[a] {
				t.Fatalf("%s@%d: %s = %q, want %q", id, tsNs, a, attrs[i], r.Attrs[a])
			}
		}
	}
	if seen != len(want) {
		t.Fatalf("read back %d rows, wrote %d", seen, len(want))
	}
}

// withScorecardAndARR gives the generated score rows and transitions what
// the stream does not set: a scorecard per account (two of them), an ARR
// for some accounts (null for the others), and suppressed transitions.
func withScorecardAndARR(bs []engine.Batch) {
	for i := range bs {
		for j := range bs[i].Scores {
			r := &bs[i].Scores[j]
			h := len(r.AccountID) + int(r.AccountID[len(r.AccountID)-1])
			r.Scorecard = []string{"smb", "enterprise"}[h%2]
			r.Metrics[rules.ARR] = rules.Null
			if h%3 != 0 {
				r.Metrics[rules.ARR] = float64(1000 * (h%7 + 1))
			}
		}
		for j := range bs[i].Transitions {
			tr := &bs[i].Transitions[j]
			tr.Scorecard = []string{"smb", "enterprise"}[j%2]
			tr.Suppressed = j%3 == 0
		}
	}
}

// Transitions keep the scorecard that scored the account and whether an
// inhibiting alert suppressed them.
func TestTransitionsKeepScorecardAndSuppressed(t *testing.T) {
	srv := chtest.Start(t)
	sink := open(t, srv, "pulse")
	bs, _, nAlerts := batches(t, 30, 20)
	withScorecardAndARR(bs)
	ctx := context.Background()
	want := map[string]string{}
	suppressed := 0
	for i := range bs {
		if err := sink.Write(ctx, &bs[i]); err != nil {
			t.Fatal(err)
		}
		for _, tr := range bs[i].Transitions {
			want[tr.ID+" "+tr.State.String()] = fmt.Sprintf("%s %t", tr.Scorecard, tr.Suppressed)
			if tr.Suppressed {
				suppressed++
			}
		}
	}
	if suppressed == 0 || suppressed == nAlerts {
		t.Fatalf("%d of %d transitions suppressed: the check proves nothing", suppressed, nAlerts)
	}
	if err := sink.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := sink.conn.Query(ctx, "SELECT alert_id, toString(state), scorecard, suppressed FROM pulse.alerts FINAL")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var id, state, scorecard string
		var sup uint8
		if err := rows.Scan(&id, &state, &scorecard, &sup); err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%s %t", scorecard, sup == 1); got != want[id+" "+state] || sup > 1 {
			t.Fatalf("transition %s %s: scorecard and suppressed %q (%d), want %q", id, state, got, sup, want[id+" "+state])
		}
		seen++
	}
	if seen != len(want) {
		t.Fatalf("read back %d transitions, wrote %d", seen, len(want))
	}
}

// The enum columns are written as their names, which must stand for the
// rules' constants (ClickHouse sorts and compares enums by value), every
// one of them; the outcome enum has every outcome, valued as the engine's
// constants.
func TestEnumValuesAreTheRulesConstants(t *testing.T) {
	for _, c := range []struct {
		ddl  string
		n    int
		name func(int) string
	}{
		{gradeEnum, rules.NumGrades, func(i int) string { return rules.Grade(i).String() }},
		{depthEnum, rules.NumDepths, func(i int) string { return rules.Depth(i).String() }},
		{phaseEnum, rules.NumPhases, func(i int) string { return rules.Phase(i).String() }},
		{severityEnum, rules.NumSeverities, func(i int) string { return rules.Severity(i).String() }},
		{kindEnum, rules.NumKinds, func(i int) string { return rules.Kind(i).String() }},
		{outcomeEnum, len(engine.OutcomeNames) - 1, func(i int) string {
			if i >= len(engine.OutcomeNames) {
				return "?"
			}
			return engine.Outcome(i).String()
		}},
	} {
		m := regexp.MustCompile(`'(\w+)' = (\d+)`).FindAllStringSubmatch(c.ddl, -1)
		if len(m) != c.n {
			t.Errorf("%s has %d values, want %d", c.ddl, len(m), c.n)
		}
		for _, e := range m {
			v, _ := strconv.Atoi(e[2])
			if c.name(v) != e[1] {
				t.Errorf("%s: %d is %q", c.ddl, v, c.name(v))
			}
		}
	}
	if ddl := fmt.Sprint(migrations("pulse", compatDialect())); !strings.Contains(ddl, "state "+phaseEnum+",") ||
		!strings.Contains(ddl, "severity "+severityEnum+",") || !strings.Contains(ddl, "kind "+kindEnum+",") {
		t.Errorf("the alerts table does not use the enums:\n%s", ddl)
	}
}

// While ClickHouse is down, Writes fill the buffer and then block, and
// Flush does not return (so the consumer commits nothing past what
// ClickHouse holds); once it is back, everything is stored, renewal
// outcomes too.
func TestBackpressureWhileClickHouseIsDown(t *testing.T) {
	srv := chtest.Start(t)
	ctx := context.Background()
	days, nScores, _ := batches(t, 5, 3)
	all := scoreRows(days)
	var bs []engine.Batch // 30 Writes of equal size
	for i := range 30 {
		bs = append(bs, engine.Batch{Scores: all[i*len(all)/30 : (i+1)*len(all)/30]})
	}
	revenue := revenueRows(6)
	bs[2].Revenue, bs[25].Revenue = revenue[:3], revenue[3:]
	// A batch holds a third of the rows: the first third fills one batch,
	// whose INSERT fails; the next fills the second; the rest must wait.
	var failed atomic.Int64
	sink, err := Open(ctx, Config{Addr: []string{srv.Addr()}, Database: "pulse", BatchRows: len(all) / 3, FlushInterval: 50 * time.Millisecond, Log: quiet,
		Failed: func(error) { failed.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close(ctx)
	srv.Stop()

	var written atomic.Int64
	done := make(chan error, 1)
	go func() {
		for i := range bs {
			if err := sink.Write(ctx, &bs[i]); err != nil {
				done <- err
				return
			}
			written.Add(int64(len(bs[i].Scores)))
		}
		done <- nil
	}()
	// The outage is seen (an INSERT failed) and the Writes under way.
	if !eventually(30*time.Second, func() bool { return failed.Load() > 0 && written.Load() > 0 }) {
		t.Fatalf("no failed INSERT reported (%d rows written)", written.Load())
	}
	flushed := make(chan error, 1)
	go func() { flushed <- sink.Flush(ctx) }()
	select {
	case err := <-done:
		t.Fatalf("every Write returned (%v) while ClickHouse was down", err)
	case err := <-flushed:
		t.Fatalf("Flush returned (%v) while ClickHouse was down", err)
	case <-time.After(2 * time.Second):
	}
	if n := written.Load(); n == 0 || n > int64(nScores)*3/4 {
		t.Fatalf("%d of %d rows accepted while ClickHouse was down: the buffer is not bounded", n, nScores)
	}
	// Every failed INSERT is reported (the outage shows in the metrics).
	if n := failed.Load(); n < 2 {
		t.Fatalf("%d failed INSERTs reported in 2 s of retrying", n)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []chan error{done, flushed} {
		select {
		case err := <-c:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("writes did not complete after ClickHouse came back")
		}
	}
	if err := sink.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(t, sink, "SELECT count() FROM pulse.scores FINAL"); n != uint64(nScores) {
		t.Fatalf("%d score rows after recovery, want %d", n, nScores)
	}
	if n := count(t, sink, "SELECT count() FROM pulse.revenue FINAL"); n != uint64(len(revenue)) {
		t.Fatalf("%d revenue rows after recovery, want %d", n, len(revenue))
	}
}

// Writes return without waiting for an INSERT; batches are stored at
// BatchRows rows, FlushInterval after their first rows, or on Flush, which
// returns once everything written before it is stored.
func TestBatchesAreCutBySizeTimeAndFlush(t *testing.T) {
	srv := chtest.Start(t)
	var mu sync.Mutex
	var inserts []int
	var insertedAt []time.Time
	ctx := context.Background()
	const batchRows, flushInterval = 1000, 2 * time.Second
	sink, err := Open(ctx, Config{Addr: []string{srv.Addr()}, Database: "cut", BatchRows: batchRows, FlushInterval: flushInterval, Log: quiet,
		Inserted: func(table string, rows int) {
			if table == "scores" {
				mu.Lock()
				inserts = append(inserts, rows)
				insertedAt = append(insertedAt, time.Now())
				mu.Unlock()
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close(ctx)
	bs, _, _ := batches(t, 40, 5)
	rows := scoreRows(bs)
	if len(rows) < 3*batchRows {
		t.Fatalf("only %d rows", len(rows))
	}
	took := func(what string, fn func() error) time.Duration {
		began := time.Now()
		if err := fn(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return time.Since(began)
	}
	stored := func() []int {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(inserts)
	}
	// 2.5 batches from 8 partitions, 100 rows a Write: two full INSERTs
	// while the Writes go on, the rest on Flush.
	n := batchRows*5/2 + 50
	var wg sync.WaitGroup
	for p := range 8 {
		wg.Go(func() {
			for start := p * 100; start < n; start += 800 {
				b := engine.Batch{Partition: int32(p), Scores: rows[start:min(start+100, n)]}
				if err := sink.Write(ctx, &b); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	eventually(10*time.Second, func() bool { return len(stored()) >= 2 })
	if got := stored(); len(got) != 2 || got[0] < batchRows || got[1] < batchRows {
		t.Fatalf("INSERTs of %v rows before Flush, want two of %d or more", got, batchRows)
	}
	if d := took("flush", func() error { return sink.Flush(ctx) }); d >= flushInterval {
		t.Fatalf("Flush took %v: it waited for the flush interval", d)
	}
	if got := stored(); len(got) != 3 || got[0]+got[1]+got[2] != n {
		t.Fatalf("INSERTs of %v rows after Flush, want three of %d in all", got, n)
	}
	if c := count(t, sink, "SELECT count() FROM cut.scores"); c != uint64(n) {
		t.Fatalf("%d rows stored, want %d", c, n)
	}
	// A lone Write is stored after the flush interval, with no Flush.
	wrote := time.Now()
	if err := sink.Write(ctx, &engine.Batch{Scores: rows[n : n+10]}); err != nil {
		t.Fatal(err)
	}
	eventually(3*flushInterval, func() bool { return len(stored()) >= 4 })
	if got := stored(); len(got) != 4 || got[3] != 10 {
		t.Fatalf("INSERTs of %v: the lone Write was not stored after the flush interval", got)
	}
	mu.Lock()
	after := insertedAt[3].Sub(wrote)
	mu.Unlock()
	if after < flushInterval/2 {
		t.Fatalf("a lone Write was stored %v after it, before the flush interval (%v)", after, flushInterval)
	}
	// Flush with nothing pending returns at once; after Close it fails.
	if d := took("empty flush", func() error { return sink.Flush(ctx) }); d > time.Second {
		t.Fatalf("an empty Flush took %v", d)
	}
	sink.Close(ctx)
	if err := sink.Write(ctx, &engine.Batch{Scores: rows[:1]}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
}

// Score rows reach ClickHouse sorted by the table's key, so it stores
// each INSERT (and the daily rollup's block made from it) without sorting
// it; and the prepared INSERT, sent again for every batch, stores each
// row once.
func TestInsertsArriveSortedAndOnce(t *testing.T) {
	srv := chtest.Start(t)
	ctx := context.Background()
	var inserts atomic.Int64
	sink, err := Open(ctx, Config{Addr: []string{srv.Addr()}, Database: "sorted", BatchRows: 500, Log: quiet,
		Inserted: func(table string, _ int) { inserts.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close(ctx)
	bs, nScores, _ := batches(t, 30, 4)
	rows := scoreRows(bs)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
	blocks := func() (all, sorted uint64) {
		q := "SELECT sumIf(value, event = 'MergeTreeDataWriterBlocks'), sumIf(value, event = 'MergeTreeDataWriterBlocksAlreadySorted') FROM system.events"
		if err := sink.conn.QueryRow(ctx, q).Scan(&all, &sorted); err != nil {
			t.Fatal(err)
		}
		return all, sorted
	}
	all0, sorted0 := blocks()
	write := func(rows []engine.ScoreRow) {
		for start := 0; start < len(rows); start += 100 {
			if err := sink.Write(ctx, &engine.Batch{Scores: rows[start:min(start+100, len(rows))]}); err != nil {
				t.Fatal(err)
			}
		}
		if err := sink.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	write(rows[:len(rows)/2])
	prepared := sink.scoreInsert // Flush returned: the flusher is done with it
	write(rows[len(rows)/2:])
	if prepared == nil || sink.scoreInsert != prepared {
		t.Fatal("the prepared INSERT was not reused")
	}
	if n := inserts.Load(); n < 4 {
		t.Fatalf("%d INSERTs, want several", n)
	}
	all, sorted := blocks()
	if all-all0 < 2*uint64(inserts.Load()) || sorted-sorted0 != all-all0 {
		t.Fatalf("%d of %d blocks written arrived sorted", sorted-sorted0, all-all0)
	}
	if n := count(t, sink, "SELECT count() FROM sorted.scores"); n != uint64(nScores) {
		t.Fatalf("%d score rows stored, want %d", n, nScores)
	}
}

// eventually checks ok every 10 ms until it holds, for at most timeout,
// and reports whether it held.
func eventually(timeout time.Duration, ok func() bool) bool {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(timeout)
	for !ok() {
		select {
		case <-tick.C:
		case <-deadline:
			return false
		}
	}
	return true
}
