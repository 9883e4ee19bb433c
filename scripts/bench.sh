#!/usr/bin/env bash
# Benchmarks a real hpcgate server against baselines in the same run and
# prints a Markdown report (docs/benchmarks.md keeps the latest).
#   scripts/bench.sh                 acceptance, end to end, transfers
#   scripts/bench.sh --engines slurm,sge --config examples/config/cluster.yaml
#                                    job latency, gateway vs raw sbatch/qsub
#                                    (after scripts/setup-slurm.sh and setup-sge.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/hpcgate" ./cmd/hpcgate
go build -o "$tmp/hpcgate-bench" ./cmd/hpcgate-bench
"$tmp/hpcgate-bench" --bin "$tmp/hpcgate" "$@"
