package clickhouse

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
)

// batch is the rows of many Writes, stored by one INSERT per table. Score
// rows are copied into columns as they arrive (the engine reuses its row
// buffers once Write returns); alert transitions are kept as handed over,
// since nothing modifies them after emission; revenue rows are copied.
type batch struct {
	scores  scoreColumns
	alerts  []rules.Transition
	revenue []engine.RevenueRow
	rows    int
	seq     uint64    // the last Write it holds
	first   time.Time // when its first rows came
}

// reset empties the batch for reuse, keeping its memory.
func (b *batch) reset() {
	b.scores.reset()
	clear(b.alerts)
	clear(b.revenue)
	b.alerts, b.revenue, b.rows, b.seq = b.alerts[:0], b.revenue[:0], 0, 0
}

// scoreColumns holds score rows column by column, in the order of
// scoreColumnNames. Whole columns go to the driver in one call each: a
// catch-up writes millions of rows, and a row-wise append boxes every
// value. Null metrics are NaN here and become NULL on insert.
type scoreColumns struct {
	ids        []string
	tsNs       []uint64
	score      []float64
	grade      []int8 // the enums' values are the rules' constants
	depth      []int8
	scorecards []string
	attrs      [][]string  // historyAttrs
	metrics    [][]float64 // historyMetrics

	// On insert: the rows in the table's key order, and scratch for one
	// column at a time in that order.
	order []int32
	strs  []string
	times []time.Time
	uints []uint64
	enums []int8
	nulls []*float64
}

func (c *scoreColumns) len() int { return len(c.ids) }

func (c *scoreColumns) reset() {
	clear(c.ids)
	clear(c.scorecards)
	clear(c.strs)
	c.ids, c.tsNs, c.score, c.grade, c.depth, c.scorecards, c.strs = c.ids[:0], c.tsNs[:0], c.score[:0], c.grade[:0], c.depth[:0], c.scorecards[:0], c.strs[:0]
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
		c.tsNs = append(c.tsNs, uint64(r.Ts))
		c.score = append(c.score, r.Score)
		c.grade = append(c.grade, int8(r.Grade))
		c.depth = append(c.depth, int8(r.Depth))
		c.scorecards = append(c.scorecards, r.Scorecard)
		for j, a := range historyAttrs {
			c.attrs[j] = append(c.attrs[j], r.Attrs[a])
		}
		for j, m := range historyMetrics {
			c.metrics[j] = append(c.metrics[j], r.Metrics[m])
		}
	}
}

// sort puts the rows in the scores table's key order, (account_id, ts),
// for the columns that follow. ClickHouse skips sorting a block that
// arrives sorted, and so does the daily rollup's block made from it: on
// 18.16 the server's CPU per stored row drops by a quarter (2.5 → 1.9 µs
// in the sink benchmark), for less than sorting the row numbers costs here.
func (c *scoreColumns) sort() {
	c.order = c.order[:0]
	for i := range c.ids {
		c.order = append(c.order, int32(i))
	}
	slices.SortFunc(c.order, func(a, b int32) int {
		if d := strings.Compare(c.ids[a], c.ids[b]); d != 0 {
			return d
		}
		return cmp.Compare(c.tsNs[a], c.tsNs[b])
	})
}

// column returns column i of scoreColumnNames, in sort order, as the
// driver takes it. Columns of a type share one scratch slice: hand each to
// the driver before asking for the next.
func (c *scoreColumns) column(i int) any {
	switch {
	case i == 0:
		c.strs = gather(c.strs, c.ids, c.order)
		return c.strs
	case i == 1:
		c.times = c.times[:0]
		for _, j := range c.order {
			c.times = append(c.times, time.Unix(0, int64(c.tsNs[j])).UTC())
		}
		return c.times
	case i == 2:
		c.uints = gather(c.uints, c.tsNs, c.order)
		return c.uints
	case i == 3:
		return c.nullable(c.score)
	case i == 4:
		c.enums = gather(c.enums, c.grade, c.order)
		return c.enums
	case i == 5:
		c.enums = gather(c.enums, c.depth, c.order)
		return c.enums
	case i == 6:
		c.strs = gather(c.strs, c.scorecards, c.order)
		return c.strs
	case i < fixedScoreColumns+len(historyAttrs):
		c.strs = gather(c.strs, c.attrs[i-fixedScoreColumns], c.order)
		return c.strs
	default:
		return c.nullable(c.metrics[i-fixedScoreColumns-len(historyAttrs)])
	}
}

// gather sets dst to src's values in order.
func gather[T any](dst, src []T, order []int32) []T {
	dst = dst[:0]
	for _, i := range order {
		dst = append(dst, src[i])
	}
	return dst
}

// fixedScoreColumns is the number of columns of scoreColumnNames before
// the attributes; numScoreColumns the number of all of them.
const fixedScoreColumns = 7

var numScoreColumns = fixedScoreColumns + len(historyAttrs) + len(historyMetrics)

// nullable points at each value in sort order, or is nil for null (see
// isNull).
func (c *scoreColumns) nullable(v []float64) []*float64 {
	c.nulls = c.nulls[:0]
	for _, i := range c.order {
		if isNull(v[i]) {
			c.nulls = append(c.nulls, nil)
		} else {
			c.nulls = append(c.nulls, &v[i])
		}
	}
	return c.nulls
}

var scoreColumnNames = func() string {
	cols := []string{"account_id", "ts", "ts_ns", "score", "grade", "depth", "scorecard"}
	for _, a := range historyAttrs {
		cols = append(cols, a.String())
	}
	for _, m := range historyMetrics {
		cols = append(cols, m.String())
	}
	return strings.Join(cols, ", ")
}()

var alertColumnNames = func() string {
	cols := []string{"alert_id", "state", "account_id", "rule", "severity", "kind", "ts", "ts_ns", "score", "grade", "depth", "metric_names", "metric_values", "message", "scorecard", "suppressed"}
	for i := range rules.NumAttrs {
		cols = append(cols, rules.Attr(i).String())
	}
	return strings.Join(cols, ", ")
}()

const revenueColumnNames = "account_id, ts, ts_ns, outcome, arr_before, arr_after, segment, csm"
