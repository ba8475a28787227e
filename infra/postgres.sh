#!/usr/bin/env bash
# The private PostgreSQL 15 clusters of this checkout (not Debian's `main` cluster):
#
#   durable  port $PGPORT (5432), .data/postgres: fsync, full_page_writes and
#            synchronous_commit ON. What `make run`, `make demo`, `make replay`,
#            `make bench`, `make bench-quick` use.
#   test     port $PGPORT_TEST (5433), .data/postgres-test: DEV/TEST ONLY, durability
#            OFF (fast; a crash can corrupt it). What `make test`, `make fuzz-api` use.
#
#   infra/postgres.sh up     [durable|test|all]  init (once), start, wait, ensure roles + db `orders`
#   infra/postgres.sh down   [durable|test|all]  pg_ctl stop -m fast (default: all)
#   infra/postgres.sh crash  [durable|test]      pg_ctl stop -m immediate, as a crash (`make chaos`)
#   infra/postgres.sh clean  [durable|test|all]  down + delete the cluster's data (default: all)
#   infra/postgres.sh status [durable|test|all]  state and durability settings (default: all)
#   infra/postgres.sh prune  [durable|test]      drop the test_* databases tests left behind
# The cluster may also be chosen with PG_CLUSTER=durable|test|all (default for up/prune: durable).
#
# `up` rewrites the cluster's settings every time and applies them to a running
# cluster (reload, or restart if a setting needs it): a .data/postgres written by
# an older checkout with fsync off becomes durable.
#
# Roles (passwords = names), the same on both clusters:
#   orders_owner  CREATEDB; owns database `orders` and the schema; runs the migrations
#   orders        the application role (DATABASE_URL): no CREATEDB/CREATEROLE, owns nothing
#                 but the read models (migrations/0012_roles.sql grants the rest)
#   orders_query  SELECT on the read models only
# A database `orders` from before the owner role existed (owned by `orders`) is
# handed to orders_owner on `up` (REASSIGN OWNED); `make migrate` then applies 0012.
#
# Layout: <repo>/.data/postgres[-test] (PGDATA), <repo>/.data/postgres[-test]-log/postgresql.log,
#         <repo>/.data/postgres-run (unix sockets, only if the path is short enough).
# Superuser: postgres / password "postgres" over TCP (scram-sha-256); unix socket: trust.
#
# Env:
#   PGPORT        port of the durable cluster (default 5432)
#   PGPORT_TEST   port of the test cluster (default 5433)
#   DATABASE_URL  (durable) / TEST_DATABASE_URL (test): if set and reachable, `up` does nothing.
#   PG_BIN        PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
set -euo pipefail

INFRA_TAG=postgres
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
COMMAND="${1:-}"
CLUSTER="${2:-${PG_CLUSTER:-}}"
case "$COMMAND" in
    up|prune|crash) CLUSTER="${CLUSTER:-durable}" ;;
    *) CLUSTER="${CLUSTER:-all}" ;;
esac
if [[ "$CLUSTER" == all ]]; then
    [[ "$COMMAND" == prune ]] && die "prune takes one cluster: durable or test"
    rc=0
    for c in durable test; do
        bash "${BASH_SOURCE[0]}" "$COMMAND" "$c" || { r=$?; ((rc == 0)) && rc=$r; }
    done
    exit "$rc"
fi
HOST=127.0.0.1
case "$CLUSTER" in
    durable)
        PORT="${PGPORT:-5432}"
        PGDATA_DIR="$DATA_ROOT/postgres"
        EXTERNAL_URL="${DATABASE_URL:-}"
        DURABLE=1
        ;;
    test)
        PORT="${PGPORT_TEST:-5433}"
        PGDATA_DIR="$DATA_ROOT/postgres-test"
        EXTERNAL_URL="${TEST_DATABASE_URL:-}"
        DURABLE=0
        ;;
    *) echo "unknown cluster '$CLUSTER' (durable|test|all)" >&2; exit 2 ;;
esac
INFRA_TAG="postgres-$CLUSTER"
_tag="$INFRA_TAG"
LOG_DIR="$PGDATA_DIR-log"
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
orders_owner_url() { echo "postgres://orders_owner:orders_owner@$HOST:$PORT/orders"; }

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

# The durability settings of this cluster, as postgresql.conf lines.
durability_conf() {
    if ((DURABLE)); then
        cat <<'EOF'
# DURABLE: a committed transaction survives a crash or power loss.
fsync = on
synchronous_commit = on
full_page_writes = on
# Crash recovery first syncs the data directory; file by file (the default) took
# minutes on a cluster with many databases, one syncfs() per file system takes seconds.
recovery_init_sync_method = syncfs
EOF
    else
        cat <<'EOF'
# DEV/TEST ONLY: durability is off (fsync, full_page_writes, synchronous_commit).
# A crash or power loss can corrupt this cluster; never use these settings for real data.
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    fi
}

# Settings are rewritten on every `up` so edits here (or a new PGPORT) take effect.
# Returns 0 if the file changed.
write_conf() {
    local f="$PGDATA_DIR/orders-dev.conf"
    cat >"$f.tmp" <<EOF
# Written by infra/postgres.sh on every 'up' -- edit the script, not this file.
# Cluster '$CLUSTER' of this checkout.
$(durability_conf)
listen_addresses = '$HOST'
port = $PORT
unix_socket_directories = '$SOCKETS'
max_connections = 400
shared_buffers = 256MB
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
    ((EUID == 0)) && chown "$RUN_AS:" "$f.tmp"
    chmod 600 "$f.tmp"
    if [[ -f "$f" ]] && cmp -s "$f" "$f.tmp"; then
        rm -f "$f.tmp"
        return 1
    fi
    mv "$f.tmp" "$f"
    return 0
}

# After fsync was off, what the kernel still holds must reach the disk before
# the cluster counts as durable (PostgreSQL docs, `fsync`): sync the file system.
sync_data() {
    ((DURABLE)) || return 0
    log "syncing ${PGDATA_DIR#"$REPO"/} to disk (settings changed)"
    as_pg sync -f "$PGDATA_DIR/PG_VERSION" 2>/dev/null || sync
}

# The value `SHOW fsync` must give on this cluster.
expected_fsync() { if ((DURABLE)); then echo on; else echo off; fi; }

# Applies a rewritten conf to the running cluster: reload, then restart if a
# setting that needs one (port, shared_buffers, ...) changed.
apply_conf() {
    log "settings changed; reloading"
    as_pg "$PG_BIN/pg_ctl" reload -D "$PGDATA_DIR" >/dev/null
    local pending="" i
    # The reload is asynchronous: wait until the server reports the new fsync value.
    for i in $(seq 20); do
        [[ "$(super_psql -At -c 'SHOW fsync' 2>/dev/null)" == "$(expected_fsync)" ]] && break
        sleep 0.2
    done
    pending="$(super_psql -At -c "SELECT string_agg(name, ', ') FROM pg_settings WHERE pending_restart" 2>/dev/null || true)"
    if [[ -n "$pending" ]]; then
        log "restarting (pg_ctl restart -m fast) for: $pending"
        as_pg "$PG_BIN/pg_ctl" restart -D "$PGDATA_DIR" -m fast -l "$LOG_FILE" -W >/dev/null 9>&- \
            || { tail_log "$LOG_FILE"; die "pg_ctl restart failed"; }
    fi
}

ensure_roles() {
    # shellcheck disable=SC2119
    super_psql <<'SQL'
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'orders_owner') THEN
    CREATE ROLE orders_owner LOGIN PASSWORD 'orders_owner';
  END IF;
  ALTER ROLE orders_owner LOGIN PASSWORD 'orders_owner' CREATEDB NOCREATEROLE NOSUPERUSER;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'orders') THEN
    CREATE ROLE orders LOGIN PASSWORD 'orders';
  END IF;
  -- The application role creates no databases or roles (older layouts gave
  -- it CREATEDB CREATEROLE and made it the owner of everything).
  ALTER ROLE orders LOGIN PASSWORD 'orders' NOCREATEDB NOCREATEROLE NOSUPERUSER NOBYPASSRLS NOREPLICATION;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'orders_query') THEN
    CREATE ROLE orders_query LOGIN PASSWORD 'orders_query';
  END IF;
  ALTER ROLE orders_query LOGIN PASSWORD 'orders_query' NOCREATEDB NOCREATEROLE NOSUPERUSER NOBYPASSRLS NOREPLICATION;
END
$$;
-- The owner may act as the app role: later migrations can alter the read
-- models, which the app role owns (migrations/0012_roles.sql).
GRANT orders TO orders_owner;
SELECT 'CREATE DATABASE orders OWNER orders_owner'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'orders')\gexec
SQL
    # A database `orders` made when the app role owned everything: hand all of
    # it (schema objects, leftover test databases) to the owner; migration 0012
    # then grants the app role what it needs and gives it the read models back.
    local owner
    owner="$(super_psql -At -c "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'orders'")"
    if [[ "$owner" == orders ]]; then
        log "database orders is owned by the app role (older layout): reassigning to orders_owner; 'make migrate' applies the grants"
        super_psql -d orders -c 'ALTER DATABASE orders OWNER TO orders_owner' -c 'REASSIGN OWNED BY orders TO orders_owner'
    fi
}

can_login_orders() {
    PGPASSWORD=orders "$PG_BIN/psql" -X -q -At -h "$HOST" -p "$PORT" -U orders -d orders \
        -c 'select 1' >/dev/null 2>&1
}

cmd_up() {
    if [[ -n "$EXTERNAL_URL" ]] && "$PG_BIN/pg_isready" -q -t 3 -d "$EXTERNAL_URL" >/dev/null 2>&1; then
        log "$([[ $CLUSTER == test ]] && echo TEST_)DATABASE_URL is set and its server is reachable; not starting a local cluster"
        return 0
    fi
    lock "postgres-$CLUSTER"
    local t0
    t0="$(now_s)"
    prepare_dirs
    if pg_running; then
        log "already running (${PGDATA_DIR#"$REPO"/}); reusing"
        if write_conf; then
            apply_conf
            sync_data
        fi
    elif port_has_pg; then
        # Something else (another checkout's cluster, Debian's main cluster...) owns the port.
        if ensure_roles 2>/dev/null || can_login_orders; then
            log "$HOST:$PORT is served by a PostgreSQL not started by this checkout; reusing it (orders login works)"
            return 0
        fi
        die "$HOST:$PORT is in use by another server where orders/orders cannot log in; stop it or set $([[ $CLUSTER == test ]] && echo PGPORT_TEST || echo PGPORT)"
    else
        init_cluster
        if write_conf; then sync_data; fi
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
    log "ready on $HOST:$PORT ($(elapsed "$t0"), $(durability)): $(orders_url)"
}

# `fsync=on full_page_writes=on synchronous_commit=on` as the running server reports them.
durability() {
    PGPASSWORD=orders "$PG_BIN/psql" -X -At -h "$HOST" -p "$PORT" -U orders -d orders -c \
        "SELECT string_agg(name || '=' || setting, ' ' ORDER BY name) FROM pg_settings
         WHERE name IN ('fsync', 'full_page_writes', 'synchronous_commit')" 2>/dev/null || echo "settings unknown"
}

cmd_down() {
    lock "postgres-$CLUSTER"
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
    lock "postgres-$CLUSTER"
    pg_running || die "the cluster of this checkout is not running"
    log "crashing (pg_ctl stop -m immediate)"
    as_pg "$PG_BIN/pg_ctl" stop -D "$PGDATA_DIR" -m immediate -w -t 60 >/dev/null
}

cmd_clean() {
    cmd_down
    log "deleting ${PGDATA_DIR#"$REPO"/} ${LOG_DIR#"$REPO"/}"
    rm -rf "$PGDATA_DIR" "$LOG_DIR"
    # Shared by both clusters: removed once neither has a socket in it.
    rmdir "$SOCK_DIR" 2>/dev/null || true
}

cmd_status() {
    local label
    if ((DURABLE)); then label="durable"; else label="test, DEV/TEST ONLY"; fi
    if [[ -f "$PGDATA_DIR/PG_VERSION" ]] && pg_running; then
        if isready; then
            local settings
            settings="$(durability)"
            echo "postgres ($label): running on $HOST:$PORT  $settings  DATABASE_URL=$(orders_url)  OWNER_DATABASE_URL=$(orders_owner_url)  QUERY_DATABASE_URL=$(orders_query_url)"
            if ((DURABLE)) && [[ "$settings" != "fsync=on full_page_writes=on synchronous_commit=on" ]]; then
                echo "postgres ($label): WARNING: not durable ($settings); run 'make infra-up'" >&2
                return 4
            fi
        else
            echo "postgres ($label): running, not (yet) accepting connections on $HOST:$PORT (log: $LOG_FILE)"
        fi
    elif isready; then
        echo "postgres ($label): $HOST:$PORT served by a server not started by this checkout ($(durability))"
    else
        echo "postgres ($label): stopped$([[ -f "$PGDATA_DIR/PG_VERSION" ]] && echo " (data kept in ${PGDATA_DIR#"$REPO"/})")"
        return 3
    fi
}

# Drops the databases tests created (test_*), best effort: one still in use
# by a running test is left alone. Keeps repeated local `make test` runs lean.
# They belong to the owner role, which drops them.
cmd_prune() {
    local url db dropped=0
    url="$(orders_owner_url)"
    for db in $("$PG_BIN/psql" -X -At "$url" -c "SELECT datname FROM pg_database WHERE datname LIKE 'test\_%'" 2>/dev/null); do
        "$PG_BIN/psql" -X -q "$url" -c "DROP DATABASE IF EXISTS \"$db\"" >/dev/null 2>&1 && dropped=$((dropped + 1))
    done
    log "dropped $dropped test database(s)"
}

case "$COMMAND" in
    up) cmd_up ;;
    prune) cmd_prune ;;
    down) cmd_down ;;
    crash) cmd_crash ;;
    clean) cmd_clean ;;
    status) cmd_status ;;
    *) echo "usage: $0 up|down|crash|clean|status|prune [durable|test|all]" >&2; exit 2 ;;
esac
