#!/usr/bin/env bash
# Runs the demo against the running system; if the command API is not up,
# starts every process in the background (logs in .data/demo-run.log),
# waits until all are ready, runs the demo, then stops them. Used by `make demo`.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
INFRA_TAG=demo
# shellcheck source=infra/lib.sh
source "$HERE/lib.sh"

BIN_DIR="${BIN_DIR:-${CARGO_TARGET_DIR:-$REPO/target}/release}"
started=""
cleanup() {
    if [[ -n "$started" ]]; then
        log "stopping the processes started for the demo"
        kill -TERM "$started" 2>/dev/null || true
        wait "$started" 2>/dev/null || true
    fi
}
trap cleanup EXIT

ready() { curl -fsS "http://127.0.0.1:$1/health/ready" >/dev/null 2>&1; }

if ! ready 8080; then
    mkdir -p "$DATA_ROOT"
    log "system not running; starting it (logs: .data/demo-run.log)"
    bash "$HERE/run-all.sh" >"$DATA_ROOT/demo-run.log" 2>&1 &
    started=$!
    for _ in $(seq 1 120); do
        if ready 8080 && ready 8081 && ready 8082; then break; fi
        kill -0 "$started" 2>/dev/null || { tail_log "$DATA_ROOT/demo-run.log"; die "the system exited"; }
        sleep 0.5
    done
    ready 8080 && ready 8081 && ready 8082 || { tail_log "$DATA_ROOT/demo-run.log"; die "the system did not become ready"; }
fi
"$BIN_DIR/demo"
