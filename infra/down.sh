#!/usr/bin/env bash
# Stop the local dev/test infrastructure started by this checkout (data is kept;
# `make infra-clean` deletes it): Kafka and both Postgres clusters (durable and test).
# Services not started by this checkout are left alone.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

bash "$HERE/postgres.sh" down all &
pg_pid=$!
bash "$HERE/kafka.sh" down &
kafka_pid=$!

rc=0
wait "$pg_pid" || rc=1
wait "$kafka_pid" || rc=1
exit "$rc"
