# shellcheck shell=bash
# Helpers shared by the infra/*.sh scripts. Source it; don't run it.

# Repository root, derived from this file's location (infra/lib.sh -> repo).
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
DATA_ROOT="$REPO/.data"

_tag="${INFRA_TAG:-infra}"
log()  { printf '[%s] %s\n' "$_tag" "$*" >&2; }
warn() { printf '[%s] WARNING: %s\n' "$_tag" "$*" >&2; }
die()  { printf '[%s] ERROR: %s\n' "$_tag" "$*" >&2; exit 1; }

# tcp_open HOST PORT: true if a TCP connection can be established (1s timeout).
tcp_open() {
    # shellcheck disable=SC2016 # $1/$2 expand in the inner shell
    timeout 1 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# brokers_reachable LIST: true if any host:port in the comma-separated LIST accepts TCP.
brokers_reachable() {
    local b host port
    local -a list
    IFS=',' read -ra list <<<"$1"
    for b in "${list[@]}"; do
        b="${b// /}"
        b="${b#*://}"
        host="${b%:*}"
        port="${b##*:}"
        [[ -n "$host" && "$port" =~ ^[0-9]+$ ]] || continue
        if tcp_open "$host" "$port"; then return 0; fi
    done
    return 1
}

# now_s: seconds since epoch with millisecond precision (for timings).
now_s() { date +%s.%3N; }
elapsed() { awk -v a="$1" -v b="$(now_s)" 'BEGIN { printf "%.1fs", b - a }'; }

# lock NAME: serialise concurrent invocations of the same script (fd 9).
# Children that outlive the script (daemons) must be started with `9>&-`.
lock() {
    mkdir -p "$DATA_ROOT"
    exec 9>"$DATA_ROOT/.$1.lock"
    if ! flock -w 180 9; then
        die "timed out waiting for $DATA_ROOT/.$1.lock (another '$1' invocation running?)"
    fi
}

# tail_log FILE [N]: print the last N lines of FILE to stderr, indented.
tail_log() {
    local f="$1" n="${2:-40}"
    if [[ -f "$f" ]]; then
        printf '[%s] ---- last %s lines of %s ----\n' "$_tag" "$n" "$f" >&2
        tail -n "$n" "$f" | sed 's/^/    /' >&2
        printf '[%s] ----\n' "$_tag" >&2
    else
        printf '[%s] (no log file at %s)\n' "$_tag" "$f" >&2
    fi
}
