#!/usr/bin/env bash
# Local single-node Apache Kafka 4.1.1 (KRaft, broker+controller) from Maven Central jars.
# DEV/TEST ONLY: no auth, replication factor 1, data under <repo>/.data/kafka.
#
#   infra/kafka.sh up      resolve jars (once), format storage (once), start, wait for 127.0.0.1:9092
#   infra/kafka.sh down    stop the broker this checkout started (TERM, 20s, then KILL)
#   infra/kafka.sh crash   SIGKILL it (fault injection: `make chaos`)
#   infra/kafka.sh clean   down + delete .data/kafka
#   infra/kafka.sh status  show state
#   infra/kafka.sh smoke   produce+consume one record on a throw-away topic (needs a running broker)
#
# Env:
#   KAFKA_BROKERS    if set and reachable, `up` does nothing (external broker).
#   KAFKA_HEAP_OPTS  JVM heap (default "-Xmx1G -Xms512m").
#   MVN              Maven command (default "mvn").
set -euo pipefail

INFRA_TAG=kafka
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KAFKA_HOST=127.0.0.1
KAFKA_PORT=9092           # fixed: must match infra/kafka/server.properties
KDIR="$REPO/infra/kafka"
LIBS="$KDIR/libs"
LIBS_MARKER="$LIBS/.complete"
DATA="$DATA_ROOT/kafka"
LOG_DIR="$DATA/logs"
STORE_DIR="$DATA/data"
CONF="$DATA/server.properties"
PID_FILE="$DATA/kafka.pid"
START_TIMEOUT=90
STOP_TIMEOUT=20

pom_hash() { sha256sum "$KDIR/pom.xml" | cut -d' ' -f1; }

ensure_libs() {
    local want
    want="$(pom_hash)"
    if [[ -f "$LIBS_MARKER" && "$(cat "$LIBS_MARKER")" == "$want" ]]; then
        return 0
    fi
    command -v "${MVN:-mvn}" >/dev/null || die "Maven ('${MVN:-mvn}') not found; it is needed to fetch the Kafka jars"
    log "resolving Kafka jars with Maven into infra/kafka/libs (first run / pom changed)..."
    local t0
    t0="$(now_s)"
    rm -rf "$LIBS"
    mkdir -p "$LOG_DIR"
    # -B: batch mode (no stdin, no colours); jars are cached in ~/.m2 across runs.
    if ! "${MVN:-mvn}" -B -Dstyle.color=never -f "$KDIR/pom.xml" \
            dependency:copy-dependencies -DoutputDirectory="$LIBS" -DincludeScope=runtime \
            </dev/null >"$LOG_DIR/mvn.out" 2>&1; then
        rm -rf "$LIBS"
        tail_log "$LOG_DIR/mvn.out" 60
        die "mvn dependency:copy-dependencies failed (is Maven Central reachable?)"
    fi
    compgen -G "$LIBS/kafka_2.13-*.jar" >/dev/null || die "no kafka_2.13 jar in $LIBS after Maven run"
    echo "$want" >"$LIBS_MARKER"
    log "jars ready ($(find "$LIBS" -name '*.jar' | wc -l) jars, $(elapsed "$t0"))"
}

java_cp() { echo "$LIBS/*"; }

write_config() {
    mkdir -p "$STORE_DIR" "$LOG_DIR"
    local tmpl
    tmpl="$(<"$KDIR/server.properties")"
    printf '%s\n' "${tmpl//@KAFKA_DATA_DIR@/$STORE_DIR}" >"$CONF.tmp"
    mv "$CONF.tmp" "$CONF"
}

format_storage() {
    if [[ -f "$STORE_DIR/meta.properties" ]]; then
        return 0
    fi
    local id
    if [[ -s "$DATA/cluster.id" ]]; then
        id="$(<"$DATA/cluster.id")"
    else
        id="$(java -cp "$(java_cp)" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)"
        [[ -n "$id" ]] || die "StorageTool random-uuid produced no id"
        echo "$id" >"$DATA/cluster.id"
    fi
    log "formatting KRaft storage (cluster id $id) in $STORE_DIR"
    java -cp "$(java_cp)" \
        -Dlog4j2.configurationFile="$KDIR/log4j2.properties" -Dkafka.logs.dir="$LOG_DIR" \
        kafka.tools.StorageTool format --standalone -t "$id" -c "$CONF" >"$LOG_DIR/format.out" 2>&1 \
        || { tail_log "$LOG_DIR/format.out"; die "StorageTool format failed"; }
}

read_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(<"$PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    # Only trust the pid if it is still our broker (guards against pid reuse).
    if [[ -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "kafka.Kafka $CONF"; then
        echo "$pid"
        return 0
    fi
    return 1
}

cmd_up() {
    if [[ -n "${KAFKA_BROKERS:-}" ]] && brokers_reachable "$KAFKA_BROKERS"; then
        log "KAFKA_BROKERS=$KAFKA_BROKERS is set and reachable; not starting a local broker"
        return 0
    fi
    command -v java >/dev/null || die "java not found (Kafka 4.1 needs Java 17+)"
    lock kafka
    local t0 pid
    t0="$(now_s)"
    if tcp_open "$KAFKA_HOST" "$KAFKA_PORT"; then
        if pid="$(read_pid)"; then
            log "already running (pid $pid) on $KAFKA_HOST:$KAFKA_PORT; reusing"
        else
            log "$KAFKA_HOST:$KAFKA_PORT already accepts connections (not started by this checkout); reusing it"
        fi
        return 0
    fi
    if pid="$(read_pid)"; then
        log "broker pid $pid is running but $KAFKA_PORT is not open yet; waiting for it"
    else
        ensure_libs
        write_config
        format_storage
        rm -f "$PID_FILE"
        log "starting broker (logs: ${LOG_DIR#"$REPO"/})"
        # setsid+nohup: detach from the caller's session/terminal; 9>&- drops the lock fd.
        # shellcheck disable=SC2086
        setsid nohup java ${KAFKA_HEAP_OPTS:--Xmx1G -Xms512m} \
            -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
            -Dlog4j2.configurationFile="$KDIR/log4j2.properties" \
            -Dkafka.logs.dir="$LOG_DIR" \
            -cp "$(java_cp)" kafka.Kafka "$CONF" \
            >"$LOG_DIR/server.out" 2>&1 </dev/null 9>&- &
        pid=$!
        echo "$pid" >"$PID_FILE"
    fi

    local deadline=$((SECONDS + START_TIMEOUT))
    until tcp_open "$KAFKA_HOST" "$KAFKA_PORT"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PID_FILE"
            tail_log "$LOG_DIR/server.out"
            tail_log "$LOG_DIR/server.log"
            die "broker process $pid exited before $KAFKA_HOST:$KAFKA_PORT opened"
        fi
        if ((SECONDS >= deadline)); then
            tail_log "$LOG_DIR/server.out"
            tail_log "$LOG_DIR/server.log"
            die "broker (pid $pid) did not open $KAFKA_HOST:$KAFKA_PORT within ${START_TIMEOUT}s; it is left running, see logs above ('infra/kafka.sh down' stops it)"
        fi
        sleep 0.5
    done
    log "ready on $KAFKA_HOST:$KAFKA_PORT (pid $pid, $(elapsed "$t0"))"
}

cmd_down() {
    lock kafka
    local pid
    if ! pid="$(read_pid)"; then
        rm -f "$PID_FILE"
        if tcp_open "$KAFKA_HOST" "$KAFKA_PORT"; then
            log "no broker started by this checkout; $KAFKA_HOST:$KAFKA_PORT is served by another process (left alone)"
        else
            log "not running"
        fi
        return 0
    fi
    log "stopping broker pid $pid (SIGTERM, up to ${STOP_TIMEOUT}s)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            warn "broker pid $pid still alive after ${STOP_TIMEOUT}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.5
    done
    rm -f "$PID_FILE"
    log "stopped"
}

# For fault-injection runs (`make chaos`): SIGKILL the broker, as a crash would.
cmd_crash() {
    lock kafka
    local pid
    pid="$(read_pid)" || die "no broker started by this checkout is running"
    log "crashing broker pid $pid (SIGKILL)"
    kill -KILL "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    rm -f "$PID_FILE"
}

cmd_clean() {
    cmd_down
    log "deleting $DATA"
    rm -rf "$DATA"
}

cmd_status() {
    local pid
    if pid="$(read_pid)"; then
        if tcp_open "$KAFKA_HOST" "$KAFKA_PORT"; then
            echo "kafka: running (pid $pid), ready on $KAFKA_HOST:$KAFKA_PORT  KAFKA_BROKERS=$KAFKA_HOST:$KAFKA_PORT"
        else
            echo "kafka: process $pid running, $KAFKA_HOST:$KAFKA_PORT not open (starting or unhealthy; see .data/kafka/logs)"
        fi
    elif tcp_open "$KAFKA_HOST" "$KAFKA_PORT"; then
        echo "kafka: $KAFKA_HOST:$KAFKA_PORT open, served by a process not started by this checkout"
    else
        echo "kafka: stopped$([[ -f "$STORE_DIR/meta.properties" ]] && echo " (data kept in ${DATA#"$REPO"/})")"
        return 3
    fi
}

cmd_smoke() {
    tcp_open "$KAFKA_HOST" "$KAFKA_PORT" || die "nothing listens on $KAFKA_HOST:$KAFKA_PORT; run 'infra/kafka.sh up' first"
    ensure_libs
    java -cp "$(java_cp)" -Dlog4j2.configurationFile="$KDIR/log4j2.properties" \
        -Dkafka.logs.dir="$LOG_DIR/smoke" "$KDIR/Smoke.java" "${KAFKA_BROKERS:-$KAFKA_HOST:$KAFKA_PORT}"
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    clean) cmd_clean ;;
    status) cmd_status ;;
    smoke) cmd_smoke ;;
    crash) cmd_crash ;;
    *) echo "usage: $0 up|down|crash|clean|status|smoke" >&2; exit 2 ;;
esac
