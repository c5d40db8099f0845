package engine

import (
	"context"
	"time"

	"github.com/pulsehq/pulse/rules"
)

// View is read-only access to the accounts an instance holds, for readers
// on goroutines other than the partitions' own: the HTTP API, the
// Prometheus aggregates, any sink that reads account state. It hands out
// Snapshots — immutable copies each partition builds on its own
// goroutine, when a reader asks — never a Partition: a reader can neither
// change state nor race the goroutine that owns it, and a partition
// nobody reads builds nothing. stream.Consumer implements it.
//
// A Snapshot answers for accounts (Account, Accounts, Merge across
// partitions), firing alerts (Firing), score history (History) and the
// partition's event-time clock (Clock); Current says how stale it may be.
type View interface {
	// Snapshots returns the latest snapshot of every partition the
	// instance owns, in partition order. Partitions whose snapshot is
	// older than maxAge are asked for a fresh one, and Snapshots waits for
	// them until ctx ends, never longer: a partition that cannot answer in
	// time (held up by a sink) is returned with its last snapshot. The
	// snapshots are shared: a caller must not modify them.
	Snapshots(ctx context.Context, maxAge time.Duration) []*Snapshot
	// Rules returns the ruleset in force.
	Rules() *rules.Ruleset
	// Ready reports whether every partition assigned to the instance is
	// restored; until then Snapshots may lack some.
	Ready() bool
}
