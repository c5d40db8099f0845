#!/usr/bin/env bash
# Runs Pulse's benchmarks and writes the results to bench/results/:
# the Go micro-benchmarks of the hot paths (-benchmem) and the end-to-end
# replay harness over ≥ 5 M events and ≥ 100 k accounts, the streaming
# harness (`pulse run` next to a bare kafka-go consume of the same topic),
# and the peer a data team would pick instead (ClickHouse's Kafka engine and
# materialized views, next to `pulse run` with every sink).
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

echo "== the peer: ClickHouse's Kafka engine + views vs pulse run with every sink (starts its own servers)"
go run ./bench/peer --pulse ./pulse | tee bench/results/peer.md
go run ./bench/peer --pulse ./pulse --accounts 4000 --days 4 --short | tee -a bench/results/peer.md

echo "== a million accounts: gen | replay next to an encoding/json decode, and a checkpoint restore"
go run ./bench/scale --pulse ./pulse --accounts 1000000 | tee bench/results/scale.md

echo "== ClickHouse sink vs bare insert (starts its own server)"
go test ./sinks/clickhouse -run '^$' -bench Insert -benchtime 5x | tee bench/results/clickhouse.txt

echo "== event-to-alert latency on the daemon"
go run ./bench/latency --pulse ./pulse | tee bench/results/latency.md
