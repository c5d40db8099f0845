#!/usr/bin/env bash
# Runs Pulse's benchmarks and writes the results to bench/results/:
# the Go micro-benchmarks of the hot paths (-benchmem) and the end-to-end
# replay harness over ≥ 5 M events and ≥ 100 k accounts, and the streaming
# harness (`pulse run` next to a bare kafka-go consume of the same topic).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/results
go build -o ./pulse ./cmd/pulse

echo "== micro-benchmarks"
go test ./engine ./engine/synth ./rules -run '^$' -bench . -benchmem -benchtime 2s | tee bench/results/micro.txt

echo "== end-to-end replay"
go run ./bench/replay --pulse ./pulse | tee bench/results/replay.md

echo "== end-to-end streaming"
go run ./bench/consume --pulse ./pulse | tee bench/results/consume.md

echo "== checkpoints in Kafka: restore of 100,000 accounts from the topic, bytes per checkpoint"
go test ./engine/changelog -run '^$' -bench Restore100kAccounts -benchtime 5x | tee bench/results/changelog.txt

echo "== ClickHouse sink vs bare insert (starts its own server)"
go test ./sinks/clickhouse -run '^$' -bench Insert -benchtime 5x | tee bench/results/clickhouse.txt

echo "== event-to-alert latency on the daemon"
go run ./bench/latency --pulse ./pulse | tee bench/results/latency.md
