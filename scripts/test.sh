#!/usr/bin/env bash
# The test command: everything CI runs, on a fresh machine or a developer's.
# It installs what the tests need that is missing (Chromium, ClickHouse and
# Prometheus, from apt), then checks formatting, vets and runs every test
# (with the race detector), then vets and tests the deploy/tools module. The
# Kafka-protocol broker the tests use is kfake, in process or as `pulse
# broker`: nothing to install.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1; then
	echo "Go 1.26 is required (https://go.dev/dl/)" >&2
	exit 1
fi

# What the tests run for real: headless Chromium renders the status page;
# ClickHouse (Debian's 18.16) stores history; Prometheus scrapes a running
# pulse and promtool checks the shipped rules. Each test starts its own
# servers on free ports, so nothing needs to be running.
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v clickhouse-server >/dev/null 2>&1 || missing="$missing clickhouse-server clickhouse-client"
command -v prometheus >/dev/null 2>&1 || missing="$missing prometheus"
if [ -n "$missing" ]; then
	if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
		echo "== installing$missing (apt)"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
	else
		echo "missing:$missing — install them (apt-get install$missing) or run this as root" >&2
		exit 1
	fi
fi
export PULSE_REQUIRE_BROWSER=1 PULSE_REQUIRE_CLICKHOUSE=1 PULSE_REQUIRE_PROMETHEUS=1

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi

echo "== go vet"
go vet ./...

echo "== go test"
go test -race -count=1 -timeout 20m ./...

# deploy/tools is a module of its own (the dashboard generator and the
# checks of the container, compose, Kubernetes and systemd files), so the
# daemon's module does not depend on their libraries. Its checks run
# kubectl, promtool, amtool and systemd-analyze where they are installed;
# only promtool is installed for them (it comes with Prometheus, above).
echo "== deploy/tools: go vet, go test"
(cd deploy/tools && go vet ./... && go test -count=1 ./...)
