package webhook

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pulsehq/pulse/rules"
)

// A transition whose event time is more than max_age behind the wall clock
// (a catch-up, a replay of history) is not notified, only counted; a recent
// one is. Without max_age, age does not matter.
func TestTransitionsOlderThanMaxAgeAreNotNotified(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		wall := time.Date(2026, 11, 20, 18, 0, 0, 0, time.UTC)
		at := func(tr rules.Transition, ago time.Duration) rules.Transition {
			tr.Ts = wall.Add(-ago).UnixNano()
			return tr
		}
		old := at(transition("old", "gone_dark", rules.PhaseFiring, rules.SeverityHigh, "li"), 7*time.Hour)
		fresh := at(transition("fresh", "gone_dark", rules.PhaseFiring, rules.SeverityHigh, "li"), 5*time.Hour)
		oldResolved := at(transition("fresh", "churn_risk", rules.PhaseResolved, rules.SeverityHigh, "li"), 30*time.Hour)

		var local localNet
		rcv := local.receiver()
		var c counter
		s := newSink(t, Config{Client: local.client(), MaxAge: 6 * time.Hour, Now: func() time.Time { return wall }, Counted: c.count,
			Notifiers: []rules.Notifier{notifier("g", "webhook", rcv.URL, func(n *rules.Notifier) { n.RepeatInterval = time.Millisecond })}})
		write(s, old, fresh, oldResolved)
		reqs := rcv.waitFor(t, 1)
		eventually(t, "the old ones counted", func() bool { return c.get("too_old") == 2 })
		idle(time.Second) // reminder ticks: an old alert gets none either
		for _, r := range rcv.got() {
			if !strings.Contains(string(r.body), `"account_id":"fresh","rule":"gone_dark"`) {
				t.Fatalf("notified: %s", r.body)
			}
		}
		if !strings.Contains(string(reqs[0].body), `"account_id":"fresh"`) || c.get("sent") < 1 {
			t.Fatalf("the recent transition was not sent: %s", reqs[0].body)
		}

		rcv2 := local.receiver()
		all := newSink(t, Config{Client: local.client(), Now: func() time.Time { return wall }, Notifiers: []rules.Notifier{notifier("g", "webhook", rcv2.URL, nil)}})
		write(all, old, fresh, oldResolved)
		rcv2.waitFor(t, 3)
	})
}
