package engine

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulsehq/pulse/rules"
)

// backfill is a busy partition's history: 6 accounts, each active every
// 20 minutes from Nov 1 to Nov 10 (so no account is ever dark).
func backfill() []string {
	var lines []string
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for t := start; t.Before(start.AddDate(0, 0, 9)); t = t.Add(20 * time.Minute) {
		for a := range 6 {
			lines = append(lines, fmt.Sprintf(`{"ts":%q,"account_id":"acct-%d","type":"login","user_id":"u%d"}`,
				t.Add(time.Duration(a)*time.Minute).Format(time.RFC3339), a, a))
		}
	}
	return lines
}

// replayLines replays lines on one partition with fixedRules and returns
// the transitions (as text), the final states and the events held back.
func replayLines(t *testing.T, lines []string, checkpointAt int) (transitions []string, states []byte, outliers uint64) {
	t.Helper()
	rs := fixedRules(t)
	p := NewPartition(0, rs, Config{})
	var d Decoder
	var ev Event
	collect := func() {
		for _, tr := range p.TakeTransitions() {
			transitions = append(transitions, fmt.Sprintf("%s %s %s %s", time.Unix(0, tr.Ts).UTC().Format(time.RFC3339), tr.AccountID, tr.Rule, tr.State))
		}
		outliers += p.TakeOutliers()
	}
	for i, l := range lines {
		if i == checkpointAt {
			restored, _, err := RestorePartition(p.AppendCheckpoint(nil, int64(i)), rs, Config{})
			if err != nil {
				t.Fatal(err)
			}
			if restored.Held() != p.Held() {
				t.Fatalf("checkpoint kept %d held events of %d", restored.Held(), p.Held())
			}
			p = restored
		}
		if r := d.Decode([]byte(l), &ev); r != ReasonOK {
			t.Fatalf("%s: %s", l, r)
		}
		if r := p.Apply(&ev, 0); r != ReasonOK {
			t.Fatalf("%s: %s", l, r)
		}
		collect()
	}
	p.AdvanceTo(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	p.EvaluateAll()
	collect()
	p.States(func(s *AccountState) { states = append(s.AppendJSON(states), '\n') })
	return transitions, states, outliers
}

func without(lines []string, account string) []string {
	return slices.DeleteFunc(slices.Clone(lines), func(l string) bool { return strings.Contains(l, `"account_id":"`+account+`"`) })
}

func about(transitions []string, account string) []string {
	return slices.DeleteFunc(slices.Clone(transitions), func(tr string) bool { return !strings.Contains(tr, " "+account+" ") })
}

// One current-time event produced into a backfill (a live event amid a
// catch-up) must not move the partition's clock a month ahead: before the
// watermark, every backfilled account went dark at once and fired false
// gone_dark alerts. The event waits until the clock reaches it.
func TestALiveEventAmidABackfillDoesNotMoveTheClock(t *testing.T) {
	lines := backfill()
	live := `{"ts":"2026-11-30T12:00:00Z","account_id":"live","type":"login","user_id":"kcat"}`
	withLive := slices.Insert(slices.Clone(lines), len(lines)/4, live)

	got, _, outliers := replayLines(t, withLive, -1)
	want, _, _ := replayLines(t, lines, -1)
	for a := range 6 {
		id := fmt.Sprintf("acct-%d", a)
		if g, w := about(got, id), about(want, id); !slices.Equal(g, w) {
			t.Fatalf("%s: the live event changed its transitions:\n%s\nwant\n%s", id, strings.Join(g, "\n"), strings.Join(w, "\n"))
		}
	}
	for _, tr := range got {
		if strings.Contains(tr, "gone_dark firing") && !strings.Contains(tr, "2026-11-2") {
			t.Fatalf("false absence during the backfill: %s", tr)
		}
	}
	if outliers != 1 {
		t.Fatalf("%d events held back, want 1", outliers)
	}
	_, states, _ := replayLines(t, withLive, -1)
	if !bytes.Contains(states, []byte(`"account_id":"live"`)) {
		t.Fatal("the live event was lost")
	}
}

// A producer whose clock runs a day ahead, its events interleaved with the
// partition's others, must not drag the clock either: its events wait
// until the clock reaches their time, and the other accounts' transitions
// are those of a stream without it.
func TestAProducerSkewedADayAheadDoesNotDragTheClock(t *testing.T) {
	lines := backfill()
	var skewed []string
	for i, l := range lines {
		skewed = append(skewed, l)
		if i%5 == 4 {
			ts := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i/6) * 20 * time.Minute).Add(24 * time.Hour)
			skewed = append(skewed, fmt.Sprintf(`{"ts":%q,"account_id":"skewed","type":"login","user_id":"s"}`, ts.Format(time.RFC3339)))
		}
	}
	got, states, outliers := replayLines(t, skewed, len(skewed)/2)
	want, _, _ := replayLines(t, lines, -1)
	for a := range 6 {
		id := fmt.Sprintf("acct-%d", a)
		if g, w := about(got, id), about(want, id); !slices.Equal(g, w) {
			t.Fatalf("%s: the skewed producer changed its transitions:\n%s\nwant\n%s", id, strings.Join(g, "\n"), strings.Join(w, "\n"))
		}
	}
	if outliers < 100 {
		t.Fatalf("%d events held back, want every skewed one", outliers)
	}
	// Every skewed event was applied in the end (none lost).
	if !bytes.Contains(states, []byte(`"account_id":"skewed"`)) {
		t.Fatal("the skewed account is missing")
	}
	// The same with a checkpoint taken and restored halfway: nothing held
	// is lost, and the outcome is the same.
	again, statesAgain, _ := replayLines(t, skewed, -1)
	if !slices.Equal(again, got) || !bytes.Equal(statesAgain, states) {
		t.Fatal("a restore from a checkpoint with held events changed the outcome")
	}
}

// A real jump (a partition silent for a day, a backfill that caught up)
// comes as a run of events: three in a row move the clock, and absence
// rules see the time that passed.
func TestARunOfEventsConfirmsAJump(t *testing.T) {
	lines := []string{
		`{"ts":"2026-11-01T10:00:00Z","account_id":"a","type":"login","user_id":"u"}`,
		`{"ts":"2026-11-20T10:00:00Z","account_id":"b","type":"login","user_id":"u"}`,
		`{"ts":"2026-11-20T10:01:00Z","account_id":"c","type":"login","user_id":"u"}`,
		`{"ts":"2026-11-20T10:02:00Z","account_id":"b","type":"login","user_id":"u"}`,
	}
	rs := fixedRules(t)
	p := NewPartition(0, rs, Config{})
	var d Decoder
	var ev Event
	for i, l := range lines {
		d.Decode([]byte(l), &ev)
		p.Apply(&ev, 0)
		if want := []int{0, 1, 2, 0}[i]; p.Held() != want {
			t.Fatalf("after event %d: %d held, want %d", i+1, p.Held(), want)
		}
	}
	if got := time.Unix(0, p.Clock()).UTC(); !got.Equal(time.Date(2026, 11, 20, 10, 2, 0, 0, time.UTC)) {
		t.Fatalf("clock %v after three events in a row weeks ahead: want the last", got)
	}
	d.Decode([]byte(`{"ts":"2026-11-25T10:00:00Z","account_id":"d","type":"login","user_id":"u"}`), &ev)
	p.Apply(&ev, 0)
	var fired []string
	for _, tr := range p.TakeTransitions() {
		if tr.Rule == "gone_dark" && tr.State == rules.PhaseFiring {
			fired = append(fired, tr.AccountID)
		}
	}
	if !slices.Contains(fired, "a") {
		t.Fatalf("a, silent since Nov 1, is not dark at Nov 20: %v", fired)
	}
	if p.Held() != 1 {
		t.Fatalf("%d held, want the lone event five days on", p.Held())
	}
}
