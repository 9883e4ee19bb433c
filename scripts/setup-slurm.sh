#!/usr/bin/env bash
# Installs and starts a single-node Slurm (Debian 12 packages, Slurm 22.05)
# on this machine for hpcgate's Slurm backend (internal/sched/slurmsched), its
# conformance tests (HPCGATE_TEST_SLURM=1) and the "slurm" environment of
# examples/config/cluster.yaml. It needs root and no systemd: the daemons are
# started directly and stopped by the PIDs in their pidfiles only.
#
#   scripts/setup-slurm.sh [start]   install what is missing, write the config,
#                                    start what is not running, wait until the
#                                    node is idle, run a smoke job
#   scripts/setup-slurm.sh stop      stop the daemons
#   scripts/setup-slurm.sh status    show the daemons and the partition
#
# Idempotent: a second run changes nothing and takes a few seconds. The config
# is rewritten (and the daemons restarted) only when it changes.
#
# Knobs (environment, all optional):
#   SLURM_CPUS=N    CPUs the node offers (default: nproc)
#   SLURM_DBD=1|0   1 (default): MariaDB + slurmdbd, so that sacct works;
#                   hpcgate reads exit codes and usage (CPU time, max RSS) from
#                   sacct. 0: no accounting; hpcgate then falls back to
#                   squeue/scontrol, which keep finished jobs for MinJobAge.
#   SLURM_SMOKE=1|0 run a trivial job at the end (default 1)
#
# Result: cluster "hpcgate", node $(hostname -s) at 127.0.0.1, partition
# "debug" (default) with all the node's CPUs. Logs in /var/log/slurm.
set -euo pipefail

ACTION=${1:-start}
SLURM_CPUS=${SLURM_CPUS:-$(nproc)}
SLURM_DBD=${SLURM_DBD:-1}
SLURM_SMOKE=${SLURM_SMOKE:-1}

CONF=/etc/slurm/slurm.conf
DBDCONF=/etc/slurm/slurmdbd.conf
STATE=/var/lib/slurm/slurmctld
SPOOL=/var/lib/slurm/slurmd
LOGDIR=/var/log/slurm
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
DBD_PID=/run/slurmdbd.pid
MUNGE_PID=/run/munge/munged.pid
MYSQL_PID=/run/mysqld/mysqld-slurm.pid
MYSQL_SOCK=/run/mysqld/mysqld.sock
CLUSTER=hpcgate

T0=$(date +%s%N)
log() {
  local n; n=$(date +%s%N)
  printf '[setup-slurm +%d.%ds] %s\n' $(((n - T0) / 1000000000)) $(((n - T0) / 100000000 % 10)) "$*" >&2
}
die() { log "ERROR: $*"; exit 1; }

# pid_alive PIDFILE COMM: the pid in PIDFILE is alive, not a zombie, and is COMM.
pid_alive() {
  local f=$1 comm=$2 p
  [ -s "$f" ] || return 1
  p=$(tr -dc '0-9' <"$f")
  [ -n "$p" ] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$comm" ] &&
    ! grep -q '^State:[[:space:]]*Z' "/proc/$p/status" 2>/dev/null
}

# stop_pidfile PIDFILE COMM: TERM the pid (only if it is COMM), wait, then KILL.
stop_pidfile() {
  local f=$1 comm=$2 p i
  if pid_alive "$f" "$comm"; then
    p=$(tr -dc '0-9' <"$f")
    log "stopping $comm (pid $p)"
    kill "$p" 2>/dev/null || true
    for i in $(seq 150); do pid_alive "$f" "$comm" || break; sleep 0.1; done
    if pid_alive "$f" "$comm"; then kill -9 "$p" 2>/dev/null || true; fi
  fi
  rm -f "$f"
}

# wait_for SECONDS WHAT CMD...: run CMD until it succeeds (WHAT: for the reader).
wait_for() {
  local end=$(($(date +%s) + $1))
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 0.2
  done
}

stop_slurm() { stop_pidfile "$SLURMD_PID" slurmd; stop_pidfile "$CTLD_PID" slurmctld; }
stop_db() { stop_pidfile "$DBD_PID" slurmdbd; stop_pidfile "$MYSQL_PID" mariadbd; }

status_all() {
  local f c
  for f in "$MUNGE_PID:munged" "$MYSQL_PID:mariadbd" "$DBD_PID:slurmdbd" "$CTLD_PID:slurmctld" "$SLURMD_PID:slurmd"; do
    c=${f##*:} f=${f%:*}
    if pid_alive "$f" "$c"; then echo "$c: running (pid $(tr -dc '0-9' <"$f"))"; else echo "$c: not running"; fi
  done
  if command -v sinfo >/dev/null; then sinfo 2>&1 || true; fi
}

case "$ACTION" in
start) ;;
stop)
  stop_slurm
  stop_db
  stop_pidfile "$MUNGE_PID" munged
  exit 0
  ;;
status)
  status_all
  exit 0
  ;;
*) die "usage: $0 [start|stop|status]" ;;
esac

[ "$(id -u)" = 0 ] || die "must run as root"

# ---------------------------------------------------------------- packages
PKGS="munge slurmctld slurmd slurm-client"
[ "$SLURM_DBD" = 1 ] && PKGS="$PKGS slurmdbd mariadb-server"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  log "installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  APT=(apt-get -o DPkg::Lock::Timeout=900 -y -qq --no-install-recommends)
  # Package scripts must not start daemons (there is no systemd; we start
  # them below): a policy-rc.d that says no, for the time of the install.
  policy_added=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    policy_added=1
  fi
  aptlog=$(mktemp)
  # shellcheck disable=SC2086
  if ! {
    apt-cache show slurmctld >/dev/null 2>&1 || apt-get -o DPkg::Lock::Timeout=900 update -qq
    "${APT[@]}" install $missing ||
      { apt-get -o DPkg::Lock::Timeout=900 update -qq && "${APT[@]}" install $missing; }
  } >"$aptlog" 2>&1; then
    [ "$policy_added" = 0 ] || rm -f /usr/sbin/policy-rc.d
    tail -20 "$aptlog" >&2
    die "could not install$missing"
  fi
  rm -f "$aptlog"
  [ "$policy_added" = 0 ] || rm -f /usr/sbin/policy-rc.d
fi

# ---------------------------------------------------------------- munge
if [ ! -s /etc/munge/munge.key ]; then
  log "creating the munge key"
  mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null ||
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null
fi
chown munge:munge /etc/munge /etc/munge/munge.key
chmod 0700 /etc/munge
chmod 0600 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/log/munge
install -d -o munge -g munge -m 0711 /var/lib/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  pid_alive "$MUNGE_PID" munged && die "munged runs (pid $(cat "$MUNGE_PID")) but munge -n | unmunge fails"
  rm -f "$MUNGE_PID" /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
  log "starting munged"
  runuser -u munge -- /usr/sbin/munged </dev/null >/dev/null 2>&1
  wait_for 20 munge sh -c 'munge -n | unmunge' || die "munge does not work (see /var/log/munge/munged.log)"
fi

# ---------------------------------------------------------------- common files
NODE=$(hostname -s)
MEM=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
[ -n "$MEM" ] || MEM=$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo)
getent hosts "$NODE" >/dev/null 2>&1 || echo "127.0.0.1 $NODE" >>/etc/hosts
install -d -o slurm -g slurm -m 0755 /var/lib/slurm "$STATE" "$LOGDIR"
install -d -o root -g root -m 0755 "$SPOOL"
install -d -m 0755 /etc/slurm
touch "$LOGDIR/jobcomp.log"
chown slurm:slurm "$LOGDIR/jobcomp.log"

# ---------------------------------------------------------------- MariaDB + slurmdbd
if [ "$SLURM_DBD" = 1 ]; then
  install -d -o mysql -g mysql -m 0755 /run/mysqld
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  if ! mysqladmin --socket="$MYSQL_SOCK" ping >/dev/null 2>&1; then
    log "starting mariadbd (unix socket only)"
    rm -f "$MYSQL_PID"
    # the InnoDB settings are the ones slurmdbd asks for
    setsid /usr/sbin/mariadbd --user=mysql --pid-file="$MYSQL_PID" --socket="$MYSQL_SOCK" \
      --skip-networking --innodb-buffer-pool-size=256M --innodb-lock-wait-timeout=900 \
      </dev/null >>/var/log/mariadb-slurm.log 2>&1 &
    wait_for 60 mariadb mysqladmin --socket="$MYSQL_SOCK" ping || die "mariadb is not up (see /var/log/mariadb-slurm.log)"
  fi
  # keep the password of an earlier run, or make one
  DBPASS=$(sed -n 's/^StoragePass=//p' "$DBDCONF" 2>/dev/null || true)
  [ -n "$DBPASS" ] || DBPASS=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
  mysql --socket="$MYSQL_SOCK" -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DBPASS';
    ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DBPASS';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
  new=$(mktemp)
  cat >"$new" <<EOF
# Written by hpcgate's scripts/setup-slurm.sh; changes are overwritten.
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=slurm
LogFile=$LOGDIR/slurmdbd.log
PidFile=$DBD_PID
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DBPASS
StorageLoc=slurm_acct_db
EOF
  if ! cmp -s "$new" "$DBDCONF"; then
    log "writing $DBDCONF"
    install -m 0600 -o slurm -g slurm "$new" "$DBDCONF"
    stop_pidfile "$DBD_PID" slurmdbd
  fi
  rm -f "$new"
  if ! pid_alive "$DBD_PID" slurmdbd; then
    log "starting slurmdbd"
    rm -f "$DBD_PID"
    slurmdbd </dev/null >/dev/null 2>&1 || die "slurmdbd failed (see $LOGDIR/slurmdbd.log)"
  fi
  # it listens once its tables are made
  wait_for 60 slurmdbd bash -c 'exec 3<>/dev/tcp/127.0.0.1/6819' || die "slurmdbd is not listening (see $LOGDIR/slurmdbd.log)"
  ACCT="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
# keep the job's comment (hpcgate:JOBID) in the accounting too
AccountingStoreFlags=job_comment"
else
  stop_db
  ACCT="AccountingStorageType=accounting_storage/none"
fi

# ---------------------------------------------------------------- slurm.conf
new=$(mktemp)
cat >"$new" <<EOF
# Written by hpcgate's scripts/setup-slurm.sh; changes are overwritten.
# One node, no systemd, no cgroups.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=slurm
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CryptoType=crypto/munge
StateSaveLocation=$STATE
SlurmdSpoolDir=$SPOOL
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
# sample the jobs' memory and CPU every 2 s (default 30): short jobs get a max RSS
JobAcctGatherFrequency=task=2
MpiDefault=none
# lets SLURM_CPUS exceed the real CPU count
SlurmdParameters=config_overrides
$ACCT
# job completion file: sacct -c reads it, even without slurmdbd
JobCompType=jobcomp/filetxt
JobCompLoc=$LOGDIR/jobcomp.log
SchedulerType=sched/backfill
# schedule right after submit (the default batch_sched_delay=3 adds ~3 s a job)
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# refuse at submission what the partition can never give, instead of pending
EnforcePartLimits=ALL
ReturnToService=2
# finished jobs stay in squeue -t all for an hour
MinJobAge=3600
KillWait=5
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$SLURM_CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
if ! cmp -s "$new" "$CONF"; then
  log "writing $CONF"
  install -m 0644 "$new" "$CONF"
  stop_slurm # node, auth and accounting changes need a restart
fi
rm -f "$new"
# slurmctld refuses to start on state saved under another cluster name
if [ -s "$STATE/clustername" ] && [ "$(cat "$STATE/clustername")" != "$CLUSTER" ]; then
  log "slurmctld state is of cluster $(cat "$STATE/clustername"): forgetting it"
  stop_slurm
  rm -f "$STATE/clustername"
fi

# ---------------------------------------------------------------- slurmctld, slurmd
if ! pid_alive "$CTLD_PID" slurmctld; then
  log "starting slurmctld"
  rm -f "$CTLD_PID"
  slurmctld </dev/null >/dev/null 2>&1 || die "slurmctld failed (see $LOGDIR/slurmctld.log)"
fi
wait_for 30 slurmctld sh -c 'scontrol ping | grep -q "is UP"' || die "slurmctld does not answer (see $LOGDIR/slurmctld.log)"
if ! pid_alive "$SLURMD_PID" slurmd; then
  log "starting slurmd"
  rm -f "$SLURMD_PID"
  slurmd -N "$NODE" </dev/null >/dev/null 2>&1 || die "slurmd failed (see $LOGDIR/slurmd.log)"
fi
node_ok() {
  case "$(sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -1)" in
  idle | mixed | allocated | completing) return 0 ;;
  down* | drain* | fail*)
    scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
    return 1
    ;;
  *) return 1 ;;
  esac
}
wait_for 60 "node $NODE" node_ok || { sinfo -N -l >&2 || true; die "node $NODE is not up (see $LOGDIR/slurmd.log)"; }
if [ "$SLURM_DBD" = 1 ]; then # slurmctld registers the cluster itself
  wait_for 30 "cluster in slurmdbd" sh -c "sacctmgr -n -P show cluster format=cluster | grep -qx $CLUSTER" ||
    die "cluster $CLUSTER is not registered in slurmdbd (see $LOGDIR/slurmctld.log)"
  # a project (Slurm account) the test accounts may charge their jobs to
  # (sbatch --account; Slurm records an account a user has no
  # association with as the user's default one instead)
  sacctmgr -n -P show account format=account | grep -x hpcg-proj >/dev/null ||
    sacctmgr -i add account hpcg-proj Description=hpcgate-tests Organization=hpcgate >/dev/null ||
    die "sacctmgr add account hpcg-proj failed"
  for u in hpcg-alice hpcg-bob; do
    sacctmgr -n -P show assoc where user="$u" account=hpcg-proj format=user | grep -x "$u" >/dev/null ||
      sacctmgr -i add user "$u" account=hpcg-proj >/dev/null ||
      die "sacctmgr add user $u account=hpcg-proj failed"
  done
fi

# ---------------------------------------------------------------- smoke job
if [ "$SLURM_SMOKE" = 1 ]; then
  # polls itself: sbatch --wait backs off up to 10 s
  dir=$(mktemp -d)
  jid=$(sbatch --parsable --partition=debug --job-name=hpcgate-smoke --chdir="$dir" \
    --output="$dir/smoke.out" --wrap 'echo smoke-ok') || die "sbatch failed"
  smoke_state() { squeue -h -t all -j "$jid" -o %T 2>/dev/null; }
  wait_for 60 "smoke job" sh -c "squeue -h -t all -j $jid -o %T | grep -qvE 'PENDING|CONFIGURING|RUNNING|COMPLETING'" ||
    die "smoke job $jid did not end: $(smoke_state)"
  [ "$(smoke_state)" = COMPLETED ] || die "smoke job $jid: $(smoke_state)"
  grep -q smoke-ok "$dir/smoke.out" || die "smoke job $jid wrote no output"
  rm -rf "$dir"
  if [ "$SLURM_DBD" = 1 ]; then
    wait_for 30 "smoke job in sacct" sh -c "sacct -n -X -P -j $jid -o state | grep -qx COMPLETED" ||
      die "smoke job $jid is not in sacct"
  fi
  log "smoke job $jid: COMPLETED"
fi
log "Slurm is ready: node $NODE, $SLURM_CPUS CPUs, partition debug; accounting (sacct): $([ "$SLURM_DBD" = 1 ] && echo on || echo off)"
