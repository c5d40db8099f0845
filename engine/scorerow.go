package engine

import (
	"strconv"

	"github.com/cespare/xxhash/v2"

	"github.com/pulsehq/pulse/rules"
)

// ScoreRowID is a score row's stable id: one account at one time has one
// id, in every run and every replay (an xxhash64 of the account id and
// the time in Unix nanoseconds, in hex, as alert ids are).
func ScoreRowID(accountID string, ts int64) string {
	d := xxhash.New()
	d.WriteString(accountID)
	d.WriteString("\x00")
	d.WriteString(strconv.FormatInt(ts, 10))
	return strconv.FormatUint(d.Sum64()|1<<63, 16)
}

// AppendScoreRowJSON appends a score row as one JSON object: its id
// (ScoreRowID), the account, time, score, grade, depth, scorecard, the
// known attributes and every metric. Keys come in a fixed order and
// numbers are rounded to 6 decimals, so a row encodes to the same bytes
// in every run.
func AppendScoreRowJSON(b []byte, r *ScoreRow) []byte {
	b = append(b, `{"id":"`...)
	b = append(b, ScoreRowID(r.AccountID, r.Ts)...)
	b = append(b, `","account_id":`...)
	b = appendString(b, r.AccountID)
	b = append(b, `,"ts":`...)
	b = appendTime(b, r.Ts)
	b = append(b, `,"score":`...)
	b = appendNumber(b, r.Score)
	b = append(b, `,"grade":"`...)
	b = append(b, r.Grade.String()...)
	b = append(b, `","depth":"`...)
	b = append(b, r.Depth.String()...)
	b = append(b, `","scorecard":`...)
	b = appendString(b, r.Scorecard)
	b = append(b, `,"attrs":`...)
	b = appendAttrs(b, &r.Attrs)
	b = append(b, `,"metrics":{`...)
	for i, v := range r.Metrics {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, rules.Metric(i).String()...)
		b = append(b, `":`...)
		b = appendNumber(b, v)
	}
	return append(b, "}}"...)
}
