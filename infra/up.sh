#!/usr/bin/env bash
# Start the local dev/test infrastructure (Postgres 15 + Kafka 4.1) concurrently.
# Idempotent: running services are reused. Progress goes to stderr; stdout gets
# `export ...` lines, so `eval "$(infra/up.sh)"` configures the current shell.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
INFRA_TAG=up
# shellcheck source=infra/lib.sh
source "$HERE/lib.sh"

t0="$(now_s)"
bash "$HERE/postgres.sh" up &
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
port="${PGPORT:-5432}"
db_url="postgres://orders:orders@127.0.0.1:$port/orders"
query_url="postgres://orders_query:orders_query@127.0.0.1:$port/orders"
brokers="127.0.0.1:9092"
if [[ -n "${DATABASE_URL:-}" ]] && "${PG_BIN:-/usr/lib/postgresql/15/bin}/pg_isready" -q -t 3 -d "$DATABASE_URL" >/dev/null 2>&1; then
    db_url="$DATABASE_URL"
    query_url="${QUERY_DATABASE_URL:-$query_url}"
fi
if [[ -n "${KAFKA_BROKERS:-}" ]] && brokers_reachable "$KAFKA_BROKERS"; then
    brokers="$KAFKA_BROKERS"
fi
log "infrastructure ready ($(elapsed "$t0")). Use:"
cat <<EOF2
export DATABASE_URL=$db_url
export QUERY_DATABASE_URL=$query_url
export KAFKA_BROKERS=$brokers
EOF2
