package engine

// Timestamps are parsed by hand because time.Parse allocates for numeric
// offsets (it builds a FixedZone) and this runs once per event.

const (
	nsPerSecond = int64(1e9)
	nsPerDay    = 86400 * nsPerSecond
)

// parseRFC3339 parses YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM) into Unix
// nanoseconds. 't', 'z' and a space separator are accepted as RFC 3339
// allows; fractions beyond nanoseconds are truncated.
func parseRFC3339(b []byte) (int64, bool) {
	if len(b) < 20 {
		return 0, false
	}
	date, ok := parseDate(b[:10])
	if !ok || (b[10] != 'T' && b[10] != 't' && b[10] != ' ') || b[13] != ':' || b[16] != ':' {
		return 0, false
	}
	h, ok1 := digits2(b[11:13])
	m, ok2 := digits2(b[14:16])
	s, ok3 := digits2(b[17:19])
	if !ok1 || !ok2 || !ok3 || h > 23 || m > 59 || s > 59 {
		return 0, false
	}
	ns := date + int64(h*3600+m*60+s)*nsPerSecond
	rest := b[19:]
	if rest[0] == '.' {
		i, frac, scale := 1, int64(0), int64(1e8)
		for ; i < len(rest) && rest[i] >= '0' && rest[i] <= '9'; i++ {
			frac += int64(rest[i]-'0') * scale
			scale /= 10
		}
		if i == 1 {
			return 0, false
		}
		ns += frac
		rest = rest[i:]
	}
	switch {
	case len(rest) == 1 && (rest[0] == 'Z' || rest[0] == 'z'):
		return ns, true
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		oh, ok1 := digits2(rest[1:3])
		om, ok2 := digits2(rest[4:6])
		if !ok1 || !ok2 || oh > 23 || om > 59 {
			return 0, false
		}
		off := int64(oh*3600+om*60) * nsPerSecond
		if rest[0] == '+' {
			return ns - off, true
		}
		return ns + off, true
	}
	return 0, false
}

// parseDate parses YYYY-MM-DD into Unix nanoseconds at 00:00 UTC.
func parseDate(b []byte) (int64, bool) {
	if len(b) != 10 || b[4] != '-' || b[7] != '-' {
		return 0, false
	}
	y1, ok1 := digits2(b[0:2])
	y2, ok2 := digits2(b[2:4])
	mo, ok3 := digits2(b[5:7])
	d, ok4 := digits2(b[8:10])
	y := y1*100 + y2
	if !ok1 || !ok2 || !ok3 || !ok4 || mo < 1 || mo > 12 || d < 1 || d > daysIn(y, mo) {
		return 0, false
	}
	return daysFromCivil(y, mo, d) * nsPerDay, true
}

func digits2(b []byte) (int, bool) {
	if b[0] < '0' || b[0] > '9' || b[1] < '0' || b[1] > '9' {
		return 0, false
	}
	return int(b[0]-'0')*10 + int(b[1]-'0'), true
}

func daysIn(y, m int) int {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil returns the days since 1970-01-01 of a proleptic Gregorian
// date (Howard Hinnant's algorithm).
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era*146097 + doe - 719468)
}

// dayOf is the day bucket of t: bucket k holds ((k−1)·24h, k·24h], so a
// window of N days ending at a UTC midnight T is exactly the N buckets
// ending with dayOf(T) (SPEC §2's half-open windows).
func dayOf(t int64) int32 {
	if t <= 0 {
		return int32(t / nsPerDay)
	}
	return int32((t + nsPerDay - 1) / nsPerDay)
}
