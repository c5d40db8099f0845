package engine

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pulsehq/pulse/rules"
)

var nov20 = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

func replayOutput(t testing.TB, rs *rules.Ruleset, lines [][]byte, partitions int, feed func(r *Replayer)) []byte {
	t.Helper()
	r := NewReplayer(rs, Config{}, partitions, 0, 0)
	feed(r)
	r.Finish()
	var out []byte
	r.EachState(func(s *AccountState) { out = append(s.AppendJSON(out), '\n') })
	for _, tr := range r.Transitions() {
		out = AppendTransitionJSON(out, &tr)
		out = append(out, '\n')
	}
	return out
}

// A daemon receives each partition's events in fetched batches, and the
// partitions run concurrently, so batch boundaries and the interleaving of
// partitions vary from run to run. Neither may change the outputs.
func TestBatchBoundariesDoNotChangeOutput(t *testing.T) {
	lines := benchLines(&testing.B{}, 60, 40)
	rs := exampleRules(t)
	const parts = 4
	var streams [parts][][]byte
	var d Decoder
	var ev Event
	for _, l := range lines {
		d.Decode(l, &ev)
		p := PartitionOf(ev.Account, parts)
		streams[p] = append(streams[p], l)
	}
	run := func(batch int, roundRobin bool) []byte {
		r := NewReplayer(rs, Config{}, parts, 0, 0)
		var pos [parts]int
		feed := func(p int) bool {
			end := min(pos[p]+batch, len(streams[p]))
			for _, l := range streams[p][pos[p]:end] {
				r.Line(0, l)
			}
			pos[p] = end
			return end < len(streams[p])
		}
		if roundRobin {
			for more := true; more; {
				more = false
				for p := range parts {
					more = feed(p) || more
				}
			}
		} else {
			for p := parts - 1; p >= 0; p-- {
				for feed(p) {
				}
			}
		}
		r.Finish()
		var out []byte
		r.EachState(func(s *AccountState) { out = append(s.AppendJSON(out), '\n') })
		for _, tr := range r.Transitions() {
			out = append(AppendTransitionJSON(out, &tr), '\n')
		}
		return out
	}
	want := run(len(lines), false)
	for _, c := range []struct {
		batch      int
		roundRobin bool
	}{{1, true}, {7, true}, {500, true}, {3, false}} {
		if got := run(c.batch, c.roundRobin); !bytes.Equal(got, want) {
			t.Fatalf("batches of %d (round robin %v) changed the output", c.batch, c.roundRobin)
		}
	}
	if bytes.Count(want, []byte(`"state":"firing"`)) == 0 {
		t.Fatal("the stream raised no alert: the comparison proves little")
	}
}

// Running the same stream twice gives byte-identical output.
func TestReplayIsDeterministic(t *testing.T) {
	lines := benchLines(&testing.B{}, 40, 35)
	rs := exampleRules(t)
	feed := func(r *Replayer) {
		for i, l := range lines {
			r.Line(i+1, l)
		}
	}
	a := replayOutput(t, rs, lines, 8, feed)
	b := replayOutput(t, rs, lines, 8, feed)
	if !bytes.Equal(a, b) || len(a) == 0 {
		t.Fatal("two replays of one stream differ")
	}
}

func TestLateAndFutureEvents(t *testing.T) {
	rs := exampleRules(t)
	p := NewPartition(0, rs, Config{})
	var d Decoder
	var ev Event
	apply := func(line string, wall time.Time) Reason {
		if r := d.Decode([]byte(line), &ev); r != ReasonOK {
			t.Fatalf("%s: %s", line, r)
		}
		return p.Apply(&ev, wall.UnixNano())
	}
	wall := nov20.Add(time.Hour)
	if r := apply(`{"ts":"2026-11-20T00:30:00Z","account_id":"a","type":"login","user_id":"u"}`, wall); r != ReasonOK {
		t.Fatal(r)
	}
	if r := apply(`{"ts":"2026-11-20T01:06:00Z","account_id":"a","type":"login","user_id":"u"}`, wall); r != ReasonFuture {
		t.Fatalf("6 minutes ahead of the wall clock: %s, want future", r)
	}
	if r := apply(`{"ts":"2026-11-20T01:04:00Z","account_id":"a","type":"login","user_id":"u"}`, wall); r != ReasonOK {
		t.Fatalf("4 minutes ahead: %s, want ok", r)
	}
	if r := apply(`{"ts":"2026-08-22T01:03:59Z","account_id":"a","type":"login","user_id":"old"}`, wall); r != ReasonLate {
		t.Fatalf("older than clock − 90d: %s, want late", r)
	}
	if r := apply(`{"ts":"2026-08-22T01:04:00Z","account_id":"a","type":"login","user_id":"old"}`, wall); r != ReasonOK {
		t.Fatalf("exactly at the horizon: %s, want ok", r)
	}
	s, _ := p.State("a")
	if s.Metrics[rules.ActivatedUsers] != 2 {
		t.Fatalf("activated_users = %v: the late event was applied or the in-horizon one lost", s.Metrics[rules.ActivatedUsers])
	}
}

// Accounts idle for longer than the retention are evicted at a sweep, and
// their firing alerts resolved first.
func TestEvictionAfterRetention(t *testing.T) {
	rs := exampleRules(t)
	p := NewPartition(0, rs, Config{})
	var d Decoder
	var ev Event
	for _, line := range []string{
		`{"ts":"2026-06-01T00:00:00Z","account_id":"old","type":"login","user_id":"u"}`,
		`{"ts":"2026-07-01T00:00:00Z","account_id":"new","type":"login","user_id":"u"}`,
	} {
		d.Decode([]byte(line), &ev)
		p.Apply(&ev, 0)
	}
	p.AdvanceTo(nov20.AddDate(0, 0, -80).UnixNano()) // 2026-09-01: old is 92 days idle
	if _, ok := p.State("old"); ok {
		t.Fatal("old account not evicted")
	}
	if _, ok := p.State("new"); !ok {
		t.Fatal("new account evicted too early")
	}
	var resolved int
	for _, tr := range p.TakeTransitions() {
		if tr.AccountID == "old" && tr.State == rules.PhaseResolved {
			resolved++
		}
	}
	if resolved == 0 {
		t.Fatal("evicted account's firing alerts (gone_dark) were not resolved")
	}
}

func TestApplyDoesNotAllocate(t *testing.T) {
	rs := exampleRules(t)
	p := NewPartition(0, rs, Config{})
	var d Decoder
	var ev Event
	lines := make([][]byte, 0, 64)
	for u := range 20 {
		lines = append(lines, fmt.Appendf(nil, `{"ts":"2026-11-20T10:%02d:00Z","account_id":"acme","type":"feature","user_id":"u%d","module":"reports","platform":"web"}`, u, u))
	}
	for _, l := range lines { // warm up: the account and its users exist
		d.Decode(l, &ev)
		p.Apply(&ev, 0)
	}
	i := 0
	allocs := testing.AllocsPerRun(200, func() {
		d.Decode(lines[i%len(lines)], &ev)
		p.Apply(&ev, 0)
		i++
	})
	if allocs != 0 {
		t.Fatalf("decode + apply allocates %.2f times per event in steady state", allocs)
	}
}

func TestAccountStateJSON(t *testing.T) {
	s := AccountState{AccountID: "a\"b", Ts: nov20.UnixNano(), Score: rules.Null, Alerts: []string{"x"}}
	s.Attrs[rules.CSM] = "li"
	for i := range s.Metrics {
		s.Metrics[i] = rules.Null
	}
	s.Metrics[rules.DAU] = 1.0 / 3
	got := string(s.AppendJSON(nil))
	want := `{"account_id":"a\"b","ts":"2026-11-20T00:00:00Z","score":null,"grade":"none","depth":"none","attrs":{"csm":"li"},"metrics":{"dau":0.333333,"wau":null`
	if len(got) < len(want) || got[:len(want)] != want {
		t.Fatalf("got %s", got)
	}
}

// Score rows: one at the first evaluation, then on a grade, depth or score
// change of ScoreStep, or after ScoreInterval; none when switched off.
func TestScoreRows(t *testing.T) {
	rs := fixedRules(t)
	feed := func(cfg Config, lines ...string) []ScoreRow {
		cfg.MaxSkew = 24 * time.Hour // b's event, 2 h on, moves the clock at once
		p := NewPartition(0, rs, cfg)
		var d Decoder
		var ev Event
		for _, l := range lines {
			if r := d.Decode([]byte(l), &ev); r != ReasonOK {
				t.Fatal(r)
			}
			p.Apply(&ev, 0)
		}
		return p.TakeScores()
	}
	lines := []string{
		`{"ts":"2026-11-20T09:00:00Z","account_id":"a","type":"login","user_id":"u1"}`,
		`{"ts":"2026-11-20T09:05:00Z","account_id":"a","type":"login","user_id":"u1"}`, // same score: no row
		`{"ts":"2026-11-20T09:10:00Z","account_id":"a","type":"account","attrs":{"seats":4}}`,
		`{"ts":"2026-11-20T11:20:00Z","account_id":"b","type":"login","user_id":"x"}`, // sweeps at 10:00 and 11:00
	}
	if rows := feed(Config{}, lines...); len(rows) != 0 {
		t.Fatalf("%d rows with ScoreRows off", len(rows))
	}
	rows := feed(Config{ScoreRows: true}, lines...)
	var got []string
	for _, r := range rows {
		got = append(got, fmt.Sprintf("%s %s %s", r.AccountID, time.Unix(0, r.Ts).UTC().Format("15:04"), r.Grade))
	}
	// a: its first evaluation; then the seats cut the activation factor
	// (red); the 10:00 sweep changes nothing within the hour; the 11:00
	// sweep is past it. b: its first.
	if strings.Join(got, ", ") != "a 09:00 yellow, a 09:10 red, a 11:00 red, b 11:20 yellow" {
		t.Fatalf("rows: %v", got)
	}
	if last := rows[len(rows)-1]; last.Metrics[rules.DAU] != 1 || last.Attrs != ([rules.NumAttrs]string{}) {
		t.Fatalf("last row %+v", last)
	}
}

// Recycled score rows are reused for the next rows, which overwrite them.
func TestRecycleScores(t *testing.T) {
	p := NewPartition(0, exampleRules(t), Config{ScoreRows: true})
	var d Decoder
	var ev Event
	apply := func(l string) {
		if r := d.Decode([]byte(l), &ev); r != ReasonOK {
			t.Fatal(r)
		}
		p.Apply(&ev, 0)
	}
	apply(`{"ts":"2026-11-20T09:00:00Z","account_id":"a","type":"login","user_id":"u1"}`)
	first := p.TakeScores()
	if len(first) != 1 || first[0].AccountID != "a" {
		t.Fatalf("first rows %+v", first)
	}
	p.RecycleScores(first)
	apply(`{"ts":"2026-11-20T09:01:00Z","account_id":"b","type":"login","user_id":"u1"}`)
	second := p.TakeScores() // still in the buffer taken before the recycle
	apply(`{"ts":"2026-11-20T09:02:00Z","account_id":"c","type":"login","user_id":"u1"}`)
	third := p.TakeScores()
	if len(second) != 1 || second[0].AccountID != "b" || len(third) != 1 || third[0].AccountID != "c" {
		t.Fatalf("rows %+v then %+v", second, third)
	}
	if &third[0] != &first[:1][0] {
		t.Fatal("the recycled buffer was not reused")
	}
	if first[:1][0].AccountID != "c" {
		t.Fatal("reuse did not overwrite the old row")
	}
	// Taking nothing keeps the buffer: an idle partition flushes every
	// tick, and must not allocate a new one each time.
	p.RecycleScores(second)
	p.RecycleScores(third)
	if allocs := testing.AllocsPerRun(10, func() {
		if rows := p.TakeScores(); rows != nil {
			t.Fatalf("took %+v from an idle partition", rows)
		}
	}); allocs != 0 {
		t.Fatalf("an empty take allocated %v times", allocs)
	}
}

// Hostile producers cannot grow state without bound: past max_accounts a
// partition rejects events of new accounts, past max_users_per_account an
// account rejects events of new users (and NPS respondents); the accounts
// and users already kept go on as before.
func TestAccountAndUserLimits(t *testing.T) {
	p := NewPartition(0, fixedRules(t), Config{MaxAccounts: 2, MaxUsers: 3})
	var d Decoder
	var ev Event
	apply := func(line string) Reason {
		if r := d.Decode([]byte(line), &ev); r != ReasonOK {
			t.Fatal(r)
		}
		return p.Apply(&ev, 0)
	}
	ev1 := func(account, typ, user string) string {
		extra := ""
		if typ == "nps" {
			extra = `,"value":9`
		}
		return fmt.Sprintf(`{"ts":"2026-11-20T09:00:00Z","account_id":%q,"type":%q,"user_id":%q%s}`, account, typ, user, extra)
	}
	for _, c := range []struct {
		line string
		want Reason
	}{
		{ev1("a", "login", "u1"), ReasonOK},
		{ev1("b", "login", "u1"), ReasonOK},
		{ev1("c", "login", "u1"), ReasonAccountLimit},
		{ev1("a", "login", "u2"), ReasonOK},
		{ev1("a", "login", "u3"), ReasonOK},
		{ev1("a", "login", "u4"), ReasonUserLimit},
		{ev1("a", "login", "u1"), ReasonOK}, // a user already kept
		{ev1("b", "login", "u4"), ReasonOK}, // another account's users are its own
		{ev1("a", "nps", "u1"), ReasonOK},
		{ev1("a", "nps", "u2"), ReasonOK},
		{ev1("a", "nps", "u3"), ReasonOK},
		{ev1("a", "nps", "u9"), ReasonUserLimit},
		{ev1("a", "nps", "u2"), ReasonOK},
	} {
		if got := apply(c.line); got != c.want {
			t.Errorf("%s: %s, want %s", c.line, got, c.want)
		}
	}
	if p.Len() != 2 {
		t.Fatalf("%d accounts kept, want 2", p.Len())
	}
	st, _ := p.State("a")
	if st.Metrics[rules.ActivatedUsers] != 3 {
		t.Fatalf("activated users %v, want 3", st.Metrics[rules.ActivatedUsers])
	}
}
