// Package backoff spaces out retries: capped exponential backoff with
// jitter, the one policy of every retry loop in Pulse (the Kafka consumer's
// group, fetches and dead letters, the sink writes, ClickHouse and
// webhooks).
//
// A Backoff hands out pauses (Next) and waits them out (Wait, After); the
// caller decides what to retry and when to give up. Its randomness and its
// timer are fields, so a test can make the pauses exact and the waits
// instant, or run under testing/synctest, where time.After is fake.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is capped exponential backoff with jitter. The n-th pause is
// drawn uniformly from [d/2, 3d/2) where d is Base·2ⁿ⁻¹, at most Max: its
// mean is d, and clients that failed together do not retry together. Set
// Base and Max (New does); a Backoff is not safe for concurrent use.
type Backoff struct {
	Base, Max time.Duration
	// Rand returns a random number in [0, n); nil means math/rand/v2's
	// Int64N.
	Rand func(n int64) int64
	// After waits as time.After does; nil means time.After.
	After func(time.Duration) <-chan time.Time

	cur time.Duration // the next pause's d; 0 before the first
}

// New returns a Backoff whose pauses start around base and double up to
// around max.
func New(base, max time.Duration) *Backoff { return &Backoff{Base: base, Max: max} }

// Next returns the next pause and doubles the one after, up to Max.
func (b *Backoff) Next() time.Duration {
	if b.cur == 0 {
		b.cur = b.Base
	}
	d := b.cur
	b.cur = min(b.cur*2, b.Max)
	if d <= 0 {
		return 0
	}
	r := rand.Int64N
	if b.Rand != nil {
		r = b.Rand
	}
	return d/2 + time.Duration(r(int64(d)))
}

// Reset makes the next pause the first again: call it after a success.
func (b *Backoff) Reset() { b.cur = 0 }

// Timer returns a channel that receives once d has passed, for callers
// that wait on other channels too.
func (b *Backoff) Timer(d time.Duration) <-chan time.Time {
	if b.After != nil {
		return b.After(d)
	}
	return time.After(d)
}

// Wait waits out the next pause, or until ctx ends: it returns ctx.Err()
// if ctx ended first (or before), else nil.
func (b *Backoff) Wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-b.Timer(b.Next()):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
