package engine

import (
	"cmp"
	"slices"

	"github.com/cespare/xxhash/v2"

	"github.com/pulsehq/pulse/rules"
)

// Replayer drives partitions from a file instead of Kafka: each event goes
// to virtual partition xxhash(account_id) mod P, in file order, so a replay
// sees the same per-partition order a daemon would. It is not safe for
// concurrent use.
type Replayer struct {
	parts  []*Partition
	dec    Decoder
	ev     Event
	at     int64 // events after it are ignored; 0 = no limit
	wall   int64
	maxTs  int64
	counts [NumReasons]uint64
	after  uint64
	trans  []rules.Transition
	scores []ScoreRow // with Config.ScoreRows

	probes  []Probe // see SetProbes
	pending []probes
	onProbe func(i int, s *AccountState)
	pipe    *shadowPipe // see Shadow

	// OnReject, if set, is called for each rejected event with its line
	// number (from 1), reason and a description.
	OnReject func(line int, reason Reason, detail string)
}

// NewReplayer returns a replay over partitions virtual partitions. at is
// the evaluation time in Unix nanoseconds (0: the highest ts seen); wall is
// the wall clock for the future check (0: no check).
func NewReplayer(rs *rules.Ruleset, cfg Config, partitions int, at, wall int64) *Replayer {
	r := &Replayer{at: at, wall: wall}
	for i := range partitions {
		r.parts = append(r.parts, NewPartition(int32(i), rs, cfg))
	}
	return r
}

// Partitions returns the virtual partitions, for tools that checkpoint
// or inspect them; the replay keeps using them.
func (r *Replayer) Partitions() []*Partition { return r.parts }

// PartitionOf returns the virtual partition of an account id.
func PartitionOf(account []byte, partitions int) int {
	return int(xxhash.Sum64(account) % uint64(partitions))
}

// Line decodes and applies one JSONL line; lineNo is reported on rejection.
func (r *Replayer) Line(lineNo int, line []byte) {
	reason := r.dec.Decode(line, &r.ev)
	detail := ""
	if reason == ReasonOK {
		if r.at != 0 && r.ev.Ts > r.at {
			r.after++
			return
		}
		pi := PartitionOf(r.ev.Account, len(r.parts))
		if r.pending != nil {
			r.probeBefore(pi, r.ev.Ts)
		}
		p := r.parts[pi]
		reason = p.Apply(&r.ev, r.wall)
		if reason == ReasonOK {
			r.maxTs = max(r.maxTs, r.ev.Ts)
			r.trans = append(r.trans, p.TakeTransitions()...)
			r.scores = append(r.scores, p.TakeScores()...)
		} else {
			detail = reasonDetails[reason]
		}
	} else {
		detail = r.dec.Detail()
	}
	r.counts[reason]++
	if reason != ReasonOK && r.OnReject != nil {
		r.OnReject(lineNo, reason, detail)
	}
}

var reasonDetails = map[Reason]string{
	ReasonLate:         "older than the retention horizon",
	ReasonFuture:       "further ahead of the wall clock than max_future",
	ReasonCollision:    "account_id hashes like another account's",
	ReasonAccountLimit: "the partition holds max_accounts accounts already",
	ReasonUserLimit:    "the account holds max_users_per_account users already",
}

// Counts returns how many lines ended with each reason so far, and how
// many were ignored for being after the evaluation time.
func (r *Replayer) Counts() (byReason [NumReasons]uint64, afterAt uint64) {
	return r.counts, r.after
}

// Finish advances every partition to the evaluation time and evaluates
// every account there. It returns that time.
func (r *Replayer) Finish() int64 {
	t := r.at
	if t == 0 {
		t = r.maxTs
	}
	if r.pending != nil {
		r.probeAtEnd(t)
	}
	for _, p := range r.parts {
		p.AdvanceTo(t)
		p.EvaluateAll()
		r.trans = append(r.trans, p.TakeTransitions()...)
		r.scores = append(r.scores, p.TakeScores()...)
	}
	r.closePipe()
	return t
}

// EachState calls fn with every account's state, in account-id order. The
// state is valid only during the call: states are built one at a time, so
// a replay of a million accounts never holds a million states.
func (r *Replayer) EachState(fn func(*AccountState)) {
	type ref struct {
		id   string
		part *Partition
	}
	var refs []ref
	for _, p := range r.parts {
		refs = slices.Grow(refs, p.Len())
		p.eachAccount(func(a *account) { refs = append(refs, ref{a.id, p}) })
	}
	slices.SortFunc(refs, func(a, b ref) int { return cmp.Compare(a.id, b.id) })
	for _, x := range refs {
		s, _ := x.part.State(x.id)
		fn(&s)
	}
}

// Scores returns the score rows emitted (with Config.ScoreRows), in
// emission order.
func (r *Replayer) Scores() []ScoreRow { return r.scores }

// Transitions returns the alert transitions in event-time order (ties by
// account, rule and state), independent of the partition count.
func (r *Replayer) Transitions() []rules.Transition {
	out := slices.Clone(r.trans)
	sortTransitions(out)
	return out
}
