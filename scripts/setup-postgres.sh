#!/usr/bin/env bash
# Installs and starts a PostgreSQL 15 cluster on this machine for hpcgate's
# PostgreSQL store (internal/store/pgstore) and its conformance tests. It
# needs root and no systemd: the server runs as user postgres, started and
# stopped with pg_ctl.
#
#   scripts/setup-postgres.sh [start]   install postgresql-15 if missing, create
#                                       the cluster and database if missing,
#                                       start the server if it is not running,
#                                       wait until it answers
#   scripts/setup-postgres.sh stop      stop the server (pg_ctl stop -m fast)
#   scripts/setup-postgres.sh status    say whether it runs
#
# start and status print, as their last line, the URL to give hpcgate, e.g.
#   postgres://postgres@127.0.0.1:55432/hpcgate?sslmode=disable
# and for the tests: HPCGATE_TEST_POSTGRES=$(scripts/setup-postgres.sh | tail -1)
#
# Idempotent: a second run with the server up changes nothing, takes well
# under a second and prints the same URL. The settings file is rewritten (and
# the server restarted) only when it changes.
#
# This is a cluster for development and tests, not for production:
#   - authentication is "trust" (no password) for local connections, and the
#     server listens on 127.0.0.1 only, so anyone on this machine, and no one
#     else, may connect as any role;
#   - fsync is off unless HPCGATE_PG_DURABLE=1: fast, but a crash of the
#     machine (not of the server) may lose or corrupt data.
#
# Knobs (environment, all optional):
#   HPCGATE_PG_DIR=DIR      the cluster's home (default /var/lib/hpcgate-postgres):
#                           data/ (the cluster), server.log, the Unix socket
#   HPCGATE_PG_PORT=N       TCP port on 127.0.0.1 (default 55432)
#   HPCGATE_PG_DURABLE=1|0  1: fsync on (default 0)
set -euo pipefail

ACTION=${1:-start}
PGDIR=${HPCGATE_PG_DIR:-/var/lib/hpcgate-postgres}
PORT=${HPCGATE_PG_PORT:-55432}
DURABLE=${HPCGATE_PG_DURABLE:-0}

PG_MAJOR=15
PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin
DATA=$PGDIR/data
LOGFILE=$PGDIR/server.log
CONF_NAME=hpcgate.conf # in $DATA, included from postgresql.conf
DB=hpcgate
URL="postgres://postgres@127.0.0.1:$PORT/$DB?sslmode=disable"

T0=$(date +%s%N)
log() {
  local n; n=$(date +%s%N)
  printf '[setup-postgres +%d.%ds] %s\n' $(((n - T0) / 1000000000)) $(((n - T0) / 100000000 % 10)) "$*" >&2
}
die() { log "ERROR: $*"; exit 1; }

# as_pg CMD...: run CMD as user postgres (initdb and pg_ctl refuse root), from
# a directory postgres may enter, without the lock's descriptor (a server
# that kept it would hold the lock for good).
as_pg() { (cd / && runuser -u postgres -- "$@" 9>&-); }

running() { [ -x "$PGBIN/pg_ctl" ] && [ -d "$DATA" ] && as_pg "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

answers() { "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres; }

psql_admin() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -Atc "$1"; }

# running_port: the port the running server was started with (postmaster.pid
# line 4).
running_port() { sed -n 4p "$DATA/postmaster.pid" 2>/dev/null; }

install() {
  [ -x "$PGBIN/initdb" ] && [ -x "$PGBIN/pg_ctl" ] && [ -x "$PGBIN/psql" ] && return 0
  log "installing postgresql-$PG_MAJOR"
  export DEBIAN_FRONTEND=noninteractive
  local apt=(apt-get -o DPkg::Lock::Timeout=900 -y -q)
  if ! "${apt[@]}" install "postgresql-$PG_MAJOR" >/dev/null; then
    "${apt[@]}" update >/dev/null
    "${apt[@]}" install "postgresql-$PG_MAJOR" >/dev/null
  fi
  [ -x "$PGBIN/initdb" ] || die "postgresql-$PG_MAJOR installed, but $PGBIN/initdb is missing"
}

# write_conf: write the settings; returns 0 if they changed.
write_conf() {
  local fsync=off
  [ "$DURABLE" = 1 ] && fsync=on
  local want
  want=$(cat <<EOF
# Written by hpcgate's scripts/setup-postgres.sh, which replaces it when its settings change.
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$PGDIR'
max_connections = 200
fsync = $fsync
synchronous_commit = $fsync
full_page_writes = $fsync
EOF
)
  if [ -f "$DATA/$CONF_NAME" ] && [ "$(cat "$DATA/$CONF_NAME")" = "$want" ]; then
    return 1
  fi
  printf '%s\n' "$want" >"$DATA/$CONF_NAME"
  chown postgres:postgres "$DATA/$CONF_NAME"
  if ! grep -q "^include_if_exists = '$CONF_NAME'" "$DATA/postgresql.conf"; then
    printf "\ninclude_if_exists = '%s'\n" "$CONF_NAME" >>"$DATA/postgresql.conf"
  fi
  return 0
}

start() {
  install
  if [ ! -d "$PGDIR" ]; then
    mkdir -p "$PGDIR"
    chown postgres:postgres "$PGDIR"
    chmod 0700 "$PGDIR"
  fi
  as_pg test -w "$PGDIR" || die "$PGDIR is not writable by user postgres (choose another HPCGATE_PG_DIR)"

  if [ ! -f "$DATA/PG_VERSION" ]; then
    log "creating the cluster in $DATA"
    # trust: no password for local connections (see the head of this file).
    as_pg "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C >"$PGDIR/initdb.log" ||
      die "initdb failed: see $PGDIR/initdb.log"
  fi
  local v; v=$(cat "$DATA/PG_VERSION")
  [ "$v" = "$PG_MAJOR" ] || die "$DATA holds a PostgreSQL $v cluster; this script runs $PG_MAJOR"

  if write_conf && running; then
    log "settings changed: restarting"
    as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
  fi
  if running && [ "$(running_port)" != "$PORT" ]; then
    log "running on port $(running_port), wanted $PORT: restarting"
    as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
  fi
  if ! running; then
    log "starting the server on 127.0.0.1:$PORT (log $LOGFILE)"
    as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$LOGFILE" -w -t 60 start >/dev/null ||
      die "the server did not start: see $LOGFILE"
  fi

  local i
  for i in $(seq 300); do answers && break; sleep 0.1; done
  answers || die "the server does not answer on 127.0.0.1:$PORT: see $LOGFILE"

  if [ -z "$(psql_admin "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ]; then
    log "creating database $DB"
    # Another run may create it at the same time: fine if it exists after.
    "$PGBIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres "$DB" 2>/dev/null ||
      [ -n "$(psql_admin "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ] ||
      die "could not create database $DB"
  fi
  log "ready"
  echo "$URL"
}

stop() {
  if running; then
    log "stopping the server"
    as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
  else
    log "not running"
  fi
}

status() {
  if running && PORT=$(running_port) && answers; then
    echo "running: $DATA on 127.0.0.1:$PORT, log $LOGFILE"
    echo "postgres://postgres@127.0.0.1:$PORT/$DB?sslmode=disable"
  else
    echo "not running ($DATA)"
    return 3
  fi
}

# One run at a time: two starts at once would race to initdb and pg_ctl start.
exec 9>/tmp/hpcgate-setup-postgres.lock
flock 9

case $ACTION in
start) start ;;
stop) stop ;;
status) status ;;
*) die "usage: $0 [start|stop|status]" ;;
esac
