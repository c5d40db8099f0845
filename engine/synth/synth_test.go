package synth

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

var end = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

func collect(opts Options) [][]byte {
	g := New(opts)
	var out [][]byte
	for d := range g.Days() {
		g.Day(d, func(l []byte) { out = append(out, bytes.Clone(l)) })
	}
	return out
}

func TestStreamIsValidOrderedAndDeterministic(t *testing.T) {
	opts := Options{Accounts: 40, Days: 10, Seed: 5, End: end}
	a, b := collect(opts), collect(opts)
	if len(a) < 1000 || len(a) != len(b) {
		t.Fatalf("%d and %d events", len(a), len(b))
	}
	var prev time.Time
	types := map[string]int{}
	for i, l := range a {
		if !bytes.Equal(l, b[i]) {
			t.Fatalf("event %d differs between two runs", i)
		}
		var ev struct {
			Ts      time.Time `json:"ts"`
			Account string    `json:"account_id"`
			Type    string    `json:"type"`
		}
		if err := json.Unmarshal(l, &ev); err != nil {
			t.Fatalf("event %d is not JSON: %v: %s", i, err, l)
		}
		if ev.Ts.Before(prev) {
			t.Fatalf("event %d goes back in time: %s", i, l)
		}
		if !ev.Ts.Before(end) || ev.Ts.Before(end.AddDate(0, 0, -10)) {
			t.Fatalf("event %d outside the period: %s", i, l)
		}
		prev = ev.Ts
		types[ev.Type]++
	}
	for _, typ := range []string{"login", "feature", "session", "api", "ticket_opened", "ticket_resolved", "account", "contract", "touch"} {
		if types[typ] == 0 {
			t.Errorf("no %s events: %v", typ, types)
		}
	}
}

func TestWeekendsAreQuiet(t *testing.T) {
	g := New(Options{Accounts: 30, Days: 14, Seed: 2, End: end})
	perDay := make([]int, g.Days())
	for d := range g.Days() {
		g.Day(d, func(l []byte) {
			if bytes.Contains(l, []byte(`"type":"login"`)) {
				perDay[d]++
			}
		})
	}
	start := end.AddDate(0, 0, -14)
	var weekday, weekend int
	for d, n := range perDay {
		switch start.AddDate(0, 0, d).Weekday() {
		case time.Saturday, time.Sunday:
			weekend += n
		default:
			weekday += n
		}
	}
	if weekend*5 > weekday { // 4 weekend days vs 10 weekdays, at a sixth of the rate
		t.Fatalf("weekend logins %d vs weekday %d", weekend, weekday)
	}
}

func TestArchetypeMix(t *testing.T) {
	seen := map[Archetype]int{}
	for i := range 2000 {
		seen[ArchetypeOf(1, i)]++
	}
	for a := range NumArchetypes {
		share := float64(seen[Archetype(a)]) / 2000 * 100
		if share < float64(archetypeMix[a])-3 || share > float64(archetypeMix[a])+3 {
			t.Errorf("%s: %.1f%%, want about %d%%", Archetype(a), share, archetypeMix[a])
		}
	}
}

// Over a season the customer-success team's events appear too: renewals
// with their outcomes and ARR, and a champion leaving.
func TestRenewalsAndStakeholders(t *testing.T) {
	outcomes := map[string]int{}
	stakeholders := 0
	for _, l := range collect(Options{Accounts: 120, Days: 100, Seed: 3, End: end}) {
		var ev struct {
			Type      string   `json:"type"`
			Outcome   string   `json:"outcome"`
			ARRBefore *float64 `json:"arr_before"`
			ARRAfter  *float64 `json:"arr_after"`
		}
		if err := json.Unmarshal(l, &ev); err != nil {
			t.Fatal(err)
		}
		switch ev.Type {
		case "renewal":
			if ev.ARRBefore == nil || ev.ARRAfter == nil || *ev.ARRBefore <= 0 {
				t.Fatalf("renewal without ARR: %s", l)
			}
			outcomes[ev.Outcome]++
		case "stakeholder":
			stakeholders++
		}
	}
	if outcomes["renewed"] == 0 || outcomes["expanded"] == 0 || stakeholders == 0 {
		t.Fatalf("outcomes %v, %d stakeholder changes", outcomes, stakeholders)
	}
}
