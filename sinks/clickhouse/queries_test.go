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
	q := queries(t)
	if len(q) != 4 {
		t.Fatalf("found queries %v", q)
	}
	run := func(name string, args ...any) []string {
		rows, err := sink.conn.Query(ctx, q[name], args...)
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
		return out
	}

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
