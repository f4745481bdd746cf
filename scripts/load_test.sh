#!/usr/bin/env bash
# load_test.sh: the original project's five-level load test, with `hey`, plus
# the consistency check of docs TESTING.md.
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
# inconsistency.
#
# Usage: scripts/load_test.sh [--quick] [--scale F] [--start [--redis]]
#   --quick      smoke run: request counts scaled by 0.1 (same as LEVEL_SCALE=0.1)
#   --scale F    scale request counts by F (0 < F <= 10); also env LEVEL_SCALE
#   --start      build (cargo build --release -p highpress) and start
#                $CARGO_TARGET_DIR/release/highpress standalone on a free
#                loopback port, stop it on exit; HIGHPRESS_URL is then ignored
#   --redis      with --start: also start a private redis-server on a free port
#                (no persistence, temp dir) and point highpress at it
#                (HIGHPRESS_STORE__KIND=redis, HIGHPRESS_REDIS__ADDR)
#   -h, --help   this text
#
# Environment:
#   HIGHPRESS_URL     target (default http://127.0.0.1:8080) when not --start
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
START=0
WITH_REDIS=0
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) SCALE=0.1 ;;
        --scale)
            [ $# -ge 2 ] || { echo "--scale needs a value" >&2; exit 2; }
            SCALE=$2
            shift
            ;;
        --start) START=1 ;;
        --redis) WITH_REDIS=1 ;;
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
if [ "$WITH_REDIS" = 1 ] && [ "$START" = 0 ]; then
    echo "--redis only makes sense with --start" >&2
    exit 2
fi

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/highpress-target}
HEY_TIMEOUT=${HEY_TIMEOUT:-20}
LEVEL_TIMEOUT=${LEVEL_TIMEOUT:-300}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/highpress-load.XXXXXX")
PIDS=()
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Small helpers in python3 (no jq needed).
cat >"$WORK/helper.py" <<'PY'
import json, re, socket, sys, time, urllib.request

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    print(port)

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
wait_redis() {
    local port=$1 _
    for _ in $(seq 1 100); do
        if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ]; then
            return 0
        fi
        sleep 0.1
    done
    echo "load_test: redis-server on port $port did not answer PING within 10 s" >&2
    return 1
}

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
    echo "load_test: building highpress (release)"
    (cd "$ROOT" && cargo build --release -p highpress --bin highpress) >"$WORK/build.log" 2>&1 || {
        tail -n 30 "$WORK/build.log" >&2
        echo "load_test: cargo build failed" >&2
        exit 1
    }
    HP_PORT=$(helper free-port)
    env "${HP_ENV[@]}" HIGHPRESS_SERVER__HOST=127.0.0.1 HIGHPRESS_SERVER__PORT="$HP_PORT" \
        HIGHPRESS_LOG__LEVEL=warn \
        "$CARGO_TARGET_DIR/release/highpress" standalone >"$WORK/highpress.log" 2>&1 &
    HP_PID=$!
    PIDS+=("$HP_PID")
    HIGHPRESS_URL="http://127.0.0.1:$HP_PORT"
    if ! helper wait-http "$HIGHPRESS_URL/health" 30; then
        echo "load_test: highpress did not answer GET /health with 200 within 30 s" >&2
        kill -0 "$HP_PID" 2>/dev/null || echo "load_test: highpress exited" >&2
        tail -n 30 "$WORK/highpress.log" >&2 || true
        exit 1
    fi
    echo "load_test: highpress standalone on $HIGHPRESS_URL (pid $HP_PID)"
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
echo "load_test: target $BASE, counter $RESOURCE/like, scale $SCALE, hey $(command -v hey)"
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
echo "Load test: hey, POST increment, one counter, target $BASE ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
echo
status=0
helper report "$WORK/rows.jsonl" || status=$?
if [ "$status" -ne 0 ]; then
    echo
    echo "load_test: FAILED: errors or inconsistent counters (see table)" >&2
fi
exit "$status"
