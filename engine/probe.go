package engine

import (
	"cmp"
	"slices"

	"github.com/cespare/xxhash/v2"
)

// Probe asks a replay for one account's state as it stood at a past
// event time: pulse tune reads the factor points an account had some
// time before each of its renewals.
type Probe struct {
	AccountID string
	At        int64 // Unix nanoseconds of event time
}

// probes are a partition's pending probes, by time.
type probes struct {
	list []int // indexes into Replayer.probes, by (At, index)
	next int
}

// SetProbes makes the replay call fn once for each probe, with the
// probe's index and the account's state (as Partition.State gives it) at
// the probe's time, taken when the account's partition is about to apply
// (or hold back) its first event past that time, or at Finish: the events
// it had applied by then, with the metrics computed at the probe's time.
// The grade, the caps' hysteresis and the alerts are those of the last
// evaluation before. The state is nil if the account was unknown then or
// the replay ended before that time; it is valid only during the call.
// Taking a probe changes nothing: the clock does not move. Call it before
// the first Line.
func (r *Replayer) SetProbes(list []Probe, fn func(i int, s *AccountState)) {
	r.probes, r.onProbe = list, fn
	r.pending = make([]probes, len(r.parts))
	for i, pr := range list {
		p := PartitionOf([]byte(pr.AccountID), len(r.parts))
		r.pending[p].list = append(r.pending[p].list, i)
	}
	for i := range r.pending {
		slices.SortFunc(r.pending[i].list, func(a, b int) int {
			return cmp.Or(cmp.Compare(list[a].At, list[b].At), cmp.Compare(a, b))
		})
	}
}

// probeBefore takes partition pi's probes due before an event at ts
// reaches it.
func (r *Replayer) probeBefore(pi int, ts int64) {
	p, q := r.parts[pi], &r.pending[pi]
	for q.next < len(q.list) && r.probes[q.list[q.next]].At < ts {
		r.take(p, q.list[q.next])
		q.next++
	}
}

// probeAtEnd takes every probe left when the replay ends at t.
func (r *Replayer) probeAtEnd(t int64) {
	for pi, p := range r.parts {
		q := &r.pending[pi]
		for ; q.next < len(q.list); q.next++ {
			i := q.list[q.next]
			if r.probes[i].At > t {
				r.onProbe(i, nil)
				continue
			}
			r.take(p, i)
		}
	}
}

func (r *Replayer) take(p *Partition, i int) {
	pr := r.probes[i]
	a := p.accounts[xxhash.Sum64String(pr.AccountID)]
	if a == nil || a.id != pr.AccountID {
		r.onProbe(i, nil)
		return
	}
	// Windows are read at the probe's time; an account's rings cannot
	// answer for a day before its newest event.
	s := p.stateAt(a, max(pr.At, a.lastEventNs))
	r.onProbe(i, &s)
}
