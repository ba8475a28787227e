#!/usr/bin/env bash
# Start the local infrastructure (Postgres 15 + Kafka 4.1) concurrently.
# Idempotent: running services are reused. Progress goes to stderr; stdout gets
# `export ...` lines, so `eval "$(infra/up.sh)"` configures the current shell.
# Which Postgres cluster (infra/postgres.sh): PG_CLUSTER=durable (default, port
# $PGPORT / 5432), test (DEV/TEST ONLY, durability off, $PGPORT_TEST / 5433) or all;
# the exports name the durable one unless PG_CLUSTER=test.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
INFRA_TAG=up
# shellcheck source=infra/lib.sh
source "$HERE/lib.sh"

t0="$(now_s)"
cluster="${PG_CLUSTER:-durable}"
bash "$HERE/postgres.sh" up "$cluster" &
pg_pid=$!
bash "$HERE/kafka.sh" up &
kafka_pid=$!

failed=()
wait "$pg_pid" || failed+=(postgres)
wait "$kafka_pid" || failed+=(kafka)
if ((${#failed[@]})); then
    die "failed to start: ${failed[*]} (see messages above)"
fi

# Print what to use: an external server given via env (if reachable), else the local one.
if [[ "$cluster" == test ]]; then
    port="${PGPORT_TEST:-5433}"
    external="${TEST_DATABASE_URL:-}"
else
    port="${PGPORT:-5432}"
    external="${DATABASE_URL:-}"
fi
db_url="postgres://orders:orders@127.0.0.1:$port/orders"
owner_url="postgres://orders_owner:orders_owner@127.0.0.1:$port/orders"
query_url="postgres://orders_query:orders_query@127.0.0.1:$port/orders"
brokers="127.0.0.1:9092"
if [[ -n "$external" ]] && "${PG_BIN:-/usr/lib/postgresql/15/bin}/pg_isready" -q -t 3 -d "$external" >/dev/null 2>&1; then
    db_url="$external"
    owner_url="${OWNER_DATABASE_URL:-$owner_url}"
    query_url="${QUERY_DATABASE_URL:-$query_url}"
fi
if [[ -n "${KAFKA_BROKERS:-}" ]] && brokers_reachable "$KAFKA_BROKERS"; then
    brokers="$KAFKA_BROKERS"
fi
log "infrastructure ready ($(elapsed "$t0")). Use:"
cat <<EOF2
export DATABASE_URL=$db_url
export OWNER_DATABASE_URL=$owner_url
export QUERY_DATABASE_URL=$query_url
export KAFKA_BROKERS=$brokers
EOF2
