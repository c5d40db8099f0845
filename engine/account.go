package engine

import (
	"math"
	"slices"

	"github.com/cespare/xxhash/v2"

	"github.com/pulsehq/pulse/rules"
)

// Ring sizes, in days: each covers the longest window that reads it.
const (
	eventDays   = 16 // events_7d and events_prev_7d read 14 days
	apiDays     = 32 // api_calls_30d reads 30 days
	sessionDays = 8  // online_minutes_7d reads 7 days

	maxModules = 256  // distinct modules remembered per account
	maxTickets = 4096 // open tickets remembered per account
)

// account is the state of one customer account. Only the partition task
// that owns the account touches it, so it has no locks.
//
// Daily counters are rings indexed by day bucket modulo their size, all
// relative to head, the newest day bucket applied; user bitmaps are
// relative to head too. Ids are kept as xxhash values; the account id
// string is kept once, for output.
type account struct {
	// The fields every event touches come first, in one cache line: at a
	// hundred thousand accounts nearly every event misses the cache, and
	// each extra line read costs as much as decoding the event.
	firstNs     int64  // first event of any type
	lastEventNs int64  // newest event ts of any type (for eviction)
	lastEvalNs  int64  // when the rules last evaluated the account
	head        int32  // newest day bucket in the rings and bitmaps
	idLen       uint16 // len(id), checked on every event without reading id
	users       userTable

	lastActiveNs int64 // last user activity; 0 = never
	lastTicketNs int64 // last ticket_opened; 0 = never
	modules      []moduleUse

	events    [eventDays]uint32
	api       [apiDays]uint32 // saturating: 4 billion calls a day is plenty
	sessionMs [sessionDays]uint64

	tickets []openTicket
	nps     []npsAnswer
	seats   []seatsAt // sorted by ts

	id         string
	attrs      [rules.NumAttrs]string
	attrTs     [rules.NumAttrs]int64
	renewalNs  int64
	renewalTs  int64 // ts of the account event that set renewal_date; 0 = unknown
	rulesState rules.State
	firing     []string // firing alerts after the last evaluation, sorted
	row        lastRow  // the last score row emitted
}

// lastRow remembers the last score history row, to emit the next only on a
// change or after the score interval.
type lastRow struct {
	ts    int64 // 0: none yet
	score float64
	grade rules.Grade
	depth rules.Depth
}

func (r *lastRow) due(score float64, grade rules.Grade, depth rules.Depth, t, interval int64) bool {
	moved := rules.IsNull(score) != rules.IsNull(r.score) || math.Abs(score-r.score) >= ScoreStep
	return r.ts == 0 || grade != r.grade || depth != r.depth || moved || t-r.ts >= interval
}

type moduleUse struct {
	hash    uint64
	lastDay int32
}

type openTicket struct {
	hash     uint64
	openedNs int64
}

type npsAnswer struct {
	user  uint64
	ts    int64
	value float64
}

type seatsAt struct {
	ts    int64
	seats float64
}

// advance moves the rings and bitmaps so that day is the head, clearing
// the days that fall out.
func (a *account) advance(day int32) {
	k := day - a.head
	if k <= 0 {
		return
	}
	if a.head == 0 {
		a.head = day
		return
	}
	for d := a.head + 1; d <= day && d-a.head <= apiDays; d++ {
		a.events[d%eventDays] = 0
		a.api[d%apiDays] = 0
		a.sessionMs[d%sessionDays] = 0
	}
	a.users.shift(k)
	a.head = day
}

// apply folds one validated event into the account. ev's slices are not
// kept. horizon is the retention horizon, for pruning.
func (a *account) apply(ev *Event, in *interner, horizon int64) {
	day := dayOf(ev.Ts)
	a.advance(day)
	age := a.head - day // days behind head; rings keep what fits
	if a.firstNs == 0 || ev.Ts < a.firstNs {
		a.firstNs = ev.Ts
	}
	a.lastEventNs = max(a.lastEventNs, ev.Ts)

	switch ev.Type {
	case TypeLogin, TypeFeature, TypeSession:
		u, _ := a.users.get(xxhash.Sum64(ev.User))
		if age < 64 {
			u.days |= 1 << uint(age)
		}
		if ev.Platform == PlatformMobile && day > u.mobileDay {
			u.mobileDay = day
		}
		a.lastActiveNs = max(a.lastActiveNs, ev.Ts)
		if age < eventDays {
			a.events[day%eventDays]++
		}
		switch ev.Type {
		case TypeFeature:
			a.useModule(xxhash.Sum64(ev.Module), day)
		case TypeSession:
			if age < sessionDays {
				a.sessionMs[day%sessionDays] += uint64(ev.Duration*1000 + 0.5)
			}
		}
	case TypeAPI:
		if age < apiDays {
			a.api[day%apiDays] = uint32(min(uint64(a.api[day%apiDays])+uint64(ev.Count), math.MaxUint32))
		}
	case TypeTicketOpened:
		a.lastTicketNs = max(a.lastTicketNs, ev.Ts)
		h := xxhash.Sum64(ev.Ticket)
		if i := slices.IndexFunc(a.tickets, func(t openTicket) bool { return t.hash == h }); i >= 0 {
			a.tickets[i].openedNs = min(a.tickets[i].openedNs, ev.Ts)
		} else if len(a.tickets) < maxTickets {
			a.tickets = append(a.tickets, openTicket{hash: h, openedNs: ev.Ts})
		}
	case TypeTicketResolved:
		h := xxhash.Sum64(ev.Ticket)
		a.tickets = slices.DeleteFunc(a.tickets, func(t openTicket) bool { return t.hash == h })
	case TypeNPS:
		a.answer(xxhash.Sum64(ev.User), ev.Ts, ev.Value, horizon)
	case TypeAccount:
		a.setAttrs(&ev.Attrs, ev.Ts, in, horizon)
	}
}

func (a *account) useModule(h uint64, day int32) {
	for i := range a.modules {
		if a.modules[i].hash == h {
			a.modules[i].lastDay = max(a.modules[i].lastDay, day)
			return
		}
	}
	if len(a.modules) < maxModules {
		a.modules = append(a.modules, moduleUse{hash: h, lastDay: day})
		return
	}
	// Full: replace the least recently used module if this use is newer.
	oldest := 0
	for i := range a.modules {
		if a.modules[i].lastDay < a.modules[oldest].lastDay {
			oldest = i
		}
	}
	if day > a.modules[oldest].lastDay {
		a.modules[oldest] = moduleUse{hash: h, lastDay: day}
	}
}

// answer records an NPS answer, keeping each user's latest by ts.
func (a *account) answer(u uint64, ts int64, value float64, horizon int64) {
	a.nps = slices.DeleteFunc(a.nps, func(n npsAnswer) bool { return n.ts < horizon })
	for i := range a.nps {
		if a.nps[i].user == u {
			if ts >= a.nps[i].ts {
				a.nps[i].ts, a.nps[i].value = ts, value
			}
			return
		}
	}
	a.nps = append(a.nps, npsAnswer{user: u, ts: ts, value: value})
}

// setAttrs applies an account event key by key: each key keeps the value
// with the latest ts (a tie goes to the later arrival).
func (a *account) setAttrs(at *AccountAttrs, ts int64, in *interner, horizon int64) {
	for i := range at.Has {
		if at.Has[i] && ts >= a.attrTs[i] {
			a.attrs[i] = in.intern(at.Values[i])
			a.attrTs[i] = ts
		}
	}
	if at.HasRenewal && ts >= a.renewalTs {
		a.renewalNs, a.renewalTs = at.RenewalNs, ts
	}
	if at.HasSeats {
		a.addSeats(ts, at.Seats, horizon)
	}
}

// addSeats inserts a seats value into the history, then forgets entries no
// window can read: those older than horizon, except the newest of them
// (it is still the value "as it stood" at any later time).
func (a *account) addSeats(ts int64, seats float64, horizon int64) {
	i, found := slices.BinarySearchFunc(a.seats, ts, func(s seatsAt, t int64) int {
		switch {
		case s.ts < t:
			return -1
		case s.ts > t:
			return 1
		}
		return 0
	})
	if found {
		a.seats[i].seats = seats
	} else {
		a.seats = slices.Insert(a.seats, i, seatsAt{ts: ts, seats: seats})
	}
	keep := 0
	for keep+1 < len(a.seats) && a.seats[keep+1].ts <= horizon {
		keep++
	}
	a.seats = slices.Delete(a.seats, 0, keep)
}

// seatsAt returns the seats value as it stood at t, or Null.
func (a *account) seatsAt(t int64) float64 {
	v := rules.Null
	for _, s := range a.seats {
		if s.ts > t {
			break
		}
		v = s.seats
	}
	return v
}

// interner keeps one copy of each attribute value per partition (segments,
// CSM names and plans repeat across thousands of accounts).
type interner struct {
	m map[string]string
}

const maxInterned = 1 << 16

func (in *interner) intern(b []byte) string {
	if s, ok := in.m[string(b)]; ok {
		return s
	}
	s := string(b)
	if in.m == nil {
		in.m = make(map[string]string)
	}
	if len(in.m) < maxInterned {
		in.m[s] = s
	}
	return s
}

// history returns the recorded midnights, oldest first.
func (a *account) history() []HistoryPoint { return nil }
