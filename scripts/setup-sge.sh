#!/usr/bin/env bash
# setup-sge.sh - a single-node (Son of) Grid Engine 8.1.9 cell on this machine
# for hpcgate's "sge" scheduler (internal/sched/sgesched) and its tests.
# Debian packages, no systemd needed. Idempotent: run it any number of times.
#
#   scripts/setup-sge.sh [start]   install if needed, configure, start
#                                  sge_qmaster and sge_execd, wait until the
#                                  queue takes jobs, run a smoke job
#   scripts/setup-sge.sh stop      stop sge_execd and sge_qmaster (only the PIDs
#                                  in their pidfiles; never by name)
#   scripts/setup-sge.sh status    daemons and queue
#
# Knobs (environment, optional):
#   SGE_SLOTS=N     slots of the host and of queue all.q (default: nproc)
#   SGE_SMOKE=0|1   run the smoke job at the end of start (default 1)
#
# Result: SGE_ROOT=/var/lib/gridengine, SGE_CELL=default, queue all.q on this
# host with SGE_SLOTS slots and the parallel environment smp ($pe_slots);
# root may run jobs (min_uid 0); the scheduler runs every second and right
# after each submit and finish; accounting is flushed at once, so qacct knows
# a job as soon as it leaves qstat. Then, for example:
#   HPCGATE_TEST_SGE=1 go test ./internal/sched/sgesched/
set -euo pipefail

ACTION=${1:-start}
SGE_SLOTS=${SGE_SLOTS:-$(nproc)}
SGE_SMOKE=${SGE_SMOKE:-1}
export SGE_ROOT=/var/lib/gridengine SGE_CELL=default
# /usr/bin/q* are wrapper scripts that run util/arch on every call (~0.5 s);
# the real binaries are in /usr/lib/gridengine (~0.05 s).
export PATH=/usr/lib/gridengine:$PATH
SPOOL=/var/spool/gridengine
COMMON=$SGE_ROOT/$SGE_CELL/common
QMASTER_PID=$SPOOL/qmaster/qmaster.pid
H=$(hostname)
APT=(apt-get -o DPkg::Lock::Timeout=900 -y -qq)
T=$(mktemp -d)
policy_added=0
cleanup() {
	rm -rf "$T"
	if [ "$policy_added" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
}
trap cleanup EXIT

T0=$(date +%s%N)
log() {
	local n
	n=$(date +%s%N)
	printf '[setup-sge +%d.%ds] %s\n' $(((n - T0) / 1000000000)) $(((n - T0) / 100000000 % 10)) "$*" >&2
}
die() {
	log "ERROR: $*"
	exit 1
}

# pid_alive PIDFILE COMM: the pidfile names a live process called COMM
# (a zombie counts as dead: without systemd, PID 1 may reap it late).
pid_alive() {
	local f=$1 comm=$2 p
	[ -s "$f" ] || return 1
	p=$(tr -dc '0-9' <"$f")
	[ -n "$p" ] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$comm" ] &&
		! grep -q '^State:[[:space:]]*Z' "/proc/$p/status" 2>/dev/null
}
# stop_pidfile PIDFILE COMM: TERM that PID if it really is COMM, wait, KILL.
stop_pidfile() {
	local f=$1 comm=$2 p i
	if pid_alive "$f" "$comm"; then
		p=$(tr -dc '0-9' <"$f")
		log "stopping $comm (pid $p)"
		kill "$p" 2>/dev/null || true
		for i in $(seq 150); do
			pid_alive "$f" "$comm" || break
			sleep 0.1
		done
		if pid_alive "$f" "$comm"; then kill -9 "$p" 2>/dev/null || true; fi
	fi
	rm -f "$f"
}
# execd's spool directory is named after the name SGE resolves for this host
# (it may be "localhost"), so its pidfile is found by glob.
execd_pidfile() {
	local f
	for f in "$SPOOL"/execd/*/execd.pid; do
		if [ -e "$f" ] && pid_alive "$f" sge_execd; then
			echo "$f"
			return 0
		fi
	done
	return 1
}
stop_all() {
	local f
	for f in "$SPOOL"/execd/*/execd.pid; do
		if [ -e "$f" ]; then stop_pidfile "$f" sge_execd; fi
	done
	stop_pidfile "$QMASTER_PID" sge_qmaster
}
status_all() {
	local f
	if pid_alive "$QMASTER_PID" sge_qmaster; then
		echo "sge_qmaster: running, pid $(tr -dc '0-9' <"$QMASTER_PID")"
	else
		echo "sge_qmaster: not running"
	fi
	if f=$(execd_pidfile); then
		echo "sge_execd: running, pid $(tr -dc '0-9' <"$f")"
	else
		echo "sge_execd: not running"
	fi
	if command -v qstat >/dev/null; then qstat -g c 2>/dev/null || true; fi
}
# quiet CMD...: run CMD, show its output only when it fails
quiet() {
	local out
	out=$("$@" 2>&1) || {
		printf '%s\n' "$out" >&2
		return 1
	}
}
# wait_for SECONDS WHAT CMD...: until CMD succeeds
wait_for() {
	local end=$(($(date +%s) + $1)) what=$2
	shift 2
	until "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -lt "$end" ] || return 1
		sleep 0.1
	done
	log "$what: ok"
}
# retry SECONDS CMD...: for commands that fail while another apt/debconf
# holds a lock
retry() {
	local end=$(($(date +%s) + $1))
	shift
	until "$@"; do
		[ "$(date +%s)" -lt "$end" ] || return 1
		sleep 3
	done
}
# norm: qconf output as one "key value" line per attribute (continued lines
# joined, blanks squeezed, comments and empty lines dropped)
norm() {
	awk '{ sub(/[ \t]+$/, "") }
		/\\$/ { sub(/[ \t]*\\$/, " "); buf = buf $0; next }
		{ $0 = buf $0; buf = "" }
		/^#/ || NF == 0 { next }
		{ $1 = $1; print }'
}
# same FILE1 FILE2: equal once normalised
same() {
	[ "$(norm <"$1")" = "$(norm <"$2")" ]
}

case "$ACTION" in
stop)
	stop_all
	exit 0
	;;
status)
	status_all
	exit 0
	;;
start) ;;
*) die "usage: $0 [start|stop|status]" ;;
esac
[ "$(id -u)" = 0 ] || die "must run as root"
[[ $SGE_SLOTS =~ ^[1-9][0-9]*$ ]] || die "SGE_SLOTS=$SGE_SLOTS: want a positive number"

# ------------------------------------------------------------------ packages
getent hosts "$H" >/dev/null 2>&1 || echo "127.0.0.1 $H" >>/etc/hosts
PKGS="gridengine-master gridengine-exec gridengine-client"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	log "installing:$missing"
	selections() {
		local o
		for o in gridengine-common gridengine-master gridengine-exec gridengine-client; do
			printf '%s shared/gridengineconfig boolean true\n' "$o"
			printf '%s shared/gridenginecell string %s\n' "$o" "$SGE_CELL"
			printf '%s shared/gridenginemaster string %s\n' "$o" "$H"
		done | debconf-set-selections 2>/dev/null
	}
	retry 900 selections || die "debconf-set-selections failed (debconf database locked?)"
	# The postinsts would start the daemons through invoke-rc.d: forbid it
	# for the install (this script starts them itself, without systemd).
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		policy_added=1
	fi
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-cache show gridengine-master >/dev/null 2>&1; then
		retry 900 "${APT[@]}" update >/dev/null || die "apt-get update failed"
	fi
	# shellcheck disable=SC2086
	if ! "${APT[@]}" install --no-install-recommends $missing >"$T/apt.log" 2>&1; then
		retry 900 "${APT[@]}" update >/dev/null || die "apt-get update failed"
		# shellcheck disable=SC2086
		"${APT[@]}" install --no-install-recommends $missing >"$T/apt.log" 2>&1 || {
			cat "$T/apt.log" >&2
			die "apt-get install$missing failed"
		}
	fi
	if [ "$policy_added" = 1 ]; then
		rm -f /usr/sbin/policy-rc.d
		policy_added=0
	fi
	log "installed"
fi

# ------------------------------------------------------------------ the cell
id sgeadmin >/dev/null 2>&1 || adduser --system --no-create-home --quiet --disabled-password \
	--disabled-login --shell /bin/false --group --home "$SGE_ROOT" sgeadmin
install -d -o sgeadmin -g sgeadmin -m 0755 "$SGE_ROOT/$SGE_CELL" "$COMMON" "$SPOOL/qmaster" \
	"$SPOOL/qmaster/job_scripts" "$SPOOL/spooldb" "$SPOOL/execd" /var/run/gridengine
[ -s "$COMMON/bootstrap" ] || install -m 0644 -o sgeadmin -g sgeadmin /usr/share/gridengine/default-bootstrap "$COMMON/bootstrap"
# init_cluster does nothing when the spool database exists
if [ ! -e "$SPOOL/spooldb/sge" ]; then
	log "initialising the cell"
	su -s /bin/sh -c "/usr/share/gridengine/scripts/init_cluster $SGE_ROOT $SGE_CELL $SPOOL/spooldb sgeadmin" sgeadmin >/dev/null
fi
if [ "$(cat "$COMMON/act_qmaster" 2>/dev/null)" != "$H" ]; then
	echo "$H" >"$COMMON/act_qmaster"
	chown sgeadmin:sgeadmin "$COMMON/act_qmaster"
fi

# Grid Engine insists that a client's host name and the reverse lookup of its
# address agree. Here 127.0.0.1 resolves back to "localhost", not to $H
# ("client IP resolved to host name localhost. This is not identical to
# clients host name vm"), so every name of this host is made an alias of $H.
aliases="$H localhost"
for n in localhost.localdomain "$(hostname -f 2>/dev/null || true)" "$(hostname -s)" \
	$(getent hosts 127.0.0.1 | cut -d' ' -f2-); do
	if [ -n "$n" ]; then
		case " $aliases " in *" $n "*) ;; *) aliases="$aliases $n" ;; esac
	fi
done
if [ "$(cat "$COMMON/host_aliases" 2>/dev/null)" != "$aliases" ]; then
	echo "$aliases" >"$COMMON/host_aliases"
	chown sgeadmin:sgeadmin "$COMMON/host_aliases"
	stop_all # the daemons read host_aliases only when they start
fi

# ------------------------------------------------------------------ qmaster
if ! pid_alive "$QMASTER_PID" sge_qmaster; then
	log "starting sge_qmaster"
	rm -f "$QMASTER_PID"
	SGE_MASTER_PIDFILE=$QMASTER_PID sge_qmaster </dev/null >/dev/null 2>&1 ||
		die "sge_qmaster failed (see $SPOOL/qmaster/messages)"
	wait_for 60 "sge_qmaster" qconf -sh || die "sge_qmaster does not answer (see $SPOOL/qmaster/messages)"
fi

# ------------------------------------------------------------------ configuration
# Each object is written only when it differs from what the cell has.
changed=0
# apply SHOWCMD MODIFY ADD FILE: SHOWCMD prints the object; MODIFY or ADD it
# from FILE when it is missing or different
apply() {
	local show=$1 mod=$2 add=$3 f=$4
	if $show >"$T/cur" 2>/dev/null; then
		# compare only the attributes we set (qconf -se adds load values)
		norm <"$T/cur" | awk 'NR == FNR { k[$1] = 1; next } $1 in k' "$f" - >"$T/cmp"
		same "$T/cmp" "$f" && return 0
		quiet qconf "$mod" "$f" || die "qconf $mod $(head -1 "$f")"
	else
		quiet qconf "$add" "$f" || die "qconf $add $(head -1 "$f")"
	fi
	changed=1
}
# (grep without -q reads all of its input: no SIGPIPE under pipefail)
qconf -sh 2>/dev/null | grep -x "$H" >/dev/null || quiet qconf -ah "$H"
qconf -ss 2>/dev/null | grep -x "$H" >/dev/null || quiet qconf -as "$H"

cat >"$T/host" <<EOF
hostname              $H
load_scaling          NONE
complex_values        slots=$SGE_SLOTS
user_lists            NONE
xuser_lists           NONE
projects              NONE
xprojects             NONE
usage_scaling         NONE
report_variables      NONE
EOF
apply "qconf -se $H" -Me -Ae "$T/host"
printf 'group_name @allhosts\nhostlist %s\n' "$H" >"$T/hg"
apply "qconf -shgrp @allhosts" -Mhgrp -Ahgrp "$T/hg"

cat >"$T/pe" <<'EOF'
pe_name            smp
slots              9999
user_lists         NONE
xuser_lists        NONE
start_proc_args    NONE
stop_proc_args     NONE
allocation_rule    $pe_slots
control_slaves     FALSE
job_is_first_task  TRUE
urgency_slots      min
accounting_summary FALSE
qsort_args         NONE
EOF
apply "qconf -sp smp" -Mp -Ap "$T/pe"

# all.q: the existing queue (or the built-in template) with our settings;
# load_thresholds NONE: the default np_load_avg=1.75 stops scheduling on a
# busy machine; unix_behavior: a job script's #! line chooses its shell (an
# operator's template may want bash), -S or the queue's /bin/sh otherwise.
{ qconf -sq all.q 2>/dev/null || qconf -sq; } | norm >"$T/qcur"
awk -v slots="$SGE_SLOTS" -v pes=" $(qconf -spl 2>/dev/null | tr '\n' ' ') " '
	function set(k, v) { printf "%-21s %s\n", k, v }
	$1 == "qname"            { set($1, "all.q"); next }
	$1 == "hostlist"         { set($1, "@allhosts"); next }
	$1 == "slots"            { set($1, slots); next }
	$1 == "load_thresholds"  { set($1, "NONE"); next }
	$1 == "shell"            { set($1, "/bin/sh"); next }
	$1 == "shell_start_mode" { set($1, "unix_behavior"); next }
	$1 == "pe_list" {
		l = ""
		for (i = 2; i <= NF; i++) if ($i != "smp" && index(pes, " " $i " ")) l = l " " $i
		set($1, substr(l " smp", 2)); next
	}
	{ print }' "$T/qcur" >"$T/q"
apply "qconf -sq all.q" -Mq -Aq "$T/q"

# scheduler: every second and right after a submit or a finish (default
# 15 s); no load adjustments
qconf -ssconf | norm | awk '
	function set(k, v) { printf "%-33s %s\n", k, v }
	$1 == "schedule_interval"          { set($1, "0:0:1"); next }
	$1 == "flush_submit_sec"           { set($1, "1"); next }
	$1 == "flush_finish_sec"           { set($1, "1"); next }
	$1 == "job_load_adjustments"       { set($1, "NONE"); next }
	$1 == "load_adjustment_decay_time" { set($1, "0:0:0"); next }
	{ print }' >"$T/sconf"
apply "qconf -ssconf" -Msconf -Asconf "$T/sconf"

# a project the test accounts may charge their jobs to (qsub -P)
printf 'name hpcg-proj\noticket 0\nfshare 0\nacl NONE\nxacl NONE\n' >"$T/prj"
apply "qconf -sprj hpcg-proj" -Mprj -Aprj "$T/prj"

# global: root may run jobs (min_uid 0), jobs start without a login shell,
# accounting flushed at once (qacct -j right after a job ends)
qconf -sconf global | norm | awk '
	function set(k, v) { printf "%-28s %s\n", k, v }
	$1 == "reporting_params" { set($1, "accounting=true reporting=false flush_time=00:00:01 joblog=false sharelog=00:00:00 accounting_flush_time=00:00:00"); next }
	$1 == "min_uid"          { set($1, "0"); next }
	$1 == "min_gid"          { set($1, "0"); next }
	$1 == "login_shells"     { set($1, "none"); next }
	$1 == "load_report_time" { set($1, "00:00:10"); next }
	{ print }' >"$T/global"
qconf -sconf global >"$T/gcur" 2>/dev/null || true
if ! same "$T/gcur" "$T/global"; then
	quiet qconf -Mconf "$T/global" || die "qconf -Mconf global" # the file must be named "global"
	changed=1
fi
[ "$changed" = 0 ] || log "configuration written"

# ------------------------------------------------------------------ execd
if ! execd_pidfile >/dev/null; then
	log "starting sge_execd"
	sge_execd </dev/null >/dev/null 2>&1 || die "sge_execd failed (see $SPOOL/execd/*/messages)"
fi
# queue_ok: all.q@host exists and is not u(nknown), E(rror), d(isabled),
# a(larm), C/D (calendar) or s/S (suspended)
queue_ok() {
	local out
	out=$(qstat -f -q all.q 2>/dev/null) || return 1
	printf '%s\n' "$out" | awk '$1 ~ /^all\.q@/ { n++; if (NF >= 6 && $6 ~ /[uEdaACDsS]/) bad = 1 } END { exit !(n >= 1 && !bad) }'
}
if ! queue_ok; then
	qmod -c all.q >/dev/null 2>&1 || true # clear an error state from an earlier failure
	qmod -e all.q >/dev/null 2>&1 || true
	wait_for 60 "queue all.q" queue_ok || {
		qstat -f >&2 || true
		die "queue all.q is not usable (see $SPOOL/execd/*/messages)"
	}
fi

# ------------------------------------------------------------------ smoke job
if [ "$SGE_SMOKE" = 1 ]; then
	jid=$(qsub -terse -w e -q all.q -b y -N hpcgate-smoke -o "$T/smoke.out" -j y echo smoke-ok) || die "qsub failed"
	gone() {
		local o
		o=$(qstat -u '*' 2>/dev/null) || return 1
		! printf '%s\n' "$o" | awk -v j="$jid" '$1 == j { f = 1 } END { exit !f }'
	}
	wait_for 120 "smoke job $jid" gone || die "smoke job $jid did not finish: $(qstat -j "$jid" 2>&1 | tail -5)"
	grep -q smoke-ok "$T/smoke.out" || die "smoke job $jid wrote no output"
	accounted() { qacct -j "$jid" 2>/dev/null | grep -q '^exit_status  *0'; }
	wait_for 10 "smoke job $jid in qacct" accounted || die "qacct -j $jid: $(qacct -j "$jid" 2>&1 | tail -3)"
fi
log "Grid Engine ready: host $H, queue all.q, $SGE_SLOTS slots, PE smp (SGE_ROOT=$SGE_ROOT SGE_CELL=$SGE_CELL, binaries in /usr/lib/gridengine)"
