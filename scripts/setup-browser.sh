#!/usr/bin/env bash
# Installs Chromium (Debian's package) for the web interface's browser
# tests (cmd/hpcgate/webui_test.go, driven by chromedp), and prints its
# path last. Idempotent: a second run only prints the path.
set -euo pipefail
if ! command -v chromium >/dev/null; then
	[ "$(id -u)" = 0 ] || { echo "setup-browser: chromium is missing; installing it needs root" >&2; exit 1; }
	echo "[setup-browser] installing chromium" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get -o DPkg::Lock::Timeout=900 -y -qq --no-install-recommends install chromium >/dev/null 2>&1 ||
		{ apt-get -o DPkg::Lock::Timeout=900 update -qq && apt-get -o DPkg::Lock::Timeout=900 -y -qq --no-install-recommends install chromium >/dev/null; }
fi
command -v chromium
