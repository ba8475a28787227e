#!/usr/bin/env bash
# Private PostgreSQL 15 cluster for LOCAL DEV/TEST ONLY (not Debian's `main` cluster).
# Durability is switched off (fsync/full_page_writes/synchronous_commit=off): a crash
# can corrupt it. `infra/postgres.sh clean` throws it away.
#
#   infra/postgres.sh up      init (once), start, wait, ensure roles `orders`/`orders_query` + db `orders`
#   infra/postgres.sh down    pg_ctl stop -m fast (only the cluster of this checkout)
#   infra/postgres.sh crash   pg_ctl stop -m immediate, as a crash (fault injection: `make chaos`)
#   infra/postgres.sh clean   down + delete .data/postgres (and its log/socket dirs)
#   infra/postgres.sh status  show state
#
# Layout: <repo>/.data/postgres (PGDATA), <repo>/.data/postgres-log/postgresql.log,
#         <repo>/.data/postgres-run (unix socket, only if its path is short enough).
# Listens on 127.0.0.1:$PGPORT (default 5432).
# Superuser: postgres / password "postgres" over TCP (scram-sha-256); unix socket: trust.
#
# Env:
#   PGPORT        port (default 5432)
#   DATABASE_URL  if set and reachable (pg_isready), `up` does nothing.
#   PG_BIN        PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
set -euo pipefail

INFRA_TAG=postgres
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
PORT="${PGPORT:-5432}"
HOST=127.0.0.1
PGDATA_DIR="$DATA_ROOT/postgres"
LOG_DIR="$DATA_ROOT/postgres-log"
LOG_FILE="$LOG_DIR/postgresql.log"
SOCK_DIR="$DATA_ROOT/postgres-run"
SUPERUSER_PASSWORD=postgres
START_TIMEOUT=30
RUN_AS=postgres   # OS user owning the cluster when this script runs as root

# Unix socket paths are limited to 107 bytes; stay well below and otherwise disable sockets.
if ((${#SOCK_DIR} + ${#PORT} + 12 < 100)); then SOCKETS="$SOCK_DIR"; else SOCKETS=""; fi

export PGCONNECT_TIMEOUT=5
unset PGHOST PGHOSTADDR PGUSER PGDATABASE PGPASSWORD PGSERVICE PGOPTIONS

[[ -x "$PG_BIN/postgres" ]] || die "PostgreSQL 15 binaries not found in $PG_BIN (set PG_BIN)"

# as_pg CMD...: run a server-side binary as the cluster owner (initdb/postgres/pg_ctl refuse root).
as_pg() {
    if ((EUID == 0)); then
        runuser -u "$RUN_AS" -- "$@"
    else
        "$@"
    fi
}

pg_running() { as_pg "$PG_BIN/pg_ctl" status -D "$PGDATA_DIR" >/dev/null 2>&1; }

# pg_isready exit codes: 0 = accepting, 1 = rejecting (starting/stopping), 2 = no response.
isready() { "$PG_BIN/pg_isready" -q -h "$HOST" -p "$PORT" -t 2 >/dev/null 2>&1; }
port_has_pg() {
    local rc=0
    "$PG_BIN/pg_isready" -q -h "$HOST" -p "$PORT" -t 2 >/dev/null 2>&1 || rc=$?
    ((rc == 0 || rc == 1))
}

# shellcheck disable=SC2120 # extra psql args are optional
super_psql() {
    PGPASSWORD="$SUPERUSER_PASSWORD" "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
        -h "$HOST" -p "$PORT" -U postgres -d postgres "$@"
}

orders_url()       { echo "postgres://orders:orders@$HOST:$PORT/orders"; }
orders_query_url() { echo "postgres://orders_query:orders_query@$HOST:$PORT/orders"; }

# Make sure the cluster owner can reach $DATA_ROOT (needs +x on every parent directory).
ensure_traversable() {
    ((EUID == 0)) || return 0
    local d="$DATA_ROOT"
    while [[ "$d" != "/" && -n "$d" ]]; do
        if ! runuser -u "$RUN_AS" -- test -x "$d" 2>/dev/null; then
            if [[ "$d" == "$REPO" || "$d" == "$REPO"/* ]]; then
                log "chmod o+x $d (so user '$RUN_AS' can reach .data/)"
                chmod o+x "$d"
            else
                die "user '$RUN_AS' cannot traverse $d (outside the repo); run 'chmod o+x $d' or clone the repo elsewhere"
            fi
        fi
        d="$(dirname "$d")"
    done
}

prepare_dirs() {
    mkdir -p "$PGDATA_DIR" "$LOG_DIR"
    [[ -n "$SOCKETS" ]] && mkdir -p "$SOCK_DIR"
    ensure_traversable
    if ((EUID == 0)); then
        chown "$RUN_AS:" "$PGDATA_DIR" "$LOG_DIR"
        [[ -n "$SOCKETS" ]] && chown "$RUN_AS:" "$SOCK_DIR"
    fi
    chmod 700 "$PGDATA_DIR"
}

init_cluster() {
    [[ -f "$PGDATA_DIR/PG_VERSION" ]] && return 0
    log "initdb in ${PGDATA_DIR#"$REPO"/} (superuser postgres)"
    local pwfile
    pwfile="$(mktemp "$DATA_ROOT/.pgpw.XXXXXX")"
    # shellcheck disable=SC2064
    trap "rm -f '$pwfile'" EXIT
    echo "$SUPERUSER_PASSWORD" >"$pwfile"
    ((EUID == 0)) && chown "$RUN_AS:" "$pwfile"
    if ! as_pg "$PG_BIN/initdb" -D "$PGDATA_DIR" -U postgres --pwfile="$pwfile" \
            --auth-host=scram-sha-256 --auth-local=trust -E UTF8 --locale=C.UTF-8 \
            >"$LOG_DIR/initdb.log" 2>&1; then
        tail_log "$LOG_DIR/initdb.log"
        die "initdb failed"
    fi
    rm -f "$pwfile"
    trap - EXIT
    echo "include_if_exists = 'orders-dev.conf'   # written by infra/postgres.sh" >>"$PGDATA_DIR/postgresql.conf"
}

# Settings are rewritten on every `up` so edits here (or a new PGPORT) take effect on restart.
write_conf() {
    local f="$PGDATA_DIR/orders-dev.conf"
    cat >"$f.tmp" <<EOF
# Written by infra/postgres.sh on every 'up' -- edit the script, not this file.
# DEV/TEST ONLY: durability is off (fsync, full_page_writes, synchronous_commit).
# A crash or power loss can corrupt this cluster; never use these settings for real data.
listen_addresses = '$HOST'
port = $PORT
unix_socket_directories = '$SOCKETS'
max_connections = 400
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
max_wal_size = 2GB
timezone = 'UTC'
log_timezone = 'UTC'
logging_collector = off
log_destination = 'stderr'
log_line_prefix = '%m [%p] %q%u@%d '
log_min_messages = warning
log_connections = off
log_disconnections = off
EOF
    mv "$f.tmp" "$f"
    ((EUID == 0)) && chown "$RUN_AS:" "$f"
    chmod 600 "$f"
}

ensure_roles() {
    # shellcheck disable=SC2119
    super_psql <<'SQL'
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'orders') THEN
    CREATE ROLE orders LOGIN PASSWORD 'orders' CREATEDB CREATEROLE;
  ELSE
    ALTER ROLE orders LOGIN PASSWORD 'orders' CREATEDB CREATEROLE;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'orders_query') THEN
    CREATE ROLE orders_query LOGIN PASSWORD 'orders_query';
  ELSE
    ALTER ROLE orders_query LOGIN PASSWORD 'orders_query';
  END IF;
END
$$;
SELECT 'CREATE DATABASE orders OWNER orders'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'orders')\gexec
SQL
}

can_login_orders() {
    PGPASSWORD=orders "$PG_BIN/psql" -X -q -At -h "$HOST" -p "$PORT" -U orders -d orders \
        -c 'select 1' >/dev/null 2>&1
}

cmd_up() {
    if [[ -n "${DATABASE_URL:-}" ]] && "$PG_BIN/pg_isready" -q -t 3 -d "$DATABASE_URL" >/dev/null 2>&1; then
        log "DATABASE_URL is set and its server is reachable; not starting a local cluster"
        return 0
    fi
    lock postgres
    local t0
    t0="$(now_s)"
    prepare_dirs
    if pg_running; then
        log "already running (${PGDATA_DIR#"$REPO"/}); reusing"
    elif port_has_pg; then
        # Something else (another checkout's cluster, Debian's main cluster...) owns the port.
        if ensure_roles 2>/dev/null || can_login_orders; then
            log "$HOST:$PORT is served by a PostgreSQL not started by this checkout; reusing it (orders login works)"
            return 0
        fi
        die "$HOST:$PORT is in use by another server where orders/orders cannot log in; stop it or set PGPORT"
    else
        init_cluster
        write_conf
        log "starting on $HOST:$PORT (log: ${LOG_FILE#"$REPO"/})"
        # pg_ctl detaches the postmaster (setsid); 9>&- keeps our lock fd out of it.
        as_pg "$PG_BIN/pg_ctl" start -D "$PGDATA_DIR" -l "$LOG_FILE" -W >/dev/null 9>&- \
            || { tail_log "$LOG_FILE"; die "pg_ctl start failed"; }
    fi

    local started=$SECONDS deadline=$((SECONDS + START_TIMEOUT))
    until isready; do
        if ((SECONDS >= deadline)); then
            tail_log "$LOG_FILE"
            die "not accepting connections on $HOST:$PORT after ${START_TIMEOUT}s (see log above)"
        fi
        # postmaster.pid appears shortly after pg_ctl returns; after a grace period its absence means a crash.
        if ((SECONDS - started >= 2)) && ! pg_running; then
            tail_log "$LOG_FILE"
            die "postmaster exited during startup (see log above)"
        fi
        sleep 0.3
    done
    ensure_roles || die "could not create roles/database (is the superuser password still '$SUPERUSER_PASSWORD'?)"
    log "ready on $HOST:$PORT ($(elapsed "$t0")): $(orders_url)"
}

cmd_down() {
    lock postgres
    if [[ -f "$PGDATA_DIR/PG_VERSION" ]] && pg_running; then
        log "stopping (pg_ctl stop -m fast)"
        as_pg "$PG_BIN/pg_ctl" stop -D "$PGDATA_DIR" -m fast -w -t 60 >/dev/null
        log "stopped"
    elif isready; then
        log "cluster of this checkout not running; $HOST:$PORT is served by another server (left alone)"
    else
        log "not running"
    fi
}

# For fault-injection runs (`make chaos`): stop as by a crash (no checkpoint;
# the next start runs crash recovery from the WAL).
cmd_crash() {
    lock postgres
    pg_running || die "the cluster of this checkout is not running"
    log "crashing (pg_ctl stop -m immediate)"
    as_pg "$PG_BIN/pg_ctl" stop -D "$PGDATA_DIR" -m immediate -w -t 60 >/dev/null
}

cmd_clean() {
    cmd_down
    log "deleting ${PGDATA_DIR#"$REPO"/} ${LOG_DIR#"$REPO"/} ${SOCK_DIR#"$REPO"/}"
    rm -rf "$PGDATA_DIR" "$LOG_DIR" "$SOCK_DIR"
}

cmd_status() {
    if [[ -f "$PGDATA_DIR/PG_VERSION" ]] && pg_running; then
        if isready; then
            echo "postgres: running on $HOST:$PORT  DATABASE_URL=$(orders_url)  QUERY_DATABASE_URL=$(orders_query_url)"
        else
            echo "postgres: running, not (yet) accepting connections on $HOST:$PORT (log: $LOG_FILE)"
        fi
    elif isready; then
        echo "postgres: $HOST:$PORT served by a server not started by this checkout"
    else
        echo "postgres: stopped$([[ -f "$PGDATA_DIR/PG_VERSION" ]] && echo " (data kept in ${PGDATA_DIR#"$REPO"/})")"
        return 3
    fi
}

# Drops the databases tests created (test_*), best effort: one still in use
# by a running test is left alone. Keeps repeated local `make test` runs lean.
cmd_prune() {
    local url="${DATABASE_URL:-postgres://orders:orders@$HOST:$PORT/orders}" db dropped=0
    for db in $("$PG_BIN/psql" -X -At "$url" -c "SELECT datname FROM pg_database WHERE datname LIKE 'test\_%'" 2>/dev/null); do
        "$PG_BIN/psql" -X -q "$url" -c "DROP DATABASE IF EXISTS \"$db\"" >/dev/null 2>&1 && dropped=$((dropped + 1))
    done
    log "dropped $dropped test database(s)"
}

case "${1:-}" in
    up) cmd_up ;;
    prune) cmd_prune ;;
    down) cmd_down ;;
    crash) cmd_crash ;;
    clean) cmd_clean ;;
    status) cmd_status ;;
    *) echo "usage: $0 up|down|crash|clean|status|prune" >&2; exit 2 ;;
esac
