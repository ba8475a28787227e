#!/usr/bin/env bash
# Fails unless the PostgreSQL at URL (default: the durable cluster of
# infra/postgres.sh, 127.0.0.1:$PGPORT) runs with fsync, full_page_writes and
# synchronous_commit on, i.e. a committed event survives a crash, and with
# recovery_init_sync_method = syncfs: the regression check of the fault the
# chaos run found, "postgres crash recovery outlasted the drain" (fsyncing
# every file of ~740 databases one by one took over two minutes after a
# `pg_ctl stop -m immediate`; one syncfs() takes seconds). Run by
# `make check-durable` (a CI phase). Against the test cluster it must fail:
#   infra/check-durable.sh postgres://orders:orders@127.0.0.1:5433/orders
set -euo pipefail
INFRA_TAG=check-durable
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
url="${1:-postgres://orders:orders@127.0.0.1:${PGPORT:-5432}/orders}"
settings="$(PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -At "$url" -c \
    "SELECT name || '=' || setting FROM pg_settings
     WHERE name IN ('fsync', 'full_page_writes', 'synchronous_commit', 'recovery_init_sync_method')
     ORDER BY name")" \
    || die "cannot read the settings at ${url%%@*}@…${url#*@}"
bad=()
for name in fsync full_page_writes synchronous_commit; do
    grep -qx "$name=on" <<<"$settings" || bad+=("$(grep "^$name=" <<<"$settings" || echo "$name=?")")
done
host="${url#*@}"
if ! grep -qx "recovery_init_sync_method=syncfs" <<<"$settings"; then
    bad+=("$(grep "^recovery_init_sync_method=" <<<"$settings" || echo "recovery_init_sync_method=?")"
        "(crash recovery would fsync every file of every database one by one)")
fi
if ((${#bad[@]})); then
    die "$host lacks the durable cluster's settings: ${bad[*]} (it must have fsync, full_page_writes and synchronous_commit on and recovery_init_sync_method = syncfs; run 'make infra-up')"
fi
log "$host is durable: $(tr '\n' ' ' <<<"$settings")"
