// Package changelog keeps the consumer's partition checkpoints in a
// compacted Kafka topic (Store, a stream.CheckpointStore), so that
// instances that share nothing but Kafka — separate machines, pods
// without a shared volume — hand partitions over without rebuilding them
// from the start of the events topic, as Kafka Streams does with its
// changelog topics.
//
// Data flows like this, per partition of the events topic:
//
//	task.save ─► Store.Save: tombstones for the checkpoint the current one
//	                          replaced (and unfinished ones)
//	                        ─► chunks of the checkpoint, each ≤ the topic's
//	                           max.message.bytes, acks=all, one at a time
//	                        ─► the manifest (chunk count, size, CRC-32C,
//	                           offset of the first chunk), acks=all
//	             ◄─ nil: durable; only now the offset is committed
//
//	task.restore ─► Store.Load: read backwards from the end of the
//	                changelog partition to the newest manifest, read its
//	                chunks from the offset it names, check every chunk's
//	                and the whole checkpoint's checksum, hand it to
//	                engine.RestorePartition; damaged or refused: the
//	                previous manifest, and so on; none: a rebuild.
//
// Partition p of the events topic keeps its checkpoints in partition
// p mod N of the changelog topic (created with the events topic's N).
// Every checkpoint has its own keys (a random nonce), so compaction never
// mixes the chunks of two checkpoints, and a checkpoint leaves the topic
// only through the tombstones of a save two checkpoints later: there is
// always a complete previous one, whatever crash interrupts a save, and
// compaction keeps about two per partition. Records are versioned and
// checksummed (format.go); a reader refuses what it does not know.
//
// Checkpoints are full snapshots, not the changed accounts only: every
// sweep (hourly by default) re-evaluates every account and every UTC
// midnight records its score, so in a catch-up — when checkpoints are
// written most — nearly every account has changed between two of them,
// and incremental ones would add a chain of deltas to every restore for
// little. The checkpoint interval bounds what they cost (README,
// Benchmarks).
package changelog
