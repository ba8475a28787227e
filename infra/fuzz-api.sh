#!/usr/bin/env bash
# Schema-driven fuzzing of both HTTP APIs with schemathesis, from their own
# /openapi.json: no 5xx, every response (errors included) has a documented
# status, content type (application/problem+json for errors) and body shape,
# and schema-invalid requests are refused. Used by `make fuzz-api` and CI.
#
# Needs Postgres up (make infra-up) and the debug binaries (make build, or the
# test build). Installs schemathesis (pinned) into a virtualenv under
# ~/.cache/orders-cqrs on first use. Runs on a fresh database `test_fuzz_*`
# (dropped at the end, and by `infra/postgres.sh prune`), seeded with a few
# read-model rows so the read endpoints answer with real bodies.
#
# Env: FUZZ_MAX_EXAMPLES (default 50 per operation), FUZZ_SEED (optional),
#      BIN_DIR (default $CARGO_TARGET_DIR/debug), DATABASE_URL (the app role's URL),
#      OWNER_DATABASE_URL (the owner role's, which creates, migrates and drops the database;
#      default: DATABASE_URL with orders_owner's credentials).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
INFRA_TAG=fuzz-api
# shellcheck source=infra/lib.sh
source "$HERE/lib.sh"

SCHEMATHESIS_VERSION=4.32.5
VENV="${HOME}/.cache/orders-cqrs/venv-schemathesis-${SCHEMATHESIS_VERSION}"
BIN_DIR="${BIN_DIR:-${CARGO_TARGET_DIR:-$HOME/.cache/orders-cqrs/target}/debug}"
APP_URL="${DATABASE_URL:-postgres://orders:orders@127.0.0.1:5432/orders}"
ADMIN_URL="${OWNER_DATABASE_URL:-$(sed -E 's#//[^@]*@#//orders_owner:orders_owner@#' <<<"$APP_URL")}"
MAX_EXAMPLES="${FUZZ_MAX_EXAMPLES:-50}"

for binary in migrate command-api query-api; do
    [[ -x "$BIN_DIR/$binary" ]] || die "$BIN_DIR/$binary missing: run \`make build\` first"
done

if [[ ! -x "$VENV/bin/st" ]]; then
    log "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

db="test_fuzz_$(date +%s)_$$"
db_url="${APP_URL%/*}/$db"
owner_url="${ADMIN_URL%/*}/$db"
query_url="$(sed -E 's#//[^@]*@#//orders_query:orders_query@#' <<<"$db_url")"
psql -X -q "$ADMIN_URL" -c "CREATE DATABASE $db" >/dev/null

declare -a pids=()
logs="$(mktemp -d)"
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql -X -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
    rm -rf "$logs"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_ready() {
    local url="$1" deadline=$((SECONDS + 60))
    until curl -fsS "$url/health/ready" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "$url not ready after 60 s"
        sleep 0.2
    done
}

command_port="$(free_port)"
query_port="$(free_port)"
OWNER_DATABASE_URL="$owner_url" RUST_LOG=warn "$BIN_DIR/migrate" >"$logs/migrate.log" 2>&1 \
    || { cat "$logs/migrate.log" >&2; die "migrate failed"; }
DATABASE_URL="$db_url" COMMAND_API_BIND="127.0.0.1:$command_port" RUST_LOG=warn \
    "$BIN_DIR/command-api" >"$logs/command-api.log" 2>&1 &
pids+=($!)
wait_ready "http://127.0.0.1:$command_port"
QUERY_DATABASE_URL="$query_url" QUERY_API_BIND="127.0.0.1:$query_port" RUST_LOG=warn \
    "$BIN_DIR/query-api" >"$logs/query-api.log" 2>&1 &
pids+=($!)
wait_ready "http://127.0.0.1:$query_port"

psql -X -q "$db_url" >/dev/null <<'SQL'
INSERT INTO read.products (product_id, name, price_cents, available, reserved, sold, version, updated_at)
SELECT gen_random_uuid(), 'Product ' || n, 100 * n, 10 * n, n, n, 3, now() FROM generate_series(1, 5) AS n;
INSERT INTO read.orders (order_id, user_id, status, reason, lines, total_cents, version, placed_at, updated_at)
SELECT gen_random_uuid(), 'alice', 'CONFIRMED', NULL,
       jsonb_build_array(jsonb_build_object('product_id', gen_random_uuid(), 'quantity', 2, 'unit_price_cents', 100)),
       200, 4, now() - n * interval '1 minute', now()
FROM generate_series(1, 3) AS n;
INSERT INTO read.user_orders (order_id, user_id, placed_at, version)
SELECT order_id, user_id, placed_at, version FROM read.orders;
SQL

# Every check but "schema-valid data must be accepted": a schema-valid order
# for a product that does not exist, or a reused Idempotency-Key, is rightly
# refused with 422 by the business rules.
run() {
    local name="$1" port="$2"
    log "fuzzing the $name at 127.0.0.1:$port ($MAX_EXAMPLES examples per operation)"
    local -a args=(run "http://127.0.0.1:$port/openapi.json"
        --checks all --exclude-checks positive_data_acceptance
        --max-examples "$MAX_EXAMPLES" --no-color)
    [[ -n "${FUZZ_SEED:-}" ]] && args+=(--seed "$FUZZ_SEED")
    # schemathesis keeps its cache in the working directory: not the checkout.
    if ! (cd "$logs" && "$VENV/bin/st" "${args[@]}"); then
        warn "the $name failed; its log:"
        tail -n 50 "$logs/$name.log" >&2 || true
        return 1
    fi
}

status=0
run command-api "$command_port" || status=1
run query-api "$query_port" || status=1
grep -h -E '(ERROR|panicked)' "$logs"/*.log >&2 && { warn "a process logged errors"; status=1; }
exit "$status"
