#!/usr/bin/env bash
# A local S3 server for hpcgate's tests and for trying the S3 object store:
# versitygw (Apache-2.0) with its posix backend, built from the Go module
# proxy at a pinned version. Idempotent.
#
#   scripts/setup-s3.sh [start|stop|status]
#
# The last line printed is the --objects URL to give the server:
#   s3://hpcgate?endpoint=http://127.0.0.1:7070
# with the test credentials AWS_ACCESS_KEY_ID=hpcgate AWS_SECRET_ACCESS_KEY=hpcgate-secret
# (override with HPCGATE_S3_KEY / HPCGATE_S3_SECRET). The gateway creates
# the bucket on first start.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=v1.8.0
# Built tools are cached outside the checkout, so that a fresh clone (CI)
# reuses them.
BIN=${HPCGATE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/hpcgate/tools}/bin
DIR=${HPCGATE_S3_DIR:-/var/lib/hpcgate-s3}
PORT=${HPCGATE_S3_PORT:-7070}
KEY=${HPCGATE_S3_KEY:-hpcgate}
SECRET=${HPCGATE_S3_SECRET:-hpcgate-secret}
PIDFILE=$DIR/versitygw.pid
URL="s3://hpcgate?endpoint=http://127.0.0.1:$PORT"

running() {
	[ -f "$PIDFILE" ] || return 1
	local pid
	pid=$(cat "$PIDFILE")
	[ -d "/proc/$pid" ] && [ "$(cat /proc/$pid/comm 2>/dev/null)" = versitygw ] && ! grep -q '^State:.*Z' "/proc/$pid/status"
}

answers() { curl -s -o /dev/null "http://127.0.0.1:$PORT/"; }

start() {
	if [ ! -x "$BIN/versitygw" ] || ! "$BIN/versitygw" --version 2>/dev/null | grep -q "${VERSION#v}"; then
		echo "building versitygw $VERSION (a few minutes the first time)"
		mkdir -p "$BIN"
		GOBIN=$BIN GOFLAGS=-mod=mod go install "github.com/versity/versitygw/cmd/versitygw@$VERSION"
	fi
	mkdir -p "$DIR/data"
	if ! running; then
		echo "starting versitygw on 127.0.0.1:$PORT"
		ROOT_ACCESS_KEY=$KEY ROOT_SECRET_KEY=$SECRET setsid "$BIN/versitygw" --port "127.0.0.1:$PORT" posix "$DIR/data" \
			>"$DIR/versitygw.log" 2>&1 < /dev/null &
		echo $! > "$PIDFILE"
	fi
	for _ in $(seq 100); do
		answers && break
		sleep 0.1
	done
	answers || { echo "versitygw does not answer; see $DIR/versitygw.log" >&2; exit 1; }
	echo "$URL"
}

stop() {
	if running; then
		kill "$(cat "$PIDFILE")"
		for _ in $(seq 50); do running || break; sleep 0.1; done
	fi
	rm -f "$PIDFILE"
	echo "stopped"
}

case "${1:-start}" in
start) start ;;
stop) stop ;;
status) if running && answers; then echo "running: $URL"; else echo "not running"; exit 1; fi ;;
*) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac
