// Package kafka writes Pulse's results to Kafka topics, for a data
// platform that consumes streams: score rows to one topic and alert
// transitions to another, each message one JSON object keyed by
// account_id (so an account's messages share a partition, by Kafka's
// default murmur2 partitioner) and carrying a stable id, in the JSON's
// "id" and the header pulse-id: a score row's is ScoreRowID(account, ts),
// a transition's its alert_id and state ("8c1f…:firing"). The engine is
// deterministic, so a replay, or the events re-read after a crash, produce
// the same messages with the same ids: a consumer deduplicates by id.
//
// The sink buffers (it is an engine.Flusher), as the ClickHouse sink does:
// Write encodes the batch into messages, hands them to the sink's writer
// goroutine and returns, and the writer produces whatever has gathered
// meanwhile in one go (with acks from every in-sync replica), so a
// catch-up's many small batches leave as a few large requests. Flush
// returns once every message written before it is acknowledged; the
// engine flushes before every offset commit, so an offset never passes a
// message the brokers do not hold. A failed produce is retried with
// backoff and jitter (only the messages that failed), each failure
// reported to Config.Failed; meanwhile Writes go on buffering until
// BufferMessages are waiting, then wait themselves (backpressure), so the
// partitions stop, nothing is committed past what Kafka holds, and
// everything catches up when the brokers are back.
//
// Output declares the sink to the daemon: the config file's kafka_out
// section (brokers, scores_topic, transitions_topic).
package kafka
