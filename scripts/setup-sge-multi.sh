#!/usr/bin/env bash
# Adds execution hosts on this one machine to the Grid Engine cell of
# scripts/setup-sge.sh, for hpcgate's multi-node jobs: the "sge-multi"
# environment of examples/config/cluster.yaml and the end-to-end tests
# that run jobs across hosts.
#
#   scripts/setup-sge-multi.sh [start]   start what is not running, wait
#                                        until every host reports, run a
#                                        job across all hosts
#   scripts/setup-sge-multi.sh stop      remove the queue, the parallel
#                                        environments, the hosts and
#                                        their network
#
# How: each host is an sge_execd in its own network namespace (its own
# address on a bridge, so that it reaches the qmaster and the gateway over
# the network as a real host would: inside it, 127.0.0.1 is the host
# itself), UTS namespace (its own host name) and mount namespace (its own
# /etc/hosts, in which the qmaster's name is the bridge's address). Every
# host sees the machine's file systems, as a cluster's hosts share home
# and scratch file systems.
#
# Result: hosts g1..gN at 10.78.0.11.. with MULTI_SLOTS slots each, in the
# host group @multi and the queue multi.q, and one parallel environment
# per number of cores a job may have on each host: mpi-1 .. mpi-SLOTS,
# whose allocation rule is that number (so -pe mpi-2 4 is exactly two
# hosts with two slots each; $round_robin would only spread them). They
# allow tight integration (qrsh -inherit, which Open MPI's mpirun uses) and
# sum a job's usage over its hosts. The gateway is reached from the hosts
# at 10.78.0.1. Needs root and scripts/setup-sge.sh first.
#
# Knobs (environment, all optional):
#   MULTI_HOSTS=N   execution hosts (default 2)
#   MULTI_SLOTS=N   slots of each host (default 2)
#   MULTI_SMOKE=0   skip the job across all hosts at the end
#
# Learned the hard way (Son of Grid Engine 8.1.9, Debian 12):
# - The qmaster's name resolves to 127.0.0.1 here: inside a host's network
#   namespace that is the host itself, hence the private /etc/hosts.
# - The qmaster resolves each execution host both ways: the machine's
#   /etc/hosts gets a line per host, and keeps it after stop (the qmaster
#   caches failed lookups for minutes).
# - An execution host's spool directory must belong to the admin user, or
#   sge_execd exits without a word.
# - `ip netns exec` remounts /sys: enter the network namespace with nsenter.
set -euo pipefail

ACTION=${1:-start}
HOSTS=${MULTI_HOSTS:-2}
SLOTS=${MULTI_SLOTS:-2}
SMOKE=${MULTI_SMOKE:-1}

export SGE_ROOT=/var/lib/gridengine SGE_CELL=default
export PATH=/usr/lib/gridengine:$PATH
NET=10.78.0 # the bridge is .1, host i is .(10+i)
BR=br-hpcg-gemn
DIR=/var/lib/hpcgate-sge-multi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

T0=$(date +%s%N)
log() {
	local n
	n=$(date +%s%N)
	printf '[setup-sge-multi +%d.%ds] %s\n' $(((n - T0) / 1000000000)) $(((n - T0) / 100000000 % 10)) "$*" >&2
}
die() {
	log "ERROR: $*"
	exit 1
}
quiet() { "$@" >/dev/null 2>&1; }
# wait_for SECONDS WHAT CMD...: run CMD until it succeeds (WHAT: for the reader).
wait_for() {
	local end=$(($(date +%s) + $1))
	shift 2
	until "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -lt "$end" ] || return 1
		sleep 0.2
	done
}

hosts() { seq -f 'g%g' 1 "$HOSTS"; }
pes() { seq -f 'mpi-%g' 1 "$SLOTS"; }
execd_tag() { echo "sge_execd-hpcg-$1"; } # the execd's argv[0], to find it again

[ "$(id -u)" = 0 ] || die "must run as root"
[ -s "$SGE_ROOT/$SGE_CELL/common/act_qmaster" ] || die "no Grid Engine cell: run scripts/setup-sge.sh first"
MASTER=$(cat "$SGE_ROOT/$SGE_CELL/common/act_qmaster")
SPOOL=$(qconf -sconf | awk '$1 == "execd_spool_dir" {print $2}')
ADMIN=$(awk '$1 == "admin_user" {print $2}' "$SGE_ROOT/$SGE_CELL/common/bootstrap")

stop() {
	local h p
	quiet qconf -dq multi.q || true
	for p in $(qconf -spl 2>/dev/null | grep -E '^mpi-[0-9]+$' || true); do quiet qconf -dp "$p" || true; done
	quiet qconf -dhgrp @multi || true
	for p in $(pgrep -f '^sge_execd-hpcg-' || true); do kill "$p" 2>/dev/null || true; done
	wait_for 15 "execution daemons" sh -c "! pgrep -f '^sge_execd-hpcg-'" || true
	for h in $(qconf -sel 2>/dev/null | grep -E '^g[0-9]+$' || true); do
		quiet qconf -de "$h" || true
		quiet qconf -dh "$h" || true
		ip netns del "hpcg-gemn-$h" 2>/dev/null || true
		ip link del "vg-$h" 2>/dev/null || true
	done
	ip link del "$BR" 2>/dev/null || true
}

case "$ACTION" in
start) ;;
stop) stop; log stopped; exit 0 ;;
*) die "usage: $0 [start|stop]" ;;
esac
if ! command -v mpirun >/dev/null || ! command -v mpicc >/dev/null; then
	log "installing Open MPI"
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 -y -qq --no-install-recommends \
		install openmpi-bin libopenmpi-dev >/dev/null 2>&1 ||
		{ apt-get -o DPkg::Lock::Timeout=900 update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get -o DPkg::Lock::Timeout=900 -y -qq --no-install-recommends install openmpi-bin libopenmpi-dev >/dev/null; } ||
		die "apt-get install openmpi-bin libopenmpi-dev failed"
fi

# ------------------------------------------------------------------ network and hosts
mkdir -p "$DIR"
ip link show "$BR" >/dev/null 2>&1 || ip link add "$BR" type bridge
ip addr show "$BR" | grep "inet $NET.1/" >/dev/null || ip addr add "$NET.1/24" dev "$BR"
ip link set "$BR" up
{
	printf '127.0.0.1 localhost\n%s.1 %s\n' "$NET" "$MASTER"
	i=0
	for h in $(hosts); do
		i=$((i + 1))
		printf '%s.%d %s\n' "$NET" $((10 + i)) "$h"
	done
} >"$DIR/hosts"
i=0
for h in $(hosts); do
	i=$((i + 1))
	ns=hpcg-gemn-$h
	[ -e "/run/netns/$ns" ] || ip netns add "$ns"
	ip link show "vg-$h" >/dev/null 2>&1 || ip link add "vg-$h" type veth peer name eth0 netns "$ns"
	ip link set "vg-$h" master "$BR"
	ip link set "vg-$h" up
	ip -n "$ns" addr show eth0 | grep "inet $NET.$((10 + i))/" >/dev/null || ip -n "$ns" addr add "$NET.$((10 + i))/24" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" link set lo up
	grep -q "^$NET.$((10 + i)) $h\$" /etc/hosts || echo "$NET.$((10 + i)) $h" >>/etc/hosts
	qconf -sh 2>/dev/null | grep -x "$h" >/dev/null || quiet qconf -ah "$h"
	if ! qconf -sel 2>/dev/null | grep -x "$h" >/dev/null; then
		printf 'hostname %s\nload_scaling NONE\ncomplex_values slots=%d\nuser_lists NONE\nxuser_lists NONE\nprojects NONE\nxprojects NONE\nusage_scaling NONE\nreport_variables NONE\n' "$h" "$SLOTS" >"$T/exechost"
		quiet qconf -Ae "$T/exechost" || die "qconf -Ae $h"
	fi
	mkdir -p "$SPOOL/$h"
	chown "$ADMIN:$ADMIN" "$SPOOL/$h"
	pgrep -f "^$(execd_tag "$h")\$" >/dev/null && continue
	log "starting sge_execd $h"
	nsenter --net="/run/netns/$ns" unshare --uts --mount \
		bash -c "mount --bind $DIR/hosts /etc/hosts; hostname $h; exec -a $(execd_tag "$h") /usr/lib/gridengine/sge_execd" </dev/null >/dev/null 2>&1 ||
		die "sge_execd $h failed (see $SPOOL/$h/messages)"
done

# ------------------------------------------------------------------ host group, PEs, queue
if ! qconf -shgrpl 2>/dev/null | grep -x '@multi' >/dev/null; then
	printf 'group_name @multi\nhostlist %s\n' "$(hosts | paste -sd' ')" >"$T/hgrp"
	quiet qconf -Ahgrp "$T/hgrp" || die "qconf -Ahgrp @multi"
fi
for pe in $(pes); do
	qconf -spl 2>/dev/null | grep -x "$pe" >/dev/null && continue
	printf 'pe_name %s\nslots 9999\nuser_lists NONE\nxuser_lists NONE\nstart_proc_args NONE\nstop_proc_args NONE\nallocation_rule %d\ncontrol_slaves TRUE\njob_is_first_task FALSE\nurgency_slots min\naccounting_summary TRUE\nqsort_args NONE\n' \
		"$pe" "${pe#mpi-}" >"$T/pe"
	quiet qconf -Ap "$T/pe" || die "qconf -Ap $pe"
done
if ! qconf -sql 2>/dev/null | grep -x multi.q >/dev/null; then
	qconf -sq all.q | sed -e 's/^qname .*/qname multi.q/' -e 's/^hostlist .*/hostlist @multi/' \
		-e "s/^pe_list .*/pe_list $(pes | paste -sd' ')/" -e "s/^slots .*/slots $SLOTS/" >"$T/queue"
	quiet qconf -Aq "$T/queue" || die "qconf -Aq multi.q"
fi
reported() { [ "$(qhost | awk '$1 ~ /^g[0-9]+$/ && $2 == "lx-amd64"' | wc -l)" = "$HOSTS" ]; }
wait_for 60 "execution hosts" reported || { qhost >&2; die "the execution hosts did not report"; }

# ------------------------------------------------------------------ smoke job
if [ "$SMOKE" = 1 ]; then
	dir=$(mktemp -d -p "$DIR")
	chmod 755 "$dir"
	printf '#!/bin/sh\nfor h in $(cut -d" " -f1 "$PE_HOSTFILE"); do qrsh -inherit "$h" hostname; done\n' >"$dir/job.sh"
	jid=$(qsub -terse -N hpcgate-smoke -q multi.q -pe "mpi-1" "$HOSTS" -wd "$dir" -o "$dir/smoke.out" -j y -S /bin/sh "$dir/job.sh") ||
		die "qsub failed"
	wait_for 90 "smoke job" sh -c "! qstat -j $jid" || die "smoke job $jid did not end"
	# (qrsh -inherit may add a line of its own teardown's on stderr,
	# "commlib error: got pipe error", after the host's name: noise)
	[ "$(grep -xE 'g[0-9]+' "$dir/smoke.out" | sort -u | paste -sd' ')" = "$(hosts | paste -sd' ')" ] ||
		die "smoke job $jid ran on '$(paste -sd' ' <"$dir/smoke.out")', not on every host"
	grep -vxE 'g[0-9]+' "$dir/smoke.out" >&2 || true
	rm -rf "$dir"
	log "smoke job $jid ran on $(hosts | paste -sd' ')"
fi
log "multi.q is ready: $HOSTS hosts x $SLOTS slots, parallel environments $(pes | paste -sd' '), gateway address $NET.1"
