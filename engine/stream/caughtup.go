package stream

import "time"

// CaughtUpAge is how fresh a partition's newest event must be for the
// partition to count as caught up. A partition that has had nothing to
// apply for as long counts too: with nothing left to read, it is as
// current as its topic (a quiet partition, a topic of history).
const CaughtUpAge = time.Minute

// partitionCaughtUp reports whether a partition is live: it has applied
// everything the brokers hold (lag 0), and its newest event is under
// CaughtUpAge old or it has applied nothing for CaughtUpAge. Times are
// Unix nanoseconds: newest is event time, lastApplied and now wall time.
func partitionCaughtUp(lag, newest, lastApplied, now int64) bool {
	return lag == 0 && (now-newest < int64(CaughtUpAge) || now-lastApplied >= int64(CaughtUpAge))
}

// caughtUp tracks, for one generation, whether every assigned partition
// has caught up; the consumer logs it once per generation: once per start,
// and again after each rebalance.
type caughtUp struct {
	generation int32
	since      time.Time // the start of Run until the first report, then the assignment
	assigned   int
	reported   bool // in this generation
	once       bool // in any generation
}

// start begins a generation of assigned partitions at now.
func (cu *caughtUp) start(generation int32, assigned int, now time.Time) {
	if cu.once {
		cu.since = now // after a rebalance, from the assignment
	}
	cu.generation, cu.assigned, cu.reported = generation, assigned, false
}

// checkCaughtUp logs "caught up" the first time in a generation that every
// assigned partition is caught up. lags holds the partitions' lags just
// read from the brokers. c.mu is held.
func (c *Consumer) checkCaughtUp(lags map[int32]int64) {
	cu := &c.caughtUp
	if cu.reported || cu.assigned == 0 || len(c.tasks) != cu.assigned || !c.ready.Load() {
		return
	}
	now := c.cfg.Now()
	for p, t := range c.tasks {
		lag, ok := lags[p]
		if !ok || !partitionCaughtUp(lag, t.newest.Load(), t.lastApplied.Load(), now.UnixNano()) {
			return
		}
	}
	cu.reported, cu.once = true, true
	took := now.Sub(cu.since)
	if took >= 10*time.Second {
		took = took.Round(time.Second)
	} else {
		took = took.Round(10 * time.Millisecond)
	}
	c.cfg.Log.Info("caught up", "took", took.String(), "partitions", cu.assigned, "generation", cu.generation)
}
