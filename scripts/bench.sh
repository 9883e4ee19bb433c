#!/usr/bin/env bash
# Benchmarks a real hpcgate server against baselines in the same run and
# prints a Markdown report (paste it into docs/benchmarks.md).
# Usage: scripts/bench.sh [hpcgate-bench flags, e.g. --jobs 2000 --size-mib 256]
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/hpcgate" ./cmd/hpcgate
go run ./cmd/hpcgate-bench --bin "$tmp/hpcgate" "$@"
