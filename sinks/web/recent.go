package web

import (
	"context"
	"slices"
	"sync"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
)

// The default bounds of a Recent store: enough for an account view's list
// of recent transitions, a few MB at most.
const (
	RecentPerAccount = 20
	RecentTotal      = 10_000
)

// Recent keeps the latest alert transitions of each account in memory, so
// the account view can show what happened lately and the message of each
// firing alert (the engine renders messages into transitions only). It
// keeps at most perAccount transitions per account and total in all; past
// either bound the oldest go first.
//
// Recent is an engine.Sink. Write copies what it keeps, never fails and
// never waits for anything but a mutex held for a few copies (no I/O), so
// it cannot hold up scoring. A batch written twice (the engine retries a
// batch whole when a later sink fails) is kept once: a transition is
// identified by its alert id and state.
//
// It is memory only: after a restart it starts empty and fills with the
// transitions from then on (ClickHouse and the transitions file keep them
// all). Recent is safe for concurrent use.
type Recent struct {
	perAccount, total int

	mu        sync.Mutex
	byAccount map[string][]kept // oldest first
	// fifo lists what was kept in the order it came, for the total bound;
	// it may still name entries the per-account bound dropped (skipped
	// when met, and compacted away).
	fifo []fifoKey
	head int // fifo[:head] are gone
	n    int // transitions kept
	seq  uint64
}

type kept struct {
	seq uint64
	t   rules.Transition
}

type fifoKey struct {
	account string
	seq     uint64
}

// NewRecent returns an empty store of at most perAccount transitions per
// account and total in all (RecentPerAccount and RecentTotal where ≤ 0).
func NewRecent(perAccount, total int) *Recent {
	if perAccount <= 0 {
		perAccount = RecentPerAccount
	}
	if total <= 0 {
		total = RecentTotal
	}
	return &Recent{perAccount: perAccount, total: total, byAccount: map[string][]kept{}}
}

// Write implements engine.Sink: it keeps a copy of the batch's transitions
// (without their factors, which the account view reads from the state).
func (r *Recent) Write(_ context.Context, b *engine.Batch) error {
	if len(b.Transitions) == 0 {
		return nil
	}
	copies := make([]rules.Transition, len(b.Transitions))
	for i, t := range b.Transitions {
		t.Values = slices.Clone(t.Values)
		t.Factors = nil
		copies[i] = t
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range copies {
		r.add(&copies[i])
	}
	return nil
}

// Close implements engine.Sink; the store stays readable.
func (r *Recent) Close(context.Context) error { return nil }

func (r *Recent) add(t *rules.Transition) {
	list := r.byAccount[t.AccountID]
	if slices.ContainsFunc(list, func(k kept) bool { return k.t.ID == t.ID && k.t.State == t.State }) {
		return // a retried batch
	}
	if len(list) == r.perAccount {
		list = slices.Delete(list, 0, 1)
		r.n--
	}
	r.seq++
	r.byAccount[t.AccountID] = append(list, kept{seq: r.seq, t: *t})
	r.fifo = append(r.fifo, fifoKey{t.AccountID, r.seq})
	r.n++
	for r.n > r.total {
		r.dropOldest()
	}
	if live := len(r.fifo) - r.head; r.head > len(r.fifo)/2 || live > 2*r.n+64 {
		r.compact()
	}
}

// dropOldest drops the transition kept longest.
func (r *Recent) dropOldest() {
	for r.head < len(r.fifo) {
		k := r.fifo[r.head]
		r.fifo[r.head] = fifoKey{}
		r.head++
		list := r.byAccount[k.account]
		if len(list) == 0 || list[0].seq != k.seq {
			continue // the per-account bound dropped it already
		}
		if len(list) == 1 {
			delete(r.byAccount, k.account)
		} else {
			r.byAccount[k.account] = slices.Delete(list, 0, 1)
		}
		r.n--
		return
	}
}

// compact rebuilds fifo from the entries still kept. An account keeps
// exactly its transitions from its oldest kept one on (both bounds drop
// an account's oldest first), so a key is live when its seq is not older.
func (r *Recent) compact() {
	live := make([]fifoKey, 0, r.n+r.n/2)
	for _, k := range r.fifo[r.head:] {
		if list := r.byAccount[k.account]; len(list) > 0 && k.seq >= list[0].seq {
			live = append(live, k)
		}
	}
	r.fifo, r.head = live, 0
}

// Account returns the account's kept transitions, newest first. The
// caller may keep them but must not modify their Values.
func (r *Recent) Account(id string) []rules.Transition {
	r.mu.Lock()
	defer r.mu.Unlock()
	list := r.byAccount[id]
	out := make([]rules.Transition, len(list))
	for i, k := range list {
		out[len(list)-1-i] = k.t
	}
	return out
}

// Len returns the number of transitions kept.
func (r *Recent) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}
