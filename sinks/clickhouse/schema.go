package clickhouse

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
)

// The schema has two dialects. ClickHouse 18.16 (Debian's package) has no
// LowCardinality (without an experimental setting), TTL or column codecs;
// current releases have all three. Both store the same columns with the
// same sorting keys, so every query works on both.
type dialect struct {
	name          string
	lowCard       func(string) string // wraps a repetitive String column
	partition     string              // PARTITION BY clause, or ""
	ttl           func(col string) string
	codecTime     string
	historyMonths int
}

func compatDialect() dialect {
	return dialect{name: "compat", lowCard: func(t string) string { return t }, ttl: func(string) string { return "" }}
}

func modernDialect(historyMonths int) dialect {
	return dialect{
		name:      "modern",
		lowCard:   func(t string) string { return "LowCardinality(" + t + ")" },
		partition: "PARTITION BY toYYYYMM(ts)",
		ttl: func(col string) string {
			if historyMonths <= 0 {
				return ""
			}
			return fmt.Sprintf("TTL %s + INTERVAL %d MONTH", col, historyMonths)
		},
		codecTime:     " CODEC(DoubleDelta, ZSTD)",
		historyMonths: historyMonths,
	}
}

// modern reports whether a server version takes the modern DDL.
func modern(major, minor uint64) bool { return major > 20 || major == 20 && minor >= 1 }

// The Enum8 types of the columns that hold the rules' enums, built from
// the rules' lists, so the values are always the rules' constants. The
// migrations that create the tables are built from them too: a value
// added in rules changes the text of a shipped migration (TestDDLText says
// so), and needs a migration of its own, ALTER TABLE … MODIFY COLUMN, to
// reach existing tables.
var (
	gradeEnum    = enum8[rules.Grade](rules.NumGrades)
	depthEnum    = enum8[rules.Depth](rules.NumDepths)
	phaseEnum    = enum8[rules.Phase](rules.NumPhases)
	severityEnum = enum8[rules.Severity](rules.NumSeverities)
	kindEnum     = enum8[rules.Kind](rules.NumKinds)
)

// enum8 is the ClickHouse type of the n values of an enum, each named by
// its String method: Enum8('a' = 0, 'b' = 1, …).
func enum8[E interface {
	~uint8
	fmt.Stringer
}](n int) string {
	vals := make([]string, n)
	for v := range n {
		vals[v] = fmt.Sprintf("'%s' = %d", E(v), v)
	}
	return "Enum8(" + strings.Join(vals, ", ") + ")"
}

// outcomeEnum is the revenue table's outcome type: engine.OutcomeNames
// with their values (OutcomeNone, which never leaves the decoder, has no
// name). The migration that creates the table is built from it, so a new
// outcome changes the text of a shipped migration (TestDDLText says so):
// it needs a migration of its own, ALTER TABLE revenue MODIFY COLUMN
// outcome, to reach existing tables.
var outcomeEnum = func() string {
	var vals []string
	for v, name := range engine.OutcomeNames {
		if name != "" {
			vals = append(vals, fmt.Sprintf("'%s' = %d", name, v))
		}
	}
	return "Enum8(" + strings.Join(vals, ", ") + ")"
}()

// scoresV1Metrics are the metrics of the first scores table (migration
// 1): the ones CSM dashboards chart. (A row of all the metrics doubles
// what ClickHouse stores during a catch-up, when the history is written at
// the rate of the backlog.)
var scoresV1Metrics = []rules.Metric{
	rules.DAU, rules.WAU, rules.MAU, rules.Seats, rules.ActivationRate, rules.LoginRatio7d,
	rules.Events7d, rules.UsageChange7d, rules.APICalls7d, rules.OpenTickets, rules.DaysSinceActive,
	rules.NPS90d, rules.DaysToRenewal,
}

// historyMetrics are the metrics a score-history row keeps: the first
// table's, and arr (migration 10), for the ARR at risk.
var historyMetrics = append(slices.Clip(scoresV1Metrics), rules.ARR)

// historyAttrs are the attributes a score-history row keeps.
var historyAttrs = []rules.Attr{rules.Segment, rules.Stage, rules.CSM}

// A migration is a DDL statement, or columns to add to a table. ClickHouse
// 18.16 has no ADD COLUMN IF NOT EXISTS (a syntax error there) and fails
// on a column that exists, so the columns of an addition are looked up in
// system.columns and only the missing ones are added: a migration applied
// but not recorded (a crash in between) applies again without failing.
type migration struct {
	stmt    string   // the statement, when table is ""
	table   string   // the table that gains columns
	columns []column // in order
}

// column is one added column, placed after an existing one.
type column struct{ name, typ, after string }

// String is the migration's DDL: the statement, or the ALTER TABLE that
// adds every column.
func (m migration) String() string {
	if m.table == "" {
		return m.stmt
	}
	return addColumns(m.table, m.columns)
}

// addColumns is the ALTER TABLE that adds cols to table.
func addColumns(table string, cols []column) string {
	var b strings.Builder
	fmt.Fprintf(&b, "ALTER TABLE %s", table)
	for i, c := range cols {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "\n    ADD COLUMN %s %s AFTER %s", c.name, c.typ, c.after)
	}
	return b.String()
}

// migrations are applied in order, each once, recorded in pulse_schema.
// Never edit one that has shipped: append a new one.
func migrations(db string, d dialect) []migration {
	var out []migration
	for _, stmt := range firstMigrations(db, d) {
		out = append(out, migration{stmt: stmt})
	}
	return append(out,
		// 10, 11: scores and transitions name their scorecard; score rows
		// keep arr; a transition an inhibiting alert silenced is stored,
		// flagged (SPEC §5).
		migration{table: db + ".scores", columns: []column{
			{"scorecard", d.lowCard("String"), "depth"},
			{rules.ARR.String(), "Nullable(Float64)", scoresV1Metrics[len(scoresV1Metrics)-1].String()},
		}},
		migration{table: db + ".alerts", columns: []column{
			{"suppressed", "UInt8", "state"},
			{"scorecard", d.lowCard("String"), "depth"},
		}},
		// 12: renewal outcomes (SPEC §5 "Revenue"), one row per renewal
		// event, keyed so that a replay writes the same keys. Kept forever
		// (no TTL): a row per account and year, and retention compares
		// years.
		migration{stmt: revenueTable(db, d)},
	)
}

func revenueTable(db string, d dialect) string {
	return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s.revenue (
    account_id String,
    ts DateTime('UTC')%s,
    ts_ns UInt64,
    outcome %s,
    arr_before Float64,
    arr_after Float64,
    segment %s,
    csm %s,
    inserted DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree(inserted)
ORDER BY (account_id, ts, outcome, ts_ns)`, db, d.codecTime, outcomeEnum, d.lowCard("String"), d.lowCard("String"))
}

// firstMigrations are migrations 1–9, all statements.
func firstMigrations(db string, d dialect) []string {
	var attrs, historyAttrCols, metrics strings.Builder
	for i := range rules.NumAttrs {
		fmt.Fprintf(&attrs, "    %s %s,\n", rules.Attr(i), d.lowCard("String"))
	}
	for _, a := range historyAttrs {
		fmt.Fprintf(&historyAttrCols, "    %s %s,\n", a, d.lowCard("String"))
	}
	for _, m := range scoresV1Metrics {
		fmt.Fprintf(&metrics, "    %s Nullable(Float64),\n", m)
	}
	clause := func(parts ...string) string {
		var out []string
		for _, p := range parts {
			if p != "" {
				out = append(out, p)
			}
		}
		return strings.Join(out, "\n")
	}
	scores := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s.scores (
    account_id String,
    ts DateTime('UTC')%s,
    ts_ns UInt64,
    score Nullable(Float64),
    grade %s,
    depth %s,
%s%s    inserted DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree(inserted)
%s`, db, d.codecTime, gradeEnum, depthEnum, historyAttrCols.String(), metrics.String(),
		clause(d.partition, "ORDER BY (account_id, ts, ts_ns)", d.ttl("ts")))

	alerts := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s.alerts (
    alert_id String,
    state %s,
    account_id String,
    rule %s,
    severity %s,
    kind %s,
    ts DateTime('UTC')%s,
    ts_ns UInt64,
    score Nullable(Float64),
    grade %s,
    depth %s,
    metric_names Array(String),
    metric_values Array(Float64),
    message String,
%s    inserted DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree(inserted)
%s`, db, phaseEnum, d.lowCard("String"), severityEnum, kindEnum, d.codecTime, gradeEnum, depthEnum, attrs.String(),
		clause(d.partition, "ORDER BY (alert_id, state)", d.ttl("ts")))

	// Migrations 3 and 4 made the first daily rollup: aggregate states
	// (argMax, max) fed by a view, which cost 18.16 twice the CPU of the
	// score inserts themselves. Migrations 5–9 replace it (see dailyRollup).
	daily := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s.daily (
    day Date,
    account_id String,
    score AggregateFunction(argMax, Float64, UInt64),
    grade AggregateFunction(argMax, String, UInt64),
    dau AggregateFunction(max, Float64),
    events_7d AggregateFunction(argMax, Float64, UInt64),
    csm AggregateFunction(argMax, String, UInt64)
) ENGINE = AggregatingMergeTree()
%s`, db, clause(strings.Replace(d.partition, "toYYYYMM(ts)", "toYYYYMM(day)", 1), "ORDER BY (account_id, day)", d.ttl("day")))

	dailyView := fmt.Sprintf(`CREATE MATERIALIZED VIEW IF NOT EXISTS %s.daily_mv TO %s.daily AS
SELECT
    toDate(ts) AS day,
    account_id,
    argMaxState(ifNull(score, nan), ts_ns) AS score,
    argMaxState(toString(grade), ts_ns) AS grade,
    maxState(ifNull(dau, 0)) AS dau,
    argMaxState(ifNull(events_7d, 0), ts_ns) AS events_7d,
    argMaxState(csm, ts_ns) AS csm
FROM %s.scores
GROUP BY day, account_id`, db, db, db)
	return append([]string{scores, alerts, daily, dailyView}, dailyRollup(db, d, clause)...)
}

// dailyRollup replaces the first daily rollup with a ReplacingMergeTree
// that keeps, per account and UTC day, the day's last score row (highest
// ts_ns). DAU counts the users active on the day so far, so the last row
// holds the day's DAU. A row stamped at midnight closes the day before:
// the engine's windows end at their time, inclusive, and the midnight
// sweep reports the whole day that ended. The rollup is rebuilt from the
// score history, which is the record.
func dailyRollup(db string, d dialect, clause func(...string) string) []string {
	table := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s.daily (
    day Date,
    account_id String,
    ts_ns UInt64,
    score Nullable(Float64),
    grade %s,
    depth %s,
    dau Nullable(Float64),
    mau Nullable(Float64),
    events_7d Nullable(Float64),
    segment %s,
    csm %s
) ENGINE = ReplacingMergeTree(ts_ns)
%s`, db, gradeEnum, depthEnum, d.lowCard("String"), d.lowCard("String"),
		clause(strings.Replace(d.partition, "toYYYYMM(ts)", "toYYYYMM(day)", 1), "ORDER BY (account_id, day)", d.ttl("day")))
	rows := fmt.Sprintf(`SELECT
    toDate(toDateTime(intDiv(ts_ns - 1, 1000000000), 'UTC')) AS day,
    account_id, ts_ns, score, grade, depth, dau, mau, events_7d, segment, csm
FROM %s.scores`, db)
	return []string{
		fmt.Sprintf("DROP TABLE IF EXISTS %s.daily_mv", db),
		fmt.Sprintf("DROP TABLE IF EXISTS %s.daily", db),
		table,
		fmt.Sprintf("CREATE MATERIALIZED VIEW IF NOT EXISTS %s.daily_mv TO %s.daily AS\n%s", db, db, rows),
		fmt.Sprintf("INSERT INTO %s.daily (day, account_id, ts_ns, score, grade, depth, dau, mau, events_7d, segment, csm)\n%s", db, rows),
	}
}
