#!/usr/bin/env bash
# Tests of infra/run-all.sh (the `make run` supervisor) with stand-in binaries:
# restart after kill -9, a second instance on its own port, the restart cap,
# and a clean stop on SIGTERM. Run by `make test`; takes ~10 s.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
INFRA_TAG=test-supervisor
# shellcheck source=infra/lib.sh
source "$HERE/lib.sh"

work="$(mktemp -d)"
sup=""
# shellcheck disable=SC2317 # invoked via trap
cleanup() {
    [[ -n "$sup" ]] && kill -TERM "$sup" 2>/dev/null
    sleep 0.5
    pkill -KILL -f "$work/bin/" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/bin" "$work/run"

# A long-running stand-in that records the listen address it was given.
cat >"$work/bin/projector" <<EOF
#!/usr/bin/env bash
echo "\${ADMIN_BIND:-default}" >>"$work/projector.binds"
trap 'echo "stopping cleanly"; exit 0' TERM
while :; do sleep 0.1; done
EOF
cp "$work/bin/projector" "$work/bin/saga-worker"
# A stand-in that always fails at once.
printf '#!/usr/bin/env bash\necho "cannot start"; exit 3\n' >"$work/bin/outbox-relay"
chmod +x "$work/bin/"*

fail() { echo "FAIL: $*" >&2; echo "--- supervisor log" >&2; cat "$work/log" >&2; exit 1; }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local deadline=$((SECONDS + $1)) what="$2"
    shift 2
    until "$@"; do
        ((SECONDS < deadline)) || fail "timed out waiting for $what"
        sleep 0.1
    done
}
alive() { [[ -f "$work/run/$1.pid" ]] && kill -0 "$(cat "$work/run/$1.pid")" 2>/dev/null; }

echo "1. two projector instances, one saga worker; kill -9 restarts only the victim"
PROCS="projector saga-worker" PROJECTORS=2 BIN_DIR="$work/bin" RUN_DIR="$work/run" \
    RESTART_BACKOFF_MS=100 bash "$HERE/run-all.sh" >"$work/log" 2>&1 &
sup=$!
wait_for 10 "three instances" bash -c "ls '$work/run' | grep -c pid | grep -qx 3"
wait_for 5 "instances up" alive projector.2
grep -qx "127.0.0.1:9202" "$work/projector.binds" || fail "projector.2 was not given ADMIN_BIND=127.0.0.1:9202"
victim="$(cat "$work/run/projector.2.pid")"
other="$(cat "$work/run/projector.pid")"
kill -KILL "$victim"
wait_for 10 "projector.2 restarted" bash -c "[[ -f '$work/run/projector.2.pid' && \$(cat '$work/run/projector.2.pid') != $victim ]]"
alive projector.2 || fail "restarted projector.2 is not running"
[[ "$(cat "$work/run/projector.pid")" == "$other" ]] || fail "projector (not the victim) was restarted too"
grep -q "projector.2 exited killed by signal 9 (KILL)" "$work/log" || fail "the kill was not logged"

echo "2. SIGTERM stops every instance and the supervisor"
pids="$(cat "$work/run/"*.pid)"
kill -TERM "$sup"
rc=0
wait "$sup" || rc=$?
sup=""
((rc == 143)) || fail "supervisor exited $rc on SIGTERM, expected 143"
for pid in $pids; do
    kill -0 "$pid" 2>/dev/null && fail "instance pid $pid still running after stop"
done
[[ "$(grep -c "stopping cleanly" "$work/log")" -ge 3 ]] || fail "instances were not asked to stop with SIGTERM"

echo "3. a crash-looping instance hits the restart cap and stops everything"
PROCS="projector outbox-relay" BIN_DIR="$work/bin" RUN_DIR="$work/run" \
    RESTART_BACKOFF_MS=50 RESTART_BACKOFF_MAX_MS=100 RESTART_LIMIT=3 bash "$HERE/run-all.sh" >"$work/log" 2>&1 &
sup=$!
rc=0
timeout 20 tail --pid="$sup" -f /dev/null || fail "supervisor did not give up on a crash loop"
wait "$sup" || rc=$?
sup=""
((rc == 1)) || fail "supervisor exited $rc after a crash loop, expected 1"
[[ "$(grep -c "restart [0-9]/3 this minute" "$work/log")" -eq 3 ]] || fail "expected 3 restarts before giving up"
grep -q "more than 3 restarts within 60 s: giving up" "$work/log" || fail "the cap was not logged"
pgrep -f "$work/bin/projector" >/dev/null && fail "projector still running after the supervisor gave up"

log "supervisor: all checks passed"
