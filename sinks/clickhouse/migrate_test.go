package clickhouse

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
	"github.com/pulsehq/pulse/sinks/clickhouse/chtest"
)

// previousSchema is the number of migrations the release before
// scorecards, arr and revenue had.
const previousSchema = 9

// insertV1 stores score rows and transitions with the columns of the
// previous schema, as the release before wrote them.
func insertV1(t testing.TB, s *Sink, db string, scores []engine.ScoreRow, trs []rules.Transition) {
	t.Helper()
	ctx := context.Background()
	cols := []string{"account_id", "ts", "ts_ns", "score", "grade", "depth"}
	for _, a := range historyAttrs {
		cols = append(cols, a.String())
	}
	for _, m := range scoresV1Metrics {
		cols = append(cols, m.String())
	}
	b, err := s.conn.PrepareBatch(ctx, fmt.Sprintf("INSERT INTO %s.scores (%s)", db, strings.Join(cols, ", ")))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range scores {
		vals := []any{r.AccountID, time.Unix(0, r.Ts).UTC(), uint64(r.Ts), nullable(r.Score), r.Grade.String(), r.Depth.String()}
		for _, a := range historyAttrs {
			vals = append(vals, r.Attrs[a])
		}
		for _, m := range scoresV1Metrics {
			vals = append(vals, nullable(r.Metrics[m]))
		}
		if err := b.Append(vals...); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	if len(trs) == 0 {
		return
	}
	cols = []string{"alert_id", "state", "account_id", "rule", "severity", "kind", "ts", "ts_ns", "score", "grade", "depth", "metric_names", "metric_values", "message"}
	for i := range rules.NumAttrs {
		cols = append(cols, rules.Attr(i).String())
	}
	if b, err = s.conn.PrepareBatch(ctx, fmt.Sprintf("INSERT INTO %s.alerts (%s)", db, strings.Join(cols, ", "))); err != nil {
		t.Fatal(err)
	}
	for _, tr := range trs {
		vals := []any{tr.ID, tr.State.String(), tr.AccountID, tr.Rule, tr.Severity.String(), tr.Kind.String(),
			time.Unix(0, tr.Ts).UTC(), uint64(tr.Ts), nullable(tr.Score), tr.Grade.String(), tr.Depth.String(), []string{}, []float64{}, tr.Message}
		for _, a := range tr.Attrs {
			vals = append(vals, a)
		}
		if err := b.Append(vals...); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
}

// columnTypes returns "table.column" → type of the columns of db.
func columnTypes(t testing.TB, s *Sink, db string) map[string]string {
	t.Helper()
	rows, err := s.conn.Query(context.Background(), "SELECT table, name, type FROM system.columns WHERE database = ?", db)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var table, name, typ string
		if err := rows.Scan(&table, &name, &typ); err != nil {
			t.Fatal(err)
		}
		out[table+"."+name] = typ
	}
	return out
}

// newColumns are the columns migrations 10 and 11 add, with their types
// in dialect d.
func newColumns(d dialect) map[string]string {
	return map[string]string{
		"scores.scorecard":  d.lowCard("String"),
		"scores.arr":        "Nullable(Float64)",
		"alerts.scorecard":  d.lowCard("String"),
		"alerts.suppressed": "UInt8",
	}
}

// A database of the previous schema, holding rows, gains the new columns
// and the revenue table on start: its rows read with an empty scorecard,
// a null arr and not suppressed, and new rows store every new column.
func TestUpgradeAddsScorecardARRSuppressedAndRevenue(t *testing.T) {
	srv := chtest.Start(t)
	ctx := context.Background()
	conn, err := ch.Open(&ch.Options{Addr: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	old := newSink(Config{Database: "up", Log: quiet, Inserted: func(string, int) {}}, conn)
	if err := old.migrate(ctx, previousSchema); err != nil {
		t.Fatal(err)
	}
	before := columnTypes(t, old, "up")
	for col := range newColumns(old.dialect) {
		if _, ok := before[col]; ok {
			t.Fatalf("the previous schema has %s already", col)
		}
	}
	bs, nScores, nAlerts := batches(t, 10, 6)
	var trs []rules.Transition
	for _, b := range bs {
		trs = append(trs, b.Transitions...)
	}
	insertV1(t, old, "up", scoreRows(bs), trs)

	sink := open(t, srv, "up")
	after := columnTypes(t, sink, "up")
	for col, typ := range newColumns(sink.dialect) {
		if after[col] != typ {
			t.Errorf("after the upgrade %s is %q, want %q", col, after[col], typ)
		}
	}
	if after["revenue.outcome"] != outcomeEnum {
		t.Errorf("revenue.outcome is %q, want %s", after["revenue.outcome"], outcomeEnum)
	}
	if n := count(t, sink, "SELECT toUInt64(max(version)) FROM up.pulse_schema"); n != uint64(len(migrations("up", sink.dialect))) {
		t.Fatalf("schema at version %d after the upgrade", n)
	}
	if n := count(t, sink, "SELECT count() FROM up.scores FINAL WHERE scorecard = '' AND arr IS NULL"); n != uint64(nScores) {
		t.Fatalf("%d of the %d old score rows read with no scorecard and a null arr", n, nScores)
	}
	if n := count(t, sink, "SELECT count() FROM up.alerts FINAL WHERE scorecard = '' AND suppressed = 0"); n != uint64(nAlerts) || n == 0 {
		t.Fatalf("%d of the %d old transitions read with no scorecard, not suppressed", n, nAlerts)
	}

	// New rows, with new keys: scores one nanosecond after the old ones,
	// transitions with new ids.
	withScorecardAndARR(bs)
	trs, nSuppressed := nil, 0
	for _, b := range bs {
		for _, tr := range b.Transitions {
			tr.ID += "-new"
			trs = append(trs, tr)
			if tr.Suppressed {
				nSuppressed++
			}
		}
	}
	b := engine.Batch{Scores: bs[len(bs)-1].Scores, Transitions: trs,
		Revenue: []engine.RevenueRow{{AccountID: "a", Ts: 1, Outcome: engine.OutcomeRenewed, ArrBefore: 1, ArrAfter: 2}}}
	withARR := 0
	for i := range b.Scores {
		b.Scores[i].Ts++
		if !rules.IsNull(b.Scores[i].Metrics[rules.ARR]) {
			withARR++
		}
	}
	if err := sink.Write(ctx, &b); err != nil {
		t.Fatal(err)
	}
	if err := sink.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(t, sink, "SELECT count() FROM up.scores FINAL WHERE scorecard != ''"); n != uint64(len(b.Scores)) || n == 0 {
		t.Fatalf("%d of %d new score rows have a scorecard", n, len(b.Scores))
	}
	if n := count(t, sink, "SELECT count() FROM up.scores FINAL WHERE arr IS NOT NULL"); n != uint64(withARR) || n == 0 {
		t.Fatalf("%d new score rows have an arr, want %d", n, withARR)
	}
	if n := count(t, sink, "SELECT count() FROM up.alerts FINAL WHERE suppressed = 1 AND scorecard != ''"); n != uint64(nSuppressed) || n == 0 {
		t.Fatalf("%d transitions stored as suppressed after the upgrade, want %d", n, nSuppressed)
	}
	if n := count(t, sink, "SELECT count() FROM up.revenue"); n != 1 {
		t.Fatalf("%d revenue rows after the upgrade, want 1", n)
	}
}

// Adding columns is safe to repeat, in both dialects: a column already
// there (a migration applied but not recorded, or half applied) is left
// alone and the others are added, and an ALTER that loses the race to
// another process adding the same columns is no failure. The modern
// dialect's additions (LowCardinality) run here on a table of the compat
// schema: 18.16 takes them with an experimental setting, though not the
// modern CREATE TABLEs (codecs, TTL).
func TestAddingColumnsIsSafeToRepeat(t *testing.T) {
	srv := chtest.Start(t)
	ctx := context.Background()
	conn, err := ch.Open(&ch.Options{Addr: []string{srv.Addr()},
		Settings: ch.Settings{"allow_experimental_low_cardinality_type": 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, d := range []dialect{compatDialect(), modernDialect(24)} {
		t.Run(d.name, func(t *testing.T) {
			db := "add_" + d.name
			s := newSink(Config{Database: db, Log: quiet, Inserted: func(string, int) {}}, conn)
			if err := s.migrate(ctx, previousSchema); err != nil {
				t.Fatal(err)
			}
			ms := migrations(db, d)
			scores, alerts := ms[previousSchema], ms[previousSchema+1]
			if scores.table != db+".scores" || alerts.table != db+".alerts" || len(scores.columns) != 2 {
				t.Fatalf("migrations %d and %d are not the added columns: %v, %v", previousSchema+1, previousSchema+2, scores, alerts)
			}

			// Half applied: arr is there, scorecard is not.
			if err := conn.Exec(ctx, addColumns(scores.table, scores.columns[1:])); err != nil {
				t.Fatal(err)
			}
			if err := conn.Exec(ctx, addColumns(scores.table, scores.columns[1:])); err == nil {
				t.Fatal("this server adds a column twice: the test cannot tell a check from no check")
			}
			missing, err := s.missingColumns(ctx, scores)
			if err != nil || len(missing) != 1 || missing[0].name != "scorecard" {
				t.Fatalf("missing columns %v (%v), want scorecard", missing, err)
			}
			for range 2 {
				if err := s.apply(ctx, scores); err != nil {
					t.Fatal(err)
				}
			}

			// Another process adds the columns between this one's look and
			// its ALTER.
			stale, err := s.missingColumns(ctx, alerts)
			if err != nil || len(stale) != 2 {
				t.Fatalf("missing columns %v (%v), want both", stale, err)
			}
			if err := s.apply(ctx, alerts); err != nil {
				t.Fatal(err)
			}
			if err := s.addMissing(ctx, alerts, stale); err != nil {
				t.Fatalf("an ALTER of columns added meanwhile: %v", err)
			}

			got := columnTypes(t, s, db)
			for col, typ := range newColumns(d) {
				if got[col] != typ {
					t.Errorf("%s is %q, want %q", col, got[col], typ)
				}
			}
			gone := migration{table: db + ".nowhere", columns: scores.columns}
			if err := s.apply(ctx, gone); err == nil || !strings.Contains(err.Error(), "nowhere") {
				t.Fatalf("adding columns to a missing table: %v", err)
			}
		})
	}
}
