# shellcheck shell=bash
# Shared by bench.sh and load_test.sh (sourced, not run): a scratch directory, background
# processes stopped on exit, and waiting for a private redis-server.

# start_scratch NAME: creates $WORK, starts the $PIDS list, and stops every pid in it on exit.
start_scratch() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/highpress-$1.XXXXXX")
    PIDS=()
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}

# forget_pids PID ...: stopped already, so no longer the EXIT trap's to stop.
forget_pids() {
    local pid gone keep=()
    for pid in "${PIDS[@]}"; do
        for gone in "$@"; do
            [ "$pid" = "$gone" ] && continue 2
        done
        keep+=("$pid")
    done
    PIDS=("${keep[@]}")
}

# stop_pids PID ...: stop them, wait for them, and forget them.
stop_pids() {
    local pid
    for pid in "$@"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "$@"; do
        wait "$pid" 2>/dev/null || true
    done
    forget_pids "$@"
}

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    stop_pids "${PIDS[@]}"
    rm -rf "$WORK"
}

# wait_redis PORT: until redis-server on 127.0.0.1:PORT answers PING (10 s at most).
wait_redis() {
    local port=$1 _
    for _ in $(seq 1 100); do
        [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ] && return 0
        sleep 0.1
    done
    echo "redis-server on port $port did not answer PING within 10 s" >&2
    return 1
}
