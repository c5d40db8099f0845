package clickhouse

import (
	"strings"
	"time"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
)

// batch is the rows of many Writes, stored by one INSERT per table. Score
// rows are copied into columns as they arrive (the engine reuses its row
// buffers once Write returns); alert transitions are kept as handed over,
// since nothing modifies them after emission.
type batch struct {
	scores scoreColumns
	alerts []rules.Transition
	rows   int
	seq    uint64    // the last Write it holds
	first  time.Time // when its first rows came
}

// reset empties the batch for reuse, keeping its memory.
func (b *batch) reset() {
	b.scores.reset()
	clear(b.alerts)
	b.alerts, b.rows, b.seq = b.alerts[:0], 0, 0
}

// scoreColumns holds score rows column by column, in the order of
// scoreColumnNames. Whole columns go to the driver in one call each: a
// catch-up writes millions of rows, and a row-wise append boxes every
// value. Null metrics are NaN here and become NULL on insert.
type scoreColumns struct {
	ids     []string
	ts      []time.Time
	tsNs    []uint64
	score   []float64
	grade   []int8 // the enums' values are the rules' constants
	depth   []int8
	attrs   [][]string  // historyAttrs
	metrics [][]float64 // historyMetrics
	nulls   []*float64  // scratch for one nullable column on insert
}

func (c *scoreColumns) len() int { return len(c.ids) }

func (c *scoreColumns) reset() {
	clear(c.ids)
	c.ids, c.ts, c.tsNs, c.score, c.grade, c.depth = c.ids[:0], c.ts[:0], c.tsNs[:0], c.score[:0], c.grade[:0], c.depth[:0]
	for i := range c.attrs {
		clear(c.attrs[i])
		c.attrs[i] = c.attrs[i][:0]
	}
	for i := range c.metrics {
		c.metrics[i] = c.metrics[i][:0]
	}
}

func (c *scoreColumns) append(rows []engine.ScoreRow) {
	if c.attrs == nil {
		c.attrs = make([][]string, len(historyAttrs))
		c.metrics = make([][]float64, len(historyMetrics))
	}
	for i := range rows {
		r := &rows[i]
		c.ids = append(c.ids, r.AccountID)
		c.ts = append(c.ts, time.Unix(0, r.Ts).UTC())
		c.tsNs = append(c.tsNs, uint64(r.Ts))
		c.score = append(c.score, r.Score)
		c.grade = append(c.grade, int8(r.Grade))
		c.depth = append(c.depth, int8(r.Depth))
		for j, a := range historyAttrs {
			c.attrs[j] = append(c.attrs[j], r.Attrs[a])
		}
		for j, m := range historyMetrics {
			c.metrics[j] = append(c.metrics[j], r.Metrics[m])
		}
	}
}

// column returns column i of scoreColumnNames as the driver takes it.
// Nullable columns share one scratch slice: hand each to the driver before
// asking for the next.
func (c *scoreColumns) column(i int) any {
	switch {
	case i == 0:
		return c.ids
	case i == 1:
		return c.ts
	case i == 2:
		return c.tsNs
	case i == 3:
		return c.nullable(c.score)
	case i == 4:
		return c.grade
	case i == 5:
		return c.depth
	case i < 6+len(historyAttrs):
		return c.attrs[i-6]
	default:
		return c.nullable(c.metrics[i-6-len(historyAttrs)])
	}
}

// numScoreColumns is the number of columns of scoreColumnNames.
var numScoreColumns = 6 + len(historyAttrs) + len(historyMetrics)

// nullable points at each value, or is nil for null (see isNull).
func (c *scoreColumns) nullable(v []float64) []*float64 {
	c.nulls = c.nulls[:0]
	for i := range v {
		if isNull(v[i]) {
			c.nulls = append(c.nulls, nil)
		} else {
			c.nulls = append(c.nulls, &v[i])
		}
	}
	return c.nulls
}

var scoreColumnNames = func() string {
	cols := []string{"account_id", "ts", "ts_ns", "score", "grade", "depth"}
	for _, a := range historyAttrs {
		cols = append(cols, a.String())
	}
	for _, m := range historyMetrics {
		cols = append(cols, m.String())
	}
	return strings.Join(cols, ", ")
}()

var alertColumnNames = func() string {
	cols := []string{"alert_id", "state", "account_id", "rule", "severity", "kind", "ts", "ts_ns", "score", "grade", "depth", "metric_names", "metric_values", "message"}
	for i := range rules.NumAttrs {
		cols = append(cols, rules.Attr(i).String())
	}
	return strings.Join(cols, ", ")
}()
