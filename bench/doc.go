// Package bench holds Pulse's end-to-end benchmark harnesses: replay/
// (`pulse gen | pulse replay` over ≥ 5 M events and ≥ 100 k accounts) and
// consume/ (`pulse run` next to a bare kafka-go consume of the same topic)
// and latency/ (event-to-alert latency of `pulse run` under a live load);
// this package holds what they share (ports, the broker process).
// The Go micro-benchmarks live beside the code they measure. Run them all
// with bench/run.sh, which writes bench/results/.
package bench
