#!/usr/bin/env bash
# Benchmarks a real hpcgate server against baselines in the same run and
# prints a Markdown report (docs/benchmarks.md keeps the latest).
#   scripts/bench.sh                 acceptance, end to end, transfers
#   scripts/bench.sh --engines slurm,sge --config examples/config/cluster.yaml
#                                    job latency, gateway vs raw sbatch/qsub
#                                    (after scripts/setup-slurm.sh and setup-sge.sh)
#   scripts/bench.sh --only accept --http 2,1.1 --load go,h2load --rounds 5 --jobs 20000
#                                    acceptance alone, durable against not, with
#                                    the Go client and nghttp2's h2load as the load
#                                    (installs Debian's nghttp2-client if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ " $* " == *h2load* ]] && ! command -v h2load >/dev/null; then
	[ "$(id -u)" = 0 ] || { echo "bench: h2load is missing (Debian's nghttp2-client); installing it needs root" >&2; exit 1; }
	echo "[bench] installing nghttp2-client (h2load)" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get -o DPkg::Lock::Timeout=900 -y -qq --no-install-recommends install nghttp2-client >/dev/null 2>&1 ||
		{ apt-get -o DPkg::Lock::Timeout=900 update -qq && apt-get -o DPkg::Lock::Timeout=900 -y -qq --no-install-recommends install nghttp2-client >/dev/null; }
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/hpcgate" ./cmd/hpcgate
go build -o "$tmp/hpcgate-bench" ./cmd/hpcgate-bench
"$tmp/hpcgate-bench" --bin "$tmp/hpcgate" "$@"
