package web

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pulsehq/pulse/engine"
)

// Answers come from snapshots the partitions publish (engine.Snapshot),
// never from the partitions themselves: a partition held back by a sink (a
// ClickHouse that is down during a catch-up) cannot answer, and its last
// snapshot is served instead, with its age.
const (
	// SnapshotMaxAge: a request asks partitions whose snapshot is older
	// than this for a fresh one.
	SnapshotMaxAge = time.Second
	// SnapshotWait bounds how long a request waits for fresh snapshots
	// before it answers from the last ones; with the merge, sort and
	// encoding of the answer it stays well within a second.
	SnapshotWait = 300 * time.Millisecond
)

// view is every account the instance holds, once, riskiest first, as the
// latest snapshots of its partitions have them.
type view struct {
	snaps    []*engine.Snapshot
	accounts []engine.MergedAccount // riskiest first
	byID     map[string]int         // index into accounts

	pfOnce sync.Once
	pf     *engine.Portfolio // see portfolio
}

// view reads the partitions' snapshots. A view is reused while no
// partition publishes a new snapshot.
func (s *Server) view(ctx context.Context) *view {
	ctx, cancel := context.WithTimeout(ctx, SnapshotWait)
	defer cancel()
	snaps := s.View.Snapshots(ctx, SnapshotMaxAge)
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	if s.lastView != nil && slices.Equal(s.lastView.snaps, snaps) {
		return s.lastView
	}
	v := &view{snaps: snaps, accounts: engine.Merge(snaps)}
	slices.SortFunc(v.accounts, func(a, b engine.MergedAccount) int { return riskOrder(&a.State, &b.State) })
	v.byID = make(map[string]int, len(v.accounts))
	for i, a := range v.accounts {
		v.byID[a.State.AccountID] = i
	}
	s.lastView = v
	return v
}

// account returns the account's merged record, or nil.
func (v *view) account(id string) *engine.MergedAccount {
	i, ok := v.byID[id]
	if !ok {
		return nil
	}
	return &v.accounts[i]
}

// clock is the event time the partitions that hold accounts have reached:
// the earliest of their clocks (0 if none).
func (v *view) clock() clock {
	var c clock
	for _, s := range v.snaps {
		if len(s.Accounts) > 0 && s.Clock != 0 && (c.oldest == 0 || s.Clock < c.oldest) {
			c.oldest = s.Clock
		}
	}
	return c
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// age is how stale a snapshot may be at now: how long ago its partition
// last confirmed it current.
func age(now time.Time, snap *engine.Snapshot) time.Duration {
	return max(now.Sub(time.Unix(0, snap.Current())), 0)
}

// seconds writes a duration in seconds with millisecond precision.
func seconds(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 3, 64) }

// setStaleness says how stale an answer may be: X-Pulse-Snapshot-Age is
// the age in seconds of the oldest snapshot the answer read,
// X-Pulse-Snapshot-As-Of the wall-clock time that snapshot was current,
// and X-Pulse-Snapshot-Ages every partition's age ("0=0.004,1=12.310").
func setStaleness(w http.ResponseWriter, now time.Time, snaps []*engine.Snapshot) {
	var oldest *engine.Snapshot
	var ages []string
	for _, sn := range snaps {
		if oldest == nil || sn.Current() < oldest.Current() {
			oldest = sn
		}
		ages = append(ages, strconv.Itoa(int(sn.Partition))+"="+seconds(age(now, sn)))
	}
	h := w.Header()
	if oldest == nil {
		h.Set("X-Pulse-Snapshot-Age", "0.000")
		return
	}
	h.Set("X-Pulse-Snapshot-Age", seconds(age(now, oldest)))
	h.Set("X-Pulse-Snapshot-As-Of", time.Unix(0, oldest.Current()).UTC().Format(time.RFC3339Nano))
	h.Set("X-Pulse-Snapshot-Ages", strings.Join(ages, ","))
}

// appendAccountJSON appends an account's state (SPEC §5) with what the
// API adds after its fields: the partition it was read from, how stale
// that partition's snapshot may be, and, for an account held by several
// partitions, which ("split_partitions").
func appendAccountJSON(b []byte, now time.Time, a *engine.MergedAccount) []byte {
	b = a.State.AppendJSON(b)
	b = b[:len(b)-1] // the closing brace
	b = append(b, `,"partition":`...)
	b = strconv.AppendInt(b, int64(a.Snapshot.Partition), 10)
	b = append(b, `,"snapshot_age_seconds":`...)
	b = append(b, seconds(age(now, a.Snapshot))...)
	if a.Split != nil {
		b = append(b, `,"split_partitions":[`...)
		for i, p := range a.Split {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, int64(p), 10)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}
