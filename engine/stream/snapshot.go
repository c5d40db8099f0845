package stream

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pulsehq/pulse/engine"
)

// Readers (the HTTP API, the Prometheus aggregates) never enter a task:
// each task publishes an engine.Snapshot of its partition, and readers take
// the latest one. A snapshot is built when a reader asks for a fresh one,
// which the task answers between batches and while it waits for a sink
// write; and before a checkpoint's sink flush, which it cannot interrupt.
// Nothing is built while nobody reads: a snapshot costs as much as a
// listing of every account.
type snapshots struct {
	cur  atomic.Pointer[engine.Snapshot]
	want chan struct{} // a reader asks for a fresh snapshot; capacity 1

	mu   sync.Mutex
	next chan struct{} // closed by the next publish

	dirty bool // task goroutine only: events were applied since cur was built
}

// startSnapshots publishes the restored partition's first snapshot; it
// runs before the task is registered, so readers always find one.
func (t *task) startSnapshots() {
	t.snap.want = make(chan struct{}, 1)
	t.snap.next = make(chan struct{})
	t.snap.dirty = true
	t.publish()
}

// publish makes the partition's current state the latest snapshot (a new
// one if anything changed since the last, else the last one marked
// current) and wakes the readers waiting for it. Task goroutine only.
func (t *task) publish() {
	if rs := t.c.rules.Load(); rs != nil && rs != t.part.Rules() {
		t.part.SetRules(rs) // as apply would: a reader sees the rules in force
		t.snap.dirty = true
	}
	now := t.c.cfg.Now().UnixNano()
	if cur := t.snap.cur.Load(); cur != nil && !t.snap.dirty {
		cur.MarkCurrent(now)
	} else {
		t.snap.cur.Store(t.part.Snapshot(now))
		t.snap.dirty = false
	}
	t.snap.mu.Lock()
	close(t.snap.next)
	t.snap.next = make(chan struct{})
	t.snap.mu.Unlock()
}

// publishIfDirty publishes before the task blocks where it cannot answer
// readers.
func (t *task) publishIfDirty() {
	if t.snap.dirty {
		t.publish()
	}
}

// The consumer is what readers of account state are given.
var _ engine.View = (*Consumer)(nil)

// Snapshots implements engine.View: it returns the latest snapshot of
// every partition this instance owns, in partition order. Partitions whose snapshot is older than maxAge
// are asked for a fresh one, and Snapshots waits for them until ctx ends;
// one that does not answer in time (held up by a sink flush, or a long
// batch) is returned with its last snapshot, whose Current says how stale
// it may be. Snapshots never waits past ctx, whatever the sinks do.
func (c *Consumer) Snapshots(ctx context.Context, maxAge time.Duration) []*engine.Snapshot {
	c.mu.Lock()
	tasks := make([]*task, 0, len(c.tasks))
	for _, t := range c.tasks {
		tasks = append(tasks, t)
	}
	c.mu.Unlock()
	sort.Slice(tasks, func(i, j int) bool { return tasks[i].partition < tasks[j].partition })
	oldest := c.cfg.Now().Add(-maxAge).UnixNano()
	var waits []chan struct{}
	for _, t := range tasks {
		if s := t.snap.cur.Load(); s != nil && s.Current() >= oldest {
			continue
		}
		t.snap.mu.Lock()
		next := t.snap.next
		t.snap.mu.Unlock()
		select {
		case t.snap.want <- struct{}{}:
		default: // asked already
		}
		waits = append(waits, next)
	}
	for _, w := range waits {
		select {
		case <-w:
		case <-ctx.Done():
		}
	}
	out := make([]*engine.Snapshot, 0, len(tasks))
	for _, t := range tasks {
		if s := t.snap.cur.Load(); s != nil {
			out = append(out, s)
		}
	}
	return out
}
