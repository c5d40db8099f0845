// Package engine turns a stream of product-usage events into per-account
// health: it decodes and validates events (SPEC §1), keeps each account's
// activity in time-bucketed windows, computes the metrics of SPEC §3 and
// asks package rules for the score, grade and alert transitions.
//
// Data flows through it like this:
//
//	JSON line ─Decoder.Decode─► Event ─Partition.Apply─► account state
//	                                        │ (due, or a sweep)
//	                                        ▼
//	          account.metrics(T) ─► rules.Ruleset.Evaluate ─► transitions
//
// The unit of ownership is the Partition: one Kafka partition (or one
// virtual partition, xxhash(account_id) mod P, in a file replay). Exactly
// one goroutine drives a partition, so the hot path has no locks, and a
// partition's state can later be checkpointed and handed over on its own.
// Other goroutines never touch a Partition: they read Snapshots, immutable
// copies the owner builds when asked, through a View (the HTTP API, the
// Prometheus aggregates, any sink that reads account state).
//
// Time is event time. A partition's clock is the highest ts applied (or,
// when idle, whatever its driver advances it to); nothing here reads the
// wall clock, which callers pass in for the future check. Windows are day
// buckets: bucket k holds ((k−1)·24h, k·24h] UTC, so every N-day window is
// exact when T falls on a UTC midnight, and between midnights covers the N
// whole buckets ending with T's ("today so far").
//
// A Replayer can also evaluate a second ruleset as a shadow of its own
// (shadow.go: pulse replay --diff, both rulesets in one pass, the
// shadow's state kept apart) and read accounts as they stood at past
// times (probe.go: pulse tune's factor points before each renewal).
//
// Accounts and users are keyed by xxhash; an account keeps its id string
// once, for output. Users are never stored as strings: a user is 24 bytes
// (hash, a 64-day activity bitmap, last mobile day).
//
// Readers on other goroutines get Snapshots, which a partition builds on
// its own; Merge lists their accounts once, and NewPortfolio computes the
// book from them (grades, ARR at risk, renewals due, and the trailing
// twelve months' renewal retention each partition keeps, revenue.go).
// Partition.Preview, run on the partition's goroutine, evaluates a
// candidate ruleset against every account without changing anything.
package engine
