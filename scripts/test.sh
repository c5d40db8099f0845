#!/usr/bin/env bash
# The test command: everything CI runs, on a fresh machine or a developer's.
# It installs what the tests need that is missing, then checks formatting,
# vets and runs every test (with the race detector).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1; then
	echo "Go 1.26 is required (https://go.dev/dl/)" >&2
	exit 1
fi

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
go test -race -count=1 ./...
