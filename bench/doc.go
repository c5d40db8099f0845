// Package bench holds Pulse's end-to-end benchmark harnesses: replay/
// (`pulse gen | pulse replay` over ≥ 5 M events and ≥ 100 k accounts),
// consume/ (`pulse run` next to a bare kafka-go consume of the same topic),
// latency/ (event-to-alert latency of `pulse run` under a live load) and
// peer/ (the peer a data team would pick instead: ClickHouse's Kafka engine
// and materialized views, next to `pulse run` with every sink); this
// package holds what they share (ports, the broker process, the generated
// stream on a topic, the CPU and memory of processes).
// The Go micro-benchmarks live beside the code they measure. Run them all
// with bench/run.sh, which writes bench/results/.
package bench
