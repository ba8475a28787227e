#!/usr/bin/env bash
# A small process supervisor for `make run`: runs the service binaries in the
# foreground, each line prefixed with `[name] ` (`[name.N] ` for extra
# instances), and restarts an instance that dies instead of stopping the rest.
#
# - Restart: after an exit (any status, any signal) the instance is started
#   again after a backoff that doubles from RESTART_BACKOFF_MS up to
#   RESTART_BACKOFF_MAX_MS, and resets once it has stayed up for 30 s.
# - Cap: an instance that needs more than RESTART_LIMIT restarts within 60 s is
#   crash-looping; the supervisor then stops everything and exits 1.
# - Ctrl-C / SIGTERM stops every instance (SIGTERM, SIGKILL after STOP_TIMEOUT s).
# - Several instances: COMMAND_APIS, QUERY_APIS, RELAYS, PROJECTORS, SAGA_WORKERS
#   (default 1 each). Instance N > 1 listens on the first instance's port + 100*(N-1):
#   command API 8180, 8280...; query API 8181...; relay admin 9201...; projector 9202...;
#   saga worker 9203.... Relays elect one leader; projectors and saga workers
#   share their consumer group's partitions.
# - Each instance's current pid is in $RUN_DIR/<name>.pid (chaos runs read them).
#
# Env:
#   PROCS     space-separated binary names (default: command-api outbox-relay projector query-api
#             payment-gateway saga-worker console; missing binaries are skipped)
#   BIN_DIR   where the binaries are (default: $CARGO_TARGET_DIR/release, else <repo>/target/release)
#   RUN_DIR   pid files (default <repo>/.data/run)
#   RESTART_BACKOFF_MS (500), RESTART_BACKOFF_MAX_MS (10000), RESTART_LIMIT (10), STOP_TIMEOUT (10)
#   DATABASE_URL, QUERY_DATABASE_URL, KAFKA_BROKERS, RUST_LOG  passed through (defaults below);
#   so is every other variable, e.g. CONSOLE_ADMIN_TOKEN (the console's re-drive token)
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
INFRA_TAG=supervisor
# shellcheck source=infra/lib.sh
source "$HERE/lib.sh"

BIN_DIR="${BIN_DIR:-${CARGO_TARGET_DIR:-$REPO/target}/release}"
PROCS="${PROCS:-command-api outbox-relay projector query-api payment-gateway saga-worker console}"
RUN_DIR="${RUN_DIR:-$DATA_ROOT/run}"
STOP_TIMEOUT="${STOP_TIMEOUT:-10}"
RESTART_BACKOFF_MS="${RESTART_BACKOFF_MS:-500}"
RESTART_BACKOFF_MAX_MS="${RESTART_BACKOFF_MAX_MS:-10000}"
RESTART_LIMIT="${RESTART_LIMIT:-10}"
# An instance that ran this long before exiting starts again with the shortest backoff.
HEALTHY_AFTER_S=30

export DATABASE_URL="${DATABASE_URL:-postgres://orders:orders@127.0.0.1:5432/orders}"
export QUERY_DATABASE_URL="${QUERY_DATABASE_URL:-postgres://orders_query:orders_query@127.0.0.1:5432/orders}"
export KAFKA_BROKERS="${KAFKA_BROKERS:-127.0.0.1:9092}"
export RUST_LOG="${RUST_LOG:-info}"

# instances_of NAME: how many instances of binary NAME to run.
instances_of() {
    case "$1" in
        command-api) echo "${COMMAND_APIS:-1}" ;;
        query-api) echo "${QUERY_APIS:-1}" ;;
        outbox-relay) echo "${RELAYS:-1}" ;;
        projector) echo "${PROJECTORS:-1}" ;;
        saga-worker) echo "${SAGA_WORKERS:-1}" ;;
        *) echo 1 ;;
    esac
}

# listen_env NAME N: the VAR=host:port that moves instance N of NAME off instance 1's port.
listen_env() {
    local name="$1" n="$2" var port
    ((n > 1)) || return 0
    case "$name" in
        command-api) var=COMMAND_API_BIND port=8080 ;;
        query-api) var=QUERY_API_BIND port=8081 ;;
        outbox-relay) var=ADMIN_BIND port=9101 ;;
        projector) var=ADMIN_BIND port=9102 ;;
        saga-worker) var=ADMIN_BIND port=9103 ;;
        *) die "$name cannot run more than one instance" ;;
    esac
    echo "$var=127.0.0.1:$((port + 100 * (n - 1)))"
}

# prefix TAG: copy stdin to stdout, line by line, prefixed and flushed immediately.
prefix() { sed -u "s/^/[$1] /"; }

now_ms() { date +%s%3N; }

# keep TAG BIN [VAR=value]: runs BIN until the supervisor stops, restarting it
# after each exit with backoff; exits 1 when the restart cap is exceeded.
# Runs in its own background subshell, one per instance.
keep() {
    local tag="$1" bin="$2" extra_env="${3:-}" child="" stopping=0
    local backoff="$RESTART_BACKOFF_MS" started rc ran_ms
    local -a recent=()
    # shellcheck disable=SC2317 # invoked via trap
    on_stop() {
        stopping=1
        [[ -n "$child" ]] && kill -TERM "$child" 2>/dev/null
    }
    trap on_stop TERM INT
    while ((stopping == 0)); do
        started="$(now_ms)"
        if [[ -n "$extra_env" ]]; then
            env "$extra_env" "$bin" > >(prefix "$tag") 2>&1 &
        else
            "$bin" > >(prefix "$tag") 2>&1 &
        fi
        child=$!
        echo "$child" >"$RUN_DIR/$tag.pid"
        log "started $tag (pid $child${extra_env:+, $extra_env})"
        # `wait` returns early when a trapped signal arrives; wait again until the child is gone.
        rc=0
        wait "$child" || rc=$?
        while kill -0 "$child" 2>/dev/null; do
            rc=0
            wait "$child" || rc=$?
        done
        child=""
        ((stopping)) && break
        ran_ms=$(($(now_ms) - started))
        local how="with status $rc"
        ((rc > 128)) && how="killed by signal $((rc - 128)) ($(kill -l $((rc - 128)) 2>/dev/null || echo '?'))"
        ((ran_ms >= HEALTHY_AFTER_S * 1000)) && backoff="$RESTART_BACKOFF_MS"
        # Restarts within the last minute, this one included.
        local now t
        now="$(now_ms)"
        local -a kept=()
        for t in "${recent[@]}"; do ((now - t < 60000)) && kept+=("$t"); done
        recent=("${kept[@]}" "$now")
        if ((${#recent[@]} > RESTART_LIMIT)); then
            warn "$tag exited $how after ${ran_ms} ms; more than $RESTART_LIMIT restarts within 60 s: giving up"
            rm -f "$RUN_DIR/$tag.pid"
            exit 1
        fi
        warn "$tag exited $how after ${ran_ms} ms; restart ${#recent[@]}/$RESTART_LIMIT this minute in ${backoff} ms"
        sleep "$(awk "BEGIN { print $backoff / 1000 }")" &
        wait $! 2>/dev/null
        ((stopping)) && break
        backoff=$((backoff * 2 > RESTART_BACKOFF_MAX_MS ? RESTART_BACKOFF_MAX_MS : backoff * 2))
    done
    rm -f "$RUN_DIR/$tag.pid"
    exit 0
}

declare -a keepers=()
declare -A tag_of=()

stop_all() {
    local pid deadline=$((SECONDS + STOP_TIMEOUT + 2))
    for pid in "${keepers[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    local -a alive
    while :; do
        alive=()
        for pid in "${keepers[@]}"; do
            kill -0 "$pid" 2>/dev/null && alive+=("$pid")
        done
        ((${#alive[@]} == 0)) && break
        if ((SECONDS >= deadline)); then
            local f
            for f in "$RUN_DIR"/*.pid; do
                [[ -f "$f" ]] || continue
                warn "$(basename "$f" .pid) ignored SIGTERM for ${STOP_TIMEOUT}s; sending SIGKILL"
                kill -KILL "$(cat "$f")" 2>/dev/null || true
            done
            for pid in "${alive[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
            break
        fi
        sleep 0.2
    done
    wait 2>/dev/null || true
    rm -f "$RUN_DIR"/*.pid
}

# shellcheck disable=SC2317 # invoked via trap
on_signal() {
    trap '' INT TERM
    log "received SIG$1; stopping ${#keepers[@]} instance(s)"
    stop_all
    [[ "$1" == INT ]] && exit 130
    exit 143
}
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM

mkdir -p "$RUN_DIR"
rm -f "$RUN_DIR"/*.pid
for name in $PROCS; do
    bin="$BIN_DIR/$name"
    if [[ ! -x "$bin" ]]; then
        warn "no binary $bin; skipping $name"
        continue
    fi
    count="$(instances_of "$name")"
    [[ "$count" =~ ^[1-9][0-9]*$ ]] || die "instance count for $name must be a positive number, got '$count'"
    for ((n = 1; n <= count; n++)); do
        tag="$name"
        ((n > 1)) && tag="$name.$n"
        keep "$tag" "$bin" "$(listen_env "$name" "$n")" &
        keepers+=("$!")
        tag_of[$!]="$tag"
    done
done

((${#keepers[@]})) || die "none of [$PROCS] exists in $BIN_DIR (run 'make build')"
log "DATABASE_URL=$DATABASE_URL KAFKA_BROKERS=$KAFKA_BROKERS RUST_LOG=$RUST_LOG; Ctrl-C stops all"
if [[ " ${tag_of[*]} " == *" console "* ]]; then
    log "console: http://${CONSOLE_BIND:-127.0.0.1:8083}/ (re-drive $([[ -n "${CONSOLE_ADMIN_TOKEN:-}" ]] && echo enabled || echo "disabled: set CONSOLE_ADMIN_TOKEN"))"
fi

# A keeper ends only when its instance crash-loops (or it was stopped).
ended=""
wait -n -p ended "${keepers[@]}"
rc=$?
trap '' INT TERM
log "${tag_of[$ended]:-keeper $ended} is crash-looping (exit $rc); stopping everything"
stop_all
((rc == 0)) && rc=1
exit "$rc"
