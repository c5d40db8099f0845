package stream

import (
	"time"

	"github.com/pulsehq/pulse/engine"
)

// Hooks observe the consumer; the Prometheus adapter lives in sinks/prom.
// Methods are called from partition goroutines concurrently and must not
// block.
type Hooks interface {
	// Events counts events of one partition by result reason.
	Events(partition int32, reason engine.Reason, n int)
	// Applied reports a fetched batch applied: its size, how long it took
	// and the event time of its newest event (Unix nanoseconds, 0 if none).
	Applied(partition int32, events int, took time.Duration, newestNs int64)
	// Lag reports how many messages of a partition are not yet applied.
	Lag(topic string, partition int32, lag int64)
	// Checkpointed reports a checkpoint written (or failed).
	Checkpointed(partition int32, bytes int, took time.Duration, err error)
	// Assigned and Revoked report partition ownership; restored says
	// whether the state came from a checkpoint.
	Assigned(partition int32, restored bool)
	// Restored reports how a partition was taken on: from a checkpoint
	// (fromCheckpoint) whose next offset is offset, or afresh from the
	// configured start; unusable counts the checkpoints set aside first
	// (damaged in the store, or refused).
	Restored(partition int32, fromCheckpoint bool, offset int64, unusable int)
	Revoked(partition int32)
	// SinkFailed reports a failed sink write (it is retried).
	SinkFailed(err error)
	// DeadLettered counts events written to the dead-letter topic.
	DeadLettered(n int)
	// ClockOutliers counts events a partition's watermark held back for
	// being too far ahead of its clock (engine/watermark.go).
	ClockOutliers(partition int32, n int)
}

// NopHooks observes nothing.
type NopHooks struct{}

func (NopHooks) Events(int32, engine.Reason, int)              {}
func (NopHooks) Applied(int32, int, time.Duration, int64)      {}
func (NopHooks) Lag(string, int32, int64)                      {}
func (NopHooks) Checkpointed(int32, int, time.Duration, error) {}
func (NopHooks) Assigned(int32, bool)                          {}
func (NopHooks) Restored(int32, bool, int64, int)              {}
func (NopHooks) Revoked(int32)                                 {}
func (NopHooks) SinkFailed(error)                              {}
func (NopHooks) DeadLettered(int)                              {}
func (NopHooks) ClockOutliers(int32, int)                      {}
