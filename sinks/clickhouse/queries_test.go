package clickhouse

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
	"github.com/pulsehq/pulse/sinks/clickhouse/chtest"
)

// queries reads deploy/clickhouse/queries.sql: "-- name: X" starts a query.
func queries(t *testing.T) map[string]string {
	data, err := os.ReadFile("../../deploy/clickhouse/queries.sql")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	name := ""
	for _, line := range strings.Split(string(data), "\n") {
		if n, ok := strings.CutPrefix(line, "-- name: "); ok {
			name = strings.TrimSpace(n)
			continue
		}
		if name != "" && !strings.HasPrefix(line, "--") {
			out[name] += line + "\n"
		}
	}
	for k, v := range out {
		out[k] = strings.TrimSuffix(strings.TrimSpace(v), ";")
	}
	return out
}

// testedQueries are the queries of queries.sql, each run by a test here.
var testedQueries = []string{
	"at_risk_now", "grade_changes_this_week", "alerts_by_csm", "score_trend", // TestShippedQueries
	"revenue_retention",                   // TestRevenueRetentionQuery
	"arr_at_risk", "arr_at_risk_by_owner", // TestARRAtRiskQueries
}

func TestEveryShippedQueryIsTested(t *testing.T) {
	var names []string
	for name := range queries(t) {
		names = append(names, name)
	}
	slices.Sort(names)
	want := slices.Sorted(slices.Values(testedQueries))
	if !slices.Equal(names, want) {
		t.Fatalf("queries.sql has %v, the tests run %v", names, want)
	}
}

// runQuery runs a query of queries.sql and returns its rows, the values of
// each separated by spaces (null for NULL, dates as 2006-01-02).
func runQuery(t *testing.T, sink *Sink, name string, args ...any) []string {
	t.Helper()
	q, ok := queries(t)[name]
	if !ok {
		t.Fatalf("queries.sql has no query %s", name)
	}
	rows, err := sink.conn.Query(context.Background(), q, args...)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	defer rows.Close()
	var out []string
	cols := rows.ColumnTypes()
	for rows.Next() {
		vals := make([]any, len(cols))
		for i, c := range cols {
			vals[i] = newOf(c.ScanType())
		}
		if err := rows.Scan(vals...); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var parts []string
		for _, v := range vals {
			parts = append(parts, fmt.Sprint(deref(v)))
		}
		out = append(out, strings.Join(parts, " "))
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return out
}

// Each shipped query runs on the real server and returns what the score
// history and transitions, computed independently here, say it should.
func TestShippedQueries(t *testing.T) {
	srv := chtest.Start(t)
	sink := open(t, srv, "pulse")
	// A history that ends today, so "now" and "this week" mean something.
	end := time.Now().UTC().Truncate(24 * time.Hour)
	bs := batchesEnding(t, 40, 21, end)
	ctx := context.Background()
	type last struct {
		ts    int64
		grade rules.Grade
		csm   string
	}
	latest, weekAgo := map[string]last{}, map[string]last{}
	alertState := map[string]rules.Transition{}
	cut := time.Now().Add(-7 * 24 * time.Hour).UnixNano()
	for i := range bs {
		if err := sink.Write(ctx, &bs[i]); err != nil {
			t.Fatal(err)
		}
		for _, r := range bs[i].Scores {
			latest[r.AccountID] = last{r.Ts, r.Grade, r.Attrs[rules.CSM]}
			if r.Ts <= cut {
				weekAgo[r.AccountID] = last{r.Ts, r.Grade, r.Attrs[rules.CSM]}
			}
		}
		for _, tr := range bs[i].Transitions {
			alertState[tr.ID] = tr
		}
	}
	if err := sink.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...any) []string { return runQuery(t, sink, name, args...) }

	var wantRed []string
	for id, l := range latest {
		if l.grade == rules.GradeRed {
			wantRed = append(wantRed, id)
		}
	}
	gotRed := run("at_risk_now")
	if len(gotRed) != len(wantRed) || len(wantRed) == 0 {
		t.Fatalf("at_risk_now: %d rows, want %d (%v)", len(gotRed), len(wantRed), gotRed)
	}
	for _, row := range gotRed {
		if id := strings.Fields(row)[0]; latest[id].grade != rules.GradeRed {
			t.Fatalf("at_risk_now lists %s, whose latest grade is %s", id, latest[id].grade)
		}
	}

	var wantChanged []string
	for id, before := range weekAgo {
		if now := latest[id]; now.grade != before.grade {
			wantChanged = append(wantChanged, fmt.Sprintf("%s %s %s %s", id, before.grade, now.grade, now.csm))
		}
	}
	slices.Sort(wantChanged)
	if len(wantChanged) == 0 {
		t.Fatal("no account changed grade this week: the check proves nothing")
	}
	if got := run("grade_changes_this_week"); strings.Join(got, "\n") != strings.Join(wantChanged, "\n") {
		t.Fatalf("grade_changes_this_week:\n got %v\nwant %v", got, wantChanged)
	}

	firing := map[string]int{}
	total := 0
	for _, tr := range alertState {
		if tr.State == rules.PhaseFiring {
			firing[tr.Attrs[rules.CSM]+" "+tr.Severity.String()]++
			total++
		}
	}
	got := run("alerts_by_csm")
	sum := 0
	for _, row := range got {
		f := strings.Fields(row)
		var n int
		fmt.Sscan(f[len(f)-1], &n)
		if firing[f[0]+" "+f[1]] != n {
			t.Fatalf("alerts_by_csm row %q, want %d", row, firing[f[0]+" "+f[1]])
		}
		sum += n
	}
	if sum != total || total == 0 {
		t.Fatalf("alerts_by_csm counts %d firing alerts, want %d", sum, total)
	}

	var account string
	for id := range latest {
		account = id
		break
	}
	dayEnd := map[string]string{}
	for i := range bs {
		for _, r := range bs[i].Scores {
			if r.AccountID == account {
				// A row at midnight closes the day before.
				day := time.Unix(0, r.Ts-1).UTC().Format(time.DateOnly)
				dayEnd[day] = fmt.Sprintf("%s %g %g", r.Grade, r.Metrics[rules.DAU], r.Metrics[rules.Events7d])
			}
		}
	}
	trend := run("score_trend", account)
	if len(trend) != len(dayEnd) {
		t.Fatalf("score_trend of %s: %d days, want %d", account, len(trend), len(dayEnd))
	}
	for _, row := range trend {
		f := strings.Fields(row)
		if got := strings.Join(f[2:], " "); got != dayEnd[f[0]] {
			t.Fatalf("score_trend row %q: the day ends with %s", row, dayEnd[f[0]])
		}
	}
}

func batchesEnding(t *testing.T, accounts, days int, end time.Time) []engine.Batch {
	bs, _, _ := batchesFrom(t, accounts, days, end)
	return bs
}

func newOf(t reflect.Type) any { return reflect.New(t).Interface() }

func deref(v any) any {
	rv := reflect.ValueOf(v).Elem()
	for rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return "null"
		}
		rv = rv.Elem()
	}
	if tm, ok := rv.Interface().(time.Time); ok {
		return tm.UTC().Format("2006-01-02")
	}
	return rv.Interface()
}

// writeTwice writes rows, flushes, then writes dup again in a batch of its
// own and flushes: the duplicate lands in a part of its own. Merges are
// stopped first, so it stays stored twice and only FINAL (or argMax) reads
// it once.
func writeTwice(t *testing.T, sink *Sink, table string, rows, dup engine.Batch) {
	t.Helper()
	ctx := context.Background()
	if err := sink.conn.Exec(ctx, "SYSTEM STOP MERGES pulse."+table); err != nil {
		t.Fatal(err)
	}
	for _, b := range []engine.Batch{rows, dup} {
		if err := sink.Write(ctx, &b); err != nil {
			t.Fatal(err)
		}
		if err := sink.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// NDR, GRR and logo churn per month, segment and CSM, on hand-made renewal
// outcomes: months cut at UTC midnight, a renewal stored twice counts
// once, and a group with no ARR before has no NDR or GRR.
func TestRevenueRetentionQuery(t *testing.T) {
	srv := chtest.Start(t)
	sink := open(t, srv, "pulse")
	at := func(s string) int64 {
		ts, err := time.Parse(time.DateTime, s)
		if err != nil {
			t.Fatal(err)
		}
		return ts.UnixNano() + 123 // ts_ns keeps what ts cuts
	}
	row := func(id, ts string, o engine.Outcome, before, after float64, segment, csm string) engine.RevenueRow {
		return engine.RevenueRow{AccountID: id, Ts: at(ts), Outcome: o, ArrBefore: before, ArrAfter: after, Segment: segment, CSM: csm}
	}
	churnedLastSecond := row("a3", "2026-10-31 23:59:59", engine.OutcomeChurned, 30000, 0, "enterprise", "li")
	rows := []engine.RevenueRow{
		row("a1", "2026-10-03 10:00:00", engine.OutcomeRenewed, 100000, 100000, "enterprise", "li"),
		row("a2", "2026-10-15 12:30:00", engine.OutcomeExpanded, 50000, 70000, "enterprise", "li"),
		churnedLastSecond,
		row("a4", "2026-10-20 08:00:00", engine.OutcomeContracted, 80000, 60000, "enterprise", "mo"),
		row("a5", "2026-10-09 00:00:00", engine.OutcomeExpanded, 0, 12000, "smb", "li"),
		row("a6", "2026-11-01 00:00:00", engine.OutcomeChurned, 40000, 0, "enterprise", "li"),
		row("a7", "2026-11-30 23:00:00", engine.OutcomeExpanded, 20000, 25000, "enterprise", "li"),
	}
	writeTwice(t, sink, "revenue", engine.Batch{Revenue: rows}, engine.Batch{Revenue: []engine.RevenueRow{churnedLastSecond}})
	if n := count(t, sink, "SELECT count() FROM pulse.revenue"); n != uint64(len(rows)+1) {
		t.Fatalf("%d revenue rows stored, want %d with the duplicate: the test cannot tell FINAL from none", n, len(rows)+1)
	}
	// month segment csm outcomes churned Σarr_before Σarr_after Σmin ndr grr logo_churn
	want := []string{
		fmt.Sprint("2026-10-01 enterprise li 3 1 180000 170000 150000 ", 170000.0/180000, " ", 150000.0/180000, " ", 1.0/3),
		fmt.Sprint("2026-10-01 enterprise mo 1 0 80000 60000 60000 ", 0.75, " ", 0.75, " ", 0),
		fmt.Sprint("2026-10-01 smb li 1 0 0 12000 0 null null 0"),
		fmt.Sprint("2026-11-01 enterprise li 2 1 60000 25000 20000 ", 25000.0/60000, " ", 20000.0/60000, " ", 0.5),
	}
	if got := runQuery(t, sink, "revenue_retention"); !slices.Equal(got, want) {
		t.Fatalf("revenue_retention:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}
}

// ARR at risk on hand-made score rows: an account's latest row decides
// its grade, ARR (null too), segment and CSM; a row stored twice counts
// once; a red account of unknown ARR is counted apart.
func TestARRAtRiskQueries(t *testing.T) {
	srv := chtest.Start(t)
	sink := open(t, srv, "pulse")
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC).UnixNano()
	row := func(id string, hour int, g rules.Grade, arr float64, segment, csm string) engine.ScoreRow {
		r := engine.ScoreRow{AccountID: id, Ts: day + int64(hour)*int64(time.Hour), Score: 50, Grade: g, Scorecard: segment}
		for i := range r.Metrics {
			r.Metrics[i] = rules.Null
		}
		r.Metrics[rules.ARR] = arr
		r.Attrs[rules.Segment], r.Attrs[rules.CSM] = segment, csm
		return r
	}
	redTwice := row("r5", 1, rules.GradeRed, 80000, "enterprise", "li")
	rows := []engine.ScoreRow{
		row("r1", 1, rules.GradeGreen, 100000, "enterprise", "li"), // red now, at a new ARR
		row("r1", 2, rules.GradeRed, 120000, "enterprise", "li"),
		row("r2", 1, rules.GradeRed, 50000, "enterprise", "mo"), // red no more
		row("r2", 3, rules.GradeGreen, 50000, "enterprise", "mo"),
		row("r3", 1, rules.GradeRed, rules.Null, "smb", "li"), // red, ARR unknown
		row("r4", 1, rules.GradeRed, 30000, "smb", "li"),      // red, moved to another CSM
		row("r4", 2, rules.GradeRed, 30000, "smb", "mo"),
		redTwice,
		row("r6", 1, rules.GradeGreen, 200000, "enterprise", "li"),
		row("r7", 1, rules.GradeRed, 10000, "smb", "li"), // the latest row's ARR is unknown
		row("r7", 2, rules.GradeRed, rules.Null, "smb", "li"),
	}
	writeTwice(t, sink, "scores", engine.Batch{Scores: rows}, engine.Batch{Scores: []engine.ScoreRow{redTwice}})
	if n := count(t, sink, "SELECT count() FROM pulse.scores"); n != uint64(len(rows)+1) {
		t.Fatalf("%d score rows stored, want %d with the duplicate: the test cannot tell FINAL from none", n, len(rows)+1)
	}
	// red_accounts red_unknown_arr arr_at_risk arr_total
	if got, want := runQuery(t, sink, "arr_at_risk"), []string{"5 2 230000 480000"}; !slices.Equal(got, want) {
		t.Fatalf("arr_at_risk: got %v, want %v", got, want)
	}
	// segment csm accounts red_accounts red_unknown_arr arr_at_risk arr_total
	want := []string{
		"enterprise li 3 2 0 200000 400000",
		"smb mo 1 1 0 30000 30000",
		"enterprise mo 1 0 0 0 50000",
		"smb li 2 2 2 0 0",
	}
	if got := runQuery(t, sink, "arr_at_risk_by_owner"); !slices.Equal(got, want) {
		t.Fatalf("arr_at_risk_by_owner:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}
}
