#!/usr/bin/env bash
# load_test.sh: HighGoPress's five-level load test, with `hey`, plus
# a consistency check: every acknowledged increment is counted.
#
#   level  requests  concurrency
#   1       1,000     10
#   2       5,000     50
#   3      10,000    100
#   4      20,000    200
#   5      50,000    500
#
# Each level POSTs increments of 1 to one counter
# (resource_id "loadtest_<runid>", counter_type "like") at
# $HIGHPRESS_URL/api/v1/counter/increment, reads the counter before and after
# (GET /api/v1/counter/<resource_id>/like, data.current_value), and checks that
# the increments acknowledged with 2xx equal the counter's change. It prints a
# markdown table and exits non-zero if any level had an error or an
# inconsistency. The table's header line names the topology.
#
# Usage: scripts/load_test.sh [--quick] [--scale F] [--topology T] [--start [--redis] [--no-build]]
#   --quick      smoke run: request counts scaled by 0.1 (same as LEVEL_SCALE=0.1)
#   --scale F    scale request counts by F (0 < F <= 10); also env LEVEL_SCALE
#   --topology T standalone (default) or split. split: the target is a gateway
#                in front of counter processes; with --start, the script starts
#                ONE `highpress counter` (gRPC and probes on free ports) and a
#                `highpress gateway` routing to it
#                (HIGHPRESS_DISCOVERY__ENDPOINTS), waits for the gateway's
#                /readyz, and runs the levels against the gateway
#   --start      build (cargo build --release -p highpress) and start
#                $CARGO_TARGET_DIR/release/highpress (standalone, or counter +
#                gateway with --topology split) on free loopback ports, stop
#                it on exit; HIGHPRESS_URL is then ignored
#   --redis      with --start: also start a private redis-server on a free port
#                (no persistence, temp dir) and point highpress at it
#                (HIGHPRESS_STORE__KIND=redis, HIGHPRESS_REDIS__ADDR); required
#                by --start --topology split (the counter runs on Redis)
#   --no-build   with --start: do not run cargo build; use the binary already
#                built in $CARGO_TARGET_DIR/release
#   -h, --help   this text
#
# Environment:
#   HIGHPRESS_URL     target (default http://127.0.0.1:8080) when not --start;
#                     with --topology split, a gateway's URL
#   LEVEL_SCALE       request count scale (default 1)
#   CARGO_TARGET_DIR  cargo target dir (default $HOME/.cache/highpress-target)
#   HEY_TIMEOUT       per-request timeout in seconds for hey (default 20)
#   LEVEL_TIMEOUT     wall-clock bound per level in seconds (default 300)
#
# Needs: hey, python3 (and redis-server with --redis, cargo with --start).
# Loopback only. Every process this script starts is stopped on exit.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

SCALE=${LEVEL_SCALE:-1}
TOPOLOGY=standalone
START=0
WITH_REDIS=0
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) SCALE=0.1 ;;
        --scale)
            [ $# -ge 2 ] || { echo "--scale needs a value" >&2; exit 2; }
            SCALE=$2
            shift
            ;;
        --topology)
            [ $# -ge 2 ] || { echo "--topology needs a value (standalone or split)" >&2; exit 2; }
            TOPOLOGY=$2
            shift
            ;;
        --start) START=1 ;;
        --redis) WITH_REDIS=1 ;;
        --no-build) BUILD=0 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
for tool in hey python3; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "load_test: $tool not found (run scripts/install-test-deps.sh)" >&2
        exit 1
    }
done
if ! python3 -c 'import sys; s = float(sys.argv[1]); sys.exit(0 if 0 < s <= 10 else 1)' "$SCALE" 2>/dev/null; then
    echo "load_test: the scale must be a number in (0, 10], got '$SCALE'" >&2
    exit 2
fi
if [ "$START" = 0 ] && { [ "$WITH_REDIS" = 1 ] || [ "$BUILD" = 0 ]; }; then
    echo "--redis and --no-build only make sense with --start" >&2
    exit 2
fi
case "$TOPOLOGY" in
    standalone) TOPOLOGY_LABEL="standalone" ;;
    split) TOPOLOGY_LABEL="split (gateway + 1 counter over gRPC)" ;;
    *) echo "--topology must be standalone or split, got '$TOPOLOGY'" >&2; exit 2 ;;
esac
if [ "$TOPOLOGY" = split ] && [ "$START" = 1 ] && [ "$WITH_REDIS" = 0 ]; then
    echo "--start --topology split needs --redis (the counter runs on Redis)" >&2
    exit 2
fi
if [ "$TOPOLOGY" = split ] && [ "$START" = 0 ]; then
    TOPOLOGY_LABEL="split (gateway at HIGHPRESS_URL)"
fi

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/highpress-target}
HEY_TIMEOUT=${HEY_TIMEOUT:-20}
LEVEL_TIMEOUT=${LEVEL_TIMEOUT:-300}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
start_scratch load

# Small helpers in python3 (no jq needed).
cat >"$WORK/helper.py" <<'PY'
import json, re, socket, sys, time, urllib.request

def free_port(n="1"):
    # n distinct free ports, one a line (all held open until every one is chosen).
    socks = []
    for _ in range(int(n)):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    for s in socks:
        print(s.getsockname()[1])
        s.close()

def get_value(url):
    # Prints data.current_value of a GET, or exits 1.
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        print(int(body["data"]["current_value"]))
    except Exception as e:  # noqa: BLE001
        print(f"GET {url}: {e}", file=sys.stderr)
        sys.exit(1)

def wait_http(url, seconds):
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:  # noqa: BLE001
            pass
        time.sleep(0.2)
    sys.exit(1)

def parse_hey(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    out = {"rps": None, "p50": None, "p95": None, "p99": None,
           "acked": 0, "non2xx": 0, "transport_errors": 0}
    m = re.search(r"Requests/sec:\s*([0-9.]+)", text)
    if m:
        out["rps"] = float(m.group(1))
    for pct in ("50", "95", "99"):
        m = re.search(rf"^\s*{pct}%+ in ([0-9.]+) secs", text, re.M)
        if m:
            out["p" + pct] = float(m.group(1)) * 1000.0
    status = text.split("Status code distribution:", 1)
    if len(status) == 2:
        block = status[1].split("Error distribution:", 1)[0]
        for code, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", block):
            if 200 <= int(code) < 300:
                out["acked"] += int(n)
            else:
                out["non2xx"] += int(n)
    errors = text.split("Error distribution:", 1)
    if len(errors) == 2:
        for n in re.findall(r"^\s*\[(\d+)\]\s", errors[1], re.M):
            out["transport_errors"] += int(n)
    print(json.dumps(out))

def fmt(v, nd=1):
    return "n/a" if v is None else f"{v:.{nd}f}"

def report(path):
    rows = [json.loads(l) for l in open(path, encoding="utf-8") if l.strip()]
    print("| level | requests | concurrency | req/s | p50 ms | p95 ms | p99 ms "
          "| errors | acked | counter delta | consistent |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    bad = 0
    for r in rows:
        ok = r["errors"] == 0 and r["delta"] is not None and r["delta"] == r["acked"]
        bad += 0 if ok else 1
        delta = "n/a" if r["delta"] is None else str(r["delta"])
        print(f"| {r['level']} | {r['requests']} | {r['concurrency']} | {fmt(r['rps'], 0)} "
              f"| {fmt(r['p50'], 2)} | {fmt(r['p95'], 2)} | {fmt(r['p99'], 2)} "
              f"| {r['errors']} | {r['acked']} | {delta} | {'yes' if ok else 'NO'} |")
    sys.exit(1 if bad else 0)

def level_row(hey_json, level, n, c, before, after):
    h = json.loads(hey_json)
    attempted = h["acked"] + h["non2xx"] + h["transport_errors"]
    # hey stops early only on failure; count requests never attempted as errors too.
    errors = h["non2xx"] + h["transport_errors"] + max(0, int(n) - attempted)
    delta = None
    if before != "" and after != "":
        delta = int(after) - int(before)
    print(json.dumps({"level": int(level), "requests": int(n), "concurrency": int(c),
                      "rps": h["rps"], "p50": h["p50"], "p95": h["p95"], "p99": h["p99"],
                      "errors": errors, "acked": h["acked"], "delta": delta}))

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"free-port": free_port, "get-value": get_value, "wait-http": wait_http,
     "parse-hey": parse_hey, "report": report, "level-row": level_row}[cmd](*args)
PY
helper() { python3 "$WORK/helper.py" "$@"; }

# --- optional: start our own highpress (and redis) ----------------------------

if [ "$START" = 1 ]; then
    HP_ENV=()
    if [ "$WITH_REDIS" = 1 ]; then
        command -v redis-server >/dev/null 2>&1 || {
            echo "load_test: redis-server not found (run scripts/install-test-deps.sh)" >&2
            exit 1
        }
        REDIS_PORT=$(helper free-port)
        mkdir -p "$WORK/redis"
        redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
            --dir "$WORK/redis" --daemonize no --logfile "$WORK/redis.log" &
        PIDS+=("$!")
        wait_redis "$REDIS_PORT"
        HP_ENV+=(HIGHPRESS_STORE__KIND=redis "HIGHPRESS_REDIS__ADDR=127.0.0.1:$REDIS_PORT")
        echo "load_test: private redis-server on 127.0.0.1:$REDIS_PORT"
    fi
    if [ "$BUILD" = 1 ]; then
        echo "load_test: building highpress (release)"
        (cd "$ROOT" && cargo build --release -p highpress --bin highpress) >"$WORK/build.log" 2>&1 || {
            tail -n 30 "$WORK/build.log" >&2
            echo "load_test: cargo build failed" >&2
            exit 1
        }
    fi
    [ -x "$CARGO_TARGET_DIR/release/highpress" ] || {
        echo "load_test: no binary at $CARGO_TARGET_DIR/release/highpress (build it, or drop --no-build)" >&2
        exit 1
    }
    # start_hp NAME MODE [VAR=value ...]: starts highpress MODE in the background,
    # log in $WORK/NAME.log; sets LAST_PID.
    start_hp() {
        local name=$1 mode=$2
        shift 2
        env HIGHPRESS_SERVER__HOST=127.0.0.1 HIGHPRESS_LOG__LEVEL=warn "$@" \
            "$CARGO_TARGET_DIR/release/highpress" "$mode" >"$WORK/$name.log" 2>&1 &
        LAST_PID=$!
        PIDS+=("$LAST_PID")
    }
    # wait_up NAME PID URL: until URL answers 200 (30 s), else report and exit.
    wait_up() {
        local name=$1 pid=$2 url=$3
        helper wait-http "$url" 30 && return 0
        echo "load_test: $name did not answer GET $url with 200 within 30 s" >&2
        kill -0 "$pid" 2>/dev/null || echo "load_test: $name exited" >&2
        tail -n 30 "$WORK/$name.log" >&2 || true
        exit 1
    }
    { read -r HP_PORT; read -r COUNTER_HTTP_PORT; read -r COUNTER_GRPC_PORT; } < <(helper free-port 3)
    HIGHPRESS_URL="http://127.0.0.1:$HP_PORT"
    if [ "$TOPOLOGY" = standalone ]; then
        start_hp highpress standalone "${HP_ENV[@]}" HIGHPRESS_SERVER__PORT="$HP_PORT"
        HP_PID=$LAST_PID
        wait_up highpress "$HP_PID" "$HIGHPRESS_URL/health"
        echo "load_test: highpress standalone on $HIGHPRESS_URL (pid $HP_PID)"
    else
        start_hp counter counter "${HP_ENV[@]}" HIGHPRESS_SERVER__PORT="$COUNTER_HTTP_PORT" \
            HIGHPRESS_GRPC__LISTEN="127.0.0.1:$COUNTER_GRPC_PORT"
        COUNTER_PID=$LAST_PID
        wait_up counter "$COUNTER_PID" "http://127.0.0.1:$COUNTER_HTTP_PORT/readyz"
        echo "load_test: highpress counter on gRPC 127.0.0.1:$COUNTER_GRPC_PORT, probes on :$COUNTER_HTTP_PORT (pid $COUNTER_PID)"
        start_hp gateway gateway HIGHPRESS_SERVER__PORT="$HP_PORT" \
            HIGHPRESS_DISCOVERY__ENDPOINTS="127.0.0.1:$COUNTER_GRPC_PORT"
        GATEWAY_PID=$LAST_PID
        # /readyz turns 200 once the gateway has seen a healthy counter.
        wait_up gateway "$GATEWAY_PID" "$HIGHPRESS_URL/readyz"
        echo "load_test: highpress gateway on $HIGHPRESS_URL (pid $GATEWAY_PID)"
    fi
fi

BASE=${HIGHPRESS_URL:-http://127.0.0.1:8080}
BASE=${BASE%/}
RUN_ID="$(date +%Y%m%d%H%M%S)_$$"
RESOURCE="loadtest_$RUN_ID"
BODY="{\"resource_id\":\"$RESOURCE\",\"counter_type\":\"like\",\"user_id\":\"load\",\"increment\":1}"
POST_URL="$BASE/api/v1/counter/increment"
GET_URL="$BASE/api/v1/counter/$RESOURCE/like"

if ! helper get-value "$GET_URL" >/dev/null; then
    echo "load_test: cannot read $GET_URL (is highpress running? try --start)" >&2
    exit 1
fi

LEVELS=("1000 10" "5000 50" "10000 100" "20000 200" "50000 500")
echo "load_test: topology $TOPOLOGY, target $BASE, counter $RESOURCE/like, scale $SCALE, hey $(command -v hey)"
: >"$WORK/rows.jsonl"
level=0
for spec in "${LEVELS[@]}"; do
    level=$((level + 1))
    read -r base_n c <<<"$spec"
    # hey sends floor(n / c) requests per worker: keep n a multiple of c, at least c.
    n=$(python3 -c "import sys; n, c, s = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]); print(max(c, round(n * s / c) * c))" "$base_n" "$c" "$SCALE")
    before=$(helper get-value "$GET_URL" || true)
    rc=0
    timeout "$LEVEL_TIMEOUT" hey -n "$n" -c "$c" -t "$HEY_TIMEOUT" -m POST \
        -T application/json -d "$BODY" "$POST_URL" >"$WORK/hey.$level.txt" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "load_test: level $level: hey exited with $rc" >&2
    fi
    after=$(helper get-value "$GET_URL" || true)
    parsed=$(helper parse-hey "$WORK/hey.$level.txt")
    helper level-row "$parsed" "$level" "$n" "$c" "$before" "$after" >>"$WORK/rows.jsonl"
    echo "load_test: level $level done ($n requests, c=$c)" >&2
done

echo
echo "Load test: topology $TOPOLOGY_LABEL, hey, POST increment, one counter, target $BASE ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
echo
status=0
helper report "$WORK/rows.jsonl" || status=$?
if [ "$status" -ne 0 ]; then
    echo
    echo "load_test: FAILED: errors or inconsistent counters (see table)" >&2
fi
exit "$status"
