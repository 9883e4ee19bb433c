#!/usr/bin/env bash
# Runs every test of hpcgate: vet, unit tests, the conformance suites of
# every backend (SQLite and PostgreSQL; file store and S3; local executor,
# Slurm and Grid Engine) and the end-to-end tests (real server, agent and
# CLI as separate processes, on every engine).
#
# It first installs and starts the real components the tests need, with the
# project's own idempotent set-up scripts: Slurm, Grid Engine, an S3 server
# (versitygw), PostgreSQL, and podman with the example image. A second run
# finds them running and takes seconds. HPCGATE_TEST_COMPONENTS=none skips that step; the tests that need
# a component then skip, each saying why.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${HPCGATE_TEST_COMPONENTS:-all}" != none ]; then
	echo "== components"
	./scripts/setup-slurm.sh
	./scripts/setup-sge.sh
	# clusters of several nodes on this machine, beside the single-node ones
	./scripts/setup-slurm-multi.sh
	./scripts/setup-sge-multi.sh
	./scripts/setup-accounts.sh # hpcg-alice, hpcg-bob and bubblewrap, as root
	# podman, runc and the example image; its containers.conf (the last
	# line) reaches the jobs through examples/config/cluster.yaml's env
	CONTAINERS_CONF=$(./scripts/setup-podman.sh | tail -n 1)
	export CONTAINERS_CONF
	./scripts/setup-browser.sh >/dev/null # chromium, for the web interface's tests
	HPCGATE_TEST_S3=$(./scripts/setup-s3.sh | tail -n 1)
	HPCGATE_TEST_POSTGRES=$(./scripts/setup-postgres.sh | tail -n 1)
	export HPCGATE_TEST_S3 HPCGATE_TEST_POSTGRES HPCGATE_TEST_SLURM=1 HPCGATE_TEST_SGE=1
	export HPCGATE_TEST_SLURM_MULTI=1 HPCGATE_TEST_SGE_MULTI=1 HPCGATE_TEST_BROWSER=1
	# the browser tests' screenshots, outside the checkout
	export HPCGATE_ARTIFACTS=${HPCGATE_ARTIFACTS:-$HOME/.cache/hpcgate/artifacts}
	# As root, setup-accounts.sh made the accounts and installed bubblewrap:
	# tests that need them fail, rather than skip, when they are missing.
	if [ "$(id -u)" = 0 ]; then export HPCGATE_TEST_ACCOUNTS=1 HPCGATE_TEST_PODMAN=1; fi
	export AWS_ACCESS_KEY_ID=${HPCGATE_S3_KEY:-hpcgate} AWS_SECRET_ACCESS_KEY=${HPCGATE_S3_SECRET:-hpcgate-secret}
fi

echo "== go vet"
go vet ./...
# Unit and conformance packages run with the race detector; the
# end-to-end tests (cmd/...: real server, agent and CLI processes) run
# against one normal build, which is what users run and is several times
# faster. Fuzz targets run on their seed corpora only, as plain tests.
# Benchmarks never run here (scripts/bench.sh).
units=$(go list ./... | grep -v '/cmd/')
echo "== go test -race (unit and conformance packages)"
go test -race -count=1 -timeout 30m $units
echo "== go test (end to end)"
# -tags osusergo,netgo: a static binary, as the README builds it, so that
# the agent can mount it into containers as their hpcgate client
go test -tags osusergo,netgo -count=1 -timeout 30m ./cmd/...
