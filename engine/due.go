package engine

import "strings"

// dueQueue is a min-heap of accounts by the time they are due for
// evaluation (account.dueNs), ties by account id so the order is the same
// in a replay, a run and after a restore. An entry whose account was
// evaluated (or evicted) before its time is stale: account.dueNs no longer
// matches, and advance skips it.
type dueQueue struct {
	items []dueItem
}

type dueItem struct {
	at int64
	a  *account
}

func (q *dueQueue) less(i, j int) bool {
	x, y := q.items[i], q.items[j]
	if x.at != y.at {
		return x.at < y.at
	}
	return strings.Compare(x.a.id, y.a.id) < 0
}

// push adds a at its a.dueNs.
func (q *dueQueue) push(a *account) {
	q.items = append(q.items, dueItem{at: a.dueNs, a: a})
	for i := len(q.items) - 1; i > 0; {
		parent := (i - 1) / 2
		if !q.less(i, parent) {
			break
		}
		q.items[i], q.items[parent] = q.items[parent], q.items[i]
		i = parent
	}
}

// next returns the earliest due time, if any.
func (q *dueQueue) next() (int64, bool) {
	if len(q.items) == 0 {
		return 0, false
	}
	return q.items[0].at, true
}

// pop removes and returns the earliest entry's account.
func (q *dueQueue) pop() *account {
	top := q.items[0].a
	last := len(q.items) - 1
	q.items[0] = q.items[last]
	q.items[last] = dueItem{}
	q.items = q.items[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(q.items) && q.less(l, m) {
			m = l
		}
		if r < len(q.items) && q.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		q.items[i], q.items[m] = q.items[m], q.items[i]
		i = m
	}
	return top
}
