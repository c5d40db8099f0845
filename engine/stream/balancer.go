package stream

import (
	"github.com/segmentio/kafka-go"

	"github.com/pulsehq/pulse/engine"
)

// AccountBalancer is a kafka-go Balancer that sends a message keyed by an
// account id to partition xxhash(account_id) mod N — the partition a file
// replay assigns the account to, so `pulse replay` and `pulse run` see the
// same per-partition order.
type AccountBalancer struct{}

// Balance implements kafka.Balancer.
func (AccountBalancer) Balance(msg kafka.Message, partitions ...int) int {
	return partitions[engine.PartitionOf(msg.Key, len(partitions))]
}
