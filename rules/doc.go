// Package rules loads a Pulse rules file and evaluates it: the health score
// and its factors, the grade with hysteresis, and the alert state machine.
//
// Data flows one way: Load turns YAML into an immutable, compiled Ruleset
// (refusing a bad file with file, line and key); the engine computes an
// account's metrics (Values, indexed by Metric) and calls
// Ruleset.Evaluate with the account's State and the event time, which
// returns the score, grade, firing alerts and any alert Transitions.
//
// The package is pure: no I/O, no goroutines, no wall clock. Time is an
// argument (Unix nanoseconds of event time), so the same inputs always
// give the same outputs, which is what makes replays and restarts
// reproducible. It imports nothing else of Pulse.
package rules
