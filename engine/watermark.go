package engine

import (
	"cmp"
	"slices"

	"github.com/cespare/xxhash/v2"
)

// The partition clock follows a watermark that ignores isolated outliers
// (SPEC §2): an event more than max_skew ahead of the clock — a
// clock-skewed producer, a live event amid a backfill — is held back
// instead of dragging every account of the partition into its future
// (false absences, false red grades). A run of ConfirmRun events held one
// after another (no event within range between them) confirms the new
// time: the run is applied in arrival order and the clock follows it. Any
// other held event is applied once the clock reaches its time, moved there
// by the events in range or by AdvanceTo (a replay's end, an idle
// partition) — never by held events themselves, so a skewed producer
// cannot pull the clock along one release at a time. The rule depends on the order of events only, so a
// replay equals a run; held events are part of the checkpoint.

// ConfirmRun is how many events in a row beyond the clock + max_skew move
// the clock to them. An isolated outlier is one to a few events amid
// events in range; a real jump (a backfill caught up, a partition that
// was silent for hours) sends a steady run.
const ConfirmRun = 3

// heldEvent is an event held back, with its own copy of the event's bytes.
type heldEvent struct {
	ev  Event
	buf []byte
}

// hold keeps ev back (it passed every other check); if it completes a
// confirming run, the run is applied.
func (p *Partition) hold(ev *Event) {
	p.outliers++
	p.held = append(p.held, copyEvent(ev))
	p.run++
	if p.run < ConfirmRun && len(p.held) < maxHeld {
		return
	}
	run := slices.Clone(p.held[len(p.held)-p.run:])
	clear(p.held[len(p.held)-p.run:])
	p.held = p.held[:len(p.held)-p.run]
	p.run = 0
	for i := range run {
		p.apply(&run[i].ev, xxhash.Sum64(run[i].ev.Account))
	}
	p.releaseHeld(p.clock)
}

// releaseHeld applies, in time order, the held events at or before t: each
// at its own time (the clock advances to it first, running what is due
// before it).
func (p *Partition) releaseHeld(t int64) {
	if len(p.held) == 0 || !slices.ContainsFunc(p.held, func(h heldEvent) bool { return h.ev.Ts <= t }) {
		return
	}
	var release, keep []heldEvent
	for _, h := range p.held {
		if h.ev.Ts <= t {
			release = append(release, h)
		} else {
			keep = append(keep, h)
		}
	}
	p.held, p.run = keep, 0
	slices.SortStableFunc(release, func(a, b heldEvent) int { return cmp.Compare(a.ev.Ts, b.ev.Ts) })
	for i := range release {
		p.apply(&release[i].ev, xxhash.Sum64(release[i].ev.Account))
	}
}

// TakeOutliers returns how many events were held back since the last call.
func (p *Partition) TakeOutliers() uint64 {
	n := p.outliers
	p.outliers = 0
	return n
}

// Held returns how many events are held back now.
func (p *Partition) Held() int { return len(p.held) }

// copyEvent copies ev's byte slices into one buffer of its own.
func copyEvent(ev *Event) heldEvent {
	h := heldEvent{ev: *ev}
	size := len(ev.Account) + len(ev.User) + len(ev.Module) + len(ev.Ticket)
	for _, v := range ev.Attrs.Values {
		size += len(v)
	}
	h.buf = make([]byte, 0, size)
	own := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		start := len(h.buf)
		h.buf = append(h.buf, b...)
		return h.buf[start:len(h.buf):len(h.buf)]
	}
	h.ev.Account, h.ev.User, h.ev.Module, h.ev.Ticket = own(ev.Account), own(ev.User), own(ev.Module), own(ev.Ticket)
	for i, v := range ev.Attrs.Values {
		h.ev.Attrs.Values[i] = own(v)
	}
	return h
}
