// Package stream runs the engine on Kafka: a consumer in a consumer group
// that owns, for each assigned partition, one engine.Partition driven by one
// goroutine (a task).
//
// Data flows per partition like this:
//
//	broker ─fetcher (2 MiB chunks of a fetch)─► task: decode, Apply, dead letters
//	                              │
//	                              ├─► sink.Write(transitions, score rows): in the
//	                              │   background while the next batch is applied;
//	                              │   retried; a second write waits (backpressure)
//	                              └─► every checkpoint_interval and on revocation:
//	                                  flush the sinks that buffer, save the
//	                                  checkpoint (state + next offset) durably
//	                                  in the CheckpointStore, then commit that
//	                                  offset to the group
//
// Offsets are committed only for events whose effects are in a checkpoint
// and whose outputs the sinks stored, so a crash at any point loses
// nothing: the partition resumes from its checkpoint and re-reads what came
// after it, and the engine's determinism makes the re-read produce the same
// state and the same alert ids.
//
// Each partition's lag is reported after every fetch and, from the
// brokers' high watermarks, every LagInterval: a partition a sink holds
// back fetches nothing, and its lag must still follow the backlog. The
// lag report also logs "caught up", once per generation, when every
// assigned partition has lag 0 and fresh events (caughtup.go). A
// checkpoint whose sinks cannot store gives up after a bounded wait and is
// retried with backoff, so a partition scores on until a sink's own
// buffer holds it back. A final checkpoint that fails on shutdown makes
// Run return ErrNotSaved, naming what is left.
//
// On assignment a task restores its partition from the CheckpointStore: a
// directory (DirStore; shared by the instances of a group, or local for
// one instance) or a compacted Kafka topic (package engine/changelog),
// through which instances that share nothing but Kafka hand partitions
// over. Without a checkpoint it starts from a configured position. A
// checkpoint that is damaged or refused is logged, counted
// (Hooks.Restored) and set aside; the store's previous one is used where
// it keeps one, else the partition is rebuilt from Kafka. A store that
// cannot be read holds the partition back (retried) rather than rebuild
// it.
//
// Readers reach a task's partition through snapshots, which the task
// builds when asked (snapshot.go), or through queries it runs between
// batches (do): Preview, a rules preview, is one, run by each task in
// turn within the caller's deadline (preview.go).
package stream
