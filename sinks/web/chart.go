package web

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
)

// The charts are inline SVG drawn by the templates from the geometry
// below: no script, no external asset. Scores run 0–100 bottom to top,
// days left to right; a null score breaks the line.

// dot is one point of a chart, coloured by its grade.
type dot struct {
	X, Y  string
	Grade string
	Title string
}

// spark is the small 30-day score line of the status page's rows.
type spark struct {
	W, H  int
	Lines []string // polyline points, one per run of non-null scores
	Last  *dot
	Title string
}

func newSpark(h []engine.HistoryPoint, days int) spark {
	sp := spark{W: 90, H: 22}
	if len(h) == 0 {
		sp.Title = "no daily score recorded yet"
		return sp
	}
	last := h[len(h)-1].Day
	first := last - int64(days-1)*nsPerDay
	for len(h) > 0 && h[0].Day < first {
		h = h[1:]
	}
	x := func(day int64) float64 {
		return 2 + float64(day-first)/float64(nsPerDay)*float64(sp.W-4)/float64(max(days-1, 1))
	}
	y := func(score float64) float64 { return 2 + (100-clamp(score))*float64(sp.H-4)/100 }
	sp.Lines = lines(h, x, y)
	var from, to float64 = rules.Null, rules.Null
	for _, p := range h {
		if rules.IsFinite(p.Score) {
			if !rules.IsFinite(from) {
				from = p.Score
			}
			to = p.Score
		}
	}
	if p := h[len(h)-1]; rules.IsFinite(p.Score) {
		sp.Last = &dot{X: px(x(p.Day)), Y: px(y(p.Score)), Grade: p.Grade.String()}
	}
	sp.Title = fmt.Sprintf("daily score, last %d days: %s → %s", days, score0(from), score0(to))
	return sp
}

// chart is the score history of the account view.
type chart struct {
	W, H                     int
	Left, Right, Top, Bottom float64
	PlotW                    float64 // Right − Left
	Bands                    []band
	Grid                     []tick
	XTicks                   []tick
	Lines                    []string
	Dots                     []dot
	Now                      *dot // the current score, after the last midnight
	Points                   int  // recorded midnights
}

// band is a grade's zone of the chart, between its grade lines.
type band struct {
	Y, H  string
	Grade string
}

// tick is a labelled position on an axis.
type tick struct {
	At    string // y for the score axis, x for the day axis
	Label string
}

const nsPerDay = int64(24 * time.Hour)

func newChart(h []engine.HistoryPoint, st *engine.AccountState, g rules.Grades) chart {
	c := chart{W: 900, H: 240, Left: 36, Right: 884, Top: 10, Bottom: 210, PlotW: 848, Points: len(h)}
	y := func(score float64) float64 { return c.Bottom - clamp(score)*(c.Bottom-c.Top)/100 }
	for _, b := range []struct {
		lo, hi float64
		grade  string
	}{{0, g.Yellow, rules.GradeRed.String()}, {g.Yellow, g.Green, rules.GradeYellow.String()}, {g.Green, 100, rules.GradeGreen.String()}} {
		if b.hi > b.lo {
			c.Bands = append(c.Bands, band{Y: px(y(b.hi)), H: px(y(b.lo) - y(b.hi)), Grade: b.grade})
		}
	}
	for _, v := range []float64{0, g.Yellow, g.Green, 100} {
		c.Grid = append(c.Grid, tick{At: px(y(v)), Label: strconv.FormatFloat(v, 'f', -1, 64)})
	}
	if len(h) == 0 {
		return c
	}
	first, last := h[0].Day, h[len(h)-1].Day
	end := last
	showNow := rules.IsFinite(st.Score) && st.Ts > last
	if showNow {
		end = st.Ts
	}
	x := func(t int64) float64 {
		if end == first {
			return (c.Left + c.Right) / 2
		}
		return c.Left + 8 + float64(t-first)*(c.Right-c.Left-16)/float64(end-first)
	}
	c.Lines = lines(h, x, y)
	for _, p := range h {
		day := time.Unix(0, p.Day).UTC().Format("2006-01-02")
		d := dot{X: px(x(p.Day)), Y: px(y(p.Score)), Grade: p.Grade.String(), Title: day + ": " + score0(p.Score) + " (" + p.Grade.String() + ")"}
		if !rules.IsFinite(p.Score) {
			// On the axis, hollow: no score (warm-up, or no factor had data).
			d.Y, d.Grade, d.Title = px(c.Bottom), rules.GradeNone.String(), day+": no score"
		}
		c.Dots = append(c.Dots, d)
	}
	if showNow {
		c.Now = &dot{X: px(x(st.Ts)), Y: px(y(st.Score)), Grade: st.Grade.String(),
			Title: "now (" + time.Unix(0, st.Ts).UTC().Format("2006-01-02 15:04") + "): " + score0(st.Score)}
	}
	// Dates: the first and last midnight, and up to three between.
	n := int((last-first)/nsPerDay) + 1
	step := max(1, (n+3)/4)
	for i := 0; i < n; i += step {
		t := first + int64(i)*nsPerDay
		if i > 0 && n-1-i < step/2 {
			continue // too close to the last one
		}
		c.XTicks = append(c.XTicks, tick{At: px(x(t)), Label: time.Unix(0, t).UTC().Format("Jan 2")})
	}
	if n > 1 {
		c.XTicks = append(c.XTicks, tick{At: px(x(last)), Label: time.Unix(0, last).UTC().Format("Jan 2")})
	}
	return c
}

// lines returns SVG polyline points for each run of non-null scores.
func lines(h []engine.HistoryPoint, x func(int64) float64, y func(float64) float64) []string {
	var out []string
	var b strings.Builder
	flush := func() {
		if strings.Contains(b.String(), " ") { // two points at least
			out = append(out, b.String())
		}
		b.Reset()
	}
	for _, p := range h {
		if !rules.IsFinite(p.Score) {
			flush()
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(px(x(p.Day)) + "," + px(y(p.Score)))
	}
	flush()
	return out
}

func clamp(score float64) float64 {
	if !rules.IsFinite(score) {
		return 0
	}
	return min(max(score, 0), 100)
}

func px(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

func score0(v float64) string {
	if !rules.IsFinite(v) {
		return "—"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}
