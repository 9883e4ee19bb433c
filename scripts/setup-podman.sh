#!/usr/bin/env bash
# Makes what the tests and examples of container jobs need (idempotent):
#   - as root, installs podman, runc, uidmap and busybox-static when missing,
#     and gives the test accounts hpcg-alice and hpcg-bob (made by
#     scripts/setup-accounts.sh; an account that does not exist is skipped) a
#     range of 65536 subordinate uids and gids each, in /etc/subuid and
#     /etc/subgid, if they have none, for rootless podman;
#   - writes the project's containers.conf (runc, cgroupfs, the file events
#     logger, ulimits this machine can grant) outside the checkout, in
#     ${XDG_CACHE_HOME:-$HOME/.cache}/hpcgate/containers.conf;
#   - builds the image localhost/hpcgate-examples:latest if it is missing
#     (scripts/build-example-image.sh, with that CONTAINERS_CONF).
# Without root it installs nothing: with podman present it still writes the
# configuration and builds the image, else it says that container tests will
# skip. A second run changes nothing and takes about a second.
#
# The last line printed is the absolute path of the containers.conf:
#   export CONTAINERS_CONF=$(scripts/setup-podman.sh | tail -n 1)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then
	missing=()
	for p in podman runc uidmap busybox-static; do
		# shellcheck disable=SC2016 # ${Status} is dpkg-query's, not the shell's
		if ! dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q ' installed$'; then
			missing+=("$p")
		fi
	done
	if [ ${#missing[@]} -gt 0 ]; then
		echo "setup-podman: installing ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get install -y "${missing[@]}" >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y "${missing[@]}" >/dev/null; }
	fi

	# Subordinate ids for rootless podman: a free range of 65536 after every
	# range already given (and from 200000 on), for each account without one.
	touch /etc/subuid /etc/subgid
	for a in hpcg-alice hpcg-bob; do
		uid=$(id -u "$a" 2>/dev/null) || continue
		args=()
		if ! grep -qE "^($a|$uid):" /etc/subuid; then args+=(--add-subuids); fi
		if ! grep -qE "^($a|$uid):" /etc/subgid; then args+=(--add-subgids); fi
		[ ${#args[@]} -gt 0 ] || continue
		start=$(awk -F: 'BEGIN { n = 200000 } NF == 3 && $2 + $3 > n { n = $2 + $3 } END { print n }' /etc/subuid /etc/subgid)
		range=$start-$((start + 65535))
		cmd=(usermod)
		for o in "${args[@]}"; do cmd+=("$o" "$range"); done
		"${cmd[@]}" "$a"
		echo "setup-podman: $a: subordinate ids $range (${args[*]})"
	done
fi

dir=${XDG_CACHE_HOME:-$HOME/.cache}/hpcgate
mkdir -p "$dir"
conf=$(cd "$dir" && pwd -P)/containers.conf
# runc, not crun: crun refuses this machine's hybrid cgroups. The ulimits:
# podman otherwise asks the runtime for RLIMIT_NOFILE 1048576, which a
# process without CAP_SYS_RESOURCE cannot get above the host's hard limits.
want=$(
	cat <<'EOF'
# Written by hpcgate's scripts/setup-podman.sh; use with CONTAINERS_CONF.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
)
if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$want" ]; then
	printf '%s\n' "$want" >"$conf.tmp"
	mv "$conf.tmp" "$conf"
fi

if command -v podman >/dev/null 2>&1; then
	CONTAINERS_CONF=$conf ./scripts/build-example-image.sh
	echo "setup-podman: $(podman --version); CONTAINERS_CONF=$conf"
else
	echo "setup-podman: podman is not installed (run this as root to install it); container tests will skip"
fi
echo "$conf"
