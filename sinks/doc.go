// Package sinks groups the engine's outputs; each subpackage implements
// engine.Sink or serves what the engine computes: file (JSONL transitions),
// prom (Prometheus metrics and the consumer's hooks), web (JSON API and
// status page).
package sinks
