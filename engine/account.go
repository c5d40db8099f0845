package engine

import (
	"math"
	"slices"

	"github.com/cespare/xxhash/v2"

	"github.com/pulsehq/pulse/rules"
)

// Ring sizes, in days: each covers the longest window that reads it.
const (
	eventDays   = 36 // usage_vs_baseline reads 35 days
	apiDays     = 32 // api_calls_30d reads 30 days
	sessionDays = 8  // online_minutes_7d reads 7 days

	maxModules = 256  // distinct modules remembered per account
	maxTickets = 4096 // open tickets remembered per account

	historyDays  = 90 // midnights of score history kept per account
	longestDays  = 90 // the longest window any metric reads (nps_90d, seats_90d_ago, …)
	maxCRMEvents = 1024
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
	api       *apiRing // nil until the first api event: many accounts have no integration
	sessionMs [sessionDays]uint64

	tickets []openTicket
	nps     []npsAnswer
	seats   []seatsAt // sorted by ts

	id         string
	attrs      [rules.NumAttrs]string
	attrTs     [rules.NumAttrs]int64
	rulesState rules.State
	row        lastRow // the last score row emitted
	gradeSince int64   // when the grade last changed (or was first given); 0 = no grade
	dueNs      int64   // when the events applied since lastEvalNs are evaluated; 0 = none

	// Score history: hist[i] is the score recorded at the midnight of day
	// histStart+i (see histCode), 0 where none was.
	histStart int32
	// eventsFrom is the first day the events ring counts in full: 0, or
	// the start of the shorter ring of a version 2 checkpoint.
	eventsFrom int32
	hist       []uint32

	crm *crmState // nil until a contract, renewal, touch or stakeholder event

	usage dayUsage // the day-bucket metrics of the last evaluation, while valid
}

// crmState holds what the customer-success team's own events tell: most
// accounts get few of them, so they live apart from the usage state and
// cost a pointer until the first one.
// apiRing holds the API calls of each day bucket, saturating: 4 billion
// calls a day is plenty.
type apiRing [apiDays]uint32

type crmState struct {
	renewalNs     int64
	renewalTs     int64 // ts of the event that set renewal_date; 0 = unknown
	arr           float64
	arrTs         int64 // 0: no arr yet
	lastTouchNs   int64
	lastRenewalNs int64
	touches       []int64          // touch ts, within the longest window
	stakeholders  []stakeholder    // within the longest window
	outcomes      []renewalOutcome // renewals within the trailing period (revenue.go)
}

type stakeholder struct {
	ts          int64
	championOut bool // a champion or decision maker left
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
	for d := a.head + 1; d <= day && d-a.head <= max(eventDays, apiDays); d++ {
		a.events[d%eventDays] = 0
		if a.api != nil {
			a.api[d%apiDays] = 0
		}
		a.sessionMs[d%sessionDays] = 0
	}
	a.users.shift(k)
	a.head = day
}

// apply folds one validated event into the account. ev's slices are not
// kept. horizon is the retention horizon, for pruning.
func (a *account) apply(ev *Event, in *interner, mc *moduleClasses, horizon int64) {
	day := dayOf(ev.Ts)
	a.advance(day)
	age := a.head - day // days behind head; rings keep what fits
	if a.firstNs == 0 || ev.Ts < a.firstNs {
		a.firstNs = ev.Ts
	}
	a.lastEventNs = max(a.lastEventNs, ev.Ts)
	// Day-bucket metrics cached for this very day follow the event (the
	// common case: events in time order, evaluated as they come); for any
	// other day they are dropped.
	usage := &a.usage
	if usage.dayPlus1 != day+1 || age != 0 {
		usage.dayPlus1 = 0
		usage = nil
	}

	switch ev.Type {
	case TypeLogin, TypeFeature, TypeSession:
		u, _ := a.users.get(xxhash.Sum64(ev.User))
		mobile := ev.Platform == PlatformMobile
		if usage != nil {
			usage.userActive(u, day, mobile)
		}
		if age < 64 {
			u.days |= 1 << uint(age)
		}
		if mobile && day > u.mobileDay {
			u.mobileDay = day
		}
		a.lastActiveNs = max(a.lastActiveNs, ev.Ts)
		if age < eventDays {
			a.events[day%eventDays]++
			if usage != nil && usage.events7 < math.MaxUint32 {
				usage.events7++
			}
		}
		switch ev.Type {
		case TypeFeature:
			h := xxhash.Sum64(ev.Module)
			switch entered, replaced := a.useModule(h, day); {
			case usage == nil:
			case replaced:
				a.usage.dayPlus1 = 0
			case entered:
				usage.moduleEntered(mc.of(h))
			}
		case TypeSession:
			if age < sessionDays {
				ms := uint64(ev.Duration*1000 + 0.5)
				a.sessionMs[day%sessionDays] += ms
				if usage != nil {
					usage.sessionMs7 += ms
				}
			}
		}
	case TypeAPI:
		if age < apiDays {
			if a.api == nil {
				a.api = new(apiRing)
			}
			before := a.api[day%apiDays]
			a.api[day%apiDays] = uint32(min(uint64(before)+uint64(ev.Count), math.MaxUint32))
			if usage != nil {
				added := uint64(a.api[day%apiDays] - before)
				usage.api7 += added
				usage.api30 += added
			}
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
	case TypeContract:
		a.setAttrs(&ev.Attrs, ev.Ts, in, horizon)
		a.setARR(ev.ARR, ev.Ts)
	case TypeRenewal:
		a.setARR(ev.ARRAfter, ev.Ts)
		c := a.crmState()
		c.lastRenewalNs = max(c.lastRenewalNs, ev.Ts)
		a.addOutcome(renewalOutcome{ts: ev.Ts, outcome: ev.Outcome, arrBefore: ev.ARRBefore, arrAfter: ev.ARRAfter,
			segment: a.attrs[rules.Segment], csm: a.attrs[rules.CSM]})
	case TypeTouch:
		c := a.crmState()
		c.lastTouchNs = max(c.lastTouchNs, ev.Ts)
		c.touches = appendWithin(c.touches, ev.Ts, a.windowStart(), func(ts int64) int64 { return ts })
	case TypeStakeholder:
		c := a.crmState()
		out := ev.Change == ChangeLeft && (ev.Role == RoleChampion || ev.Role == RoleDecisionMaker)
		c.stakeholders = appendWithin(c.stakeholders, stakeholder{ts: ev.Ts, championOut: out}, a.windowStart(),
			func(s stakeholder) int64 { return s.ts })
	}
}

func (a *account) crmState() *crmState {
	if a.crm == nil {
		a.crm = &crmState{}
	}
	return a.crm
}

// setARR keeps the arr with the latest ts (a tie goes to the later
// arrival), like an attribute.
func (a *account) setARR(arr float64, ts int64) {
	c := a.crmState()
	if ts >= c.arrTs {
		c.arr, c.arrTs = arr, ts
	}
}

// windowStart is the oldest ts the longest window can still read at any
// time from the account's newest day on: entries before it are dropped.
func (a *account) windowStart() int64 {
	return (int64(a.head) - longestDays - 1) * nsPerDay
}

// appendWithin appends x to a short list of timestamped entries, dropping
// the entries older than from (and x itself if it is). The list is
// bounded: past maxCRMEvents the oldest entry goes.
func appendWithin[T any](list []T, x T, from int64, ts func(T) int64) []T {
	list = slices.DeleteFunc(list, func(e T) bool { return ts(e) < from })
	if ts(x) < from {
		return list
	}
	if len(list) >= maxCRMEvents {
		oldest := 0
		for i := range list {
			if ts(list[i]) < ts(list[oldest]) {
				oldest = i
			}
		}
		if ts(x) <= ts(list[oldest]) {
			return list
		}
		list = slices.Delete(list, oldest, oldest+1)
	}
	return append(list, x)
}

// overUserLimit reports whether ev would make the account keep more than
// max users (or NPS respondents).
func (a *account) overUserLimit(ev *Event, max int) bool {
	switch {
	case ev.Type.userActivity():
		return int(a.users.n) >= max && !a.users.has(xxhash.Sum64(ev.User))
	case ev.Type == TypeNPS:
		if len(a.nps) < max {
			return false
		}
		u := xxhash.Sum64(ev.User)
		return !slices.ContainsFunc(a.nps, func(n npsAnswer) bool { return n.user == u })
	}
	return false
}

// useModule records a use of module h on day. entered reports that the
// module was not used in the 30 days before day; replaced, that a full
// list dropped its least recently used module for it.
func (a *account) useModule(h uint64, day int32) (entered, replaced bool) {
	for i := range a.modules {
		if a.modules[i].hash == h {
			entered = a.modules[i].lastDay <= day-30
			a.modules[i].lastDay = max(a.modules[i].lastDay, day)
			return entered, false
		}
	}
	if len(a.modules) < maxModules {
		a.modules = append(a.modules, moduleUse{hash: h, lastDay: day})
		return true, false
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
		return false, true
	}
	return false, false
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
	if at.HasRenewal && (a.crm == nil || ts >= a.crm.renewalTs) {
		c := a.crmState()
		c.renewalNs, c.renewalTs = at.RenewalNs, ts
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

// seatsAtNowAnd30And90 returns the seats as they stood at t, t − 30d and
// t − 90d, in one pass over the history.
func (a *account) seatsAtNowAnd30And90(t int64) (now, ago30, ago90 float64) {
	now, ago30, ago90 = rules.Null, rules.Null, rules.Null
	t30, t90 := t-30*nsPerDay, t-90*nsPerDay
	for _, s := range a.seats {
		if s.ts > t {
			break
		}
		now = s.seats
		if s.ts <= t30 {
			ago30 = s.seats
		}
		if s.ts <= t90 {
			ago90 = s.seats
		}
	}
	return now, ago30, ago90
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

// Score history codes: one uint32 per midnight. 0 means nothing was
// recorded; otherwise the grade sits in the top bits and the score, in
// millionths of a point plus one, below (histNull for a null score). A
// millionth is the precision every output rounds to, so score changes
// read from the history are exact to the last digit shown.
const (
	histGradeShift = 28
	histScoreMask  = 1<<histGradeShift - 1
	histNull       = histScoreMask
)

func histCode(score float64, g rules.Grade) uint32 {
	v := uint32(histNull)
	if !rules.IsNull(score) {
		v = uint32(math.Round(min(max(score, 0), 100)*1e6)) + 1
	}
	return uint32(g)<<histGradeShift | v
}

func histDecode(c uint32) (score float64, g rules.Grade) {
	g = rules.Grade(c >> histGradeShift)
	v := c & histScoreMask
	if v == histNull {
		return rules.Null, g
	}
	return float64(v-1) / 1e6, g
}

// record stores the score of the midnight that starts day.
func (a *account) record(day int32, score float64, g rules.Grade) {
	recordDay(&a.histStart, &a.hist, day, score, g)
}

// recorded returns the score recorded at the midnight that starts day, and
// whether one was.
func (a *account) recorded(day int32) (float64, bool) {
	return recordedDay(a.histStart, a.hist, day)
}

// recordDay stores the score of the midnight that starts day in a score
// history that starts at *start (see histCode), keeping historyDays.
func recordDay(start *int32, hist *[]uint32, day int32, score float64, g rules.Grade) {
	switch {
	case len(*hist) == 0:
		*start = day
	case day < *start:
		return // older than the history kept
	}
	i := int(day - *start)
	for len(*hist) <= i {
		*hist = append(*hist, 0)
	}
	(*hist)[i] = histCode(score, g)
	if drop := len(*hist) - historyDays; drop > 0 {
		*hist = slices.Delete(*hist, 0, drop)
		*start += int32(drop)
	}
}

// recordedDay returns the score a history starting at start recorded at
// the midnight that starts day, and whether one was.
func recordedDay(start int32, hist []uint32, day int32) (float64, bool) {
	i := int(day - start)
	if i < 0 || i >= len(hist) || hist[i] == 0 {
		return rules.Null, false
	}
	s, _ := histDecode(hist[i])
	return s, true
}

// history returns the recorded midnights, oldest first.
func (a *account) history() []HistoryPoint {
	var out []HistoryPoint
	for i, c := range a.hist {
		if c == 0 {
			continue
		}
		s, g := histDecode(c)
		out = append(out, HistoryPoint{Day: int64(a.histStart+int32(i)) * nsPerDay, Score: s, Grade: g})
	}
	return out
}

// firingAlerts returns the names of the account's firing alerts, sorted,
// as its last evaluation left them. They are derived when asked for
// rather than kept: listings are rare next to evaluations.
func (a *account) firingAlerts() []string {
	var names []string
	for _, s := range a.rulesState.Alerts {
		if s.State == rules.StateFiring {
			names = append(names, s.Rule)
		}
	}
	slices.Sort(names)
	return names
}
