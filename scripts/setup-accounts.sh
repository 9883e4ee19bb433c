#!/usr/bin/env bash
# Makes what the tests of jobs run as users' own accounts need, when run as
# root (idempotent): the throwaway accounts hpcg-alice and hpcg-bob (uid >=
# 1000, made only if missing) and bubblewrap (bwrap), the local executor's
# sandbox. Without root it does nothing; those tests then skip, saying why.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
	echo "setup-accounts: not root; tests of accounts and the sandbox will skip"
	exit 0
fi
for a in hpcg-alice hpcg-bob; do
	if ! id -u "$a" >/dev/null 2>&1; then
		useradd --create-home --shell /bin/sh -K UID_MIN=1000 "$a"
	fi
done
if ! command -v bwrap >/dev/null 2>&1; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y bubblewrap >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y bubblewrap >/dev/null; }
fi
echo "setup-accounts: $(id hpcg-alice); $(id hpcg-bob); $(command -v bwrap)"
