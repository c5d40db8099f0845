package engine

import (
	"slices"
	"sync/atomic"

	"github.com/pulsehq/pulse/rules"
)

// Snapshot is a copy of a partition's accounts at one moment, for readers
// on other goroutines (the HTTP API, the Prometheus aggregates): they read
// it while the partition's own goroutine goes on applying events, or waits
// for a sink. A Snapshot is immutable once built and safe for concurrent
// use; its states and histories must not be modified.
type Snapshot struct {
	Partition int32
	Clock     int64 // the partition's event-time clock, Unix ns
	Rules     *rules.Ruleset
	Accounts  []SnapshotAccount // creation order
	Firing    []FiringAlert     // firing alerts of rules in Rules
	// Retention adds up the partition's renewal outcomes of the
	// RetentionDays that end at Clock, by the owner at the renewal.
	Retention map[Owner]Retention

	byID    map[string]int32 // index into Accounts
	hist    []uint32         // every account's score history codes, one allocation
	current atomic.Int64     // wall clock (Unix ns) when the snapshot was last known current
}

// SnapshotAccount is one account of a Snapshot.
type SnapshotAccount struct {
	State AccountState
	// Updated is the event time of the newest event applied to the account
	// (Unix ns): which of two records of one account is the latest.
	Updated int64
	// ActiveDays counts the days of the last 7 (the day buckets of the
	// 7-day window at Clock) with user activity.
	ActiveDays uint8

	histStart      int32
	histLo, histHi int32 // the account's codes in Snapshot.hist
}

// Snapshot copies the partition's account states, firing alerts and score
// histories. wall is the wall clock (Unix ns) the copy is taken at. Alerts
// of rules the partition's ruleset no longer has are left out: after a
// reload they stay in an account's alert state until its next evaluation.
func (p *Partition) Snapshot(wall int64) *Snapshot {
	s := &Snapshot{
		Partition: p.id,
		Clock:     p.clock,
		Rules:     p.rules,
		Accounts:  make([]SnapshotAccount, len(p.order)),
		Retention: p.retention(),
		byID:      make(map[string]int32, len(p.order)),
	}
	day := dayOf(p.clock)
	names := make(map[string]bool, len(p.rules.Alerts))
	for _, a := range p.rules.Alerts {
		names[a.Name] = true
	}
	inForce := func(name string) bool { return names[name] }
	n := 0
	for _, a := range p.order {
		n += len(a.hist)
	}
	s.hist = make([]uint32, 0, n)
	for i, a := range p.order {
		sa := &s.Accounts[i]
		sa.State = p.state(a)
		sa.State.Alerts = slices.DeleteFunc(sa.State.Alerts, func(n string) bool { return !inForce(n) })
		sa.State.Suppressed = slices.DeleteFunc(sa.State.Suppressed, func(n string) bool { return !inForce(n) })
		sa.Updated = a.lastEventNs
		sa.ActiveDays = a.activeDays(day)
		sa.histStart, sa.histLo = a.histStart, int32(len(s.hist))
		s.hist = append(s.hist, a.hist...)
		sa.histHi = int32(len(s.hist))
		s.byID[a.id] = int32(i)
		for _, st := range a.rulesState.Alerts {
			if st.State == rules.StateFiring && inForce(st.Rule) {
				s.Firing = append(s.Firing, FiringAlert{AccountID: a.id, Rule: st.Rule, Since: st.Since, ID: rules.AlertID(a.id, st.Rule, st.Since)})
			}
		}
	}
	s.current.Store(wall)
	return s
}

// MarkCurrent records that the snapshot still holds the partition's state
// at wall (Unix ns): nothing was applied since it was taken.
func (s *Snapshot) MarkCurrent(wall int64) {
	for {
		old := s.current.Load()
		if wall <= old || s.current.CompareAndSwap(old, wall) {
			return
		}
	}
}

// Current returns the wall clock (Unix ns) at which the snapshot was last
// known to hold the partition's state: its age is how stale it may be.
func (s *Snapshot) Current() int64 { return s.current.Load() }

// Account returns the account's record, or nil.
func (s *Snapshot) Account(id string) *SnapshotAccount {
	i, ok := s.byID[id]
	if !ok {
		return nil
	}
	return &s.Accounts[i]
}

// History returns the account's daily score history, oldest first, as
// Partition.History does.
func (s *Snapshot) History(a *SnapshotAccount) []HistoryPoint {
	var out []HistoryPoint
	for i, c := range s.hist[a.histLo:a.histHi] {
		if c == 0 {
			continue
		}
		sc, g := histDecode(c)
		out = append(out, HistoryPoint{Day: int64(a.histStart+int32(i)) * nsPerDay, Score: sc, Grade: g})
	}
	return out
}

// MergedAccount is one account across the snapshots of every partition.
type MergedAccount struct {
	*SnapshotAccount
	Snapshot *Snapshot // the partition the record comes from
	// Split lists the partitions that hold the account, in order, when
	// more than one does: its events were produced to several partitions
	// (a producer that does not key by account_id, or two partitioners).
	// The record is then the most recently updated one. Nil otherwise.
	Split []int32
}

// Merge lists every account of snaps once. An account held by several
// partitions is given as its most recently updated record (the higher
// partition on a tie), with Split set. Accounts come in snapshot order,
// then creation order.
func Merge(snaps []*Snapshot) []MergedAccount {
	n := 0
	for _, s := range snaps {
		n += len(s.Accounts)
	}
	out := make([]MergedAccount, 0, n)
	seen := make(map[string]int, n)
	for _, s := range snaps {
		for i := range s.Accounts {
			a := &s.Accounts[i]
			j, dup := seen[a.State.AccountID]
			if !dup {
				seen[a.State.AccountID] = len(out)
				out = append(out, MergedAccount{SnapshotAccount: a, Snapshot: s})
				continue
			}
			m := &out[j]
			if m.Split == nil {
				m.Split = []int32{m.Snapshot.Partition}
			}
			m.Split = append(m.Split, s.Partition)
			if a.Updated >= m.Updated {
				m.SnapshotAccount, m.Snapshot = a, s
			}
		}
	}
	for i := range out {
		slices.Sort(out[i].Split)
	}
	return out
}
