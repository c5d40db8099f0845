package synth

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// readDay reads day d through OpenDay, checking that the reader's times
// are the lines' and never go back; it returns the lines and how many
// runs were spilled.
func readDay(t *testing.T, g *Generator, d int) (lines [][]byte, spilled int) {
	t.Helper()
	r, err := g.OpenDay(d)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	prev := int64(0)
	for r.Next() {
		l := r.Line()
		if r.Time() < prev {
			t.Fatalf("day %d, event %d goes back in time: %s", d, len(lines), l)
		}
		prev = r.Time()
		if want := time.Unix(0, r.Time()).UTC().Format("2006-01-02T15:04:05.000Z"); !bytes.HasPrefix(l, []byte(`{"ts":"`+want+`"`)) {
			t.Fatalf("Time() is %s for %s", want, l)
		}
		lines = append(lines, bytes.Clone(l))
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	return lines, r.spilled
}

// referenceDay is day d the simplest way: every account's events in one
// buffer, sorted stably by ts.
func referenceDay(opts Options, d int) [][]byte {
	g := New(opts)
	g.startDay(d)
	g.c = &chunk{}
	for i := range opts.Accounts {
		g.accountDay(i, d)
	}
	all := slices.Clone(g.c.lines)
	slices.SortStableFunc(all, func(x, y line) int {
		switch {
		case x.ts < y.ts:
			return -1
		case x.ts > y.ts:
			return 1
		}
		return 0
	})
	var out [][]byte
	for _, l := range all {
		out = append(out, bytes.Clone(g.c.buf[l.start:l.end]))
	}
	return out
}

// The stream is the same whatever the chunk size — one chunk in memory,
// a few spilled runs, or a run per account — and equals a plain sort of
// the whole day.
func TestChunkingDoesNotChangeTheStream(t *testing.T) {
	opts := Options{Accounts: 60, Days: 3, Seed: 11, End: end, TempDir: t.TempDir()}
	for d := range opts.Days {
		want := referenceDay(opts, d)
		if len(want) < 1000 {
			t.Fatalf("day %d: only %d events", d, len(want))
		}
		for _, chunkBytes := range []int{0, 200 << 10, 16 << 10, 1} {
			opts := opts
			opts.ChunkBytes = chunkBytes
			got, spilled := readDay(t, New(opts), d)
			if chunkBytes == 0 && spilled != 0 || chunkBytes != 0 && spilled == 0 {
				t.Errorf("chunk of %d bytes: %d runs spilled", chunkBytes, spilled)
			}
			if chunkBytes == 1 && spilled < opts.Accounts/2 { // accounts with no events that day have no run
				t.Errorf("chunk of 1 byte: %d runs spilled, want about one per account", spilled)
			}
			if len(got) != len(want) {
				t.Fatalf("day %d, chunk of %d bytes: %d events, want %d", d, chunkBytes, len(got), len(want))
			}
			for i := range got {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("day %d, chunk of %d bytes: event %d is\n%s\nwant\n%s", d, chunkBytes, i, got[i], want[i])
				}
			}
		}
	}
}

// Many lines share a millisecond across accounts at scale; ties must
// break the same way in memory and across runs. A day where every account
// has events at the same instants shows it.
func TestEqualTimesKeepAccountOrder(t *testing.T) {
	opts := Options{Accounts: 30, Days: 1, Seed: 1, End: end, TempDir: t.TempDir(), ChunkBytes: 1}
	got, _ := readDay(t, New(opts), 0)
	// Day 0 opens with every account's profile at 00:30 and contract at
	// 00:36, in account order.
	var profiles []string
	for _, l := range got {
		if bytes.Contains(l, []byte(`"type":"account"`)) {
			var ev struct {
				Account string `json:"account_id"`
			}
			if err := json.Unmarshal(l, &ev); err != nil {
				t.Fatal(err)
			}
			profiles = append(profiles, ev.Account)
		}
	}
	g := New(opts)
	for i, a := range g.Accounts() {
		if i >= len(profiles) || profiles[i] != a.ID {
			t.Fatalf("profiles in order %v", profiles)
		}
	}
}

// Spilled runs live in the temporary directory only while a day is read
// (and, where the system allows, not even then): nothing is left after
// Close, after an early Close, or after an error.
func TestSpilledRunsAreRemoved(t *testing.T) {
	dir := t.TempDir()
	empty := func(when string) {
		t.Helper()
		left, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(left) > 0 {
			t.Fatalf("%s: %d files left in the temporary directory, e.g. %s", when, len(left), left[0].Name())
		}
	}
	g := New(Options{Accounts: 50, Days: 2, Seed: 4, End: end, TempDir: dir, ChunkBytes: 8 << 10})
	if err := g.Day(0, func([]byte) {}); err != nil {
		t.Fatal(err)
	}
	empty("after a day")

	r, err := g.OpenDay(1)
	if err != nil {
		t.Fatal(err)
	}
	if r.spilled < 10 {
		t.Fatalf("only %d runs spilled", r.spilled)
	}
	if runtime.GOOS != "windows" {
		empty("while a day is read (runs are unlinked once open)")
	}
	for range 100 {
		r.Next()
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	empty("after an early Close")
	if r.Next() {
		t.Fatal("Next after Close")
	}

	g = New(Options{Accounts: 50, Days: 1, Seed: 4, End: end, TempDir: filepath.Join(dir, "missing"), ChunkBytes: 8 << 10})
	if err := g.Day(0, func([]byte) {}); err == nil || !strings.Contains(err.Error(), "TMPDIR") {
		t.Fatalf("a missing temporary directory: %v", err)
	}
	empty("after an error")
}

// liveHeap is the heap's live bytes after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// The generator keeps no accounts: creating one for many accounts costs
// nothing, and a day keeps one chunk, not the day, in memory.
func TestMemoryDoesNotGrowWithTheStream(t *testing.T) {
	before := liveHeap()
	g := New(Options{Accounts: 200_000, Days: 2, Seed: 1, End: end})
	if grown := int64(liveHeap()) - int64(before); grown > 64<<10 {
		t.Errorf("New for 200,000 accounts holds %d bytes", grown)
	}
	runtime.KeepAlive(g)

	const chunk = 256 << 10
	g = New(Options{Accounts: 3000, Days: 2, Seed: 1, End: end, ChunkBytes: chunk, TempDir: t.TempDir()})
	before = liveHeap()
	size := 0
	if err := g.Day(1, func(l []byte) { size += len(l) }); err != nil {
		t.Fatal(err)
	}
	if size < 40*chunk {
		t.Fatalf("the day has %d bytes: too small for the test", size)
	}
	// What stays is the chunk with its index and the spill's write and
	// read buffers, kept for the next day: a few chunks' worth, not the day.
	if grown := int64(liveHeap()) - int64(before); grown > 6*chunk {
		t.Errorf("after a day of %d bytes with chunks of %d, the generator holds %d bytes", size, chunk, grown)
	}
	runtime.KeepAlive(g)
}

// Live plays the same lines as Day, in batches of bounded size, whether or
// not the days are spilled.
func TestLivePlaysTheStream(t *testing.T) {
	for _, chunkBytes := range []int{0, 4 << 10} {
		opts := Options{Accounts: 200, Days: 3, Seed: 6, End: end, ChunkBytes: chunkBytes, TempDir: t.TempDir()}
		var want [][]byte
		g := New(opts)
		for d := range g.Days() {
			lines, _ := readDay(t, g, d)
			want = append(want, lines...)
		}
		// A clock a day past the period that runs a minute per reading:
		// at 1000× the simulation moves 16 h per reading.
		wall := end.AddDate(0, 0, 1)
		now := func() time.Time { wall = wall.Add(time.Minute); return wall }
		var got [][]byte
		err := New(opts).Live(context.Background(), 1000, now, func(lines [][]byte) error {
			if len(lines) > maxLiveBatch {
				t.Fatalf("a batch of %d lines", len(lines))
			}
			for _, l := range lines {
				got = append(got, bytes.Clone(l))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("Live played %d lines, Day %d", len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("line %d: Live %s, Day %s", i, got[i], want[i])
			}
		}
	}
}

func TestTimestampsAreRFC3339Millis(t *testing.T) {
	g := New(Options{Accounts: 1, Days: 3, End: end})
	g.startDay(1)
	for _, off := range []time.Duration{0, 1, time.Millisecond - 1, time.Millisecond, 9*time.Hour + 59*time.Minute + 59*time.Second + 999*time.Millisecond,
		23*time.Hour + 59*time.Minute + 59*time.Second + 999999999, -1, 24 * time.Hour} {
		ts := g.dayNs + int64(off)
		want := time.Unix(0, ts).UTC().Format("2006-01-02T15:04:05.000Z")
		if got := string(g.appendTs(nil, ts)); got != want {
			t.Errorf("offset %v: %s, want %s", off, got, want)
		}
	}
}

// Tickets carry no state from day to day, yet behave as tickets do: each
// is resolved at most once, after it was opened and within its maximum
// age; ticket-heavy accounts build a backlog, silent ones stop opening.
func TestTicketsResolveOnceAfterOpening(t *testing.T) {
	const days = 70
	opts := Options{Accounts: 300, Days: days, Seed: 8, End: end}
	g := New(opts)
	opened := map[string]time.Time{}
	resolved := map[string]bool{}
	openAtEnd := map[string]int{}
	lastOpened := map[string]time.Time{}
	for d := range days {
		if err := g.Day(d, func(l []byte) {
			if !bytes.Contains(l, []byte(`"type":"ticket_`)) {
				return
			}
			var ev struct {
				Ts      time.Time `json:"ts"`
				Account string    `json:"account_id"`
				Type    string    `json:"type"`
				Ticket  string    `json:"ticket_id"`
			}
			if err := json.Unmarshal(l, &ev); err != nil {
				t.Fatal(err)
			}
			switch ev.Type {
			case "ticket_opened":
				if _, dup := opened[ev.Ticket]; dup {
					t.Fatalf("opened twice: %s", l)
				}
				opened[ev.Ticket] = ev.Ts
				openAtEnd[ev.Account]++
				lastOpened[ev.Account] = ev.Ts
			case "ticket_resolved":
				at, ok := opened[ev.Ticket]
				if !ok || resolved[ev.Ticket] || !ev.Ts.After(at) || ev.Ts.Sub(at) > (maxHeavyTicketAge+1)*24*time.Hour {
					t.Fatalf("resolved before it was opened, twice, or too late (opened %v): %s", at, l)
				}
				resolved[ev.Ticket] = true
				openAtEnd[ev.Account]--
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	silentEnd := end.AddDate(0, 0, -40)
	var heavy, heavyBacklog int
	for i, a := range g.Accounts() {
		switch a.Archetype {
		case TicketHeavy:
			heavy++
			if openAtEnd[a.ID] >= 5 {
				heavyBacklog++
			}
		case Silent:
			if lastOpened[a.ID].After(silentEnd) {
				t.Errorf("silent account %d opened a ticket at %v", i, lastOpened[a.ID])
			}
		default:
			if openAtEnd[a.ID] > 5 {
				t.Errorf("%s account %d ends with %d open tickets", a.Archetype, i, openAtEnd[a.ID])
			}
		}
	}
	if heavy == 0 || heavyBacklog != heavy {
		t.Errorf("%d of %d ticket-heavy accounts end with a backlog", heavyBacklog, heavy)
	}
}
