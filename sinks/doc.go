// Package sinks groups the engine's outputs; each subpackage implements
// engine.Sink or serves what the engine computes: clickhouse (history in
// ClickHouse), kafka (scores and transitions to Kafka topics), webhook
// (chat notifications), file (JSONL transitions), prom (Prometheus
// metrics and the consumer's hooks), web (JSON API and status page).
//
// The package itself is how the daemon runs an output: each output's
// package declares a Spec — its section of the config file, its defaults,
// the check that builds its config, what it needs (score rows,
// directories) and how it opens — and cmd/pulse lists the Specs, one
// line each. A new output is a package with its Spec plus that one line.
// Outputs read account state, where they need it, through engine.View.
package sinks
