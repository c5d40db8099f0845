package main

// What Grafana and its ClickHouse plugin do to a query before it reaches
// the server, for TestDashboardQueries: Grafana's variables, its interval
// arithmetic, and the plugin's macros (as in the plugin's pkg/macros).

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// scope fills in Grafana's variables and, for SQL, the ClickHouse
// plugin's macros.
type scope struct {
	from, to     time.Time
	interval     time.Duration // $__interval
	rateInterval time.Duration // $__rate_interval (Prometheus)
	vars         map[string]string
	sql          bool // ClickHouse: its macros expand after the variables
}

// grafanaVariable matches Grafana's variable syntaxes: $name, [[name]],
// [[name:format]], ${name}, ${name:format}.
var grafanaVariableRE = regexp.MustCompile(`\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?::([^}]+))?\}`)

// expand substitutes the variables (Grafana's frontend does, with the
// data source's formatting: the ClickHouse plugin puts a value in as it
// is), then expands the macros (the plugin's backend does). Anything
// unknown is an error, not left in the query.
func (s scope) expand(query string) (string, error) {
	builtin := map[string]string{
		"__interval":      grafanaDuration(s.interval),
		"__interval_ms":   strconv.FormatInt(s.interval.Milliseconds(), 10),
		"__rate_interval": grafanaDuration(s.rateInterval),
		"__range":         grafanaDuration(s.to.Sub(s.from)),
		"__range_s":       strconv.FormatInt(int64(s.to.Sub(s.from).Seconds()), 10),
		"__range_ms":      strconv.FormatInt(s.to.Sub(s.from).Milliseconds(), 10),
		"__from":          strconv.FormatInt(s.from.UnixMilli(), 10),
		"__to":            strconv.FormatInt(s.to.UnixMilli(), 10),
	}
	var errs []error
	out := grafanaVariableRE.ReplaceAllStringFunc(query, func(m string) string {
		sub := grafanaVariableRE.FindStringSubmatch(m)
		name, format := sub[1]+sub[2]+sub[4], sub[3]+sub[5]
		if v, ok := builtin[name]; ok {
			return v
		}
		v, ok := s.vars[name]
		if !ok {
			if s.sql && strings.HasPrefix(name, "__") && sub[1] != "" {
				return m // a macro: the plugin's
			}
			errs = append(errs, fmt.Errorf("unknown variable %s", m))
			return m
		}
		switch format {
		case "", "raw", "text":
			return v
		case "sqlstring":
			return "'" + strings.ReplaceAll(v, "'", "''") + "'"
		case "singlequote":
			return "'" + strings.ReplaceAll(v, "'", `\'`) + "'"
		case "doublequote":
			return `"` + strings.ReplaceAll(v, `"`, `\"`) + `"`
		}
		errs = append(errs, fmt.Errorf("unsupported variable format %s", m))
		return m
	})
	if len(errs) > 0 {
		return "", errors.Join(errs...)
	}
	if !s.sql {
		return out, nil
	}
	return s.macros(out)
}

// macros expands the ClickHouse plugin's macros as its pkg/macros does.
func (s scope) macros(sql string) (string, error) {
	dateTime := func(t time.Time) string { return fmt.Sprintf("toDateTime(%d)", t.Unix()) }
	dateTime64 := func(t time.Time) string { return fmt.Sprintf("fromUnixTimestamp64Milli(%d)", t.UnixMilli()) }
	date := func(t time.Time) string { return fmt.Sprintf("toDate('%s')", t.UTC().Format("2006-01-02")) }
	seconds := max(int64(s.interval.Seconds()), 1)
	between := func(col, from, to string) string { return fmt.Sprintf("%s >= %s AND %s <= %s", col, from, col, to) }
	macros := map[string]struct {
		args int // -1: none, no parentheses
		fn   func(args []string) (string, error)
	}{
		"fromTime":       {-1, func([]string) (string, error) { return dateTime(s.from), nil }},
		"toTime":         {-1, func([]string) (string, error) { return dateTime(s.to), nil }},
		"fromTime_ms":    {-1, func([]string) (string, error) { return dateTime64(s.from), nil }},
		"toTime_ms":      {-1, func([]string) (string, error) { return dateTime64(s.to), nil }},
		"interval_s":     {-1, func([]string) (string, error) { return strconv.FormatInt(seconds, 10), nil }},
		"timeFilter":     {1, func(a []string) (string, error) { return between(a[0], dateTime(s.from), dateTime(s.to)), nil }},
		"timeFilter_ms":  {1, func(a []string) (string, error) { return between(a[0], dateTime64(s.from), dateTime64(s.to)), nil }},
		"dateFilter":     {1, func(a []string) (string, error) { return between(a[0], date(s.from), date(s.to)), nil }},
		"timeFrom":       {1, func(a []string) (string, error) { return a[0] + " >= " + dateTime(s.from), nil }},
		"timeTo":         {1, func(a []string) (string, error) { return a[0] + " <= " + dateTime(s.to), nil }},
		"dateTimeFilter": {2, func(a []string) (string, error) { return s.dateTimeFilter(a, date, dateTime, between), nil }},
		"dt":             {2, func(a []string) (string, error) { return s.dateTimeFilter(a, date, dateTime, between), nil }},
		"timeInterval": {1, func(a []string) (string, error) {
			return fmt.Sprintf("toStartOfInterval(toDateTime(%s), INTERVAL %d second)", a[0], seconds), nil
		}},
		"timeInterval_ms": {1, func(a []string) (string, error) {
			return fmt.Sprintf("toStartOfInterval(toDateTime64(%s, 3), INTERVAL %d millisecond)", a[0], max(s.interval.Milliseconds(), 1)), nil
		}},
		"timeGroup": {2, func(a []string) (string, error) {
			d, err := time.ParseDuration(strings.Trim(a[1], `'"`))
			if err != nil || d < time.Second {
				return "", fmt.Errorf("$__timeGroup: bad interval %s", a[1])
			}
			return fmt.Sprintf("toStartOfInterval(toDateTime(%s), INTERVAL %d second)", a[0], int64(d.Seconds())), nil
		}},
	}
	var b strings.Builder
	for {
		i := strings.Index(sql, "$__")
		if i < 0 {
			b.WriteString(sql)
			return b.String(), nil
		}
		b.WriteString(sql[:i])
		j := i + 3
		for j < len(sql) && (sql[j] == '_' || sql[j] >= 'a' && sql[j] <= 'z' || sql[j] >= 'A' && sql[j] <= 'Z' || sql[j] >= '0' && sql[j] <= '9') {
			j++
		}
		name := sql[i+3 : j]
		m, ok := macros[name]
		if !ok {
			return "", fmt.Errorf("unknown macro $__%s", name)
		}
		var args []string
		if m.args >= 0 {
			if j >= len(sql) || sql[j] != '(' {
				return "", fmt.Errorf("$__%s needs (arguments)", name)
			}
			depth, start := 0, j+1
			for k := j; k < len(sql); k++ {
				switch sql[k] {
				case '(':
					depth++
				case ')':
					depth--
				case ',':
					if depth == 1 {
						args = append(args, strings.TrimSpace(sql[start:k]))
						start = k + 1
					}
				}
				if depth == 0 {
					args = append(args, strings.TrimSpace(sql[start:k]))
					j = k + 1
					break
				}
			}
			if depth != 0 {
				return "", fmt.Errorf("$__%s: unclosed parenthesis", name)
			}
			if len(args) != m.args {
				return "", fmt.Errorf("$__%s takes %d arguments, has %d", name, m.args, len(args))
			}
		}
		v, err := m.fn(args)
		if err != nil {
			return "", err
		}
		b.WriteString(v)
		sql = sql[j:]
	}
}

func (s scope) dateTimeFilter(a []string, date, dateTime func(time.Time) string, between func(col, from, to string) string) string {
	return "(" + between(a[0], date(s.from), date(s.to)) + ") AND (" + between(a[1], dateTime(s.from), dateTime(s.to)) + ")"
}

// grafanaTime resolves a dashboard time: now, or now-<n><unit>.
func grafanaTime(s string, now time.Time) (time.Time, error) {
	if s == "now" {
		return now, nil
	}
	rest, ok := strings.CutPrefix(s, "now-")
	if !ok || len(rest) < 2 {
		return time.Time{}, fmt.Errorf("unsupported time %q", s)
	}
	n, err := strconv.Atoi(rest[:len(rest)-1])
	if err != nil {
		return time.Time{}, fmt.Errorf("unsupported time %q", s)
	}
	unit := map[byte]time.Duration{'s': time.Second, 'm': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour, 'w': 7 * 24 * time.Hour}[rest[len(rest)-1]]
	if unit == 0 {
		return time.Time{}, fmt.Errorf("unsupported time %q", s)
	}
	return now.Add(-time.Duration(n) * unit), nil
}

// roundInterval rounds a raw interval to one of Grafana's (its
// rangeutil.roundInterval).
func roundInterval(d time.Duration) time.Duration {
	ms := d.Milliseconds()
	for _, r := range []struct{ below, to int64 }{
		{15, 10}, {35, 20}, {75, 50}, {150, 100}, {350, 200}, {750, 500}, {1500, 1000}, {3500, 2000}, {7500, 5000},
		{12500, 10000}, {17500, 15000}, {25000, 20000}, {45000, 30000}, {90000, 60000}, {210000, 120000},
		{450000, 300000}, {750000, 600000}, {1050000, 900000}, {1500000, 1200000}, {2700000, 1800000},
		{5400000, 3600000}, {9000000, 7200000}, {16200000, 10800000}, {32400000, 21600000}, {86400000, 43200000},
		{604800000, 86400000}, {1814400000, 604800000}, {3628800000, 2592000000},
	} {
		if ms < r.below {
			return time.Duration(r.to) * time.Millisecond
		}
	}
	return 365 * 24 * time.Hour
}

// grafanaDuration writes d in the largest whole unit, as Grafana writes
// intervals (30m, 15s, 1d), which PromQL reads too.
func grafanaDuration(d time.Duration) string {
	ms := d.Milliseconds()
	for _, u := range []struct {
		ms   int64
		unit string
	}{{3600000, "h"}, {60000, "m"}, {1000, "s"}} {
		if ms%u.ms == 0 && ms >= u.ms {
			return strconv.FormatInt(ms/u.ms, 10) + u.unit
		}
	}
	return strconv.FormatInt(ms, 10) + "ms"
}
