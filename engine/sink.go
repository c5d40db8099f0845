package engine

import (
	"context"

	"github.com/pulsehq/pulse/rules"
)

// Batch is what a partition hands to the sinks after applying a run of
// events: the alert transitions they caused, the score rows they produced
// and the renewal outcomes they carried, each in emission order.
type Batch struct {
	Partition   int32
	Transitions []rules.Transition
	Scores      []ScoreRow
	Revenue     []RevenueRow
}

// RevenueRow is one renewal outcome (a renewal event, SPEC §5 "Revenue"),
// with the account's segment and CSM when it was applied. A replay emits
// the same rows, keyed by (account, ts, outcome).
type RevenueRow struct {
	AccountID string
	Ts        int64
	Outcome   Outcome
	ArrBefore float64
	ArrAfter  float64
	Segment   string
	CSM       string
}

// ScoreRow is one point of an account's score history: emitted when the
// score moves by at least ScoreStep points, the grade or the depth
// changes, or ScoreInterval of event time passed since the last row (only
// when Config.ScoreRows is set). Rows are deterministic: a replay of the
// same events emits the same rows, with the same (account, ts) keys.
type ScoreRow struct {
	AccountID string
	Ts        int64
	Score     float64
	Grade     rules.Grade
	Depth     rules.Depth
	Scorecard string // the scorecard that scored the account
	Attrs     [rules.NumAttrs]string
	Metrics   rules.Values
}

// ScoreStep is the score change that emits a score row on its own.
const ScoreStep = 1.0

// Sink receives the outputs of the engine. Write is called by one
// partition's goroutine at a time per partition, but different partitions
// call it concurrently, so implementations must be safe for concurrent use.
//
// Write returns once the batch is accepted (or fails): durably, unless the
// sink is a Flusher, which may buffer it. The engine commits Kafka offsets
// only past batches every sink accepted and every Flusher flushed, and
// retries a failed Write with backoff; a slow or failing sink applies
// backpressure by not returning. Write must not keep b or its slices after
// it returns (a sink that buffers copies) — except after a failure, when
// it may still read (never write) them; callers do not modify a batch once
// handed over, and reuse its score rows once Write succeeded.
type Sink interface {
	Write(ctx context.Context, b *Batch) error
	Close(ctx context.Context) error
}

// Flusher is a Sink that buffers: its Write may return before the batch is
// durable. Flush returns once everything written before the call is
// durable (or fails, or ctx ends). The engine flushes before every
// checkpoint, so offsets never pass what a Flusher holds only in memory.
type Flusher interface {
	Flush(ctx context.Context) error
}

// Flush flushes s if it is a Flusher.
func Flush(ctx context.Context, s Sink) error {
	if f, ok := s.(Flusher); ok {
		return f.Flush(ctx)
	}
	return nil
}

// Sinks fans a batch out to several sinks, in order; the first error stops
// the write (it is retried whole, so sinks must tolerate a batch twice —
// every output carries a stable id for that).
type Sinks []Sink

// Write implements Sink.
func (s Sinks) Write(ctx context.Context, b *Batch) error {
	for _, sink := range s {
		if err := sink.Write(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

// Flush implements Flusher: it flushes every sink that buffers.
func (s Sinks) Flush(ctx context.Context) error {
	for _, sink := range s {
		if err := Flush(ctx, sink); err != nil {
			return err
		}
	}
	return nil
}

// Close implements Sink.
func (s Sinks) Close(ctx context.Context) error {
	var first error
	for _, sink := range s {
		if err := sink.Close(ctx); err != nil && first == nil {
			first = err
		}
	}
	return first
}
