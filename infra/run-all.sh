#!/usr/bin/env bash
# Run the service binaries in the foreground, each line prefixed with `[name] `.
# Ctrl-C / SIGTERM stops all of them. If any one exits, the others are stopped and
# this script exits non-zero. Used by `make run`.
#
# Env:
#   PROCS     space-separated binary names (default: command-api outbox-relay projector query-api
#             payment-gateway saga-worker console; missing binaries are skipped)
#   BIN_DIR   where the binaries are (default: $CARGO_TARGET_DIR/release, else <repo>/target/release;
#             `make run` builds them with `cargo build --release`)
#   DATABASE_URL, QUERY_DATABASE_URL, KAFKA_BROKERS, RUST_LOG  passed through (defaults below);
#   so is every other variable, e.g. CONSOLE_ADMIN_TOKEN (the console's re-drive token)
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
INFRA_TAG=run-all
# shellcheck source=infra/lib.sh
source "$HERE/lib.sh"

BIN_DIR="${BIN_DIR:-${CARGO_TARGET_DIR:-$REPO/target}/release}"
PROCS="${PROCS:-command-api outbox-relay projector query-api payment-gateway saga-worker console}"
STOP_TIMEOUT="${STOP_TIMEOUT:-10}"

export DATABASE_URL="${DATABASE_URL:-postgres://orders:orders@127.0.0.1:5432/orders}"
export QUERY_DATABASE_URL="${QUERY_DATABASE_URL:-postgres://orders_query:orders_query@127.0.0.1:5432/orders}"
export KAFKA_BROKERS="${KAFKA_BROKERS:-127.0.0.1:9092}"
export RUST_LOG="${RUST_LOG:-info}"

declare -a pids=()
declare -A name_of=()

# prefix NAME: copy stdin to stdout, line by line, prefixed and flushed immediately.
prefix() { sed -u "s/^/[$1] /"; }

stop_all() {
    local pid deadline=$((SECONDS + STOP_TIMEOUT))
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    local -a alive
    while :; do
        alive=()
        for pid in "${pids[@]}"; do
            kill -0 "$pid" 2>/dev/null && alive+=("$pid")
        done
        ((${#alive[@]} == 0)) && break
        if ((SECONDS >= deadline)); then
            for pid in "${alive[@]}"; do
                warn "${name_of[$pid]} (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s; sending SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
            done
            break
        fi
        sleep 0.2
    done
    wait 2>/dev/null || true
}

# shellcheck disable=SC2317 # invoked via trap
on_signal() {
    trap '' INT TERM
    log "received SIG$1; stopping ${#pids[@]} process(es)"
    stop_all
    [[ "$1" == INT ]] && exit 130
    exit 143
}
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM

for name in $PROCS; do
    bin="$BIN_DIR/$name"
    if [[ ! -x "$bin" ]]; then
        warn "no binary $bin; skipping $name"
        continue
    fi
    "$bin" > >(prefix "$name") 2>&1 &
    pid=$!
    pids+=("$pid")
    name_of[$pid]="$name"
    log "started $name (pid $pid)"
done

((${#pids[@]})) || die "none of [$PROCS] exists in $BIN_DIR (run 'make build')"
log "DATABASE_URL=$DATABASE_URL KAFKA_BROKERS=$KAFKA_BROKERS RUST_LOG=$RUST_LOG; Ctrl-C stops all"
if [[ " ${name_of[*]} " == *" console "* ]]; then
    log "console: http://${CONSOLE_BIND:-127.0.0.1:8083}/ (re-drive $([[ -n "${CONSOLE_ADMIN_TOKEN:-}" ]] && echo enabled || echo "disabled: set CONSOLE_ADMIN_TOKEN"))"
fi

exited=""
wait -n -p exited "${pids[@]}"
rc=$?
trap '' INT TERM
log "${name_of[$exited]:-process $exited} exited with status $rc; stopping the others"
stop_all
((rc == 0)) && rc=1
exit "$rc"
