package engine

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/pulsehq/pulse/rules"
)

// AccountState is one account's explainable health at one time (SPEC §5).
type AccountState struct {
	AccountID string
	Ts        int64
	Score     float64 // rules.Null when no factor applies
	Grade     rules.Grade
	Depth     rules.Depth
	Attrs     [rules.NumAttrs]string
	Metrics   rules.Values
	Factors   []rules.FactorResult
	Alerts    []string // firing alert names that no other alert inhibits, sorted
	// Suppressed lists the firing alerts an inhibiting alert silences,
	// sorted.
	Suppressed []string
	Scorecard  string   // the scorecard that scored the account
	Caps       []string // the scorecard's caps that hold: the score is at most the lowest
}

// HistoryPoint is an account's score as recorded at one UTC midnight.
type HistoryPoint struct {
	Day   int64   // the midnight, Unix nanoseconds
	Score float64 // rules.Null when no factor applied
	Grade rules.Grade
}

// AppendJSON appends the state as one JSON object (no newline). Keys come
// in a fixed order and numbers are rounded to 6 decimals, so the same
// state always encodes to the same bytes.
func (s *AccountState) AppendJSON(b []byte) []byte {
	b = append(b, `{"account_id":`...)
	b = appendString(b, s.AccountID)
	b = append(b, `,"ts":`...)
	b = appendTime(b, s.Ts)
	b = append(b, `,"score":`...)
	b = appendNumber(b, s.Score)
	b = append(b, `,"grade":"`...)
	b = append(b, s.Grade.String()...)
	b = append(b, `","depth":"`...)
	b = append(b, s.Depth.String()...)
	b = append(b, `","attrs":`...)
	b = appendAttrs(b, &s.Attrs)
	b = append(b, `,"metrics":{`...)
	for i, v := range s.Metrics {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, rules.Metric(i).String()...)
		b = append(b, `":`...)
		b = appendNumber(b, v)
	}
	b = append(b, `},"factors":[`...)
	for i, f := range s.Factors {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = appendString(b, f.Name)
		b = append(b, `,"metric":"`...)
		b = append(b, f.Metric.String()...)
		b = append(b, `","value":`...)
		b = appendNumber(b, f.Value)
		b = append(b, `,"points":`...)
		b = appendNumber(b, f.Points)
		b = append(b, `,"weight":`...)
		b = appendNumber(b, f.Weight)
		b = append(b, '}')
	}
	b = append(b, `],"alerts":`...)
	b = appendStrings(b, s.Alerts)
	b = append(b, `,"suppressed":`...)
	b = appendStrings(b, s.Suppressed)
	b = append(b, `,"scorecard":`...)
	b = appendString(b, s.Scorecard)
	b = append(b, `,"caps":`...)
	b = appendStrings(b, s.Caps)
	return append(b, '}')
}

func appendStrings(b []byte, list []string) []byte {
	b = append(b, '[')
	for i, s := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

// AppendTransitionJSON appends an alert transition as one JSON object
// (SPEC §5); "metrics" holds the values the rule reads.
func AppendTransitionJSON(b []byte, t *rules.Transition) []byte {
	b = append(b, `{"alert_id":`...)
	b = appendString(b, t.ID)
	b = append(b, `,"account_id":`...)
	b = appendString(b, t.AccountID)
	b = append(b, `,"rule":`...)
	b = appendString(b, t.Rule)
	b = append(b, `,"state":"`...)
	b = append(b, t.State.String()...)
	b = append(b, `","severity":"`...)
	b = append(b, t.Severity.String()...)
	b = append(b, `","kind":"`...)
	b = append(b, t.Kind.String()...)
	b = append(b, `","ts":`...)
	b = appendTime(b, t.Ts)
	b = append(b, `,"score":`...)
	b = appendNumber(b, t.Score)
	b = append(b, `,"grade":"`...)
	b = append(b, t.Grade.String()...)
	b = append(b, `","metrics":{`...)
	for i, v := range t.Values {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, v.Name)
		b = append(b, ':')
		b = appendNumber(b, v.Value)
	}
	b = append(b, `},"message":`...)
	b = appendString(b, t.Message)
	b = append(b, `,"attrs":`...)
	b = appendAttrs(b, &t.Attrs)
	b = append(b, `,"scorecard":`...)
	b = appendString(b, t.Scorecard)
	b = append(b, `,"suppressed":`...)
	b = strconv.AppendBool(b, t.Suppressed)
	return append(b, '}')
}

// appendAttrs writes the known attributes only, as in SPEC §5's example.
func appendAttrs(b []byte, attrs *[rules.NumAttrs]string) []byte {
	b = append(b, '{')
	first := true
	for i, v := range attrs {
		if v == "" {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, rules.Attr(i).String()...)
		b = append(b, `":`...)
		b = appendString(b, v)
	}
	return append(b, '}')
}

// appendNumber writes v rounded to 6 decimals, or null where it is not
// finite (rules.IsFinite).
func appendNumber(b []byte, v float64) []byte {
	if !rules.IsFinite(v) {
		return append(b, "null"...)
	}
	r := math.Round(v*1e6) / 1e6
	if r == 0 {
		r = 0 // no "-0"
	}
	return strconv.AppendFloat(b, r, 'f', -1, 64)
}

func appendTime(b []byte, ns int64) []byte {
	b = append(b, '"')
	b = time.Unix(0, ns).UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendString writes s as a JSON string. Input ids are validated UTF-8;
// anything else is replaced with U+FFFD rather than emitting invalid JSON.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
