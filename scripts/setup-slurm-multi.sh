#!/usr/bin/env bash
# Starts a Slurm cluster of several nodes on this one machine, beside the
# single-node cluster of scripts/setup-slurm.sh (whose munged and slurmdbd
# it shares), for hpcgate's multi-node jobs: the "slurm-multi" environment
# of examples/config/cluster.yaml and the end-to-end tests that run jobs
# across nodes.
#
#   scripts/setup-slurm-multi.sh [start]   start what is not running, wait
#                                          until every node is idle, run a
#                                          job across all nodes; the last
#                                          line printed is the config's path
#   scripts/setup-slurm-multi.sh stop      stop the daemons, remove the network
#   scripts/setup-slurm-multi.sh status    show the partition
#
# How: each node is a slurmd in its own network namespace (its own address
# on a bridge, so that it reaches the controller and the gateway over the
# network as a real node would: inside it, 127.0.0.1 is the node itself)
# and its own UTS namespace (its own host name). The controller listens on
# the bridge. Every node sees the machine's file systems, as a cluster's
# nodes share home and scratch file systems.
#
# Result: cluster "multi" (slurm.conf: /etc/slurm-multi/slurm.conf; give
# its path to Slurm's commands as SLURM_CONF), nodes n1..nN at
# 10.77.0.11.. with MULTI_CPUS CPUs each, partition "multi"; the gateway is
# reached from the nodes at 10.77.0.1. Open MPI is installed, and srun
# --mpi=pmix starts MPI programs (each node has a PMIx directory of its
# own: TmpFS, below). Needs root and scripts/setup-slurm.sh first.
#
# Knobs (environment, all optional):
#   MULTI_NODES=N   nodes (default 3)
#   MULTI_CPUS=N    CPUs of each node (default 2)
#   MULTI_SMOKE=0   skip the job across all nodes at the end
#
# Learned the hard way (Slurm 22.05, Debian 12):
# - `ip netns exec` remounts /sys, and slurmd then finds no cgroup file
#   system and exits: enter only the network namespace (nsenter --net).
# - SlurmctldHost must name this machine's real host name, with the bridge
#   address in parentheses, or slurmctld says it is not a valid controller.
# - srun --mpi=pmix makes its client directory TMPFS/spmix_appdir_..., the
#   same name on every node: nodes that share /tmp collide ("File exists").
#   TmpFS with %n gives each node its own.
set -euo pipefail

ACTION=${1:-start}
NODES=${MULTI_NODES:-3}
CPUS=${MULTI_CPUS:-2}
SMOKE=${MULTI_SMOKE:-1}

CLUSTER=multi
NET=10.77.0 # the bridge is .1, node i is .(10+i)
BR=br-hpcg-multi
ETC=/etc/slurm-multi
CONF=$ETC/slurm.conf
VAR=/var/lib/slurm-multi
LOGDIR=/var/log/slurm-multi
CTLD_PID=/run/slurmctld-multi.pid

T0=$(date +%s%N)
log() {
  local n; n=$(date +%s%N)
  printf '[setup-slurm-multi +%d.%ds] %s\n' $(((n - T0) / 1000000000)) $(((n - T0) / 100000000 % 10)) "$*" >&2
}
die() { log "ERROR: $*"; exit 1; }

# wait_for SECONDS WHAT CMD...: run CMD until it succeeds (WHAT: for the reader).
wait_for() {
  local end=$(($(date +%s) + $1))
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 0.2
  done
}

nodes() { seq -f 'n%g' 1 "$NODES"; }
ns() { echo "hpcg-multi-$1"; } # a node's network namespace

daemons() { pgrep -f "^slurm(ctld|d) -f $CONF" || true; }

stop() {
  local p
  for p in $(daemons); do kill "$p" 2>/dev/null || true; done
  wait_for 15 "daemons to stop" sh -c "! pgrep -f '^slurm(ctld|d) -f $CONF'" || {
    for p in $(daemons); do kill -9 "$p" 2>/dev/null || true; done
  }
  for p in $(ip netns list | awk '{print $1}' | grep '^hpcg-multi-' || true); do ip netns del "$p"; done
  ip link del "$BR" 2>/dev/null || true
  rm -f "$CTLD_PID"
}

case "$ACTION" in
start) ;;
stop) [ "$(id -u)" = 0 ] || die "must run as root"; stop; log stopped; exit 0 ;;
status) SLURM_CONF=$CONF sinfo; exit 0 ;;
*) die "usage: $0 [start|stop|status]" ;;
esac

[ "$(id -u)" = 0 ] || die "must run as root"
pgrep -x munged >/dev/null || die "munged is not running: run scripts/setup-slurm.sh first"
if ! command -v mpirun >/dev/null || ! command -v mpicc >/dev/null; then
  log "installing Open MPI"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 -y -qq --no-install-recommends \
    install openmpi-bin libopenmpi-dev >/dev/null 2>&1 ||
    { apt-get -o DPkg::Lock::Timeout=900 update -qq && DEBIAN_FRONTEND=noninteractive \
      apt-get -o DPkg::Lock::Timeout=900 -y -qq --no-install-recommends install openmpi-bin libopenmpi-dev >/dev/null; } ||
    die "apt-get install openmpi-bin libopenmpi-dev failed"
fi

# ---------------------------------------------------------------- network
ip link show "$BR" >/dev/null 2>&1 || ip link add "$BR" type bridge
ip addr show "$BR" | grep "inet $NET.1/" >/dev/null || ip addr add "$NET.1/24" dev "$BR"
ip link set "$BR" up
i=0
for n in $(nodes); do
  i=$((i + 1))
  [ -e "/run/netns/$(ns "$n")" ] || ip netns add "$(ns "$n")"
  veth=vm-$n
  ip link show "$veth" >/dev/null 2>&1 || ip link add "$veth" type veth peer name eth0 netns "$(ns "$n")"
  ip link set "$veth" master "$BR"
  ip link set "$veth" up
  ip -n "$(ns "$n")" addr show eth0 | grep "inet $NET.$((10 + i))/" >/dev/null || ip -n "$(ns "$n")" addr add "$NET.$((10 + i))/24" dev eth0
  ip -n "$(ns "$n")" link set eth0 up
  ip -n "$(ns "$n")" link set lo up
done

# ---------------------------------------------------------------- slurm.conf
mkdir -p "$ETC" "$VAR/state" "$VAR/spool" "$LOGDIR"
for n in $(nodes); do mkdir -p "$VAR/tmp/$n" && chmod 1777 "$VAR/tmp/$n"; done
chown slurm "$VAR/state" "$LOGDIR"
if pgrep -x slurmdbd >/dev/null; then
  ACCT="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
AccountingStoreFlags=job_comment"
else
  ACCT="AccountingStorageType=accounting_storage/none"
fi
new=$(mktemp)
{
  cat <<EOF
# Written by hpcgate's scripts/setup-slurm-multi.sh; changes are overwritten.
ClusterName=$CLUSTER
SlurmctldHost=$(hostname)($NET.1)
SlurmUser=slurm
SlurmctldPort=6917
SlurmdPort=6918
AuthType=auth/munge
CryptoType=crypto/munge
StateSaveLocation=$VAR/state
SlurmdSpoolDir=$VAR/spool/%n
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$VAR/slurmd-%n.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd-%n.log
# each node's own directory for srun --mpi=pmix (see the script's head)
TmpFS=$VAR/tmp/%n
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=2
MpiDefault=none
SlurmdParameters=config_overrides
$ACCT
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
EnforcePartLimits=ALL
ReturnToService=2
MinJobAge=3600
KillWait=5
EOF
  i=0
  for n in $(nodes); do
    i=$((i + 1))
    printf 'NodeName=%s NodeAddr=%s.%d CPUs=%d RealMemory=2000 State=UNKNOWN\n' "$n" "$NET" $((10 + i)) "$CPUS"
  done
  printf 'PartitionName=multi Nodes=%s Default=YES MaxTime=INFINITE State=UP\n' "$(nodes | paste -sd,)"
} >"$new"
if ! cmp -s "$new" "$CONF"; then
  log "writing $CONF"
  install -m 0644 "$new" "$CONF"
  for p in $(daemons); do kill "$p" 2>/dev/null || true; done
  wait_for 15 "daemons to stop" sh -c "! pgrep -f '^slurm(ctld|d) -f $CONF'" || die "the old daemons do not stop"
fi
rm -f "$new"

# ---------------------------------------------------------------- daemons
export SLURM_CONF=$CONF
if ! pgrep -f "^slurmctld -f $CONF" >/dev/null; then
  log "starting slurmctld on $NET.1"
  slurmctld -f "$CONF" </dev/null >/dev/null 2>&1 || die "slurmctld failed (see $LOGDIR/slurmctld.log)"
fi
wait_for 30 slurmctld sh -c 'scontrol ping | grep -q "is UP"' || die "slurmctld does not answer (see $LOGDIR/slurmctld.log)"
for n in $(nodes); do
  pgrep -f "^slurmd -f $CONF -N $n\$" >/dev/null && continue
  log "starting slurmd $n"
  nsenter --net="/run/netns/$(ns "$n")" unshare --uts \
    sh -c "hostname $n; exec slurmd -f $CONF -N $n" </dev/null >/dev/null 2>&1 || die "slurmd $n failed (see $LOGDIR/slurmd-$n.log)"
done
idle() {
  local st
  st=$(sinfo -h -N -o '%N %T' 2>/dev/null)
  for n in $(nodes); do
    case "$(echo "$st" | awk -v n="$n" '$1 == n {print $2}')" in
    idle | mixed | allocated | completing) ;;
    down* | drain* | fail*) scontrol update nodename="$n" state=resume >/dev/null 2>&1 || true; return 1 ;;
    *) return 1 ;;
    esac
  done
}
wait_for 60 "nodes" idle || { sinfo -N -l >&2 || true; die "nodes are not up (see $LOGDIR)"; }
if [[ $ACCT == *slurmdbd* ]]; then
  wait_for 30 "cluster in slurmdbd" sh -c "sacctmgr -n -P show cluster format=cluster | grep -qx $CLUSTER" ||
    die "cluster $CLUSTER is not registered in slurmdbd (see $LOGDIR/slurmctld.log)"
fi

# ---------------------------------------------------------------- smoke job
if [ "$SMOKE" = 1 ]; then
  dir=$(mktemp -d -p "$VAR")
  chmod 755 "$dir"
  jid=$(sbatch --parsable --nodes="$NODES" --ntasks-per-node=1 --job-name=hpcgate-smoke --chdir="$dir" \
    --output="$dir/smoke.out" --wrap 'srun hostname') || die "sbatch failed"
  wait_for 60 "smoke job" sh -c "squeue -h -t all -j $jid -o %T | grep -qvE 'PENDING|CONFIGURING|RUNNING|COMPLETING'" ||
    die "smoke job $jid did not end"
  [ "$(sort -u "$dir/smoke.out" | paste -sd' ')" = "$(nodes | paste -sd' ')" ] ||
    die "smoke job $jid ran on '$(sort -u "$dir/smoke.out" | paste -sd' ')', not on every node"
  rm -rf "$dir"
  log "smoke job $jid ran on $(nodes | paste -sd' ')"
fi
log "cluster $CLUSTER is ready: $NODES nodes x $CPUS CPUs, partition multi, gateway address $NET.1"
echo "$CONF"
