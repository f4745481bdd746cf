#!/usr/bin/env bash
# bench.sh: highpress's side-by-side peer benchmark (README.md, "Benchmarks").
#
# This script starts and stops the processes; everything it measures, derives
# and reports is the Python package bench/highpress_bench (unit-tested
# by bench/tests, part of `make test`), and the load is the wrk script
# bench/lua/bench.lua, whose arguments per scenario come from
# highpress_bench/scenarios.py.
#
# On free loopback ports it starts its own processes: a redis-server (no
# persistence, temp dir), highpress standalone on that Redis, the two benchmark
# peers from bench/peers (peer_ceiling: HTTP cost with no storage;
# peer_naive: one INCRBY per request), and webdis (HTTP-to-Redis in C) on the
# same Redis. The load generator is wrk (POST bodies; key distributions hot =
# one key, uniform = rotation over 1,000 keys, zipf = Zipf s=1.1 over 100,000
# keys), plus redis-benchmark for raw Redis. Measurements alternate between
# systems in each round; figures are medians over the rounds. After the rounds,
# highpress is restarted with leaderboards off
# (HIGHPRESS_LEADERBOARD__ENABLED=false) for row P5b, the coalescer's own cost
# (counter writes only); row P5b-lb, informational, is the same measurement on
# the rounds' zipf runs with leaderboards on (default config), with the Redis
# commands split by kind (INCRBY, the rankings' commands, EXPIRE, other).
#
# Split topology (default; --topology standalone leaves it out): on the same
# Redis, ONE `highpress counter` (gRPC + probes/metrics over HTTP) and ONE
# `highpress gateway` routing to it, measured in every round right after the
# standalone hot run (hot key, c=BENCH_CONNECTIONS, POST increment through the
# gateway). Rows: P4 = split increments/s ÷ standalone increments/s (hot, same
# run); P4-batching (informational) = gRPC IncrementBatch calls per REST
# request (Δ gateway highpress_gateway_batch_size_count ÷ Δ the counter's
# highpress_increments_acknowledged_total) and the average micro-batch
# (Δ _sum ÷ Δ _count); P4-p99 (informational) = the split's p99. The split
# runs also appear in the peers table and in P8's consistency checks. They add
# about 35 s to a default run (about 8 s with --quick).
#
# Events (row E1, informational): after P5b, an Apache Kafka broker (one KRaft
# node, run by scripts/kafka.sh; scripts/install-test-deps.sh installs it)
# starts on free ports with its data in the scratch dir, and two standalones
# run side by side on the same Redis, one with Kafka events off and one
# publishing every increment to the broker; they are measured alternately,
# RUNS runs each, uniform (1,000 keys). E1 = events-on increments/s ÷
# events-off increments/s (same run; the broker shares the machine's cores).
# Without Apache Kafka (or java), E1 is n/a with the reason.
#
# Unique per user (row U1, informational): two standalones on the same Redis,
# the "like" type plain and with counter_types.like.unique_per_user, measured
# alternately, RUNS runs each, uniform (1,000 keys), every request from a new
# user so both count every request. U1 = unique-on ÷ plain increments/s.
#
# Replica acknowledgements (row R1, informational): a replica of the
# benchmark's Redis (a second redis-server on a free port, --replicaof), then
# two standalones on the benchmark's Redis, redis.min_replicas_ack 0 and 1
# (every flush ends with WAIT 1, within redis.replica_ack_timeout_ms, 500 by
# default), measured alternately, RUNS runs each, uniform (1,000 keys); the
# replica is attached for both. R1 = ack-1 ÷ ack-0 increments/s, with both
# p99s and Redis commands per increment (WAIT included). The replica is
# stopped after R1.
#
# AOF fsync (row R2, informational): the benchmark's Redis with AOF on
# (CONFIG SET appendonly yes, once its first rewrite is done), one standalone
# measured alternately with CONFIG SET appendfsync everysec and always between
# runs, RUNS runs each, uniform (1,000 keys). R2 = always ÷ everysec
# increments/s, with both p99s. A flush is one pipeline: Redis writes and
# fsyncs the AOF once per event-loop pass, so always costs at most one fsync
# per flush, not one per increment. AOF is off again afterwards.
#
# Auth, rate limits and TLS (row S1, informational): three standalones on the
# same Redis, measured alternately, RUNS runs each, uniform (1,000 keys): all
# off; api.auth with one token (scopes read and write) plus api.rate_limit at
# 1,000,000 requests/s with a burst of 1,000,000 (never reached: the row shows
# the requests answered 429, read from highpress_rate_limited_total, which must
# be 0); the same plus server.tls (HTTPS; an RSA-2048 certificate for
# 127.0.0.1 signed by a CA that openssl makes for the run in the scratch dir).
# wrk sends the token (lua/bench.lua's TOKEN) and speaks TLS to the third, on
# keep-alive connections (each run's c handshakes fall in its window); the
# harness's reads (health, counters, /metrics) send the token and trust the
# run's CA. S1 = all on ÷ all off increments/s, with auth + rate limits alone
# ÷ off and the three p99s. Without openssl or curl, S1 is n/a with the reason.
#
# High cardinality (rows H1-H3): on an emptied Redis, a standalone with
# leaderboards on, then off, each under HC_SEGMENTS segments of HC_SECONDS of
# increments uniformly random over 2 million ids. H1 = on ÷ off increments/s in
# the last segment; H2 = Redis CPU seconds per increment, on ÷ off, over all
# segments; H3 = Redis bytes per counter with leaderboards on ((used_memory at
# the end - empty) ÷ counter keys). About 4.5 minutes with the defaults.
#
# Instructions (row P10): highpress, the ceiling, the naive port and webdis,
# each alone under valgrind --tool=callgrind, hot key, P10_CONNECTIONS
# connections: CPU instructions per request answered. P10 = highpress's ÷ the
# ceiling's. About 2 minutes.
#
# It prints the targets table (rows P1, P1u, P2, P3, P4, P4-batching, P4-p99,
# P5a, P5b, P5b-lb, E1, U1, R1, R2, S1, P6, P7, P8, P9, H1, H2, H3, P10), the peers' raw figures,
# and writes
# everything as JSON. The README's two benchmark tables are rendered from that
# JSON: PYTHONPATH=bench python3 -m highpress_bench readme BENCH_OUT
#
# Usage: bench/bench.sh [--quick] [--no-build] [--strict] [--topology T] [--only LIST]
#   --quick      smoke run: 1 round of 3 s runs, redis-benchmark -n 200000,
#                P9 with 200,000 keys instead of 1,000,000
#   --no-build   do not run cargo build; use the binaries already built in
#                $CARGO_TARGET_DIR (one older than HEAD is flagged in the results)
#   --strict     exit 1 when a target is not met (default: report only)
#   --topology T split (default): standalone and gateway+counter, alternating
#                in each round; standalone: standalone only, the P4 rows are n/a
#   --only LIST  measure only these parts, comma-separated: rounds (the peers and
#                P1-P8, the split included), p5b, e1, u1, r1, r2, s1, h, p9,
#                p10; the rest of the rows are n/a. For trying one row out:
#                its ratios are still within one run, but not the full table
#   -h, --help   this text
#
# Environment:
#   BENCH_DURATION     seconds per wrk run (default 8; --quick: 3)
#   BENCH_RUNS         alternating rounds, medians over them (default 3; --quick: 1)
#   BENCH_CONNECTIONS  wrk connections (default 500)
#   BENCH_THREADS      wrk threads (default: nproc)
#   BENCH_OUT          JSON output (default <repo>/target/bench/bench.json)
#   REDIS_BENCH_N      redis-benchmark -n (default 1000000; --quick: 200000)
#   P9_KEYS            distinct keys for the memory row (default 1000000)
#   P9_TIMEOUT         bound in seconds for the memory run (default 240)
#   HC_SEGMENTS        segments of the high-cardinality rows, per setting (default 4; --quick: 1)
#   HC_SECONDS         seconds per segment (default 30; --quick: 5)
#   HC_CONNECTIONS     wrk connections of the high-cardinality rows (default 200)
#   P10_SECONDS        seconds of the instruction count per system (default 10; --quick: 3)
#   P10_CONNECTIONS    wrk connections of the instruction counts (default 50)
#   CARGO_TARGET_DIR   cargo target dir (default $HOME/.cache/highpress-target)
#
# What highpress must provide: `highpress standalone` configured by the
# environment (HIGHPRESS_SERVER__HOST, HIGHPRESS_SERVER__PORT,
# HIGHPRESS_STORE__KIND=redis, HIGHPRESS_REDIS__ADDR=127.0.0.1:<port>,
# HIGHPRESS_LOG__LEVEL, HIGHPRESS_LEADERBOARD__ENABLED,
# HIGHPRESS_REDIS__MIN_REPLICAS_ACK for R1), GET /health answering
# 200 once it serves, the REST API of docs/API.md (increment, get, batch), and
# on /metrics the counters highpress_coalescer_flush_keys[_total] and
# highpress_coalescer_flush_increments[_total] for P5b and P5b-lb (else they
# are n/a). For the split: `highpress counter` with HIGHPRESS_GRPC__LISTEN
# (ip:port) and HIGHPRESS_SERVER__PORT (probes, /metrics with the coalescer
# counters and highpress_increments_acknowledged[_total]), /readyz 200 once
# its store answers; `highpress gateway` with HIGHPRESS_DISCOVERY__ENDPOINTS,
# the same REST API, /readyz 200 once a counter is healthy, and the histogram
# highpress_gateway_batch_size on /metrics (else P4-batching is n/a). For S1:
# HIGHPRESS_API__AUTH__* (a tokens file), HIGHPRESS_API__RATE_LIMIT__*,
# HIGHPRESS_SERVER__TLS__* (PEM files; /health and /metrics over HTTPS), and
# highpress_rate_limited[_total] on /metrics once a request is refused.
#
# Exit status: 0 when the benchmark ran (targets are reported, not enforced,
# unless --strict); 1 when a build failed, or highpress (standalone, or the
# split when asked for) did not start (the peers are still measured and
# reported).
# Bounded in time: about 19-22 minutes with the defaults (R1, R2 and S1 about a
# minute or two each), about 4 minutes with --quick, plus the build. Every process it
# starts is stopped on exit.
set -euo pipefail
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

QUICK=0
BUILD=1
STRICT=0
TOPOLOGY="split"
ONLY=
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --no-build) BUILD=0 ;;
        --strict) STRICT=1 ;;
        --topology)
            [ $# -ge 2 ] || { echo "--topology needs a value (split or standalone)" >&2; exit 2; }
            TOPOLOGY=$2
            shift
            ;;
        --only)
            [ $# -ge 2 ] || { echo "--only needs a list (rounds,p5b,e1,u1,r1,r2,s1,h,p9,p10)" >&2; exit 2; }
            ONLY=$2
            shift
            ;;
        -h | --help) usage; exit 0 ;;
        *) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

case "$TOPOLOGY" in
    split | standalone) ;;
    *) echo "bench: --topology must be split or standalone, got '$TOPOLOGY'" >&2; exit 2 ;;
esac
for part in ${ONLY//,/ }; do
    case "$part" in
        rounds | p5b | e1 | u1 | r1 | r2 | s1 | h | p9 | p10) ;;
        *) echo "bench: --only: unknown part '$part' (rounds,p5b,e1,u1,r1,r2,s1,h,p9,p10)" >&2; exit 2 ;;
    esac
done
# section PART: whether PART is measured (every part unless --only names others).
section() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }

if [ "$QUICK" = 1 ]; then
    DURATION=${BENCH_DURATION:-3}
    RUNS=${BENCH_RUNS:-1}
    REDIS_BENCH_N=${REDIS_BENCH_N:-200000}
    P9_KEYS=${P9_KEYS:-200000}
    HC_SEGMENTS=${HC_SEGMENTS:-1}
    HC_SECONDS=${HC_SECONDS:-5}
    P10_SECONDS=${P10_SECONDS:-3}
else
    DURATION=${BENCH_DURATION:-8}
    RUNS=${BENCH_RUNS:-3}
    REDIS_BENCH_N=${REDIS_BENCH_N:-1000000}
    P9_KEYS=${P9_KEYS:-1000000}
    HC_SEGMENTS=${HC_SEGMENTS:-4}
    HC_SECONDS=${HC_SECONDS:-30}
    P10_SECONDS=${P10_SECONDS:-10}
fi
HC_CONNECTIONS=${HC_CONNECTIONS:-200}
P10_CONNECTIONS=${P10_CONNECTIONS:-50}
CONNS=${BENCH_CONNECTIONS:-500}
THREADS=${BENCH_THREADS:-$(nproc)}
P9_TIMEOUT=${P9_TIMEOUT:-240}
for v in DURATION RUNS REDIS_BENCH_N P9_KEYS CONNS THREADS P9_TIMEOUT HC_SEGMENTS HC_SECONDS \
    HC_CONNECTIONS P10_SECONDS P10_CONNECTIONS; do
    case "${!v}" in
        '' | *[!0-9]* | 0) echo "bench: $v must be a positive integer, got '${!v}'" >&2; exit 2 ;;
    esac
done
if [ "$RUNS" -gt 20 ] || [ "$DURATION" -gt 120 ] || [ "$HC_SEGMENTS" -gt 20 ] ||
    [ "$HC_SECONDS" -gt 120 ]; then
    echo "bench: BENCH_RUNS, HC_SEGMENTS <= 20 and BENCH_DURATION, HC_SECONDS <= 120 keep the" \
        "run bounded" >&2
    exit 2
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/highpress-target}
OUT=${BENCH_OUT:-$ROOT/target/bench/bench.json}
HP_BIN=$CARGO_TARGET_DIR/release/highpress
CEILING_BIN=$CARGO_TARGET_DIR/release/peer_ceiling
NAIVE_BIN=$CARGO_TARGET_DIR/release/peer_naive

BENCH_DIR=$ROOT/bench
LUA=$BENCH_DIR/lua/bench.lua
RESULTS=

for tool in wrk redis-server redis-cli redis-benchmark webdis python3; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "bench: $tool not found (run scripts/install-test-deps.sh)" >&2
        exit 1
    }
done

# wrk opens CONNS sockets, each server accepts as many.
nofile=$(ulimit -n)
if [ "$nofile" != unlimited ] && [ "$nofile" -lt $((CONNS * 4 + 256)) ]; then
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n $((CONNS * 4 + 256)) 2>/dev/null || true
fi

# shellcheck source=scripts/common.sh
source "$ROOT/scripts/common.sh"
start_scratch bench
RESULTS=$WORK/results.jsonl
META=$WORK/meta.json
: >"$RESULTS"
mkdir -p "$WORK/redis" "$WORK/p9"

log() { echo "bench: $*" >&2; }
# helper SUBCOMMAND ...: the benchmark's Python (bench/highpress_bench).
helper() {
    PYTHONPATH="$BENCH_DIR${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1 \
        python3 -m highpress_bench "$@"
}

# ----------------------------------------------------------------------------
# Build.
if [ "$BUILD" = 1 ]; then
    log "building (cargo build --release -p highpress -p highpress-bench-peers)"
    if ! (cd "$ROOT" && cargo build --release -p highpress -p highpress-bench-peers) \
        >"$WORK/build.log" 2>&1; then
        tail -n 40 "$WORK/build.log" >&2
        log "cargo build failed; nothing measured"
        exit 1
    fi
fi
for bin in "$CEILING_BIN" "$NAIVE_BIN"; do
    [ -x "$bin" ] || { log "missing $bin (cargo build --release -p highpress-bench-peers)"; exit 1; }
done

# ----------------------------------------------------------------------------
# Processes. Every pid goes into PIDS, which common.sh's EXIT trap stops;
# stop_pids (common.sh) stops some of them earlier.
REDIS_PORT=$(helper free-port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$WORK/redis" --daemonize no --logfile "$WORK/redis.log" &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
wait_redis "$REDIS_PORT" || { log "redis-server did not start"; tail -n 20 "$WORK/redis.log" >&2; exit 1; }
log "redis-server on 127.0.0.1:$REDIS_PORT (pid $REDIS_PID)"

CEILING_PORT=$(helper free-port)
PORT=$CEILING_PORT "$CEILING_BIN" >"$WORK/ceiling.log" 2>&1 &
CEILING_PID=$!
PIDS+=("$CEILING_PID")
helper wait-port "$CEILING_PORT" "$CEILING_PID" 10 || { log "peer_ceiling did not start"; cat "$WORK/ceiling.log" >&2; exit 1; }

NAIVE_PORT=$(helper free-port)
PORT=$NAIVE_PORT REDIS_URL="redis://127.0.0.1:$REDIS_PORT" "$NAIVE_BIN" >"$WORK/naive.log" 2>&1 &
NAIVE_PID=$!
PIDS+=("$NAIVE_PID")
helper wait-port "$NAIVE_PORT" "$NAIVE_PID" 10 || { log "peer_naive did not start"; cat "$WORK/naive.log" >&2; exit 1; }

WEBDIS_PORT=$(helper free-port)
cat >"$WORK/webdis.json" <<EOF
{
    "redis_host": "127.0.0.1",
    "redis_port": $REDIS_PORT,
    "redis_auth": null,
    "http_host": "127.0.0.1",
    "http_port": $WEBDIS_PORT,
    "threads": $(nproc),
    "daemonize": false,
    "database": 0,
    "acl": [ { "disabled": ["DEBUG", "FLUSHDB", "FLUSHALL", "SHUTDOWN", "CONFIG"] } ],
    "verbosity": 1,
    "logfile": "$WORK/webdis.log"
}
EOF
webdis "$WORK/webdis.json" >"$WORK/webdis.out" 2>&1 &
WEBDIS_PID=$!
PIDS+=("$WEBDIS_PID")
helper wait-port "$WEBDIS_PORT" "$WEBDIS_PID" 10 || { log "webdis did not start"; cat "$WORK/webdis.out" "$WORK/webdis.log" >&2 || true; exit 1; }

HP_OK=0
HP_PID=
HP_PORT=
HP_ERROR=
HP_SCHEME=http
# The access the harness's reads of highpress use: a bearer token (api.auth) and the CA
# that signed its certificate (server.tls); empty for a plain highpress. TLS_CA is the
# run's CA, trusted when a highpress is started with server.tls (row S1).
ACCESS_TOKEN=
ACCESS_CA=
TLS_CA=
access_args() { # access_args: the helper's --token/--cacert options for ACCESS_*, into ACCESS_ARGS
    ACCESS_ARGS=()
    [ -z "$ACCESS_TOKEN" ] || ACCESS_ARGS+=(--token "$ACCESS_TOKEN")
    [ -z "$ACCESS_CA" ] || ACCESS_ARGS+=(--cacert "$ACCESS_CA")
}
start_highpress() { # start_highpress [VAR=value ...]: sets HP_OK, HP_PID, HP_PORT, HP_SCHEME, HP_ERROR
    local arg probe=()
    HP_OK=0
    if [ ! -x "$HP_BIN" ]; then
        HP_ERROR="no binary at $HP_BIN"
        return 1
    fi
    HP_SCHEME=http
    for arg in "$@"; do
        [ "$arg" != HIGHPRESS_SERVER__TLS__ENABLED=true ] || HP_SCHEME=https
    done
    [ "$HP_SCHEME" = http ] || probe=(--cacert "$TLS_CA")
    HP_PORT=$(helper free-port)
    env HIGHPRESS_SERVER__HOST=127.0.0.1 HIGHPRESS_SERVER__PORT="$HP_PORT" \
        HIGHPRESS_STORE__KIND=redis HIGHPRESS_REDIS__ADDR="127.0.0.1:$REDIS_PORT" \
        HIGHPRESS_LOG__LEVEL=warn "$@" "$HP_BIN" standalone >>"$WORK/highpress.log" 2>&1 &
    HP_PID=$!
    PIDS+=("$HP_PID")
    if helper wait-http "$HP_SCHEME://127.0.0.1:$HP_PORT/health" 30 "${probe[@]}"; then
        HP_OK=1
        return 0
    fi
    if kill -0 "$HP_PID" 2>/dev/null; then
        HP_ERROR="GET /health did not answer 200 within 30 s"
    else
        HP_ERROR="highpress standalone exited at start-up"
    fi
    log "highpress: $HP_ERROR; its log:"
    tail -n 30 "$WORK/highpress.log" >&2 || true
    return 1
}
stop_highpress() {
    [ -n "$HP_PID" ] || return 0
    stop_pids "$HP_PID"
    HP_PID=
}
if start_highpress; then
    log "highpress standalone on 127.0.0.1:$HP_PORT (pid $HP_PID), Redis 127.0.0.1:$REDIS_PORT"
else
    log "highpress NOT measured: $HP_ERROR (peers are still measured)"
fi
HP_URL="http://127.0.0.1:$HP_PORT"

# The split topology: ONE counter (gRPC + probes/metrics over HTTP) on the same
# Redis, and ONE gateway routing to it.
SPLIT_OK=0
SPLIT_ERROR=
CTR_PID=
GW_PID=
CTR_METRICS_URL=
GW_URL=
start_split() { # sets SPLIT_OK, SPLIT_ERROR, CTR_PID, GW_PID, CTR_METRICS_URL, GW_URL
    local gw_port ctr_http ctr_grpc
    if [ ! -x "$HP_BIN" ]; then
        SPLIT_ERROR="no binary at $HP_BIN"
        return 1
    fi
    { read -r gw_port; read -r ctr_http; read -r ctr_grpc; } < <(helper free-port 3)
    env HIGHPRESS_SERVER__HOST=127.0.0.1 HIGHPRESS_SERVER__PORT="$ctr_http" \
        HIGHPRESS_GRPC__LISTEN="127.0.0.1:$ctr_grpc" \
        HIGHPRESS_STORE__KIND=redis HIGHPRESS_REDIS__ADDR="127.0.0.1:$REDIS_PORT" \
        HIGHPRESS_LOG__LEVEL=warn "$HP_BIN" counter >>"$WORK/counter.log" 2>&1 &
    CTR_PID=$!
    PIDS+=("$CTR_PID")
    if ! helper wait-http "http://127.0.0.1:$ctr_http/readyz" 30; then
        SPLIT_ERROR="highpress counter: GET /readyz did not answer 200 within 30 s"
        kill -0 "$CTR_PID" 2>/dev/null || SPLIT_ERROR="highpress counter exited at start-up"
        log "$SPLIT_ERROR; its log:"
        tail -n 30 "$WORK/counter.log" >&2 || true
        return 1
    fi
    env HIGHPRESS_SERVER__HOST=127.0.0.1 HIGHPRESS_SERVER__PORT="$gw_port" \
        HIGHPRESS_DISCOVERY__ENDPOINTS="127.0.0.1:$ctr_grpc" \
        HIGHPRESS_LOG__LEVEL=warn "$HP_BIN" gateway >>"$WORK/gateway.log" 2>&1 &
    GW_PID=$!
    PIDS+=("$GW_PID")
    # /readyz turns 200 once the gateway has seen a healthy counter.
    if ! helper wait-http "http://127.0.0.1:$gw_port/readyz" 30; then
        SPLIT_ERROR="highpress gateway: GET /readyz did not answer 200 within 30 s"
        kill -0 "$GW_PID" 2>/dev/null || SPLIT_ERROR="highpress gateway exited at start-up"
        log "$SPLIT_ERROR; its log:"
        tail -n 30 "$WORK/gateway.log" >&2 || true
        return 1
    fi
    CTR_METRICS_URL="http://127.0.0.1:$ctr_http/metrics"
    GW_URL="http://127.0.0.1:$gw_port"
    SPLIT_OK=1
    log "split: highpress counter gRPC 127.0.0.1:$ctr_grpc, probes :$ctr_http (pid $CTR_PID);" \
        "gateway $GW_URL (pid $GW_PID)"
}
stop_split() {
    local pids=()
    [ -z "$CTR_PID" ] || pids+=("$CTR_PID")
    [ -z "$GW_PID" ] || pids+=("$GW_PID")
    [ "${#pids[@]}" -eq 0 ] || stop_pids "${pids[@]}"
    CTR_PID=
    GW_PID=
}
if [ "$TOPOLOGY" = split ]; then
    if section rounds; then
        start_split || log "split NOT measured: $SPLIT_ERROR (the rest is still measured)"
    else
        SPLIT_ERROR="not measured: --only $ONLY"
    fi
fi

no_build=()
[ "$BUILD" = 1 ] || no_build=(--no-build)
helper meta-env "$META" --root "$ROOT" --hp-bin "$HP_BIN" "${no_build[@]}"
helper meta "$META" \
    "threads=$THREADS" "connections=$CONNS" "duration_s=$DURATION" "runs=$RUNS" \
    "quick=$([ "$QUICK" = 1 ] && echo true || echo false)" \
    "highpress_started=$([ "$HP_OK" = 1 ] && echo true || echo false)" \
    "highpress_error=$HP_ERROR" \
    "topology=$TOPOLOGY" "split_error=$SPLIT_ERROR" \
    "p9.keys_target=$P9_KEYS" "only=$ONLY"

# ----------------------------------------------------------------------------
# wrk runs. lua/bench.lua sends a scenario's requests; its arguments come from
# highpress_bench/scenarios.py.
WRK_ARGS=()
wrk_args() { # wrk_args SCENARIO: lua/bench.lua's arguments for it (with ACCESS_TOKEN), into WRK_ARGS
    mapfile -t WRK_ARGS < <(helper wrk-args "$1" --p9-keys "$P9_KEYS" --threads "$THREADS" \
        --done-dir "$WORK/p9" --token "$ACCESS_TOKEN")
}
wrk_run() { # wrk_run SCENARIO URL SECONDS OUTPUT
    local rc=0
    wrk_args "$1"
    timeout $(($3 + 60)) wrk -t "$THREADS" -c "$CONNS" -d "${3}s" --latency -s "$LUA" "$2" \
        -- "${WRK_ARGS[@]}" >"$4" 2>&1 || rc=$?
    [ "$rc" -eq 0 ] || log "$1: wrk exited with $rc"
}
warm_up() { # warm_up SCENARIO URL SECONDS: not recorded (connections, caches, allocator)
    wrk_run "$1" "$2" "$3" /dev/null 2>/dev/null || true
}
run_wrk() { # run_wrk SCENARIO URL ROUND: a run without storage to check
    wrk_run "$1" "$2" "$DURATION" "$WORK/wrk.out"
    helper record "$RESULTS" --scenario "$1" --round "$3" --output "$WORK/wrk.out"
}

# A storage-backed run: also the CPU of the server(s) and redis, the Redis
# commands, the engine's coalescer metrics (standalone, or the counter in the
# split), the gateway's gRPC batching metrics (split), and the scenario's
# counters before and after. SETTLE: seconds to wait after wrk before reading
# back (longer than leaderboard.flush_interval where the leaderboard writes of
# the run must be counted in it).
measured_run() { # measured_run SCENARIO URL ROUND "SERVER_PID ..." [ENGINE_METRICS [GATEWAY_METRICS [SETTLE]]]
    local snap=(--scenario "$1" --url "$2" --redis-port "$REDIS_PORT" --pids "$REDIS_PID $4")
    access_args
    snap+=("${ACCESS_ARGS[@]}")
    [ -z "${5:-}" ] || snap+=(--engine-metrics "$5")
    [ -z "${6:-}" ] || snap+=(--gateway-metrics "$6")
    helper snapshot before "$WORK/before.json" "${snap[@]}"
    wrk_run "$1" "$2" "$DURATION" "$WORK/wrk.out"
    # Let requests in flight when wrk stopped settle before reading back.
    sleep "${7:-0.3}"
    helper snapshot after "$WORK/after.json" "${snap[@]}"
    helper record "$RESULTS" --scenario "$1" --round "$3" --output "$WORK/wrk.out" \
        --before "$WORK/before.json" --after "$WORK/after.json"
}
hp_run() { # hp_run SCENARIO ROUND [SETTLE]: a measured run of the standalone at $HP_URL
    measured_run "$1" "$HP_URL" "$2" "$HP_PID" "$HP_URL/metrics" "" "${3:-}"
}

redis_benchmark_run() { # redis_benchmark_run ROUND
    helper snapshot before "$WORK/before.json" --pids "$REDIS_PID"
    timeout 300 redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -t incr -c 50 -n "$REDIS_BENCH_N" --csv \
        >"$WORK/rb.out" 2>&1 || log "redis-benchmark exited with an error"
    helper snapshot after "$WORK/after.json" --pids "$REDIS_PID"
    helper record "$RESULTS" --scenario redis_benchmark_incr --round "$1" --output "$WORK/rb.out" \
        --redis-benchmark --before "$WORK/before.json" --after "$WORK/after.json" --field "n=$REDIS_BENCH_N"
}

CEILING_URL="http://127.0.0.1:$CEILING_PORT"
NAIVE_URL="http://127.0.0.1:$NAIVE_PORT"
WEBDIS_URL="http://127.0.0.1:$WEBDIS_PORT"

# The rounds (peers, P1-P8): none unless measured (--only).
ROUNDS=$RUNS
section rounds || ROUNDS=0
if [ "$ROUNDS" -gt 0 ]; then
    log "warm-up"
    warm_up ceiling_post_hot "$CEILING_URL" 1
    warm_up naive_post_hot "$NAIVE_URL" 1
    warm_up webdis_incrby_hot "$WEBDIS_URL" 1
fi
if [ "$ROUNDS" -gt 0 ] && [ "$HP_OK" = 1 ]; then
    warm_up highpress_post_hot "$HP_URL" 2
fi
if [ "$SPLIT_OK" = 1 ]; then
    warm_up split_post_hot "$GW_URL" 2
fi

for round in $(seq 1 "$ROUNDS"); do
    log "round $round/$ROUNDS"
    if [ "$HP_OK" = 1 ] && ! kill -0 "$HP_PID" 2>/dev/null; then
        HP_OK=0
        HP_ERROR="highpress exited during the benchmark"
        log "$HP_ERROR"
        tail -n 30 "$WORK/highpress.log" >&2 || true
    fi
    if [ "$SPLIT_OK" = 1 ] && ! { kill -0 "$CTR_PID" && kill -0 "$GW_PID"; } 2>/dev/null; then
        SPLIT_OK=0
        SPLIT_ERROR="the counter or the gateway exited during the benchmark"
        log "split: $SPLIT_ERROR"
        tail -n 15 "$WORK/counter.log" "$WORK/gateway.log" >&2 || true
    fi
    run_wrk ceiling_post_hot "$CEILING_URL" "$round"
    if [ "$HP_OK" = 1 ]; then
        hp_run highpress_post_hot "$round"
    fi
    if [ "$SPLIT_OK" = 1 ]; then
        # Right after the standalone hot run, for P4. A longer settle: in-flight
        # increments cross the gRPC hop before the counter's metrics are read.
        measured_run split_post_hot "$GW_URL" "$round" "$GW_PID $CTR_PID" \
            "$CTR_METRICS_URL" "$GW_URL/metrics" 0.5
    fi
    if [ "$HP_OK" = 1 ]; then
        hp_run highpress_post_uniform "$round"
    fi
    measured_run naive_post_hot "$NAIVE_URL" "$round" "$NAIVE_PID"
    measured_run webdis_incrby_hot "$WEBDIS_URL" "$round" "$WEBDIS_PID"
    redis_benchmark_run "$round"
    # Also P5b-lb: wait out one leaderboard flush interval (1 s by default) so
    # that the run's ranking writes are all counted in it.
    if [ "$HP_OK" = 1 ]; then
        hp_run highpress_post_zipf "$round" 1.3
    fi
    run_wrk ceiling_get_hot "$CEILING_URL" "$round"
    if [ "$HP_OK" = 1 ]; then
        run_wrk highpress_get_hot "$HP_URL" "$round"
    fi
done

# The split is measured only in the rounds: stop it before P5b and P9.
if [ "$TOPOLOGY" = split ]; then
    stop_split
    helper meta "$META" "split_error=$SPLIT_ERROR"
fi

# ----------------------------------------------------------------------------
# P5b: the coalescer's own cost, counter writes only. highpress restarted with
# leaderboards off (HIGHPRESS_LEADERBOARD__ENABLED=false), zipf, RUNS runs;
# own key prefix.
P5B_ERROR=
if [ "$HP_OK" = 1 ]; then
    stop_highpress
fi
if [ "$HP_OK" = 1 ] && section p5b; then
    if start_highpress HIGHPRESS_LEADERBOARD__ENABLED=false; then
        HP_URL="http://127.0.0.1:$HP_PORT"
        log "P5b: highpress with leaderboards off on 127.0.0.1:$HP_PORT (pid $HP_PID)"
        warm_up highpress_post_hot "$HP_URL" 2
        for round in $(seq 1 "$RUNS"); do
            if ! kill -0 "$HP_PID" 2>/dev/null; then
                P5B_ERROR="highpress with leaderboards off exited during its runs"
                log "$P5B_ERROR"
                tail -n 30 "$WORK/highpress.log" >&2 || true
                break
            fi
            log "P5b: leaderboards off, run $round/$RUNS"
            hp_run highpress_post_zipf_lboff "$round"
        done
        stop_highpress
    else
        P5B_ERROR="highpress with HIGHPRESS_LEADERBOARD__ENABLED=false: $HP_ERROR"
        log "P5b NOT measured: $P5B_ERROR"
        stop_highpress
        HP_ERROR=
    fi
    # The rounds above measured highpress; the rows below start their own instances.
    HP_OK=1
fi
helper meta "$META" "p5b_error=$P5B_ERROR"

# two_standalones ERRVAR OFF_ENV... -- ON_ENV...: starts two standalones on the
# same Redis, the second with ON_ENV; sets OFF_PID/OFF_URL, ON_PID/ON_URL, or
# the error in ERRVAR.
OFF_PID=
ON_PID=
OFF_URL=
ON_URL=
two_standalones() {
    local errvar=$1 off=() on=()
    shift
    while [ $# -gt 0 ] && [ "$1" != -- ]; do off+=("$1"); shift; done
    [ $# -eq 0 ] || shift
    on=("$@")
    OFF_PID=
    ON_PID=
    start_highpress "${off[@]}" || printf -v "$errvar" '%s' "highpress (off): $HP_ERROR"
    OFF_PID=$HP_PID
    [ "$HP_OK" = 1 ] || return 1
    OFF_URL="http://127.0.0.1:$HP_PORT"
    start_highpress "${on[@]}" || printf -v "$errvar" '%s' "highpress (on): $HP_ERROR"
    ON_PID=$HP_PID
    [ "$HP_OK" = 1 ] || return 1
    ON_URL="http://127.0.0.1:$HP_PORT"
}
stop_two_standalones() {
    local pids=()
    [ -z "$OFF_PID" ] || pids+=("$OFF_PID")
    [ -z "$ON_PID" ] || pids+=("$ON_PID")
    [ "${#pids[@]}" -eq 0 ] || stop_pids "${pids[@]}"
    OFF_PID=
    ON_PID=
    HP_PID=
    HP_ERROR=
}

# ----------------------------------------------------------------------------
# E1: the cost of Kafka events. An Apache Kafka broker (scripts/kafka.sh: one KRaft
# node on two free loopback ports), then two standalones on the same Redis, events
# off and on, measured alternately (uniform, RUNS runs each).
EVENTS_ERROR=
KAFKA_PID=
KAFKA_SH=$ROOT/scripts/kafka.sh
if [ "$HP_OK" = 1 ] && section e1; then
    mapfile -t kafka_ports < <(helper free-port 2)
    KAFKA_PORT=${kafka_ports[0]}
    if ! bash "$KAFKA_SH" init "$WORK/kafka" "$KAFKA_PORT" "${kafka_ports[1]}" \
        >"$WORK/kafka.log" 2>&1; then
        EVENTS_ERROR="Apache Kafka could not be set up (scripts/install-test-deps.sh installs it)"
        tail -n 20 "$WORK/kafka.log" >&2 || true
    else
        # kafka.sh execs java: $! is the JVM's pid.
        bash "$KAFKA_SH" run "$WORK/kafka" >>"$WORK/kafka.log" 2>&1 &
        KAFKA_PID=$!
        PIDS+=("$KAFKA_PID")
        # The broker's port opens once the broker has registered with its controller.
        if ! helper wait-port "$KAFKA_PORT" "$KAFKA_PID" 60; then
            EVENTS_ERROR="Apache Kafka did not start"
            tail -n 20 "$WORK/kafka.log" >&2 || true
        elif ! bash "$KAFKA_SH" topics --bootstrap-server "127.0.0.1:$KAFKA_PORT" --create \
            --topic counter_events --partitions 3 --replication-factor 1 >>"$WORK/kafka.log" 2>&1; then
            EVENTS_ERROR="Apache Kafka: creating the topic counter_events failed"
            tail -n 20 "$WORK/kafka.log" >&2 || true
        fi
    fi
    if [ -z "$EVENTS_ERROR" ]; then
        two_standalones EVENTS_ERROR -- HIGHPRESS_KAFKA__ENABLED=true \
            HIGHPRESS_KAFKA__BROKERS="127.0.0.1:$KAFKA_PORT" HIGHPRESS_KAFKA__TOPIC=counter_events || true
    fi
    if [ -z "$EVENTS_ERROR" ]; then
        log "E1: events off $OFF_URL (pid $OFF_PID), on $ON_URL (pid $ON_PID), Apache Kafka :$KAFKA_PORT"
        warm_up highpress_post_uniform "$OFF_URL" 2
        warm_up highpress_post_uniform "$ON_URL" 2
        for round in $(seq 1 "$RUNS"); do
            if ! { kill -0 "$OFF_PID" && kill -0 "$ON_PID"; } 2>/dev/null; then
                EVENTS_ERROR="a highpress of E1 exited during its runs"
                log "$EVENTS_ERROR"
                tail -n 30 "$WORK/highpress.log" >&2 || true
                break
            fi
            log "E1: events off/on, run $round/$RUNS"
            measured_run highpress_post_uniform_evoff "$OFF_URL" "$round" "$OFF_PID" "$OFF_URL/metrics"
            measured_run highpress_post_uniform_evon "$ON_URL" "$round" "$ON_PID $KAFKA_PID" "$ON_URL/metrics"
        done
        sleep 2
        helper meta-metrics "$META" "$ON_URL/metrics" e1.events_sent=highpress_events_sent \
            e1.events_dropped=highpress_events_dropped e1.acknowledged=highpress_increments_acknowledged
    else
        log "E1 NOT measured: $EVENTS_ERROR"
    fi
    stop_two_standalones
    [ -z "$KAFKA_PID" ] || stop_pids "$KAFKA_PID"
fi
helper meta "$META" "e1_error=$EVENTS_ERROR"

# ----------------------------------------------------------------------------
# U1: the cost of unique-per-user counting. Two standalones on the same Redis, the
# "like" type plain and unique per user, measured alternately (uniform, RUNS runs
# each); every request is a new user, so both count every request.
UNIQUE_ERROR=
if [ "$HP_OK" = 1 ] && section u1; then
    two_standalones UNIQUE_ERROR -- HIGHPRESS_COUNTER_TYPES__LIKE__UNIQUE_PER_USER=true || true
    if [ -z "$UNIQUE_ERROR" ]; then
        log "U1: unique_per_user off $OFF_URL (pid $OFF_PID), on $ON_URL (pid $ON_PID)"
        for round in $(seq 1 "$RUNS"); do
            if ! { kill -0 "$OFF_PID" && kill -0 "$ON_PID"; } 2>/dev/null; then
                UNIQUE_ERROR="a highpress of U1 exited during its runs"
                log "$UNIQUE_ERROR"
                break
            fi
            log "U1: unique_per_user off/on, run $round/$RUNS"
            measured_run highpress_post_users_uoff "$OFF_URL" "$round" "$OFF_PID" "$OFF_URL/metrics"
            measured_run highpress_post_users_uon "$ON_URL" "$round" "$ON_PID" "$ON_URL/metrics"
        done
    else
        log "U1 NOT measured: $UNIQUE_ERROR"
    fi
    stop_two_standalones
fi
helper meta "$META" "u1_error=$UNIQUE_ERROR"

# redis_config_set PARAMETER VALUE: CONFIG SET on the benchmark's Redis (status 1 unless OK).
redis_config_set() {
    [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" CONFIG SET "$1" "$2" 2>&1)" = OK ]
}

# ----------------------------------------------------------------------------
# R1: the cost of redis.min_replicas_ack 1. A replica of the benchmark's Redis,
# then two standalones on the benchmark's Redis, min_replicas_ack 0 and 1 (a
# WAIT per flush), measured alternately (uniform, RUNS runs each). The replica
# is attached for both, so that only the WAIT differs.
R1_ERROR=
REPLICA_PID=
if [ "$HP_OK" = 1 ] && section r1; then
    REPLICA_PORT=$(helper free-port)
    mkdir -p "$WORK/replica"
    redis-server --port "$REPLICA_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --replicaof 127.0.0.1 "$REDIS_PORT" --dir "$WORK/replica" --daemonize no \
        --logfile "$WORK/replica.log" &
    REPLICA_PID=$!
    PIDS+=("$REPLICA_PID")
    # The first sync waits out repl-diskless-sync-delay (5 s by default).
    if ! helper wait-redis-info "$REDIS_PORT" replication 30 connected_slaves=1; then
        R1_ERROR="the replica did not connect (connected_slaves:1) within 30 s"
    elif ! helper wait-redis-info "$REPLICA_PORT" replication 30 master_link_status=up; then
        R1_ERROR="the replica's link did not come up (master_link_status:up) within 30 s"
    fi
    if [ -n "$R1_ERROR" ]; then
        tail -n 20 "$WORK/replica.log" >&2 || true
    else
        two_standalones R1_ERROR HIGHPRESS_REDIS__MIN_REPLICAS_ACK=0 -- \
            HIGHPRESS_REDIS__MIN_REPLICAS_ACK=1 || true
    fi
    if [ -z "$R1_ERROR" ]; then
        log "R1: min_replicas_ack 0 $OFF_URL (pid $OFF_PID), 1 $ON_URL (pid $ON_PID)," \
            "replica 127.0.0.1:$REPLICA_PORT (pid $REPLICA_PID)"
        warm_up highpress_post_uniform "$OFF_URL" 2
        warm_up highpress_post_uniform "$ON_URL" 2
        for round in $(seq 1 "$RUNS"); do
            if ! { kill -0 "$OFF_PID" && kill -0 "$ON_PID" && kill -0 "$REPLICA_PID"; } 2>/dev/null; then
                R1_ERROR="a highpress of R1 or the replica exited during its runs"
                log "$R1_ERROR"
                tail -n 30 "$WORK/highpress.log" "$WORK/replica.log" >&2 || true
                break
            fi
            log "R1: min_replicas_ack 0/1, run $round/$RUNS"
            measured_run highpress_post_uniform_ack0 "$OFF_URL" "$round" "$OFF_PID $REPLICA_PID" \
                "$OFF_URL/metrics"
            measured_run highpress_post_uniform_ack1 "$ON_URL" "$round" "$ON_PID $REPLICA_PID" \
                "$ON_URL/metrics"
        done
    else
        log "R1 NOT measured: $R1_ERROR"
    fi
    stop_two_standalones
    stop_pids "$REPLICA_PID"
    REPLICA_PID=
fi
helper meta "$META" "r1_error=$R1_ERROR"

# ----------------------------------------------------------------------------
# R2: AOF appendfsync always against everysec. The benchmark's Redis with AOF on
# (once its first rewrite is done), one standalone measured alternately with
# appendfsync everysec and always, set between runs (uniform, RUNS runs each,
# own key prefixes). AOF off again afterwards.
R2_ERROR=
if [ "$HP_OK" = 1 ] && section r2; then
    if ! redis_config_set appendonly yes; then
        R2_ERROR="CONFIG SET appendonly yes failed"
    elif ! helper wait-redis-info "$REDIS_PORT" persistence 60 aof_enabled=1 \
        aof_rewrite_in_progress=0 aof_rewrite_scheduled=0; then
        R2_ERROR="AOF not on within 60 s (aof_enabled:1, aof_rewrite_in_progress:0)"
    elif ! start_highpress; then
        R2_ERROR="highpress: $HP_ERROR"
    fi
    if [ -z "$R2_ERROR" ]; then
        HP_URL="http://127.0.0.1:$HP_PORT"
        fs=$(findmnt -n -o FSTYPE --target "$WORK/redis" 2>/dev/null ||
            stat -f -c %T "$WORK/redis" 2>/dev/null || true)
        helper meta "$META" "r2.filesystem=$fs"
        log "R2: highpress $HP_URL (pid $HP_PID), Redis AOF on in $WORK/redis"
        warm_up highpress_post_uniform "$HP_URL" 2
        for round in $(seq 1 "$RUNS"); do
            if ! kill -0 "$HP_PID" 2>/dev/null; then
                R2_ERROR="the highpress of R2 exited during its runs"
                log "$R2_ERROR"
                tail -n 30 "$WORK/highpress.log" >&2 || true
                break
            fi
            log "R2: appendfsync everysec/always, run $round/$RUNS"
            for fsync in everysec always; do
                if ! redis_config_set appendfsync "$fsync"; then
                    R2_ERROR="CONFIG SET appendfsync $fsync failed"
                    log "$R2_ERROR"
                    break 2
                fi
                scenario=highpress_post_uniform_fsec
                [ "$fsync" = everysec ] || scenario=highpress_post_uniform_fsall
                hp_run "$scenario" "$round"
            done
        done
    else
        log "R2 NOT measured: $R2_ERROR"
    fi
    stop_highpress
    HP_ERROR=
    redis_config_set appendfsync everysec || log "R2: CONFIG SET appendfsync everysec failed"
    redis_config_set appendonly no || log "R2: CONFIG SET appendonly no failed"
fi
helper meta "$META" "r2_error=$R2_ERROR"

# ----------------------------------------------------------------------------
# S1: what auth, rate limits and TLS cost. Three standalones on the same Redis:
# all off; api.auth (one token, scopes read and write) + api.rate_limit (never
# reached); the same + server.tls. Measured alternately (uniform, RUNS runs
# each, own key prefixes); the token and the CA are made for the run.
make_certificates() { # make_certificates DIR: ca.crt, and server.crt/server.key for 127.0.0.1 and localhost
    local dir=$1
    mkdir -p "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=highpress-bench-ca \
        -keyout "$dir/ca.key" -out "$dir/ca.crt" &&
        openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout "$dir/server.key" \
            -out "$dir/server.csr" &&
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' \
            >"$dir/server.ext" &&
        openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
            -CAcreateserial -days 2 -extfile "$dir/server.ext" -out "$dir/server.crt"
}
# s1_check URL: the run's token is needed and enough: 401 without it, 200 with it.
s1_check() {
    local url=$1/api/v1/counter/bench_s1_check/like without with
    without=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$TLS_CA" "$url" || true)
    with=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$TLS_CA" \
        -H "Authorization: Bearer $S1_TOKEN" "$url" || true)
    [ "$without" = 401 ] && [ "$with" = 200 ] && return 0
    S1_ERROR="$url answered $without without the token and $with with it (want 401 and 200)"
    return 1
}
S1_ERROR=
S1_PIDS=()
if [ "$HP_OK" = 1 ] && section s1; then
    S1_DIR=$WORK/s1
    S1_TOKEN=
    if ! command -v openssl >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
        S1_ERROR="openssl or curl not found (apt-get install openssl curl)"
    elif ! make_certificates "$S1_DIR" >"$WORK/s1-openssl.log" 2>&1 ||
        ! S1_TOKEN=$(openssl rand -hex 32); then
        S1_ERROR="openssl could not make the run's certificates and token"
        tail -n 20 "$WORK/s1-openssl.log" >&2 || true
    else
        TLS_CA=$S1_DIR/ca.crt
        printf 'tokens:\n  - name: bench\n    token: %s\n    scopes: [read, write]\n' \
            "$S1_TOKEN" >"$S1_DIR/tokens.yaml"
        s1_auth=(HIGHPRESS_API__AUTH__ENABLED=true
            HIGHPRESS_API__AUTH__TOKENS_FILE="$S1_DIR/tokens.yaml"
            HIGHPRESS_API__RATE_LIMIT__ENABLED=true
            HIGHPRESS_API__RATE_LIMIT__REQUESTS_PER_SECOND=1000000
            HIGHPRESS_API__RATE_LIMIT__BURST=1000000)
        s1_tls=(HIGHPRESS_SERVER__TLS__ENABLED=true
            HIGHPRESS_SERVER__TLS__CERT_FILE="$S1_DIR/server.crt"
            HIGHPRESS_SERVER__TLS__KEY_FILE="$S1_DIR/server.key")
        S1_URLS=()
        for side in off auth tls; do
            case "$side" in
                off) s1_env=() ;;
                auth) s1_env=("${s1_auth[@]}") ;;
                tls) s1_env=("${s1_auth[@]}" "${s1_tls[@]}") ;;
            esac
            start_highpress "${s1_env[@]}" || S1_ERROR="highpress ($side): $HP_ERROR"
            [ -z "$HP_PID" ] || S1_PIDS+=("$HP_PID")
            [ -z "$S1_ERROR" ] || break
            S1_URLS+=("$HP_SCHEME://127.0.0.1:$HP_PORT")
        done
    fi
    if [ -z "$S1_ERROR" ] && ! { s1_check "${S1_URLS[1]}" && s1_check "${S1_URLS[2]}"; }; then
        log "S1: $S1_ERROR"
    fi
    if [ -z "$S1_ERROR" ]; then
        log "S1: all off ${S1_URLS[0]} (pid ${S1_PIDS[0]}), auth + rate limits ${S1_URLS[1]}" \
            "(pid ${S1_PIDS[1]}), + TLS ${S1_URLS[2]} (pid ${S1_PIDS[2]})"
        # s1_access SIDE: the harness's access to that side, into ACCESS_TOKEN and ACCESS_CA.
        s1_access() {
            ACCESS_TOKEN=
            ACCESS_CA=
            [ "$1" = 0 ] || ACCESS_TOKEN=$S1_TOKEN
            [ "$1" != 2 ] || ACCESS_CA=$TLS_CA
        }
        s1_scenarios=(highpress_post_uniform_secoff highpress_post_uniform_auth
            highpress_post_uniform_tls)
        for i in 0 1 2; do
            s1_access "$i"
            warm_up "${s1_scenarios[$i]}" "${S1_URLS[$i]}" 2
        done
        for round in $(seq 1 "$RUNS"); do
            if ! kill -0 "${S1_PIDS[@]}" 2>/dev/null; then
                S1_ERROR="a highpress of S1 exited during its runs"
                log "$S1_ERROR"
                tail -n 30 "$WORK/highpress.log" >&2 || true
                break
            fi
            log "S1: all off / auth + rate limits / + TLS, run $round/$RUNS"
            for i in 0 1 2; do
                s1_access "$i"
                measured_run "${s1_scenarios[$i]}" "${S1_URLS[$i]}" "$round" "${S1_PIDS[$i]}" \
                    "${S1_URLS[$i]}/metrics"
            done
        done
        ACCESS_TOKEN=
        ACCESS_CA=
    else
        log "S1 NOT measured: $S1_ERROR"
    fi
    [ "${#S1_PIDS[@]}" -eq 0 ] || stop_pids "${S1_PIDS[@]}"
    S1_PIDS=()
    HP_PID=
    HP_ERROR=
    # A side that did not start (TLS, say) is S1's error; the rows below start their own.
    HP_OK=1
fi
helper meta "$META" "s1_error=$S1_ERROR"

# ----------------------------------------------------------------------------
# H1-H3: high cardinality. On an emptied Redis, a standalone with leaderboards
# on, then one with them off, each under HC_SEGMENTS segments of HC_SECONDS of
# increments random over 2 million ids (HC_CONNECTIONS connections): the
# throughput and Redis's CPU seconds of each segment, and Redis's memory at the
# end (rankings included).
HC_ERROR=
if [ "$HP_OK" = 1 ] && section h; then
    for lb in on off; do
        redis-cli -p "$REDIS_PORT" FLUSHALL >/dev/null
        helper hc-memory "$META" start --leaderboards "$lb" --redis-port "$REDIS_PORT"
        enabled=$([ "$lb" = on ] && echo true || echo false)
        if ! start_highpress HIGHPRESS_LEADERBOARD__ENABLED="$enabled"; then
            HC_ERROR="highpress with leaderboards $lb: $HP_ERROR"
            stop_highpress
            HP_ERROR=
            break
        fi
        wrk_args highpress_high_cardinality
        for segment in $(seq 1 "$HC_SEGMENTS"); do
            log "H: leaderboards $lb, random over 2M ids, segment $segment/$HC_SEGMENTS (${HC_SECONDS} s)"
            ticks_before=$(helper cpu-ticks "$REDIS_PID")
            wrk -t "$THREADS" -c "$HC_CONNECTIONS" -d "${HC_SECONDS}s" -s "$LUA" \
                "http://127.0.0.1:$HP_PORT" -- "${WRK_ARGS[@]}" >"$WORK/hc.out" 2>&1 || true
            ticks_after=$(helper cpu-ticks "$REDIS_PID")
            helper hc-segment "$META" --leaderboards "$lb" --wrk "$WORK/hc.out" \
                --redis-ticks $((ticks_after - ticks_before))
        done
        stop_highpress
        helper hc-memory "$META" end --leaderboards "$lb" --redis-port "$REDIS_PORT"
    done
fi
helper meta "$META" "hc.error=$HC_ERROR"

# ----------------------------------------------------------------------------
# P9: resident memory of a fresh highpress after P9_KEYS distinct keys; each wrk
# thread writes done.<thread> into $WORK/p9 when it has sent its share.
if [ "$HP_OK" = 1 ] && section p9; then
    if start_highpress; then
        HP_URL="http://127.0.0.1:$HP_PORT"
        helper p9-start "$META" "$HP_PID"
        log "P9: touching $P9_KEYS distinct keys (bounded by $P9_TIMEOUT s)"
        rm -f "$WORK/p9"/done.*
        p9_start=$SECONDS
        wrk_args highpress_p9
        wrk -t "$THREADS" -c "$CONNS" -d "${P9_TIMEOUT}s" -s "$LUA" "$HP_URL" -- "${WRK_ARGS[@]}" \
            >"$WORK/p9.out" 2>&1 &
        WRK_PID=$!
        PIDS+=("$WRK_PID")
        while [ $((SECONDS - p9_start)) -lt "$P9_TIMEOUT" ] && kill -0 "$WRK_PID" 2>/dev/null; do
            helper p9-done "$WORK/p9" "$THREADS" && break
            sleep 0.5
        done
        p9_seconds=$((SECONDS - p9_start))
        # SIGINT: wrk stops and still prints its summary.
        kill -INT "$WRK_PID" 2>/dev/null || true
        wait "$WRK_PID" 2>/dev/null || true
        forget_pids "$WRK_PID"
        sleep 1
        helper p9-finish "$META" "$HP_PID" --done-dir "$WORK/p9" --seconds "$p9_seconds" \
            --wrk "$WORK/p9.out" --keys "$P9_KEYS"
        stop_highpress
    else
        HP_OK=0
    fi
fi
# ----------------------------------------------------------------------------
# P10: CPU instructions per request, counted by callgrind (stable where wall
# time is noisy). Each of highpress standalone, the ceiling, the naive port and
# webdis runs alone under valgrind --tool=callgrind with instrumentation off;
# after a warm-up, instrumentation is switched on for one P10_SECONDS wrk run,
# hot key, P10_CONNECTIONS connections, and the instructions executed are
# divided by the requests answered. Callgrind runs one thread at a time, about
# 50 times slower: per-interval work (the leaderboard flush) weighs more per
# request than at full speed, so the hot key (one ranking write per interval)
# is measured.
P10_ERROR=
callgrind_run() { # callgrind_run SYSTEM SCENARIO: one system's instruction count
    local system=$1 scenario=$2 port pid out="$WORK/callgrind.$1"
    port=$(helper free-port)
    local run=(env valgrind --tool=callgrind --instr-atstart=no "--callgrind-out-file=$out")
    case "$system" in
        highpress)
            run=(env HIGHPRESS_SERVER__HOST=127.0.0.1 HIGHPRESS_SERVER__PORT="$port"
                HIGHPRESS_STORE__KIND=redis HIGHPRESS_REDIS__ADDR="127.0.0.1:$REDIS_PORT"
                HIGHPRESS_LOG__LEVEL=warn "${run[@]:1}" "$HP_BIN" standalone) ;;
        ceiling) run=(env PORT="$port" "${run[@]:1}" "$CEILING_BIN") ;;
        naive)
            run=(env PORT="$port" REDIS_URL="redis://127.0.0.1:$REDIS_PORT" "${run[@]:1}"
                "$NAIVE_BIN") ;;
        webdis)
            sed "s/\"http_port\": $WEBDIS_PORT/\"http_port\": $port/" "$WORK/webdis.json" \
                >"$WORK/webdis-p10.json"
            run+=(webdis "$WORK/webdis-p10.json") ;;
    esac
    # env execs valgrind, which runs the program in its own process: $! is the pid that
    # callgrind_control and the stop address.
    "${run[@]}" >"$WORK/callgrind.$system.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    if ! helper wait-port "$port" "$pid" 60; then
        P10_ERROR="$system did not start under valgrind"
        log "$P10_ERROR"
        tail -n 20 "$WORK/callgrind.$system.log" >&2 || true
        stop_pids "$pid"
        return 1
    fi
    wrk_args "$scenario"
    wrk -t "$THREADS" -c "$P10_CONNECTIONS" -d 3s -s "$LUA" "http://127.0.0.1:$port" -- \
        "${WRK_ARGS[@]}" >/dev/null 2>&1 || true
    callgrind_control -i on "$pid" >/dev/null
    wrk -t "$THREADS" -c "$P10_CONNECTIONS" -d "${P10_SECONDS}s" -s "$LUA" \
        "http://127.0.0.1:$port" -- "${WRK_ARGS[@]}" >"$WORK/callgrind.$system.wrk" 2>&1 || true
    callgrind_control -i off "$pid" >/dev/null
    stop_pids "$pid"
    helper p10-record "$META" --system "$system" --wrk "$WORK/callgrind.$system.wrk" \
        "$out"*
}
if ! command -v valgrind >/dev/null 2>&1 || ! command -v callgrind_control >/dev/null 2>&1; then
    P10_ERROR="valgrind not found (scripts/install-test-deps.sh installs it)"
elif [ "$HP_OK" = 1 ] && section p10; then
    log "P10: instructions per request under callgrind, ${P10_SECONDS} s each, c=$P10_CONNECTIONS"
    for pair in highpress:highpress_post_hot ceiling:ceiling_post_hot naive:naive_post_hot \
        webdis:webdis_incrby_hot; do
        callgrind_run "${pair%%:*}" "${pair#*:}" || break
    done
fi
helper meta "$META" "p10.error=$P10_ERROR" "p10.connections=$P10_CONNECTIONS"

helper meta "$META" \
    "highpress_started=$([ "$HP_OK" = 1 ] && echo true || echo false)" "highpress_error=$HP_ERROR"

echo
status=0
strict=()
[ "$STRICT" = 0 ] || strict=(--strict)
helper summarize "$RESULTS" "$META" "$OUT" "${strict[@]}" || status=$?
echo
log "JSON written to $OUT; the README's tables: PYTHONPATH=bench python3 -m highpress_bench readme $OUT"
if [ "$HP_OK" != 1 ]; then
    log "highpress was not measured: $HP_ERROR"
    exit 1
fi
if [ "$TOPOLOGY" = split ] && [ -n "$SPLIT_ERROR" ] && section rounds; then
    log "the split topology was not (fully) measured: $SPLIT_ERROR"
    exit 1
fi
exit "$status"
