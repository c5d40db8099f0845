package synth

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"iter"
	"math"
	"math/rand/v2"
	"strconv"
	"time"
)

// Archetype is the behaviour an account follows over the generated period.
type Archetype uint8

// The archetypes, each meant to raise one alert of the example rules
// (healthy raises none but opportunities near its renewal).
const (
	Healthy      Archetype = iota
	Declining              // logins fade linearly to ~10%; renewal near: churn_risk (and renewal_at_risk)
	SuddenDrop             // usage falls to ~8% for the last 10 days: usage_drop
	Dark                   // no user activity for the last 21 days: gone_dark
	Expanding              // seats 10 → 50 twenty days before the end, rollout, then stable: expansion
	Integration            // heavy API use that stops 8 days before the end: integration_stopped
	TicketHeavy            // many tickets, few resolved: support_backlog
	Silent                 // stopped opening tickets 40 days before the end: gone_silent
	Shelfware              // 40 seats bought, a handful ever used: low_adoption
	Underused              // four in ten seats used: underused_seats
	Shallow                // busy, but only the non-core modules: shallow_usage
	Stalled                // never leaves onboarding: stalled_onboarding (after 90 days)
	ChampionLost           // the champion left 20 days before the end: champion_left
	Crowded                // every seat in use: seats_full
	Surge                  // a new team triples usage in the last week: usage_surge
	Unreached              // no CSM contact since the first day: no_contact (after 60 days)
	Sliding                // core use, engagement and momentum slip in the last 30 days: score_falling

	NumArchetypes int = iota
)

var archetypeNames = [NumArchetypes]string{"healthy", "declining", "sudden_drop", "dark", "expanding", "integration",
	"ticket_heavy", "silent", "shelfware", "underused", "shallow", "stalled", "champion_lost", "crowded", "surge",
	"unreached", "sliding"}

func (a Archetype) String() string { return archetypeNames[a] }

// ExpectedAlert is the example-rules alert an archetype should raise ("" for
// healthy).
func (a Archetype) ExpectedAlert() string {
	return [NumArchetypes]string{"", "churn_risk", "usage_drop", "gone_dark", "expansion", "integration_stopped",
		"support_backlog", "gone_silent", "low_adoption", "underused_seats", "shallow_usage", "stalled_onboarding",
		"champion_left", "seats_full", "usage_surge", "no_contact", "score_falling"}[a]
}

// MinDays is the history an archetype needs before its alert can fire
// (the example rules wait for tenure where practice does).
func (a Archetype) MinDays() int {
	switch a {
	case Stalled:
		return 92
	case Unreached:
		return 62
	case Silent, Underused:
		return 46
	}
	return 31
}

// archetypeMix is the share of each archetype, in percent, by index; most
// accounts are healthy.
var archetypeMix = [NumArchetypes]int{41, 6, 4, 5, 4, 4, 4, 4, 3, 5, 3, 3, 3, 3, 3, 3, 3}

// ArchetypeOf returns the archetype of account i for a seed.
func ArchetypeOf(seed uint64, i int) Archetype {
	r := rand.New(rand.NewPCG(seed, uint64(i)*2654435761+1))
	n := r.IntN(100)
	for a, share := range archetypeMix {
		if n < share {
			return Archetype(a)
		}
		n -= share
	}
	return Healthy
}

// Modules is the module catalogue of the generated product, most used
// first; the example rules declare the same names.
var Modules = []string{"contacts", "checkin", "reports", "pipeline", "approvals", "daily_report", "custom_objects"}

var (
	csms       = []string{"li", "maria", "sam", "priya", "jonas", "aiko"}
	plans      = []string{"starter", "growth", "enterprise"}
	regions    = []string{"emea", "amer", "apac"}
	industries = []string{"logistics", "retail", "manufacturing", "software", "healthcare", "finance"}
	nameA      = []string{"acme", "globex", "initech", "umbrella", "stark", "wayne", "wonka", "tyrell", "cyberdyne", "hooli", "vandelay", "soylent", "oscorp", "gringotts", "monarch", "nakatomi"}
	nameB      = []string{"logistics", "foods", "labs", "systems", "retail", "health", "media", "energy", "capital", "motors"}
)

// Options configure a Generator.
type Options struct {
	Accounts int
	Days     int
	Seed     uint64
	// End is the end of the generated period (exclusive): the last day
	// generated is the UTC day before it.
	End time.Time
	// ChunkBytes bounds the bytes of event lines a day holds in memory: a
	// day larger than that is generated in chunks of accounts, each sorted
	// by time and spilled to a temporary file, and the files are merged
	// (see OpenDay). 0 means DefaultChunkBytes. It changes memory and
	// speed, never the stream.
	ChunkBytes int
	// TempDir is where spilled chunks go; "" means os.TempDir() ($TMPDIR).
	TempDir string
}

// DefaultChunkBytes is the default Options.ChunkBytes: a day's chunk, its
// index and the merge's read buffers then stay under about 64 MB.
const DefaultChunkBytes = 32 << 20

// maxChunkBytes keeps a chunk's offsets within uint32.
const maxChunkBytes = 1 << 30

// Account describes one generated account. It is a pure function of the
// seed, the period length and the account's index: the generator keeps no
// accounts, it describes each one again when it needs it.
type Account struct {
	ID        string
	Archetype Archetype
	Seats     int
	Segment   string
	// RenewalDay is the day of the period (0 = the first) the account's
	// contract came up for renewal, a year before the renewal date it has
	// at the end; -1 when that fell before the period. Outcome is how that
	// renewal ended ("" without one): its odds follow the archetype (see
	// renewalOdds). A churned account sends nothing after that day.
	RenewalDay int
	Outcome    string

	index       int
	users       []genUser
	region      int // hour offset of the working day
	apiPerDay   int
	ticketRate  float64
	modules     []float64 // cumulative weights over Modules
	renewalDays int       // days after the end
	touchEvery  int       // days between CSM touches
	arrPerSeat  float64
}

type genUser struct {
	id         int     // written as "u<id>"
	propensity float64 // chance of being active on a weekday
	platform   string
	joinDay    int // first day the user may be active
}

// Generator produces the event stream day by day. It holds no account:
// memory is bounded by Options.ChunkBytes whatever the number of accounts.
// A Generator is not safe for concurrent use.
type Generator struct {
	opts  Options
	start time.Time // 00:00 UTC of the first day

	acct Account // the account being generated, described again for each
	src  [4]rand.PCG
	rand [4]*rand.Rand // by salt, on src: see rng

	// The day being generated: the chunk events are written to, the day's
	// start and its "2006-01-02T" prefix for timestamps.
	c         *chunk
	dayNs     int64
	dayPrefix []byte

	// A closed day's buffers, for the next day.
	spare   *chunk
	spillW  *bufio.Writer
	readers []*bufio.Reader
}

// New returns a generator; the same options give the same stream.
func New(opts Options) *Generator {
	if opts.End.IsZero() {
		opts.End = time.Now().UTC().Truncate(24 * time.Hour)
	}
	if opts.ChunkBytes <= 0 {
		opts.ChunkBytes = DefaultChunkBytes
	}
	opts.ChunkBytes = min(opts.ChunkBytes, maxChunkBytes)
	return &Generator{opts: opts, start: opts.End.AddDate(0, 0, -opts.Days)}
}

// Account describes account i (0 ≤ i < Options.Accounts). Each call
// returns a new Account.
func (g *Generator) Account(i int) *Account {
	a := &Account{}
	g.describe(a, i)
	return a
}

// Accounts yields every account with its index, in index order, each
// described again (see Account).
func (g *Generator) Accounts() iter.Seq2[int, *Account] {
	return func(yield func(int, *Account) bool) {
		for i := range g.opts.Accounts {
			if !yield(i, g.Account(i)) {
				return
			}
		}
	}
}

// Days returns the number of days to generate.
func (g *Generator) Days() int { return g.opts.Days }

// rng returns the random numbers for (account i, day, salt). Each salt has
// one source, seeded again on each call rather than allocated: what it
// returns is valid until the next call with the same salt.
func (g *Generator) rng(i, day, salt int) *rand.Rand {
	if g.rand[salt] == nil {
		g.rand[salt] = rand.New(&g.src[salt])
	}
	g.src[salt].Seed(g.opts.Seed^uint64(salt)<<48, uint64(i)<<20|uint64(day))
	return g.rand[salt]
}

// describe fills a with account i, reusing its slices.
func (g *Generator) describe(a *Account, i int) {
	r := g.rng(i, 0xfffff, 1)
	*a = Account{index: i, Archetype: ArchetypeOf(g.opts.Seed, i), users: a.users[:0], modules: a.modules[:0]}
	a.ID = nameA[r.IntN(len(nameA))] + "-" + nameB[r.IntN(len(nameB))] + "-" + pad5(i)
	a.Seats = 10 + r.IntN(50)
	if r.IntN(3) == 0 {
		a.Seats = 8 + r.IntN(7) // micro accounts
	}
	switch a.Archetype {
	case Expanding:
		a.Seats = 10
	case Shelfware:
		a.Seats = 40
	case Underused, Unreached:
		a.Seats = max(a.Seats, 20) // normal or strategic: micro accounts are not on these rules
	}
	switch {
	case a.Seats < 15:
		a.Segment = "micro"
	case a.Seats < 40:
		a.Segment = "normal"
	default:
		a.Segment = "strategic"
	}
	a.region = []int{8, 13, 1}[r.IntN(3)]
	activated := int(float64(a.Seats) * (0.7 + 0.22*r.Float64()))
	activated = max(activated, 6) // small accounts still have a team
	switch a.Archetype {
	case Integration:
		activated = max(6, activated/2)
	case Shelfware:
		activated = 3 + r.IntN(4) // of 40 seats
	case Underused:
		activated = a.Seats * 4 / 10
	case Crowded:
		activated = a.Seats
	case Surge:
		activated = max(6, a.Seats/4)
	}
	for u := range activated {
		a.users = append(a.users, newUser(r, u, 0))
	}
	switch a.Archetype {
	case Expanding:
		// Forty more people join once the seats are bought.
		for u := range 40 {
			a.users = append(a.users, newUser(r, activated+u, g.opts.Days-20+r.IntN(5)))
		}
	case Surge:
		// A new team twice the size joins for the last six days.
		for u := range 2 * activated {
			a.users = append(a.users, newUser(r, activated+u, g.opts.Days-6))
		}
	}
	if a.Archetype == Integration || r.IntN(4) == 0 {
		a.apiPerDay = 300 + r.IntN(3000)
	}
	if a.Archetype == Integration {
		a.apiPerDay += 2000
	}
	a.ticketRate = 0.25
	if a.Archetype == TicketHeavy {
		a.ticketRate = 1.5
	}
	// Module weights: a skew over the catalogue, custom objects rare.
	w := 0.0
	for m := range Modules {
		x := 1 / math.Pow(float64(m+1), 0.8) * (0.5 + r.Float64())
		if Modules[m] == "custom_objects" && r.IntN(5) != 0 {
			x = 0
		}
		if a.Archetype == Shallow && coreModules[Modules[m]] {
			x = 0
		}
		w += x
		a.modules = append(a.modules, w)
	}
	for m := range a.modules {
		a.modules[m] /= w
	}
	a.renewalDays = 10 + r.IntN(350)
	if a.Archetype == Declining {
		a.renewalDays = 20 + r.IntN(60) // the renewal is what makes it urgent
	}
	a.touchEvery = 14 + r.IntN(21)
	a.arrPerSeat = []float64{300, 600, 1200}[r.IntN(3)]
	a.RenewalDay = g.opts.Days + a.renewalDays - 365
	if a.RenewalDay < 0 {
		a.RenewalDay = -1
	} else {
		a.Outcome = renewalOdds[a.Archetype].draw(r)
	}
}

// odds are the chances, in percent, of a renewal's outcomes; the rest is
// renewed.
type odds struct{ churned, contracted, expanded int }

// renewalOdds follow the archetypes: accounts that never adopted what
// they bought, or whose use is fading, churn or shrink at renewal far more
// often than healthy or growing ones. Some of these signs show long before
// the renewal (shelfware, underused, shallow, ticket-heavy, declining),
// others only in its last weeks (dark, sudden drop, champion lost): pulse
// tune finds which factors carry the warning.
var renewalOdds = [NumArchetypes]odds{
	Healthy:      {3, 5, 33},
	Declining:    {45, 20, 0},
	SuddenDrop:   {25, 15, 5},
	Dark:         {50, 10, 0},
	Expanding:    {2, 2, 60},
	Integration:  {15, 10, 5},
	TicketHeavy:  {30, 15, 0},
	Silent:       {12, 8, 5},
	Shelfware:    {45, 45, 0},
	Underused:    {15, 55, 0},
	Shallow:      {35, 15, 0},
	Stalled:      {40, 15, 0},
	ChampionLost: {30, 15, 0},
	Crowded:      {2, 2, 50},
	Surge:        {3, 3, 40},
	Unreached:    {20, 15, 5},
	Sliding:      {20, 15, 5},
}

func (o odds) draw(r *rand.Rand) string {
	switch x := r.IntN(100); {
	case x < o.churned:
		return "churned"
	case x < o.churned+o.contracted:
		return "contracted"
	case x < o.churned+o.contracted+o.expanded:
		return "expanded"
	}
	return "renewed"
}

// churnedBefore reports whether the account churned at a renewal before
// day d: it is gone.
func (a *Account) churnedBefore(d int) bool {
	return a.Outcome == "churned" && d > a.RenewalDay
}

// renewalDate is the account's next renewal as of day d: the renewal in
// the period until it has happened, then the one a year later.
func (g *Generator) renewalDate(a *Account, d int) string {
	if a.RenewalDay >= d {
		return g.start.AddDate(0, 0, a.RenewalDay).Format("2006-01-02")
	}
	return g.opts.End.AddDate(0, 0, a.renewalDays).Format("2006-01-02")
}

// pad5 formats i with at least five digits, as %05d.
func pad5(i int) string {
	var b [24]byte
	s := strconv.AppendInt(b[:0], int64(i), 10)
	if len(s) >= 5 {
		return string(s)
	}
	return "00000"[len(s):] + string(s)
}

// coreModules are the example rules' core modules.
var coreModules = map[string]bool{"pipeline": true, "reports": true, "approvals": true}

func newUser(r *rand.Rand, u, join int) genUser {
	platform := "web"
	switch x := r.IntN(100); {
	case x < 15:
		platform = "mobile"
	case x < 35:
		platform = "desktop"
	}
	return genUser{id: u, propensity: 0.55 + 0.4*r.Float64(), platform: platform, joinDay: join}
}

// fadeDays is how long before a renewal it ends in churn the account's
// users start drifting away.
const fadeDays = 120

// activity scales user activity on day d of n for the archetype, and
// for an account that churns at its renewal, fades it over the fadeDays
// before: to 30% on the day.
func (a *Account) activity(d, n int) float64 {
	scale := 1.0
	if a.Outcome == "churned" && d <= a.RenewalDay && a.RenewalDay-d < fadeDays {
		scale = 1 - 0.7*float64(fadeDays-(a.RenewalDay-d))/fadeDays
	}
	return scale * a.archetypeActivity(d, n)
}

func (a *Account) archetypeActivity(d, n int) float64 {
	switch a.Archetype {
	case Declining:
		return 1 - 0.9*float64(d)/float64(max(n-1, 1))
	case SuddenDrop:
		if d >= n-10 {
			return 0.08
		}
	case Dark:
		if d >= n-21 {
			return 0
		}
	case Sliding:
		if d >= n-30 {
			return 0.45
		}
	}
	return 1
}

// Day generates day d's events (0 = the first day) and calls emit with
// each JSON line, in time order. The line is valid until emit returns.
// The error is that of OpenDay or of reading a spilled chunk back.
func (g *Generator) Day(d int, emit func(line []byte)) error {
	return g.DayWithTimes(d, func(_ int64, l []byte) { emit(l) })
}

// DayWithTimes is Day that also passes each event's ts (Unix nanoseconds).
func (g *Generator) DayWithTimes(d int, emit func(ts int64, line []byte)) error {
	r, err := g.OpenDay(d)
	if err != nil {
		return err
	}
	for r.Next() {
		emit(r.Time(), r.Line())
	}
	return errors.Join(r.Err(), r.Close())
}

// maxLiveBatch bounds the lines Live passes to one emit call, so a
// catch-up at high speed does not hold a day in memory.
const maxLiveBatch = 10000

// Live plays the stream in simulated time, for a live demo: the simulation
// starts at the beginning of the period and runs speed times faster than
// the wall clock until it catches up with it, then in real time, so no
// event is ever ahead of the wall clock. emit receives, in order, the
// lines the simulation has passed since its last call (at most 10,000 at
// a time); they are valid until it returns. Live returns
// when the period is over, when ctx ends, or with the first error of emit
// or of the generator.
func (g *Generator) Live(ctx context.Context, speed float64, now func() time.Time, emit func(lines [][]byte) error) error {
	wall0 := now()
	sim := func() int64 {
		w := now()
		t := g.start.Add(time.Duration(float64(w.Sub(wall0)) * speed))
		return min(t.UnixNano(), w.UnixNano())
	}
	var (
		batch [][]byte
		ends  []int
		arena []byte
	)
	for d := range g.opts.Days {
		r, err := g.OpenDay(d)
		if err != nil {
			return err
		}
		more := r.Next()
		for more {
			t := sim()
			batch, ends, arena = batch[:0], ends[:0], arena[:0]
			for more && r.Time() <= t && len(ends) < maxLiveBatch {
				arena = append(arena, r.Line()...) // the line is valid only until Next
				ends = append(ends, len(arena))
				more = r.Next()
			}
			if len(ends) > 0 {
				start := 0
				for _, end := range ends {
					batch = append(batch, arena[start:end:end])
					start = end
				}
				if err := emit(batch); err != nil {
					return errors.Join(err, r.Close())
				}
				continue
			}
			select {
			case <-ctx.Done():
				return errors.Join(ctx.Err(), r.Close())
			case <-time.After(100 * time.Millisecond):
			}
		}
		if err := errors.Join(r.Err(), r.Close()); err != nil {
			return err
		}
	}
	return nil
}

// accountDay writes account i's events of day d to g.c, in the order they
// are generated (not time order).
func (g *Generator) accountDay(i, d int) {
	a := &g.acct
	g.describe(a, i)
	if a.churnedBefore(d) {
		return
	}
	r := g.rng(a.index, d, 2)
	n := g.opts.Days
	dayNs := g.dayNs
	at := func(hour float64) int64 {
		ns := dayNs + int64(hour*float64(time.Hour))
		return min(max(ns, dayNs+1), dayNs+int64(24*time.Hour)-1)
	}
	if d == 0 {
		g.accountEvent(at(0.5), a, a.Seats, "")
		g.contract(at(0.6), a, a.Seats)
	}
	if a.Archetype == Expanding {
		switch d {
		case n - 20:
			g.accountEvent(at(9), a, 50, "rollout")
			g.contract(at(9.1), a, 50)
		case n - 10:
			g.accountEvent(at(9), a, 0, "stable")
		}
	}
	g.crm(a, d, n, r, at)
	day := time.Unix(0, dayNs).UTC()
	weekend := day.Weekday() == time.Saturday || day.Weekday() == time.Sunday
	scale := a.activity(d, n)
	if weekend {
		scale *= 0.15
	}
	for _, u := range a.users {
		if d < u.joinDay || r.Float64() >= u.propensity*scale {
			continue
		}
		t := float64(a.region) + r.Float64()*3
		g.userEvent(at(t), a, u, "login", "", 0)
		for range 1 + r.IntN(4) {
			t += 0.1 + r.Float64()*1.5
			module := a.pickModule(r)
			if a.Archetype == Sliding && d >= n-30 && coreModules[module] {
				module = "contacts" // the team slips back to the basics
			}
			g.userEvent(at(t), a, u, "feature", module, 0)
		}
		g.userEvent(at(t+0.2), a, u, "session", "", 300+r.Float64()*3300)
		if r.IntN(90) == 0 {
			g.nps(at(t+0.3), a, u, r)
		}
	}
	if a.apiPerDay > 0 && !(a.Archetype == Integration && d >= n-8) {
		for h := range 4 {
			g.api(at(float64(2+h*6)+r.Float64()), a, a.apiPerDay/4+r.IntN(50))
		}
	}
	g.tickets(a, d, n, at)
}

func (a *Account) pickModule(r *rand.Rand) string {
	x := r.Float64()
	for m, w := range a.modules {
		if x < w {
			return Modules[m]
		}
	}
	return Modules[0]
}

// Tickets carry no state from day to day: the tickets an account opens on
// a day, and the day each is resolved, are a function of (seed, account,
// day), so day d's resolutions are found by looking at the tickets opened
// on the maxTicketAge days before it.
const (
	maxTicketAge      = 10 // days a ticket stays open at most
	maxHeavyTicketAge = 30 // the same for ticket-heavy accounts
)

// tickets writes day d's ticket events: resolutions of tickets opened on
// earlier days (ticket-heavy accounts rarely resolve), then new tickets.
func (g *Generator) tickets(a *Account, d, n int, at func(float64) int64) {
	maxAge := maxTicketAge
	if a.Archetype == TicketHeavy {
		maxAge = maxHeavyTicketAge
	}
	for opened := max(0, d-maxAge); opened < d; opened++ {
		g.ticketsOpened(a, opened, n, maxAge, func(j int, _ float64, age int, resolvedAt float64) {
			if opened+age == d {
				g.ticket(at(resolvedAt), a, "ticket_resolved", opened, j)
			}
		})
	}
	g.ticketsOpened(a, d, n, maxAge, func(j int, openedAt float64, _ int, _ float64) {
		g.ticket(at(openedAt), a, "ticket_opened", d, j)
	})
}

// ticketsOpened calls visit for each ticket account a opens on day d,
// with its number j on that day, the hour it is opened at, its age in days
// when it is resolved (1 to maxAge) and the hour of that day it is
// resolved at.
func (g *Generator) ticketsOpened(a *Account, d, n, maxAge int, visit func(j int, openedAt float64, age int, resolvedAt float64)) {
	if a.Archetype == Silent && d >= n-40 || a.Archetype == Dark && d >= n-21 {
		return // they stopped opening tickets
	}
	// A PCG value rather than a *rand.Rand: this runs maxAge times per
	// account and day, and must not allocate.
	var r rand.PCG
	r.Seed(g.opts.Seed^4<<48, uint64(a.index)<<20|uint64(d))
	unit := func() float64 { return float64(r.Uint64()>>11) / (1 << 53) }
	resolveRate := 0.4
	if a.Archetype == TicketHeavy {
		resolveRate = 0.05
	}
	j := 0
	for x := unit(); x < a.ticketRate; x++ {
		openedAt := 9 + unit()*8
		// Resolved each day with probability resolveRate: a geometric age.
		age := 1 + int(math.Log(1-unit())/math.Log(1-resolveRate))
		visit(j, openedAt, min(max(age, 1), maxAge), 10+unit()*6)
		j++
	}
}

// The writers below build JSON by appending: the generator must keep up
// with the engine it feeds.

func (g *Generator) begin(ts int64, a *Account, typ string) int {
	c := g.c
	start := len(c.buf)
	c.buf = append(c.buf, `{"ts":"`...)
	c.buf = g.appendTs(c.buf, ts)
	c.buf = append(c.buf, `","account_id":"`...)
	c.buf = append(c.buf, a.ID...)
	c.buf = append(c.buf, `","type":"`...)
	c.buf = append(c.buf, typ...)
	c.buf = append(c.buf, '"')
	return start
}

// appendTs appends ts as 2006-01-02T15:04:05.000Z; ts is in the day being
// generated, whose date is in g.dayPrefix.
func (g *Generator) appendTs(b []byte, ts int64) []byte {
	off := ts - g.dayNs
	if off < 0 || off >= int64(24*time.Hour) {
		return time.Unix(0, ts).UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z")
	}
	ms := off / int64(time.Millisecond)
	s := ms / 1000
	h, m, sec, frac := s/3600, s/60%60, s%60, ms%1000
	b = append(b, g.dayPrefix...)
	return append(b, byte('0'+h/10), byte('0'+h%10), ':', byte('0'+m/10), byte('0'+m%10), ':',
		byte('0'+sec/10), byte('0'+sec%10), '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10), 'Z')
}

func (g *Generator) end(ts int64, start int) {
	c := g.c
	c.buf = append(c.buf, '}')
	c.lines = append(c.lines, line{ts: ts, start: uint32(start), end: uint32(len(c.buf))})
}

func (g *Generator) str(key, v string) {
	c := g.c
	c.buf = append(c.buf, `,"`...)
	c.buf = append(c.buf, key...)
	c.buf = append(c.buf, `":"`...)
	c.buf = append(c.buf, v...)
	c.buf = append(c.buf, '"')
}

func (g *Generator) user(u genUser) {
	c := g.c
	c.buf = append(c.buf, `,"user_id":"u`...)
	c.buf = strconv.AppendInt(c.buf, int64(u.id), 10)
	c.buf = append(c.buf, '"')
}

func (g *Generator) num(key string, v int64) {
	c := g.c
	c.buf = append(c.buf, `,"`...)
	c.buf = append(c.buf, key...)
	c.buf = append(c.buf, `":`...)
	c.buf = strconv.AppendInt(c.buf, v, 10)
}

func (g *Generator) float(key string, v float64) {
	c := g.c
	c.buf = append(c.buf, `,"`...)
	c.buf = append(c.buf, key...)
	c.buf = append(c.buf, `":`...)
	c.buf = strconv.AppendFloat(c.buf, v, 'f', -1, 64)
}

func (g *Generator) userEvent(ts int64, a *Account, u genUser, typ, module string, duration float64) {
	s := g.begin(ts, a, typ)
	g.user(u)
	g.str("platform", u.platform)
	if module != "" {
		g.str("module", module)
	}
	if typ == "session" {
		g.num("duration_s", int64(duration))
	}
	g.end(ts, s)
}

func (g *Generator) api(ts int64, a *Account, count int) {
	s := g.begin(ts, a, "api")
	g.num("count", int64(count))
	g.end(ts, s)
}

// ticket writes a ticket event; the ticket is the j-th opened on day
// opened: T<account>-<opened>-<j>.
func (g *Generator) ticket(ts int64, a *Account, typ string, opened, j int) {
	s := g.begin(ts, a, typ)
	c := g.c
	c.buf = append(c.buf, `,"ticket_id":"T`...)
	c.buf = strconv.AppendInt(c.buf, int64(a.index), 10)
	c.buf = append(c.buf, '-')
	c.buf = strconv.AppendInt(c.buf, int64(opened), 10)
	c.buf = append(c.buf, '-')
	c.buf = strconv.AppendInt(c.buf, int64(j), 10)
	c.buf = append(c.buf, '"')
	g.end(ts, s)
}

func (g *Generator) nps(ts int64, a *Account, u genUser, r *rand.Rand) {
	v := 7 + r.IntN(4)
	switch a.Archetype {
	case TicketHeavy, Declining, SuddenDrop:
		v = r.IntN(8)
	}
	s := g.begin(ts, a, "nps")
	g.user(u)
	g.num("value", int64(v))
	g.end(ts, s)
}

// accountEvent writes an account event: the whole profile when stage is
// "", else the seats (when > 0) and the new stage.
func (g *Generator) accountEvent(ts int64, a *Account, seats int, stage string) {
	s := g.begin(ts, a, "account")
	c := g.c
	c.buf = append(c.buf, `,"attrs":{`...)
	if seats > 0 {
		c.buf = append(c.buf, `"seats":`...)
		c.buf = strconv.AppendInt(c.buf, int64(seats), 10)
	} else {
		c.buf = append(c.buf, `"stage":"`...)
		c.buf = append(c.buf, stage...)
		c.buf = append(c.buf, `"}`...)
		g.end(ts, s)
		return
	}
	if stage == "" {
		r := g.rng(a.index, 0xffffe, 3)
		g.str("segment", a.Segment)
		stage = "stable"
		if a.Archetype == Stalled {
			stage = "onboarding"
		}
		g.str("stage", stage)
		g.str("csm", csms[r.IntN(len(csms))])
		g.str("plan", plans[r.IntN(len(plans))])
		g.str("region", regions[r.IntN(len(regions))])
		g.str("industry", industries[r.IntN(len(industries))])
		g.str("renewal_date", g.renewalDate(a, 0))
	} else {
		g.str("stage", stage)
	}
	c.buf = append(c.buf, '}')
	g.end(ts, s)
}

// contract writes the contract in force: ARR for the seats bought.
func (g *Generator) contract(ts int64, a *Account, seats int) {
	s := g.begin(ts, a, "contract")
	g.float("arr", float64(seats)*a.arrPerSeat)
	g.end(ts, s)
}

var channels = []string{"meeting", "call", "email", "qbr", "chat"}

// crm writes what the customer-success team records for day d: CSM touches
// on the account's cadence, the renewal a year before the next one if it
// falls in the period (with the renewed contract), and stakeholder
// changes.
func (g *Generator) crm(a *Account, d, n int, r *rand.Rand, at func(float64) int64) {
	touch := d%a.touchEvery == a.index%a.touchEvery
	if a.Archetype == Unreached {
		touch = d == 0 // and never again
	}
	if touch {
		ts := at(14 + r.Float64()*3)
		s := g.begin(ts, a, "touch")
		g.str("channel", channels[r.IntN(len(channels))])
		g.end(ts, s)
	}
	if d == a.RenewalDay {
		before := float64(a.Seats) * a.arrPerSeat
		after := before
		switch a.Outcome {
		case "churned":
			after = 0
		case "contracted":
			after = before * 0.7
		case "expanded":
			after = before * 1.2
		}
		ts := at(12)
		s := g.begin(ts, a, "renewal")
		g.str("outcome", a.Outcome)
		g.float("arr_before", before)
		g.float("arr_after", after)
		g.end(ts, s)
		if a.Outcome != "churned" {
			// The renewed contract: its ARR and the next renewal date.
			ts := at(12.1)
			s := g.begin(ts, a, "contract")
			g.float("arr", after)
			g.c.buf = append(g.c.buf, `,"attrs":{"renewal_date":"`...)
			g.c.buf = append(g.c.buf, g.renewalDate(a, d+1)...)
			g.c.buf = append(g.c.buf, `"}`...)
			g.end(ts, s)
		}
	}
	if a.Archetype == ChampionLost && d == n-20 {
		ts := at(11)
		s := g.begin(ts, a, "stakeholder")
		g.str("role", "champion")
		g.str("change", "left")
		g.user(a.users[0])
		g.end(ts, s)
	}
}

// Fences returns account events that move every partition's clock to ts,
// for a partition count and a partitioner (engine.PartitionOf): appended to
// a stream, they make a daemon's partitions and a replay end at the same
// time, and a consumer has applied everything once it has seen every
// fence. Each partition gets run events of one fence account in a row: a
// clock follows a jump of more than max_skew only when a run of events
// confirms it (engine.ConfirmRun).
func Fences(ts time.Time, partitions, run int, partitionOf func(account []byte, partitions int) int) (ids []string, lines [][]byte) {
	for p := range partitions {
		for i := 0; ; i++ {
			id := fmt.Sprintf("fence-%d-%d", p, i)
			if partitionOf([]byte(id), partitions) == p {
				ids = append(ids, id)
				for range run {
					lines = append(lines, fmt.Appendf(nil, `{"ts":%q,"account_id":%q,"type":"account","attrs":{"stage":"fence"}}`, ts.UTC().Format(time.RFC3339Nano), id))
				}
				break
			}
		}
	}
	return ids, lines
}
