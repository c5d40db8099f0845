package engine

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"slices"

	"github.com/cespare/xxhash/v2"

	"github.com/pulsehq/pulse/rules"
)

// A checkpoint is one partition's whole state plus the offset of the next
// event to read, so a restart (or another instance, after a rebalance)
// resumes exactly where the state stands. Layout, all integers varint
// unless said otherwise:
//
//	"PULSECKP" | version u16 (big endian) | payload | crc32c(payload) u32
//	payload: partition, next offset, rules version, clock, next sweep,
//	         account count, accounts…, (version 3:) held-back events,
//	         (version 4:) retired renewal outcomes
//
// Readers refuse unknown versions and bad checksums: a checkpoint is
// never silently half-used. Version 3 adds, per account, the health-model
// v2 state (grade age, score history, scorecard, contract/renewal/touch/
// stakeholder state); version 2 checkpoints restore with that state empty.
// Version 4 adds the renewal outcomes of the trailing twelve months, per
// account and retired (revenue.go); older checkpoints restore without.

const (
	checkpointMagic   = "PULSECKP"
	checkpointVersion = 4
	oldestReadable    = 2
)

// ErrCorruptCheckpoint is wrapped by every checkpoint decoding error.
var ErrCorruptCheckpoint = errors.New("corrupt checkpoint")

// ErrNoCheckpoint is wrapped by a checkpoint store's Load when it holds no
// usable checkpoint of a partition: the partition starts from its
// configured position.
var ErrNoCheckpoint = errors.New("no checkpoint")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checkpoint is the decoded header of a checkpoint.
type Checkpoint struct {
	Partition    int32
	NextOffset   int64 // offset of the first event not in the state
	RulesVersion string
}

// AppendCheckpoint appends the partition's checkpoint to b.
func (p *Partition) AppendCheckpoint(b []byte, nextOffset int64) []byte {
	b = append(b, checkpointMagic...)
	b = binary.BigEndian.AppendUint16(b, checkpointVersion)
	start := len(b)
	e := encoder{b: b}
	e.varint(int64(p.id))
	e.varint(nextOffset)
	e.string(p.rules.Version)
	e.varint(p.clock)
	e.varint(p.nextSweep)
	e.uvarint(uint64(len(p.order)))
	for _, a := range p.order {
		e.account(a)
	}
	e.uvarint(uint64(len(p.held)))
	for i := range p.held {
		e.event(&p.held[i].ev)
	}
	e.uvarint(uint64(p.run))
	e.outcomes(p.retired)
	b = e.b
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

// RestorePartition rebuilds a partition from a checkpoint, to evaluate rs.
func RestorePartition(data []byte, rs *rules.Ruleset, cfg Config) (*Partition, Checkpoint, error) {
	var cp Checkpoint
	head := len(checkpointMagic) + 2
	if len(data) < head+4 || string(data[:len(checkpointMagic)]) != checkpointMagic {
		return nil, cp, fmt.Errorf("%w: not a Pulse checkpoint", ErrCorruptCheckpoint)
	}
	version := binary.BigEndian.Uint16(data[len(checkpointMagic):])
	if version < oldestReadable || version > checkpointVersion {
		return nil, cp, fmt.Errorf("%w: version %d, this Pulse reads %d to %d", ErrCorruptCheckpoint, version, oldestReadable, checkpointVersion)
	}
	payload := data[head : len(data)-4]
	if crc32.Checksum(payload, castagnoli) != binary.BigEndian.Uint32(data[len(data)-4:]) {
		return nil, cp, fmt.Errorf("%w: checksum mismatch", ErrCorruptCheckpoint)
	}
	d := decoder{b: payload, version: version}
	cp.Partition = int32(d.varint())
	cp.NextOffset = d.varint()
	cp.RulesVersion = d.string()
	p := NewPartition(cp.Partition, rs, cfg)
	p.clock = d.varint()
	p.nextSweep = d.varint()
	n := d.uvarint()
	if d.err == nil && n > uint64(len(payload)) {
		d.err = errors.New("account count larger than the file")
	}
	p.order = make([]*account, 0, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		a := d.account(&p.interner)
		p.accounts[xxhash.Sum64String(a.id)] = a
		p.order = append(p.order, a)
		if a.dueNs != 0 {
			p.due.push(a)
		}
	}
	if version >= 3 {
		for range d.count(8) {
			p.held = append(p.held, copyEvent(d.event()))
		}
		p.run = int(d.uvarint())
		if p.run > len(p.held) {
			d.fail("held events")
		}
	}
	if version >= 4 {
		p.retired = d.outcomes(&p.interner)
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d bytes after the last account", len(d.b))
	}
	if d.err != nil {
		return nil, cp, fmt.Errorf("%w: %v", ErrCorruptCheckpoint, d.err)
	}
	return p, cp, nil
}

// WriteCheckpointFile writes data to path atomically: a temporary file in
// the same directory, fsync, rename, fsync of the directory. A crash leaves
// either the old checkpoint or the new one, never a torn file.
func WriteCheckpointFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

type encoder struct {
	b     []byte
	users []user // scratch: users in hash order, so encoding is canonical
}

func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) f64(v float64)    { e.b = binary.LittleEndian.AppendUint64(e.b, math.Float64bits(v)) }
func (e *encoder) u64(v uint64)     { e.b = binary.LittleEndian.AppendUint64(e.b, v) }
func (e *encoder) string(s string) {
	e.uvarint(uint64(len(s)))
	e.b = append(e.b, s...)
}

func (e *encoder) account(a *account) {
	e.string(a.id)
	var renewalNs, renewalTs int64
	if a.crm != nil {
		renewalNs, renewalTs = a.crm.renewalNs, a.crm.renewalTs
	}
	for _, v := range []int64{a.firstNs, a.lastEventNs, a.lastEvalNs, int64(a.head), a.lastActiveNs, a.lastTicketNs, renewalNs, renewalTs} {
		e.varint(v)
	}
	for _, v := range a.events {
		e.uvarint(uint64(v))
	}
	var api apiRing
	if a.api != nil {
		api = *a.api
	}
	for _, v := range api {
		e.uvarint(uint64(v))
	}
	for _, v := range a.sessionMs {
		e.uvarint(v)
	}
	e.users = e.users[:0]
	for _, u := range a.users.slots {
		if u.hash != 0 {
			e.users = append(e.users, u)
		}
	}
	slices.SortFunc(e.users, func(x, y user) int { return cmp.Compare(x.hash, y.hash) })
	e.uvarint(uint64(len(e.users)))
	for _, u := range e.users {
		e.u64(u.hash)
		e.u64(u.days)
		e.varint(int64(u.mobileDay))
	}
	e.uvarint(uint64(len(a.modules)))
	for _, m := range a.modules {
		e.u64(m.hash)
		e.varint(int64(m.lastDay))
	}
	e.uvarint(uint64(len(a.tickets)))
	for _, t := range a.tickets {
		e.u64(t.hash)
		e.varint(t.openedNs)
	}
	e.uvarint(uint64(len(a.nps)))
	for _, n := range a.nps {
		e.u64(n.user)
		e.varint(n.ts)
		e.f64(n.value)
	}
	e.uvarint(uint64(len(a.seats)))
	for _, s := range a.seats {
		e.varint(s.ts)
		e.f64(s.seats)
	}
	for i := range a.attrs {
		e.string(a.attrs[i])
		e.varint(a.attrTs[i])
	}
	e.uvarint(uint64(a.rulesState.Grade))
	e.uvarint(uint64(len(a.rulesState.Alerts)))
	for _, s := range a.rulesState.Alerts {
		e.string(s.Rule)
		e.uvarint(alertCode(s.State))
		e.varint(s.Since)
	}
	e.varint(a.row.ts)
	e.f64(a.row.score)
	e.uvarint(uint64(a.row.grade))
	e.uvarint(uint64(a.row.depth))

	// Version 3.
	e.varint(int64(a.eventsFrom))
	e.string(a.rulesState.Scorecard)
	e.uvarint(uint64(a.rulesState.Caps))
	e.varint(a.gradeSince)
	e.varint(a.dueNs)
	e.varint(int64(a.histStart))
	e.uvarint(uint64(len(a.hist)))
	for _, c := range a.hist {
		e.uvarint(uint64(c))
	}
	if a.crm == nil {
		e.uvarint(0)
		return
	}
	c := a.crm
	e.uvarint(1)
	e.f64(c.arr)
	for _, v := range []int64{c.arrTs, c.lastTouchNs, c.lastRenewalNs} {
		e.varint(v)
	}
	e.uvarint(uint64(len(c.touches)))
	for _, ts := range c.touches {
		e.varint(ts)
	}
	e.uvarint(uint64(len(c.stakeholders)))
	for _, s := range c.stakeholders {
		e.varint(s.ts)
		out := uint64(0)
		if s.championOut {
			out = 1
		}
		e.uvarint(out)
	}
	e.outcomes(c.outcomes) // version 4
}

// outcomes writes a list of renewal outcomes.
func (e *encoder) outcomes(list []renewalOutcome) {
	e.uvarint(uint64(len(list)))
	for _, o := range list {
		e.varint(o.ts)
		e.b = append(e.b, byte(o.outcome))
		e.f64(o.arrBefore)
		e.f64(o.arrAfter)
		e.string(o.segment)
		e.string(o.csm)
	}
}

// event writes a held-back event: every field Apply reads.
func (e *encoder) event(ev *Event) {
	e.varint(ev.Ts)
	e.b = append(e.b, byte(ev.Type), byte(ev.Platform), byte(ev.Outcome), byte(ev.Channel), byte(ev.Role), byte(ev.Change))
	for _, b := range [][]byte{ev.Account, ev.User, ev.Module, ev.Ticket} {
		e.uvarint(uint64(len(b)))
		e.b = append(e.b, b...)
	}
	for _, v := range []float64{ev.Duration, ev.Value, ev.ARR, ev.ARRBefore, ev.ARRAfter, ev.Attrs.Seats} {
		e.f64(v)
	}
	e.varint(ev.Count)
	at := &ev.Attrs
	flags := uint64(0)
	if at.HasSeats {
		flags |= 1
	}
	if at.HasRenewal {
		flags |= 2
	}
	for i, has := range at.Has {
		if has {
			flags |= 4 << i
		}
	}
	e.uvarint(flags)
	e.varint(at.RenewalNs)
	for i, has := range at.Has {
		if has {
			e.uvarint(uint64(len(at.Values[i])))
			e.b = append(e.b, at.Values[i]...)
		}
	}
}

// decoder reads what encoder wrote; the first error sticks and later reads
// return zeros, so callers check once at the end.
type decoder struct {
	b       []byte
	err     error
	version uint16
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("truncated or malformed %s", what)
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("number")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("number")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) u64() uint64 {
	if len(d.b) < 8 {
		d.fail("word")
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) f64() float64 { return math.Float64frombits(d.u64()) }

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("string")
		return nil
	}
	s := d.b[:n]
	d.b = d.b[n:]
	return s
}

func (d *decoder) string() string { return string(d.bytes()) }

// event reads what encoder.event wrote; its slices point into the
// checkpoint (the caller copies them).
func (d *decoder) event() *Event {
	ev := &Event{Ts: d.varint()}
	if len(d.b) < 6 {
		d.fail("event")
		return ev
	}
	ev.Type, ev.Platform, ev.Outcome = Type(d.b[0]), Platform(d.b[1]), Outcome(d.b[2])
	ev.Channel, ev.Role, ev.Change = Channel(d.b[3]), Role(d.b[4]), Change(d.b[5])
	d.b = d.b[6:]
	if ev.Type == 0 || ev.Type > lastType || int(ev.Outcome) >= len(OutcomeNames) {
		d.fail("event type")
	}
	ev.Account, ev.User, ev.Module, ev.Ticket = d.bytes(), d.bytes(), d.bytes(), d.bytes()
	ev.Duration, ev.Value, ev.ARR, ev.ARRBefore, ev.ARRAfter, ev.Attrs.Seats = d.f64(), d.f64(), d.f64(), d.f64(), d.f64(), d.f64()
	ev.Count = d.varint()
	flags := d.uvarint()
	ev.Attrs.HasSeats, ev.Attrs.HasRenewal = flags&1 != 0, flags&2 != 0
	ev.Attrs.RenewalNs = d.varint()
	for i := range ev.Attrs.Has {
		if flags&(4<<i) != 0 {
			ev.Attrs.Has[i] = true
			ev.Attrs.Values[i] = d.bytes()
		}
	}
	return ev
}

// count reads a length and checks it against the bytes left (each element
// takes at least min bytes), so a corrupt length cannot allocate wildly.
func (d *decoder) count(min int) int {
	n := d.uvarint()
	if n > uint64(len(d.b)/min) {
		d.fail("length")
		return 0
	}
	return int(n)
}

func (d *decoder) account(in *interner) *account {
	a := &account{id: d.string()}
	a.idLen = uint16(len(a.id))
	a.firstNs, a.lastEventNs, a.lastEvalNs = d.varint(), d.varint(), d.varint()
	a.head = int32(d.varint())
	a.lastActiveNs, a.lastTicketNs = d.varint(), d.varint()
	renewalNs, renewalTs := d.varint(), d.varint()
	if d.version >= 3 {
		for i := range a.events {
			a.events[i] = uint32(d.uvarint())
		}
	} else {
		// Version 2 kept 16 days of events: move them to their days' slots.
		const v2Days = 16
		var old [v2Days]uint32
		for i := range old {
			old[i] = uint32(d.uvarint())
		}
		for day := a.head - v2Days + 1; day <= a.head; day++ {
			if day > 0 {
				a.events[day%eventDays] = old[day%v2Days]
			}
		}
		// Older days were not kept: a window reaching them is unknown,
		// unless the account is younger than that (read below).
		a.eventsFrom = a.head - v2Days + 1
	}
	var api apiRing
	for i := range api {
		api[i] = uint32(d.uvarint())
	}
	if api != (apiRing{}) {
		a.api = &api
	}
	for i := range a.sessionMs {
		a.sessionMs[i] = d.uvarint()
	}
	for range d.count(17) {
		u, _ := a.users.get(d.u64())
		u.days = d.u64()
		u.mobileDay = int32(d.varint())
	}
	if n := d.count(9); n > 0 {
		a.modules = make([]moduleUse, n)
		for i := range a.modules {
			a.modules[i] = moduleUse{hash: d.u64(), lastDay: int32(d.varint())}
		}
	}
	if n := d.count(9); n > 0 {
		a.tickets = make([]openTicket, n)
		for i := range a.tickets {
			a.tickets[i] = openTicket{hash: d.u64(), openedNs: d.varint()}
		}
	}
	if n := d.count(17); n > 0 {
		a.nps = make([]npsAnswer, n)
		for i := range a.nps {
			a.nps[i] = npsAnswer{user: d.u64(), ts: d.varint(), value: d.f64()}
		}
	}
	if n := d.count(9); n > 0 {
		a.seats = make([]seatsAt, n)
		for i := range a.seats {
			a.seats[i] = seatsAt{ts: d.varint(), seats: d.f64()}
		}
	}
	for i := range a.attrs {
		a.attrs[i] = in.intern(d.bytes())
		a.attrTs[i] = d.varint()
	}
	a.rulesState.Grade = rules.Grade(d.uvarint())
	if n := d.count(3); n > 0 {
		a.rulesState.Alerts = make([]rules.ActiveAlert, n)
		for i := range a.rulesState.Alerts {
			s := &a.rulesState.Alerts[i]
			s.Rule = d.string()
			s.State = alertState(d.uvarint())
			s.Since = d.varint()
		}
	}
	a.row = lastRow{ts: d.varint(), score: d.f64(), grade: rules.Grade(d.uvarint()), depth: rules.Depth(d.uvarint())}
	if int(a.rulesState.Grade) >= rules.NumGrades || int(a.row.grade) >= rules.NumGrades || int(a.row.depth) >= rules.NumDepths {
		d.fail("rules state")
	}
	if d.version >= 3 {
		d.accountV3(a, in)
	} else if dayOf(a.firstNs) >= a.eventsFrom {
		a.eventsFrom = 0 // the account is no older than the ring
	}
	if renewalTs != 0 { // after accountV3, which sets crm
		c := a.crmState()
		c.renewalNs, c.renewalTs = renewalNs, renewalTs
	}
	return a
}

// accountV3 reads the health-model v2 state of an account (and, from
// version 4, its renewal outcomes).
func (d *decoder) accountV3(a *account, in *interner) {
	a.eventsFrom = int32(d.varint())
	a.rulesState.Scorecard = d.string()
	a.rulesState.Caps = uint32(d.uvarint())
	a.gradeSince = d.varint()
	a.dueNs = d.varint()
	a.histStart = int32(d.varint())
	if n := d.count(1); n > 0 {
		a.hist = make([]uint32, n)
		for i := range a.hist {
			a.hist[i] = uint32(d.uvarint())
		}
	}
	if len(a.hist) > historyDays {
		d.fail("score history")
	}
	if d.uvarint() == 0 {
		return
	}
	c := &crmState{arr: d.f64(), arrTs: d.varint(), lastTouchNs: d.varint(), lastRenewalNs: d.varint()}
	if n := d.count(1); n > 0 {
		c.touches = make([]int64, n)
		for i := range c.touches {
			c.touches[i] = d.varint()
		}
	}
	if n := d.count(2); n > 0 {
		c.stakeholders = make([]stakeholder, n)
		for i := range c.stakeholders {
			c.stakeholders[i] = stakeholder{ts: d.varint(), championOut: d.uvarint() == 1}
		}
	}
	if d.version >= 4 {
		c.outcomes = d.outcomes(in)
	}
	a.crm = c
}

// An active alert's state is stored as 0 (pending) or 1 (firing) — the
// flag of the versions before the enum — so every version reads it alike.
func alertCode(s rules.AlertState) uint64 {
	if s == rules.StateFiring {
		return 1
	}
	return 0
}

func alertState(code uint64) rules.AlertState {
	if code == 1 {
		return rules.StateFiring
	}
	return rules.StatePending
}

// outcomes reads what encoder.outcomes wrote.
func (d *decoder) outcomes(in *interner) []renewalOutcome {
	n := d.count(20)
	if n == 0 {
		return nil
	}
	out := make([]renewalOutcome, n)
	for i := range out {
		o := &out[i]
		o.ts = d.varint()
		if len(d.b) == 0 || d.b[0] == byte(OutcomeNone) || int(d.b[0]) >= len(OutcomeNames) {
			d.fail("renewal outcome")
			return nil
		}
		o.outcome = Outcome(d.b[0])
		d.b = d.b[1:]
		o.arrBefore, o.arrAfter = d.f64(), d.f64()
		o.segment, o.csm = in.intern(d.bytes()), in.intern(d.bytes())
	}
	return out
}
