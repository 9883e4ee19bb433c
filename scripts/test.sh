#!/usr/bin/env bash
# Runs every test of hpcgate: vet, unit tests, conformance suites and the
# end-to-end tests (real server, local executor, agent and CLI as separate
# processes). Installs and starts whatever the tests need; on the embedded
# defaults that is Go alone.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== go vet"
go vet ./...
echo "== go test"
go test -count=1 -timeout 30m ./...
