package stream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
)

// ErrPreviewIncomplete is returned by Preview when some partition did not
// finish its share before the deadline.
var ErrPreviewIncomplete = errors.New("preview incomplete")

// Preview evaluates a candidate ruleset against every account of every
// partition this instance owns, on each partition's goroutine in turn
// (between batches, as queries are answered), and returns the partitions'
// previews (engine.Partition.Preview) added up. Nothing changes and
// nothing is emitted.
//
// It returns by ctx's deadline: a partition that has not taken the query
// by then (a sink holds it back), or is still evaluating (it stops at
// once), makes it return an ErrPreviewIncomplete error that names the
// partitions done and not done. A partition busy evaluating the preview
// applies no events meanwhile.
func (c *Consumer) Preview(ctx context.Context, candidate *rules.Ruleset) (*engine.Preview, error) {
	c.mu.Lock()
	owned := make([]int32, 0, len(c.tasks))
	for id := range c.tasks {
		owned = append(owned, id)
	}
	c.mu.Unlock()
	slices.Sort(owned)

	var mu sync.Mutex
	closed := false // past the deadline: a query that runs late keeps nothing
	parts := map[int32]*engine.Preview{}
	err := c.do(ctx, func(p *engine.Partition) {
		pv, err := p.Preview(ctx, c.rules.Load(), candidate)
		mu.Lock()
		defer mu.Unlock()
		if err == nil && !closed {
			parts[p.ID()] = pv
		}
	})
	mu.Lock()
	closed = true
	mu.Unlock()

	var sum *engine.Preview
	var missing []int32
	for _, id := range owned {
		pv := parts[id]
		switch {
		case pv == nil:
			missing = append(missing, id)
		case sum == nil:
			sum = pv
		default:
			sum.Add(pv)
		}
	}
	if len(missing) > 0 {
		// Partitions are visited in turn: the first missing one is where
		// the preview stopped (waiting for a sink, most likely), the
		// others were not reached.
		return nil, fmt.Errorf("%w: partition %d did not answer in time (a partition waiting for a sink cannot), and %d more were not reached; %d of %d were evaluated: %w",
			ErrPreviewIncomplete, missing[0], len(missing)-1, len(owned)-len(missing), len(owned), stopErr(err, ctx))
	}
	if sum == nil { // no partition: the rules, and no account
		rs := c.rules.Load()
		return engine.NewPartition(0, rs, engine.Config{}).Preview(context.Background(), rs, candidate)
	}
	return sum, nil
}

// stopErr is what stopped a preview: Do's error, else ctx's, else a
// partition that did not take the query (Do skips those) or was let go
// meanwhile.
func stopErr(err error, ctx context.Context) error {
	switch {
	case err != nil:
		return err
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return ErrNotOwned
}
