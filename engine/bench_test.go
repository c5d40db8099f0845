package engine

import (
	"fmt"
	"runtime"

	"github.com/cespare/xxhash/v2"
	"os"
	"testing"
	"time"

	"github.com/pulsehq/pulse/engine/synth"
	"github.com/pulsehq/pulse/rules"
)

// benchLines returns a generated stream of about n events, as JSONL lines.
func benchLines(b *testing.B, accounts, days int) [][]byte {
	b.Helper()
	g := synth.New(synth.Options{Accounts: accounts, Days: days, Seed: 7, End: time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)})
	var lines [][]byte
	for d := range g.Days() {
		g.Day(d, func(l []byte) { lines = append(lines, append([]byte(nil), l...)) })
	}
	return lines
}

func exampleRules(tb testing.TB) *rules.Ruleset { return loadRules(tb, "../deploy/rules/example.yaml") }

// fixedRules is the model shipped before the health model v2, kept for
// tests of the engine's mechanics whose expectations must not move with
// the shipped model.
func fixedRules(tb testing.TB) *rules.Ruleset { return loadRules(tb, "testdata/rules-v1.yaml") }

func loadRules(tb testing.TB, path string) *rules.Ruleset {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	rs, err := rules.Load(path, data, rules.LoadOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	return rs
}

func BenchmarkDecode(b *testing.B) {
	lines := benchLines(b, 50, 3)
	var d Decoder
	var ev Event
	size := 0
	for _, l := range lines {
		size += len(l)
	}
	b.SetBytes(int64(size / len(lines)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if r := d.Decode(lines[i%len(lines)], &ev); r != ReasonOK {
			b.Fatal(r)
		}
	}
}

// BenchmarkReplay measures decode + apply + throttled evaluation, per event.
func BenchmarkReplay(b *testing.B) {
	for _, size := range []struct {
		name           string
		accounts, days int
	}{{"accounts=200/days=30", 200, 30}} {
		b.Run(size.name, func(b *testing.B) {
			lines := benchLines(b, size.accounts, size.days)
			rs := exampleRules(b)
			b.ReportAllocs()
			b.ResetTimer()
			n := 0
			for b.Loop() {
				r := NewReplayer(rs, Config{}, 8, 0, 0)
				for i, l := range lines {
					r.Line(i+1, l)
				}
				n += len(lines)
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// benchAccount is an account of 20 users active over the last weeks.
func benchAccount(b *testing.B, p *Partition) *account {
	var d Decoder
	var ev Event
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	for k := 30; k >= 0; k-- {
		for u := range 20 {
			ts := day.AddDate(0, 0, -k).Add(time.Duration(9*60+u) * time.Minute).Format(time.RFC3339)
			for _, l := range []string{
				fmt.Sprintf(`{"ts":%q,"account_id":"acme","type":"login","user_id":"u%d","platform":"web"}`, ts, u),
				fmt.Sprintf(`{"ts":%q,"account_id":"acme","type":"feature","user_id":"u%d","module":"%s"}`, ts, u, synth.Modules[u%7]),
				fmt.Sprintf(`{"ts":%q,"account_id":"acme","type":"session","user_id":"u%d","duration_s":600}`, ts, u),
			} {
				if r := d.Decode([]byte(l), &ev); r != ReasonOK {
					b.Fatal(r, l)
				}
				p.Apply(&ev, 0)
			}
		}
	}
	return p.accounts[xxhash.Sum64String("acme")]
}

func BenchmarkMetrics(b *testing.B) {
	p := NewPartition(0, exampleRules(b), Config{})
	a := benchAccount(b, p)
	b.ReportAllocs()
	for b.Loop() {
		a.metrics(p.clock, &p.classes, &p.values)
	}
}

// BenchmarkEvaluate measures one evaluation: metrics, score, grade and
// every alert of the example rules.
func BenchmarkEvaluate(b *testing.B) {
	p := NewPartition(0, exampleRules(b), Config{})
	a := benchAccount(b, p)
	b.ReportAllocs()
	for b.Loop() {
		p.evaluate(a, p.clock)
	}
}

// BenchmarkApply measures decode + apply of a realistic stream with
// evaluation switched off (intervals longer than the stream), against the
// same stream with SPEC §4's throttled evaluation in BenchmarkReplay.
func BenchmarkApply(b *testing.B) {
	lines := benchLines(b, 200, 30)
	rs := exampleRules(b)
	off := Config{EvalInterval: 1 << 62, SweepInterval: 1 << 62}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		r := NewReplayer(rs, off, 8, 0, 0)
		for i, l := range lines {
			r.Line(i+1, l)
		}
		n += len(lines)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkAccountMemory reports the heap held per account of 20 users
// with 30 days of activity (target: ≤ 2 KB), over 20,000 such accounts.
func BenchmarkAccountMemory(b *testing.B) {
	const accounts = 20000
	for b.Loop() {
		p := NewPartition(0, exampleRules(b), Config{EvalInterval: 1 << 62, SweepInterval: 1 << 62})
		var d Decoder
		var ev Event
		var line []byte
		day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for k := 30; k >= 0; k -= 3 {
			ts := day.AddDate(0, 0, -k).Format(time.RFC3339)
			for a := range accounts {
				for u := range 20 {
					line = fmt.Appendf(line[:0], `{"ts":%q,"account_id":"account-%06d","type":"feature","user_id":"user-%d@example.com","module":"%s","platform":"web"}`, ts, a, u, synth.Modules[(a+u+k)%7])
					d.Decode(line, &ev)
					p.Apply(&ev, 0)
				}
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/accounts, "bytes/account")
		runtime.KeepAlive(p)
	}
}

// BenchmarkApplySteadyState is one decode + apply per op on warmed-up
// accounts, evaluation throttled as SPEC §4 says: it must report 0 allocs/op.
func BenchmarkApplySteadyState(b *testing.B) {
	lines := benchLines(b, 200, 30)
	p := NewPartition(0, exampleRules(b), Config{})
	var d Decoder
	var ev Event
	for _, l := range lines {
		d.Decode(l, &ev)
		p.Apply(&ev, 0)
	}
	// Replay the last day again: every account and user already exists.
	lastDay := lines[len(lines)*29/30:]
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		d.Decode(lastDay[i%len(lastDay)], &ev)
		p.Apply(&ev, 0)
		i++
	}
}

// BenchmarkLimitsMemory reports the heap that max_accounts and
// max_users_per_account bound: an account created by a single event, and
// one more user in one account.
func BenchmarkLimitsMemory(b *testing.B) {
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	var d Decoder
	var ev Event
	apply := func(p *Partition, line []byte) {
		if r := d.Decode(line, &ev); r != ReasonOK {
			b.Fatal(r)
		}
		if r := p.Apply(&ev, 0); r != ReasonOK {
			b.Fatal(r)
		}
	}
	const n = 100_000
	for b.Loop() {
		before := heap()
		p := NewPartition(0, fixedRules(b), Config{MaxUsers: n + 1})
		for i := range n {
			apply(p, fmt.Appendf(nil, `{"ts":"2026-11-20T09:00:00Z","account_id":"acct-%07d","type":"login","user_id":"u"}`, i))
		}
		accounts := heap()
		for i := range n {
			apply(p, fmt.Appendf(nil, `{"ts":"2026-11-20T09:00:00Z","account_id":"acct-0000000","type":"login","user_id":"user-%07d"}`, i))
		}
		users := heap()
		b.ReportMetric(float64(accounts-before)/n, "B/account")
		b.ReportMetric(float64(users-accounts)/n, "B/user")
		runtime.KeepAlive(p)
	}
}
