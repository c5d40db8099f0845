package web

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
)

// The portfolio test's stream and rules (engine/testdata/portfolio; the
// engine's TestPortfolioOfAHandMadeStream works every figure out by hand),
// evaluated at portfolioAt.
var portfolioAt = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

func loadRulesFile(t *testing.T, path string) *rules.Ruleset {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Load(path, data, rules.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// portfolioServer serves the portfolio test's accounts from three real
// partitions, replayed up to portfolioAt.
func portfolioServer(t *testing.T, options ...func(*Server)) (*httptest.Server, *partitions) {
	t.Helper()
	rs := loadRulesFile(t, "../../engine/testdata/portfolio/rules.yaml")
	src := &partitions{rs: rs, now: func() time.Time { return portfolioAt.Add(time.Minute) }}
	for i := range 3 {
		src.parts = append(src.parts, engine.NewPartition(int32(i), rs, engine.Config{}))
	}
	data, err := os.ReadFile("../../engine/testdata/portfolio/events.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var d engine.Decoder
	var ev engine.Event
	for _, l := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		if r := d.Decode(l, &ev); r != engine.ReasonOK {
			t.Fatalf("%s: %s", l, r)
		}
		if r := src.parts[engine.PartitionOf(ev.Account, 3)].Apply(&ev, 0); r != engine.ReasonOK {
			t.Fatalf("%s: %s", l, r)
		}
	}
	for _, p := range src.parts {
		p.AdvanceTo(portfolioAt.UnixNano())
		p.EvaluateAll()
	}
	s := &Server{View: src, Now: src.now}
	for _, o := range options {
		o(s)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts, src
}

// Preview implements Previewer over the partitions: each one's preview,
// added up, as stream.Consumer does on the partitions' goroutines.
func (p *partitions) Preview(ctx context.Context, candidate *rules.Ruleset) (*engine.Preview, error) {
	if p.previewErr != nil {
		return nil, p.previewErr
	}
	var sum *engine.Preview
	for _, part := range p.parts {
		pv, err := part.Preview(ctx, p.rs, candidate)
		if err != nil {
			return nil, err
		}
		if sum == nil {
			sum = pv
		} else {
			sum.Add(pv)
		}
	}
	return sum, nil
}

// GET /api/portfolio answers the figures of the engine's hand-worked
// example (testdata/portfolio.json; see TestPortfolioOfAHandMadeStream
// for how each is worked out), with the staleness of every answer.
func TestPortfolioAPI(t *testing.T) {
	ts, _ := portfolioServer(t)
	code, h, body := get(t, ts.URL+"/api/portfolio")
	want, err := os.ReadFile("testdata/portfolio.json")
	if err != nil {
		t.Fatal(err)
	}
	if code != 200 || body != string(want) {
		t.Fatalf("%d\n%s\nwant\n%s", code, body, want)
	}
	if h.Get("Content-Type") != "application/json" || h.Get("X-Pulse-Snapshot-Ages") != "0=0.000,1=0.000,2=0.000" {
		t.Errorf("headers %v", h)
	}
	// The ranking cut to the two most at stake, the counts whole.
	_, _, body = get(t, ts.URL+"/api/portfolio?renewals=2")
	var pf struct {
		Renewals struct {
			Due    int `json:"due"`
			Ranked []struct {
				ID string `json:"account_id"`
			} `json:"ranked"`
		} `json:"renewals"`
	}
	if err := json.Unmarshal([]byte(body), &pf); err != nil || pf.Renewals.Due != 5 || len(pf.Renewals.Ranked) != 2 || pf.Renewals.Ranked[1].ID != "a2" {
		t.Errorf("renewals=2: %+v %v", pf.Renewals, err)
	}
	if code, _, _ := get(t, ts.URL+"/api/portfolio?renewals=-1"); code != 400 {
		t.Errorf("renewals=-1: %d", code)
	}
}

// The portfolio page shows the same figures: the headline cards, the
// tables by grade, segment and CSM, and the renewals ranked.
func TestPortfolioPage(t *testing.T) {
	ts, _ := portfolioServer(t)
	code, h, page := get(t, ts.URL+"/portfolio")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") || h.Get("X-Pulse-Snapshot-Age") == "" {
		t.Fatalf("%d %v", code, h)
	}
	for _, want := range []string{
		"as of <b>2026-11-20 00:00:00 UTC</b>",
		`<b>6</b><small>$185,000 ARR · 1 without ARR</small>`,
		`<b>66.7%</b><small>4 active on ≥ 4 of the last 7 days</small>`,
		`<b>40.0%</b><small>2 of 5 graded accounts</small>`,
		`<b>$160,000</b><small>red $100,000 · high-severity risk alert $60,000</small>`,
		`<b>85.1%</b><small>GRR 79.4%</small>`,
		`<b>20.0%</b><small>1 of 5 renewals</small>`,
		`<tr class="grade-row" data-grade="red"><td><a class="grade red" href="/?grade=red">red</a></td><td class="num">2</td><td class="num">$100,000</td><td class="num">1</td><td class="num">50.0%</td></tr>`,
		`<tr class="group" data-name="sam"><td><a href="/?csm=sam">sam</a></td>`,
		`<td class="num">3</td><td class="num">58.5%</td><td class="num">57.4%</td><td class="num">33.3%</td></tr>`,
		`<span class="muted">(none)</span>`,
		"5 accounts, $175,000 ARR",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	var ranked []string
	for _, m := range regexp.MustCompile(`<tr class="renewal" data-account="([^"]+)">`).FindAllStringSubmatch(page, -1) {
		ranked = append(ranked, m[1])
	}
	if strings.Join(ranked, " ") != "a1 a2 a3 a6 a4" {
		t.Errorf("renewals ranked %v, want a1 a2 a3 a6 a4", ranked)
	}
	if _, _, list := get(t, ts.URL+"/"); !strings.Contains(list, `<a href="/portfolio">portfolio</a>`) {
		t.Error("the status page does not link to the portfolio")
	}
}
