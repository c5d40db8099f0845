package engine

import (
	"fmt"
	"math"
	"math/bits"
	"slices"

	"github.com/cespare/xxhash/v2"

	"github.com/pulsehq/pulse/rules"
)

// Module classes from the rules file's modules block, as bits.
const (
	classAll uint8 = 1 << iota
	classCore
	classProcess
	classCustom
)

// moduleClasses holds the classes of the modules the rules file declares,
// with the set sizes. Declared lists are short, so a linear scan of hashes
// beats a map lookup here.
type moduleClasses struct {
	hashes                    []uint64
	classes                   []uint8
	nAll, nCore               int
	declaredAll, declaredCore bool
}

func newModuleClasses(m rules.ModuleSets) moduleClasses {
	mc := moduleClasses{nAll: len(m.All), nCore: len(m.Core), declaredAll: len(m.All) > 0, declaredCore: len(m.Core) > 0}
	for _, set := range []struct {
		names []string
		bit   uint8
	}{{m.All, classAll}, {m.Core, classCore}, {m.Process, classProcess}, {m.Custom, classCustom}} {
		for _, n := range set.names {
			h := xxhash.Sum64String(n)
			if i := slices.Index(mc.hashes, h); i >= 0 {
				mc.classes[i] |= set.bit
				continue
			}
			mc.hashes = append(mc.hashes, h)
			mc.classes = append(mc.classes, set.bit)
		}
	}
	return mc
}

func (mc *moduleClasses) of(h uint64) uint8 {
	for i, x := range mc.hashes {
		if x == h {
			return mc.classes[i]
		}
	}
	return 0
}

// Windows in day buckets; see dayOf. Between UTC midnights a window of N
// days covers the N whole day buckets ending with T's, i.e.
// (midnight before T − (N−1)·24h, T]: exact at midnight, and "today so far"
// in between.
const (
	mask1d  = 1
	mask7d  = 1<<7 - 1
	mask30d = 1<<30 - 1
	mask14d = 1<<14 - 1
)

// dayUsage holds the metrics that depend only on the day buckets: user
// activity, modules, and the event, API and session rings. They change
// only when an event is applied or the day turns, while an account is
// evaluated at every hourly sweep, most often with no event since the
// last evaluation; keeping them saves the walk over the user table and the
// rings, which at scale are cache misses. apply, a new day and a rules
// change (module classes) invalidate them.
type dayUsage struct {
	dayPlus1 int32 // day+1 the values are for; 0: not valid
	// Users are at most max_users_per_account (< 65536) per account.
	dau, wau, mau, wauPrev, mobile uint16
	modules, core                  uint16
	used                           uint8 // module classes used in 30 days
	userDays                       uint32
	// User-activity events; the day buckets themselves count in 32 bits.
	events7, eventsPrev, baseline uint32
	api7, api30                   uint64
	sessionMs7                    uint64
}

// verifyUsage makes every use of cached day-bucket metrics check them
// against a fresh computation (tests turn it on).
var verifyUsage bool

// dayUsage returns the day-bucket metrics for day, computing them unless
// the cached ones are still valid.
func (a *account) dayUsage(day int32, mc *moduleClasses) *dayUsage {
	u := &a.usage
	if u.dayPlus1 == day+1 {
		if verifyUsage {
			if fresh := a.computeUsage(day, mc); fresh != *u {
				panic(fmt.Sprintf("engine: cached day metrics of %s drifted:\n cached %+v\n fresh  %+v", a.id, *u, fresh))
			}
		}
		return u
	}
	*u = a.computeUsage(day, mc)
	return u
}

// computeUsage computes the day-bucket metrics for day.
func (a *account) computeUsage(day int32, mc *moduleClasses) dayUsage {
	u := dayUsage{dayPlus1: day + 1}
	offset := day - a.head
	// userDays is Σ over the 7 day slices of the distinct users active in
	// the slice, i.e. Σ over users of their active days this week.
	for i := range a.users.slots {
		s := &a.users.slots[i]
		if s.hash == 0 {
			continue
		}
		d := aligned(s.days, offset)
		if d&mask30d == 0 {
			continue
		}
		u.mau++
		if week := d & mask7d; week != 0 {
			u.wau++
			u.userDays += uint32(bits.OnesCount64(week))
		}
		u.dau += uint16(d & mask1d)
		if d&(mask14d&^mask7d) != 0 {
			u.wauPrev++
		}
		if s.mobileDay > 0 && s.mobileDay > day-30 {
			u.mobile++
		}
	}
	for _, m := range a.modules {
		if m.lastDay > day-30 {
			u.modules++
			c := mc.of(m.hash)
			u.used |= c
			if c&classCore != 0 {
				u.core++
			}
		}
	}
	u.sessionMs7 = ringSum64(a.sessionMs[:], a.head, day, 7)
	a.api7and30(day, &u.api7, &u.api30)
	var events7, eventsPrev, baseline uint64
	a.eventWindows(day, &events7, &eventsPrev, &baseline)
	u.events7, u.eventsPrev, u.baseline = saturate32(events7), saturate32(eventsPrev), saturate32(baseline)
	return u
}

// userActive updates the metrics for an activity event of user s on the
// metrics' own day, before the event marks s active that day.
func (u *dayUsage) userActive(s *user, day int32, mobile bool) {
	was30, wasWeek, wasToday := s.days&mask30d != 0, s.days&mask7d != 0, s.days&mask1d != 0
	if !wasToday {
		u.dau++
		u.userDays++
	}
	if !wasWeek {
		u.wau++
	}
	if !was30 {
		u.mau++
	}
	wasMobile := was30 && s.mobileDay > 0 && s.mobileDay > day-30
	isMobile := (mobile && day > 0) || (s.mobileDay > 0 && s.mobileDay > day-30)
	switch {
	case isMobile && !wasMobile:
		u.mobile++
	case !isMobile && wasMobile:
		u.mobile--
	}
}

func saturate32(n uint64) uint32 { return uint32(min(n, math.MaxUint32)) }

// moduleEntered updates the metrics for a module that has just come into
// the 30-day window.
func (u *dayUsage) moduleEntered(class uint8) {
	u.modules++
	u.used |= class
	if class&classCore != 0 {
		u.core++
	}
}

// metrics computes every metric of SPEC §3 for the account at time t into
// v, and returns the usage depth. It reads the account only, but for the
// cache of its day-bucket metrics.
func (a *account) metrics(t int64, mc *moduleClasses, v *rules.Values) rules.Depth {
	day := dayOf(t)
	u := a.dayUsage(day, mc)
	activated := int(a.users.n)
	mau := float64(u.mau)
	userDays := float64(u.userDays)

	v[rules.DAU] = float64(u.dau)
	v[rules.WAU] = float64(u.wau)
	v[rules.MAU] = mau
	v[rules.WAUPrev] = float64(u.wauPrev)
	v[rules.Seats], v[rules.Seats30dAgo], v[rules.Seats90dAgo] = a.seatsAtNowAnd30And90(t)
	v[rules.ActivatedUsers] = float64(activated)
	v[rules.ActivationRate] = ratio(float64(activated), v[rules.Seats])
	v[rules.Utilization] = ratio(mau, v[rules.Seats])
	v[rules.LoginRatio7d] = ratio(userDays/7, float64(activated))
	v[rules.Stickiness] = ratio(userDays/7, mau)

	v[rules.OnlineMinutes7d] = ratio(float64(u.sessionMs7)/60000, userDays)
	v[rules.MobileShare30d] = ratio(float64(u.mobile), mau)

	depth := rules.DepthNone
	if u.mau > 0 {
		depth = rules.DepthRecord
	}
	v[rules.Modules30d] = float64(u.modules)
	v[rules.ModuleBreadth30d] = rules.Null
	if mc.declaredAll {
		v[rules.ModuleBreadth30d] = float64(u.modules) / float64(mc.nAll)
	}
	v[rules.CoreAdoption30d] = rules.Null
	if mc.declaredCore {
		v[rules.CoreAdoption30d] = float64(u.core) / float64(mc.nCore)
	}

	v[rules.APICalls7d] = float64(u.api7)
	v[rules.APICalls30d] = float64(u.api30)
	v[rules.Events7d] = float64(u.events7)
	v[rules.EventsPrev7d] = float64(u.eventsPrev)
	v[rules.UsageChange7d] = rules.Null
	if u.eventsPrev > 0 {
		v[rules.UsageChange7d] = (float64(u.events7) - float64(u.eventsPrev)) / float64(u.eventsPrev)
	}

	switch {
	case u.used&classCustom != 0:
		depth = rules.DepthCustom
	case u.api30 > 0:
		depth = rules.DepthIntegration
	case u.used&classProcess != 0:
		depth = rules.DepthProcess
	}

	v[rules.OpenTickets] = float64(len(a.tickets))
	v[rules.OldestOpenTicketDays] = 0
	if len(a.tickets) > 0 {
		oldest := a.tickets[0].openedNs
		for _, tk := range a.tickets[1:] {
			oldest = min(oldest, tk.openedNs)
		}
		v[rules.OldestOpenTicketDays] = days(t - oldest)
	}
	v[rules.DaysSinceTicket] = since(t, a.lastTicketNs)
	v[rules.DaysSinceActive] = since(t, a.lastActiveNs)
	v[rules.NPS90d] = a.netPromoter(t)
	v[rules.DaysToRenewal] = rules.Null
	if c := a.crm; c != nil && c.renewalTs != 0 {
		v[rules.DaysToRenewal] = days(c.renewalNs - t)
	}
	v[rules.TenureDays] = days(t - a.firstNs)

	v[rules.SeatLoginRatio7d] = ratio(userDays/7, v[rules.Seats])
	v[rules.UsageVsBaseline] = rules.Null
	if day-34 >= a.eventsFrom {
		v[rules.UsageVsBaseline] = ratio(float64(u.events7), float64(u.baseline)/4)
	}
	a.crmMetrics(t, v)
	// Score-based metrics are filled in by the evaluation, which knows the
	// score being computed.
	v[rules.ScoreChange7d] = rules.Null
	v[rules.ScoreChange30d] = rules.Null
	v[rules.GradeDays] = rules.Null
	return depth
}

// crmMetrics computes the metrics of contract, renewal, touch and
// stakeholder events.
func (a *account) crmMetrics(t int64, v *rules.Values) {
	c := a.crm
	if c == nil {
		c = &crmState{}
	}
	v[rules.ARR] = rules.Null
	if c.arrTs != 0 {
		v[rules.ARR] = c.arr
	}
	v[rules.DaysSinceTouch] = since(t, c.lastTouchNs)
	v[rules.DaysSinceRenewalEvent] = since(t, c.lastRenewalNs)
	touches := 0
	for _, ts := range c.touches {
		if ts > t-30*nsPerDay && ts <= t {
			touches++
		}
	}
	v[rules.Touches30d] = float64(touches)
	changes, championLeft := 0, 0.0
	for _, s := range c.stakeholders {
		if s.ts > t-90*nsPerDay && s.ts <= t {
			changes++
			if s.championOut {
				championLeft = 1
			}
		}
	}
	v[rules.StakeholderChanges90d] = float64(changes)
	v[rules.ChampionLeft90d] = championLeft
}

// netPromoter is the NPS over each user's latest answer in (t − 90d, t].
func (a *account) netPromoter(t int64) float64 {
	var n, promoters, detractors int
	for _, ans := range a.nps {
		if ans.ts <= t-90*nsPerDay || ans.ts > t {
			continue
		}
		n++
		switch {
		case ans.value >= 9:
			promoters++
		case ans.value <= 6:
			detractors++
		}
	}
	if n == 0 {
		return rules.Null
	}
	return float64(promoters-detractors) * 100 / float64(n)
}

// api7and30 sums the API calls of the 7- and 30-day windows ending with
// day in one pass over the ring.
func (a *account) api7and30(day int32, api7, api30 *uint64) {
	if a.api == nil {
		return
	}
	from := max(day-29, a.head-apiDays+1, 1)
	for d := min(day, a.head); d >= from; d-- {
		n := uint64(a.api[d%apiDays])
		*api30 += n
		if d > day-7 {
			*api7 += n
		}
	}
}

// eventWindows sums the user-activity events of the last 7 days, the 7
// before them, and the 28 before the last 7 (the baseline of
// usage_vs_baseline), in one pass over the ring.
func (a *account) eventWindows(day int32, last7, prev7, baseline *uint64) {
	from := max(day-34, a.head-eventDays+1, 1)
	for d := min(day, a.head); d >= from; d-- {
		n := uint64(a.events[d%eventDays])
		switch {
		case d > day-7:
			*last7 += n
		default:
			*baseline += n
			if d > day-14 {
				*prev7 += n
			}
		}
	}
}

// ringSum64 adds up the n days of a ring ending with day. The ring's newest
// day is head (≤ day); days it no longer holds count as 0. The slot index
// wraps by comparison, not modulo: a division per day was most of the
// cost of an evaluation.
func ringSum64[T uint32 | uint64](ring []T, head, day int32, n int32) uint64 {
	size := int32(len(ring))
	from := max(day-n+1, head-size+1, 1)
	to := min(day, head)
	if from > to {
		return 0
	}
	var sum uint64
	i := from % size
	for range to - from + 1 {
		sum += uint64(ring[i])
		if i++; i == size {
			i = 0
		}
	}
	return sum
}

func ratio(num, den float64) float64 {
	if rules.IsNull(den) || den == 0 {
		return rules.Null
	}
	return num / den
}

func days(ns int64) float64 { return float64(ns) / float64(nsPerDay) }

func since(t, then int64) float64 {
	if then == 0 {
		return rules.Null
	}
	return days(t - then)
}
