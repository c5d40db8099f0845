package engine

import (
	"fmt"
	"testing"
	"time"

	"github.com/pulsehq/pulse/engine/synth"
)

// A probe sees an account's metrics and factor points as a replay that
// ends at the probe's time does, and taking probes changes nothing the
// replay outputs.
func TestProbesSeeThePast(t *testing.T) {
	rs := exampleRules(t)
	end := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	g := synth.New(synth.Options{Accounts: 30, Days: 20, Seed: 9, End: end})
	var lines [][]byte
	for d := range g.Days() {
		g.Day(d, func(l []byte) { lines = append(lines, append([]byte(nil), l...)) })
	}
	var list []Probe
	for i, a := range g.Accounts() {
		if i%3 == 0 {
			// Between events, on a midnight, and after the end.
			at := end.AddDate(0, 0, -15).Add(time.Duration(i) * 37 * time.Minute)
			list = append(list, Probe{a.ID, at.UnixNano()}, Probe{a.ID, end.AddDate(0, 0, -3).UnixNano()},
				Probe{a.ID, end.AddDate(0, 0, 1).UnixNano()})
		}
	}
	list = append(list, Probe{"nobody", end.AddDate(0, 0, -5).UnixNano()})
	got := make([]string, len(list))
	seen := make([]int, len(list))
	replay := func(at int64, probe bool) *Replayer {
		r := NewReplayer(rs, Config{}, 4, at, 0)
		if probe {
			r.SetProbes(list, func(i int, s *AccountState) {
				seen[i]++
				if s != nil {
					got[i] = explanation(s)
				}
			})
		}
		for i, l := range lines {
			r.Line(i+1, l)
		}
		r.Finish()
		return r
	}
	probed, plain := replay(0, true), replay(0, false)
	if a, b := transitionsJSON(probed.Transitions()), transitionsJSON(plain.Transitions()); a != b {
		t.Errorf("probes changed the transitions:\n%s", firstDiff(a, b))
	}
	if a, b := statesJSON(probed), statesJSON(plain); a != b {
		t.Errorf("probes changed the states:\n%s", firstDiff(a, b))
	}
	for i, pr := range list {
		if seen[i] != 1 {
			t.Fatalf("probe %d taken %d times", i, seen[i])
		}
		if pr.AccountID == "nobody" || pr.At > end.UnixNano() {
			if got[i] != "" {
				t.Errorf("probe %v: got a state", pr)
			}
			continue
		}
		r := replay(pr.At, false)
		want := ""
		r.EachState(func(s *AccountState) {
			if s.AccountID == pr.AccountID {
				want = explanation(s)
			}
		})
		if got[i] != want {
			t.Errorf("probe of %s at %s:\n got %s\nwant %s", pr.AccountID, time.Unix(0, pr.At).UTC(), got[i], want)
		}
	}
}

// explanation is what a probe is for: the scorecard, the factors with
// their metric values and points, and the depth.
func explanation(s *AccountState) string {
	return fmt.Sprintf("%s %v %v", s.Scorecard, s.Factors, s.Depth)
}

func statesJSON(r *Replayer) string {
	var b []byte
	r.EachState(func(s *AccountState) {
		b = s.AppendJSON(b)
		b = append(b, '\n')
	})
	return string(b)
}
