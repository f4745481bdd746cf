#!/usr/bin/env bash
# bench.sh: highpress's side-by-side peer benchmark (docs PERFORMANCE.md).
#
# On free loopback ports it starts its own processes: a redis-server (no
# persistence, temp dir), highpress standalone on that Redis, the two benchmark
# peers from service/examples (peer_ceiling: HTTP cost with no storage;
# peer_naive: one INCRBY per request), and webdis (HTTP-to-Redis in C) on the
# same Redis. The load generator is wrk with generated Lua scripts (POST bodies;
# key distributions hot = one key, uniform = rotation over 1,000 keys,
# zipf = Zipf s=1.1 over 100,000 keys), plus redis-benchmark for raw Redis.
# Measurements alternate between systems in each round; figures are medians
# over the rounds. After the rounds, highpress is restarted with leaderboards
# off (HIGHPRESS_LEADERBOARD__ENABLED=false) for row P5b, the coalescer's own
# cost (counter writes only); row P5b-lb, informational, is the same
# measurement on the rounds' zipf runs with leaderboards on (default config),
# with the Redis commands split by kind (INCRBY, ZINCRBY, EXPIRE, other).
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
# about 35 s to a default run (about 8 s with --quick), which keeps a default
# run under 10 minutes, so they are on by default.
#
# Events (row E1, informational): after P5b, a tansu broker (Kafka protocol,
# in-memory storage; scripts/install-test-deps.sh installs it) starts on a free
# port, and two standalones run side by side on the same Redis, one with
# Kafka events off and one publishing every increment to tansu; they are
# measured alternately, RUNS runs each, uniform (1,000 keys). E1 = events-on
# increments/s ÷ events-off increments/s (same run; the broker shares the
# machine's cores). Without tansu, E1 is n/a with the reason.
#
# Unique per user (row U1, informational): two standalones on the same Redis,
# the "like" type plain and with counter_types.like.unique_per_user, measured
# alternately, RUNS runs each, uniform (1,000 keys), every request from a new
# user so both count every request. U1 = unique-on ÷ plain increments/s.
#
# It prints the targets table (rows P1, P1u, P2, P3, P4, P4-batching, P4-p99,
# P5a, P5b, P5b-lb, E1, U1, P6, P7, P8, P9), the peers' raw figures, and writes
# everything as JSON.
#
# Usage: scripts/bench.sh [--quick] [--no-build] [--strict] [--topology T]
#   --quick      smoke run: 1 round of 3 s runs, redis-benchmark -n 200000,
#                P9 with 200,000 keys instead of 1,000,000
#   --no-build   do not run cargo build; use the binaries already built in
#                $CARGO_TARGET_DIR (one older than HEAD is flagged in the results)
#   --strict     exit 1 when a target is not met (default: report only)
#   --topology T split (default): standalone and gateway+counter, alternating
#                in each round; standalone: standalone only, the P4 rows are
#                n/a (as before the split existed)
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
#   CARGO_TARGET_DIR   cargo target dir (default $HOME/.cache/highpress-target)
#
# What highpress must provide: `highpress standalone` configured by the
# environment (HIGHPRESS_SERVER__HOST, HIGHPRESS_SERVER__PORT,
# HIGHPRESS_STORE__KIND=redis, HIGHPRESS_REDIS__ADDR=127.0.0.1:<port>,
# HIGHPRESS_LOG__LEVEL, HIGHPRESS_LEADERBOARD__ENABLED), GET /health answering
# 200 once it serves, the REST API of docs/API.md (increment, get, batch), and
# on /metrics the counters highpress_coalescer_flush_keys[_total] and
# highpress_coalescer_flush_increments[_total] for P5b and P5b-lb (else they
# are n/a). For the split: `highpress counter` with HIGHPRESS_GRPC__LISTEN
# (ip:port) and HIGHPRESS_SERVER__PORT (probes, /metrics with the coalescer
# counters and highpress_increments_acknowledged[_total]), /readyz 200 once
# its store answers; `highpress gateway` with HIGHPRESS_DISCOVERY__ENDPOINTS,
# the same REST API, /readyz 200 once a counter is healthy, and the histogram
# highpress_gateway_batch_size on /metrics (else P4-batching is n/a).
#
# Exit status: 0 when the benchmark ran (targets are reported, not enforced,
# unless --strict); 1 when a build failed, or highpress (standalone, or the
# split when asked for) did not start (the peers are still measured and
# reported).
# Bounded in time: about 8-10 minutes with the defaults, about 2 minutes
# with --quick, plus the build. Every process it starts is stopped on exit.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

QUICK=0
BUILD=1
STRICT=0
TOPOLOGY="split"
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
        -h | --help) usage; exit 0 ;;
        *) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

case "$TOPOLOGY" in
    split | standalone) ;;
    *) echo "bench: --topology must be split or standalone, got '$TOPOLOGY'" >&2; exit 2 ;;
esac

if [ "$QUICK" = 1 ]; then
    DURATION=${BENCH_DURATION:-3}
    RUNS=${BENCH_RUNS:-1}
    REDIS_BENCH_N=${REDIS_BENCH_N:-200000}
    P9_KEYS=${P9_KEYS:-200000}
else
    DURATION=${BENCH_DURATION:-8}
    RUNS=${BENCH_RUNS:-3}
    REDIS_BENCH_N=${REDIS_BENCH_N:-1000000}
    P9_KEYS=${P9_KEYS:-1000000}
fi
CONNS=${BENCH_CONNECTIONS:-500}
THREADS=${BENCH_THREADS:-$(nproc)}
P9_TIMEOUT=${P9_TIMEOUT:-240}
for v in DURATION RUNS REDIS_BENCH_N P9_KEYS CONNS THREADS P9_TIMEOUT; do
    case "${!v}" in
        '' | *[!0-9]* | 0) echo "bench: $v must be a positive integer, got '${!v}'" >&2; exit 2 ;;
    esac
done
if [ "$RUNS" -gt 20 ] || [ "$DURATION" -gt 120 ]; then
    echo "bench: BENCH_RUNS <= 20 and BENCH_DURATION <= 120 keep the run bounded" >&2
    exit 2
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/highpress-target}
OUT=${BENCH_OUT:-$ROOT/target/bench/bench.json}
HP_BIN=$CARGO_TARGET_DIR/release/highpress
CEILING_BIN=$CARGO_TARGET_DIR/release/examples/peer_ceiling
NAIVE_BIN=$CARGO_TARGET_DIR/release/examples/peer_naive

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
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
start_scratch bench

log() { echo "bench: $*" >&2; }

# ----------------------------------------------------------------------------
# python3 helpers (HTTP, parsing, summary); no jq needed.
cat >"$WORK/helper.py" <<'PY'
import json, os, re, socket, statistics, sys, time, urllib.request

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

def get_value(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            print(int(json.load(r)["data"]["current_value"]))
    except Exception as e:  # noqa: BLE001
        print(f"GET {url}: {e}", file=sys.stderr)
        sys.exit(1)

def batch_sum(base, prefix, n):
    """Sum of counters prefix0..prefix{n-1} (type like) via POST /api/v1/counter/batch."""
    n, total, chunk = int(n), 0, 1000
    for start in range(0, n, chunk):
        queries = [{"resource_id": f"{prefix}{i}", "counter_type": "like"}
                   for i in range(start, min(n, start + chunk))]
        req = urllib.request.Request(base + "/api/v1/counter/batch",
                                     data=json.dumps({"queries": queries}).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                results = json.load(r)["data"]["results"]
        except Exception as e:  # noqa: BLE001
            print(f"batch read {base}: {e}", file=sys.stderr)
            sys.exit(1)
        if len(results) != len(queries):
            print("batch read: wrong result count", file=sys.stderr)
            sys.exit(1)
        total += sum(int(x["current_value"]) for x in results)
    print(total)

def metrics(url, *names):
    """Prints the sum over label sets of each metric (name or name_total), 'none' if absent
    (all 'none' for the URL '-')."""
    text = ""
    if url != "-":
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                text = r.read().decode("utf-8", "replace")
        except Exception:  # noqa: BLE001
            pass
    out = []
    for name in names:
        total, seen = 0.0, False
        for line in text.splitlines():
            m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
            if m and m.group(1) in (name, name + "_total"):
                total += float(m.group(3))
                seen = True
        out.append(repr(total) if seen else "none")
    print(" ".join(out))

def cmdstats(text_path):
    """Sum of calls= over INFO commandstats, without the INFO command itself."""
    total = 0
    for line in open(text_path, encoding="utf-8", errors="replace"):
        m = re.match(r"^cmdstat_([^:]+):calls=(\d+)", line.strip())
        if m and m.group(1) != "info":
            total += int(m.group(2))
    print(total)

CMD_KINDS = ("incrby", "zincrby", "expire")

def cmdsplit(before_path, after_path):
    """Change of calls= between two INFO commandstats by kind (incrby, zincrby,
    expire, other; INFO itself left out), as cmds_<kind>=N fields for record."""
    def read(path):
        counts = dict.fromkeys(CMD_KINDS + ("other",), 0)
        try:
            lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
        except OSError:
            lines = []
        for line in lines:
            m = re.match(r"^cmdstat_([^:]+):calls=(\d+)", line.strip())
            if m and m.group(1) != "info":
                kind = m.group(1) if m.group(1) in CMD_KINDS else "other"
                counts[kind] += int(m.group(2))
        return counts
    c0, c1 = read(before_path), read(after_path)
    print(" ".join(f"cmds_{k}={c1[k] - c0[k]}" for k in CMD_KINDS + ("other",)))

def wrk_json(path):
    for line in open(path, encoding="utf-8", errors="replace"):
        if line.startswith("BENCHJSON "):
            print(line[len("BENCHJSON "):].strip())
            return
    print("{}")

def redis_bench(path):
    # --csv: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    for line in open(path, encoding="utf-8", errors="replace"):
        cells = [c.strip().strip('"') for c in line.strip().split(",")]
        if cells and cells[0] == "INCR" and len(cells) >= 2:
            p99 = float(cells[6]) if len(cells) >= 7 else None
            print(json.dumps({"rps": float(cells[1]), "p99_ms": p99}))
            return
    print("{}")

def num(v):
    if v in ("", "none", "null", None):
        return None
    try:
        f = float(v)
    except ValueError:
        return v
    return int(f) if f.is_integer() and "." not in str(v) else f

def record(out_path, wrk_json_text, *kvs):
    """Merges a wrk (or redis-benchmark) JSON with k=v fields; appends to out_path."""
    rec = json.loads(wrk_json_text or "{}")
    for kv in kvs:
        k, _, v = kv.partition("=")
        rec[k] = num(v)
    with open(out_path, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")

# ---------------------------------------------------------------- summary
def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def derive(r):
    """Adds acked, rps, p99_ms, lost etc. to one wrk record."""
    if "requests" not in r:
        return r
    dur = r.get("duration_us") or 0
    sock = sum(r.get(k, 0) for k in ("connect", "read", "write", "timeout"))
    r["socket_errors"] = sock
    r["errors"] = sock + r.get("status", 0)
    # Acknowledged = complete 2xx/3xx responses, minus socket errors (lower bound).
    r["acked"] = max(0, r["requests"] - r.get("status", 0) - sock)
    r["rps"] = r["acked"] / (dur / 1e6) if dur else None
    r["p99_ms"] = r["p99_us"] / 1000.0 if r.get("p99_us") else None
    r["p50_ms"] = r["p50_us"] / 1000.0 if r.get("p50_us") else None
    if r.get("before") is not None and r.get("after") is not None:
        delta = r["after"] - r["before"]
        r["delta"] = delta
        # Lost: acknowledged increments missing from the counter. Phantom: more
        # than was ever sent. Requests in flight when wrk stops may or may not be
        # applied: they are attempted, not acknowledged (issued - acked of them).
        r["lost"] = max(0, r["acked"] - delta)
        r["phantom"] = max(0, delta - r.get("issued", delta))
    if r.get("cpu_ticks") is not None and r["acked"]:
        r["cpu_s_per_million"] = r["cpu_ticks"] / r["clk_tck"] / r["acked"] * 1e6
    if r.get("cmds_before") is not None and r.get("cmds_after") is not None and r["acked"]:
        r["cmds"] = r["cmds_after"] - r["cmds_before"]
        r["cmds_per_inc"] = r["cmds"] / r["acked"]
    if r.get("fk_before") is not None and r.get("fk_after") is not None \
            and r.get("fi_before") is not None and r.get("fi_after") is not None:
        dk, di = r["fk_after"] - r["fk_before"], r["fi_after"] - r["fi_before"]
        r["coalescing_limit"] = dk / di if di > 0 else None
    # Split topology: the gateway's gRPC calls (histogram _count) and the increments
    # they carried (_sum), against the increments the counter acknowledged.
    if r.get("ack_before") is not None and r.get("ack_after") is not None:
        r["engine_acked"] = r["ack_after"] - r["ack_before"]
    if r.get("gc_before") is not None and r.get("gc_after") is not None \
            and r.get("gs_before") is not None and r.get("gs_after") is not None:
        calls, items = r["gc_after"] - r["gc_before"], r["gs_after"] - r["gs_before"]
        r["grpc_calls"], r["grpc_items"] = calls, items
        per = r.get("engine_acked") or r["acked"]
        r["grpc_calls_per_request"] = calls / per if per else None
        r["grpc_avg_batch"] = items / calls if calls else None
    return r

def fmt(v, nd=2):
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{nd}f}"

def ratio(a, b):
    return a / b if a is not None and b else None

def summarize(results_path, meta_path, out_path, strict):
    meta = json.load(open(meta_path, encoding="utf-8"))
    recs = [derive(json.loads(l)) for l in open(results_path, encoding="utf-8") if l.strip()]
    by = {}
    for r in recs:
        by.setdefault(r["scenario"], []).append(r)

    def med(scn, field):
        return median([r.get(field) for r in by.get(scn, [])])

    hp_ok = meta.get("highpress_started", False)
    ceil_post, ceil_get = med("ceiling_post_hot", "rps"), med("ceiling_get_hot", "rps")
    hp_hot, hp_uni = med("highpress_post_hot", "rps"), med("highpress_post_uniform", "rps")
    hp_get = med("highpress_get_hot", "rps")
    webdis, naive = med("webdis_incrby_hot", "rps"), med("naive_post_hot", "rps")
    rbench = med("redis_benchmark_incr", "rps")
    p5a = med("highpress_post_hot", "cmds_per_inc")
    # P5b: leaderboards off (a highpress restarted for it); P5b-lb: the rounds'
    # zipf runs, leaderboards on (default config), informational.
    zipf_cpi = med("highpress_post_zipf_lboff", "cmds_per_inc")
    zipf_limit = med("highpress_post_zipf_lboff", "coalescing_limit")
    p5b = ratio(zipf_cpi, zipf_limit)
    lb_cpi = med("highpress_post_zipf", "cmds_per_inc")
    lb_limit = med("highpress_post_zipf", "coalescing_limit")
    p5b_lb = ratio(lb_cpi, lb_limit)

    def split(scn):
        """Redis commands by kind over a scenario's runs: totals and per acknowledged increment."""
        runs = [r for r in by.get(scn, []) if r.get("cmds_incrby") is not None]
        acked = sum(r.get("acked", 0) for r in runs)
        if not runs or not acked:
            return None
        kinds = ("incrby", "zincrby", "expire", "other")
        totals = {k: sum(r.get("cmds_" + k) or 0 for r in runs) for k in kinds}
        return {"scenario": scn, "runs": len(runs), "acked": acked, "commands": totals,
                "per_inc": {k: totals[k] / acked for k in kinds},
                "share": {k: (totals[k] / sum(totals.values()) if sum(totals.values()) else None)
                          for k in kinds}}
    lb_split, lboff_split = split("highpress_post_zipf"), split("highpress_post_zipf_lboff")
    # E1: events on ÷ off, uniform, same run (two standalones measured alternately).
    ev_off, ev_on = med("highpress_post_uniform_evoff", "rps"), med("highpress_post_uniform_evon", "rps")
    e1 = ratio(ev_on, ev_off)
    e1_meta = meta.get("e1", {})
    if e1 is None:
        e1_shown = "n/a (" + (meta.get("e1_error") or "not measured") + ")"
    else:
        e1_shown = (f"{e1:.2f} ({fmt(ev_on, 0)} ÷ {fmt(ev_off, 0)} inc/s; "
                    f"{num(e1_meta.get('events_sent')) or 0:,.0f} events sent, "
                    f"{num(e1_meta.get('events_dropped')) or 0:,.0f} dropped)")
    # U1: unique_per_user on ÷ off, uniform, every request a new user, same run.
    u_off, u_on = med("highpress_post_users_uoff", "rps"), med("highpress_post_users_uon", "rps")
    u1 = ratio(u_on, u_off)
    u1_shown = ("n/a (" + (meta.get("u1_error") or "not measured") + ")" if u1 is None
                else f"{u1:.2f} ({fmt(u_on, 0)} ÷ {fmt(u_off, 0)} inc/s)")
    p7 = med("highpress_post_hot", "p99_ms")
    # P4: the split topology (gateway + 1 counter), hot, same rounds as the standalone.
    split_asked = meta.get("topology") == "split"
    split_ok = split_asked and bool(by.get("split_post_hot"))
    split_hot = med("split_post_hot", "rps")
    p4 = ratio(split_hot, hp_hot)
    p4_calls = med("split_post_hot", "grpc_calls_per_request")
    p4_batch = med("split_post_hot", "grpc_avg_batch")
    p4_p99 = med("split_post_hot", "p99_ms")
    split_runs = by.get("split_post_hot", [])
    calls_tot = sum(r.get("grpc_calls") or 0 for r in split_runs)
    items_tot = sum(r.get("grpc_items") or 0 for r in split_runs)
    acked_tot = sum(r.get("engine_acked") or 0 for r in split_runs)
    if not split_asked:
        why = "not measured: --topology standalone"
    elif not split_ok:
        why = "split did not run: " + (meta.get("split_error") or "unknown")
    else:
        why = None
    p4_shown = f"n/a ({why})" if why else (
        "n/a" if p4 is None else f"{p4:.2f} ({fmt(split_hot, 0)} ÷ {fmt(hp_hot, 0)} inc/s)")
    p4_batch_shown = f"n/a ({why})" if why else (
        "n/a (no highpress_gateway_batch_size)" if p4_calls is None else
        f"{p4_calls:.4f} calls/request, avg batch {fmt(p4_batch, 1)} "
        f"({calls_tot:,.0f} calls, {items_tot:,.0f} increments sent, "
        f"{acked_tot:,.0f} acknowledged by the counter)")
    p4_p99_shown = f"n/a ({why})" if why else fmt(p4_p99)
    hp_runs = [r for s in ("highpress_post_hot", "highpress_post_uniform", "highpress_post_zipf",
                           "highpress_post_zipf_lboff", "split_post_hot",
                           "highpress_post_uniform_evoff", "highpress_post_uniform_evon",
                           "highpress_post_users_uoff", "highpress_post_users_uon")
               for r in by.get(s, [])]
    p8_errors = sum(r.get("errors", 0) for r in hp_runs)
    p8_lost = sum(r.get("lost", 0) for r in hp_runs if r.get("lost") is not None)
    p8_phantom = sum(r.get("phantom", 0) for r in hp_runs if r.get("phantom") is not None)
    p8_unchecked = sum(1 for r in hp_runs if r.get("lost") is None)
    p8 = (p8_errors + p8_lost + p8_phantom) if hp_runs else None
    p9 = meta.get("p9", {})
    p9_mb = p9.get("rss_after_kb") / 1024.0 if p9.get("rss_after_kb") else None

    def row(rid, what, measured, target, op, shown=None):
        met = None
        if measured is not None:
            met = measured >= target if op == ">=" else measured <= target
        return {"row": rid, "what": what, "measured": measured,
                "shown": shown if shown is not None else fmt(measured),
                "target": f"{op.replace('>=', '≥').replace('<=', '≤')} {target:g}", "met": met}

    p8_shown = "n/a"
    if p8 is not None:
        p8_shown = f"{p8} ({p8_errors} errors, {p8_lost} lost, {p8_phantom} over"
        p8_shown += f", {p8_unchecked} runs unchecked)" if p8_unchecked else ")"
    p5b_shown = "n/a" if p5b is None else (
        f"{p5b:.2f} ({zipf_cpi:.3f} cmd/inc ÷ limit {zipf_limit:.3f})")
    if p5b is None and meta.get("p5b_error"):
        p5b_shown = f"n/a ({meta['p5b_error']})"
    elif lboff_split and lboff_split["commands"]["zincrby"]:
        # The switch did not take effect: this is not the counter-writes-only cost.
        p5b_shown += f" WARNING: {lboff_split['commands']['zincrby']} ZINCRBY seen"
    p5b_lb_shown = "n/a" if p5b_lb is None else (
        f"{lb_cpi:.3f} cmd/inc, {p5b_lb:.2f} × limit {lb_limit:.3f}")
    p9_shown = "n/a" if p9_mb is None else (
        f"{p9_mb:.1f} MB ({p9.get('keys_touched', 0):,} keys, start {p9.get('rss_start_kb', 0) / 1024:.1f} MB)")
    rows = [
        row("P1", "standalone increments/s ÷ ceiling, c=%d, hot" % meta["connections"],
            ratio(hp_hot, ceil_post), 0.90, ">="),
        row("P1u", "the same, uniform (1,000 keys) ÷ ceiling hot", ratio(hp_uni, ceil_post), 0.75, ">="),
        row("P2", "standalone increments/s ÷ webdis INCRBY, hot", ratio(hp_hot, webdis), 1.6, ">="),
        row("P3", "standalone increments/s ÷ redis-benchmark INCR -c 50 ops/s",
            ratio(hp_hot, rbench), 1.0, ">="),
        row("P4", "gateway+counter increments/s ÷ standalone, c=%d, hot (same run)"
            % meta["connections"], p4, 0.6, ">=", p4_shown),
        {"row": "P4-batching", "what": "gRPC IncrementBatch calls per REST request, split, hot, "
                                       "informational",
         "measured": p4_calls, "avg_batch": p4_batch, "grpc_calls": calls_tot,
         "grpc_items": items_tot, "counter_acked": acked_tot,
         "shown": p4_batch_shown, "target": "n/a (informational)", "met": None,
         "informational": True},
        {"row": "P4-p99", "what": "p99 latency ms of the split, c=%d, hot, informational"
                                  % meta["connections"],
         "measured": p4_p99, "shown": p4_p99_shown, "target": "n/a (informational)",
         "met": None, "informational": True},
        row("P5a", "Redis commands per acknowledged increment, hot", p5a, 0.02, "<=",
            None if p5a is None else f"{p5a:.4f}"),
        row("P5b", "Redis commands per increment, zipf, ÷ coalescing limit (leaderboards off)",
            p5b, 1.1, "<=", p5b_shown),
        {"row": "P5b-lb", "what": "the same with leaderboards on (default config), informational",
         "measured": p5b_lb, "cmds_per_inc": lb_cpi, "coalescing_limit": lb_limit,
         "shown": p5b_lb_shown, "target": "n/a (informational)", "met": None,
         "informational": True},
        {"row": "E1", "what": "standalone increments/s with Kafka events on ÷ off, uniform "
                              "(1,000 keys), same run, tansu on the same machine, informational",
         "measured": e1, "events_on": ev_on, "events_off": ev_off,
         "events_sent": num(e1_meta.get("events_sent")),
         "events_dropped": num(e1_meta.get("events_dropped")),
         "shown": e1_shown, "target": "n/a (informational)", "met": None, "informational": True},
        {"row": "U1", "what": "standalone increments/s with the like type unique per user ÷ "
                              "plain, uniform (1,000 keys), a new user per request, same run, "
                              "informational",
         "measured": u1, "unique_on": u_on, "unique_off": u_off,
         "shown": u1_shown, "target": "n/a (informational)", "met": None, "informational": True},
        row("P6", "hot-key GET reads/s ÷ ceiling GET", ratio(hp_get, ceil_get), 0.95, ">="),
        row("P7", "p99 latency ms, c=%d, hot" % meta["connections"], p7, 20, "<="),
        row("P8", "errors + lost acknowledged increments, all highpress runs"
            + (" (standalone and split)" if split_ok else ""), p8, 0, "<=", p8_shown),
        row("P9", f"RSS MB after {p9.get('keys_target', 0):,} distinct keys touched", p9_mb, 128, "<=", p9_shown),
    ]
    if not hp_ok:
        for r in rows:
            r["shown"] = "n/a (highpress did not start)"
            r["met"] = None
    # Asked for and not measured: not met (counts for --strict).
    if split_asked and not split_ok:
        for r in rows:
            if r["row"] == "P4":
                r["met"] = False

    peer_rows = []
    for scn, label, unit in [
        ("ceiling_post_hot", "ceiling POST increment, hot", "req/s"),
        ("ceiling_get_hot", "ceiling GET counter, hot", "req/s"),
        ("naive_post_hot", "naive axum + INCRBY, hot", "req/s"),
        ("webdis_incrby_hot", "webdis INCRBY, hot", "req/s"),
        ("redis_benchmark_incr", "redis-benchmark INCR -c 50, no pipeline", "ops/s"),
        ("highpress_post_hot", "highpress POST increment, hot", "req/s"),
        ("split_post_hot", "highpress gateway + 1 counter POST increment, hot", "req/s"),
        ("highpress_post_uniform", "highpress POST increment, uniform 1,000", "req/s"),
        ("highpress_post_zipf", "highpress POST increment, zipf 100k", "req/s"),
        ("highpress_post_zipf_lboff", "highpress POST increment, zipf 100k, leaderboards off", "req/s"),
        ("highpress_post_uniform_evoff", "highpress POST increment, uniform 1,000, events off (E1)", "req/s"),
        ("highpress_post_uniform_evon", "highpress POST increment, uniform 1,000, events on (E1)", "req/s"),
        ("highpress_post_users_uoff", "highpress POST like, new users, uniform 1,000, plain (U1)", "req/s"),
        ("highpress_post_users_uon", "highpress POST like, new users, uniform 1,000, unique per user (U1)", "req/s"),
        ("highpress_get_hot", "highpress GET counter, hot", "req/s"),
    ]:
        if scn not in by:
            continue
        runs = by[scn]
        lost = [r.get("lost") for r in runs if r.get("lost") is not None]
        peer_rows.append({
            "scenario": scn, "system": label, "unit": unit,
            "median": med(scn, "rps"), "runs": [r.get("rps") for r in runs],
            "p99_ms": med(scn, "p99_ms"),
            "cpu_s_per_million": med(scn, "cpu_s_per_million"),
            "cmds_per_inc": med(scn, "cmds_per_inc"),
            "grpc_calls_per_request": med(scn, "grpc_calls_per_request"),
            "grpc_avg_batch": med(scn, "grpc_avg_batch"),
            "errors": sum(r.get("errors", 0) or 0 for r in runs),
            "lost": sum(lost) if lost else None,
        })

    lines = []
    lines.append(f"highpress benchmark, {meta['date']}, {meta['uname']}, {meta['cpu_model']}, "
                 f"{meta['nproc']} cores, commit {meta['git_commit']}")
    lines.append(f"load generator wrk ({meta['wrk_version']}), {meta['threads']} threads, "
                 f"c={meta['connections']}, {meta['duration_s']} s per run, medians of "
                 f"{meta['runs']} alternating rounds; "
                 + ("modes standalone and gateway + 1 counter (gRPC)" if split_asked
                    else "mode standalone (split not measured: --topology standalone)")
                 + f" on Redis {meta['redis_version']}; hot = 1 key, uniform = 1,000 keys in rotation, "
                 f"zipf = s 1.1 over 100,000 keys")
    if not hp_ok:
        lines.append(f"highpress: NOT MEASURED: {meta.get('highpress_error', 'did not start')}")
    if split_ok and meta.get("split_error"):
        lines.append(f"split: {meta['split_error']}; P4 rows from the runs before that")
    lines.append("")
    lines.append("| row | what | measured | target | met? |")
    lines.append("|---|---|---|---|---|")
    for r in rows:
        met = "n/a" if r["met"] is None else ("yes" if r["met"] else "NO")
        if r.get("informational"):
            met = "–"
        lines.append(f"| {r['row']} | {r['what']} | {r['shown']} | {r['target']} | {met} |")
    if lb_split and hp_ok:
        n, pi, sh = lb_split["commands"], lb_split["per_inc"], lb_split["share"]
        lines.append("")
        lines.append("P5b-lb Redis commands by kind (leaderboards on, zipf, "
                     f"{lb_split['runs']} runs, {lb_split['acked']:,} increments): "
                     + ", ".join(f"{k.upper() if k != 'other' else k} {n[k]:,} "
                                 f"({pi[k]:.3f}/inc, {(sh[k] or 0) * 100:.0f}%)"
                                 for k in ("incrby", "zincrby", "expire", "other")))
    lines.append("")
    lines.append("| system | median | unit | runs | p99 ms | CPU s per 1M (server(s) + redis) "
                 "| Redis cmds per inc | errors | lost |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for p in peer_rows:
        runs = ", ".join(fmt(x, 0) for x in p["runs"])
        lost = "n/a" if p["lost"] is None else str(p["lost"])
        lines.append(f"| {p['system']} | {fmt(p['median'], 0)} | {p['unit']} | {runs} "
                     f"| {fmt(p['p99_ms'])} | {fmt(p['cpu_s_per_million'])} "
                     f"| {fmt(p['cmds_per_inc'], 4) if p['cmds_per_inc'] is not None else 'n/a'} "
                     f"| {p['errors']} | {lost} |")
    print("\n".join(lines))

    doc = dict(meta)
    doc["targets"] = rows
    doc["p5b_lb_commands_by_kind"] = lb_split
    doc["p5b_commands_by_kind"] = lboff_split
    doc["peers"] = peer_rows
    doc["runs_raw"] = recs
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    unmet = [r["row"] for r in rows if r["met"] is False]
    if strict == "1" and (unmet or not hp_ok):
        sys.exit(1)

def meta(path, *kvs):
    """Writes or updates the metadata JSON with k=v (values as strings, JSON if they parse)."""
    doc = json.load(open(path, encoding="utf-8")) if os.path.exists(path) else {}
    for kv in kvs:
        k, _, v = kv.partition("=")
        try:
            val = json.loads(v)
        except ValueError:
            val = v
        if "." in k:
            outer, inner = k.split(".", 1)
            doc.setdefault(outer, {})[inner] = val
        else:
            doc[k] = val
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f)

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"free-port": free_port, "wait-http": wait_http, "get-value": get_value,
     "batch-sum": batch_sum, "metrics": metrics, "cmdstats": cmdstats, "cmdsplit": cmdsplit,
     "wrk-json": wrk_json, "redis-bench": redis_bench, "record": record,
     "summarize": summarize, "meta": meta}[cmd](*args)
PY
helper() { python3 "$WORK/helper.py" "$@"; }

# ----------------------------------------------------------------------------
# wrk Lua scripts. A header sets the scenario, the body is shared.
cat >"$WORK/body.lua" <<'LUA'
-- Set above: MODE ("post" | "incrby" | "get"), DIST ("hot" | "uniform" | "zipf" | "seq"),
-- PREFIX (key i is PREFIX .. i), NKEYS, ZIPF_S, SEQ_LIMIT (seq: distinct keys per
-- thread), DONE_DIR (seq: a thread writes done.<tid> there when it has sent SEQ_LIMIT).
local threads = {}
local nthreads = 0

function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
  table.insert(threads, thread)
end

local json_headers = { ["Content-Type"] = "application/json" }

local function make(i)
  local key = PREFIX .. i
  if MODE == "post" then
    return wrk.format("POST", "/api/v1/counter/increment", json_headers,
      '{"resource_id":"' .. key .. '","counter_type":"like","user_id":"bench","increment":1}')
  elseif MODE == "post_users" then
    -- A new user for every request, so a unique-per-user "like" counts every one of them;
    -- the run's start time keeps the users of later runs new too.
    return wrk.format("POST", "/api/v1/counter/increment", json_headers,
      '{"resource_id":"' .. key .. '","counter_type":"like","user_id":"u' .. run_id .. '_' ..
      tid .. '_' .. issued .. '","increment":1}')
  elseif MODE == "incrby" then
    return wrk.format("GET", "/INCRBY/" .. key .. "/1", {})
  else
    return wrk.format("GET", "/api/v1/counter/" .. key .. "/like", {})
  end
end

local fixed, reqs, pos, cdf, seq, stopped

function init(args)
  issued = 0
  run_id = os.time()
  math.randomseed(tid * 7919 + os.time())
  fixed = make(0)
  if DIST == "uniform" then
    reqs = {}
    for i = 1, NKEYS do reqs[i] = make(i - 1) end
    pos = ((tid - 1) * 397) % NKEYS
  elseif DIST == "zipf" then
    -- CDF of Zipf(s) over ranks 1..NKEYS; key i-1 has rank i.
    cdf = {}
    local total = 0
    for k = 1, NKEYS do
      total = total + 1 / (k ^ ZIPF_S)
      cdf[k] = total
    end
    for k = 1, NKEYS do cdf[k] = cdf[k] / total end
  elseif DIST == "seq" then
    seq = 0
    stopped = false
  end
end

function request()
  issued = issued + 1
  if DIST == "hot" then
    return fixed
  elseif DIST == "uniform" then
    pos = pos % NKEYS + 1
    if MODE == "post_users" then return make(pos - 1) end
    return reqs[pos]
  elseif DIST == "zipf" then
    local u = math.random()
    local lo, hi = 1, NKEYS
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      if cdf[mid] < u then lo = mid + 1 else hi = mid end
    end
    return make(lo - 1)
  else
    if seq >= SEQ_LIMIT then
      if not stopped then
        stopped = true
        local f = io.open(DONE_DIR .. "/done." .. tid, "w")
        if f then f:write(tostring(seq) .. "\n") f:close() end
        wrk.thread:stop()
      end
      return fixed
    end
    seq = seq + 1
    return make("t" .. tid .. "_" .. seq)
  end
end

function done(summary, latency, requests)
  local total_issued = 0
  for _, t in ipairs(threads) do total_issued = total_issued + (t:get("issued") or 0) end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"duration_us":%d,"requests":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"issued":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f}\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, total_issued, latency:percentile(50), latency:percentile(99),
    latency.mean))
end
LUA

# lua_script NAME MODE DIST PREFIX NKEYS [SEQ_LIMIT]
lua_script() {
    {
        printf 'MODE = "%s"\nDIST = "%s"\nPREFIX = "%s"\nNKEYS = %d\nZIPF_S = 1.1\n' "$2" "$3" "$4" "$5"
        printf 'SEQ_LIMIT = %d\nDONE_DIR = "%s"\n' "${6:-0}" "$WORK/p9"
        cat "$WORK/body.lua"
    } >"$WORK/$1.lua"
}
# Key prefixes per system, so that their counters never mix in the shared Redis.
lua_script ceiling_post_hot post hot bench_ceiling_ 1
lua_script ceiling_get_hot get hot bench_ceiling_ 1
lua_script naive_post_hot post hot bench_naive_ 1
lua_script webdis_incrby_hot incrby hot bench_webdis_ 1
lua_script highpress_post_hot post hot bench_hp_hot_ 1
lua_script split_post_hot post hot bench_split_hot_ 1
lua_script highpress_get_hot get hot bench_hp_hot_ 1
lua_script highpress_post_uniform post uniform bench_hp_uni_ 1000
lua_script highpress_post_zipf post zipf bench_hp_zipf_ 100000
# (Prefixes no longer than bench_hp_zipf_: batch reads of 1,000 keys stay under 64 KiB.)
lua_script highpress_post_zipf_lboff post zipf bench_hp_zoff_ 100000
lua_script highpress_post_uniform_evoff post uniform bench_hp_evoff_ 1000
lua_script highpress_post_uniform_evon post uniform bench_hp_evon_ 1000
lua_script highpress_post_users_uoff post_users uniform bench_hp_uoff_ 1000
lua_script highpress_post_users_uon post_users uniform bench_hp_uon_ 1000
lua_script highpress_p9 post seq bench_hp_p9_ 1 $(((P9_KEYS + THREADS - 1) / THREADS))

# ----------------------------------------------------------------------------
# Build.
if [ "$BUILD" = 1 ]; then
    log "building (cargo build --release -p highpress --bin highpress --examples)"
    if ! (cd "$ROOT" && cargo build --release -p highpress --bin highpress --examples) \
        >"$WORK/build.log" 2>&1; then
        tail -n 40 "$WORK/build.log" >&2
        log "cargo build failed; nothing measured"
        exit 1
    fi
fi
for bin in "$CEILING_BIN" "$NAIVE_BIN"; do
    [ -x "$bin" ] || { log "missing $bin (build the examples first)"; exit 1; }
done

# ----------------------------------------------------------------------------
# Processes.
wait_port() { # wait_port PORT PID SECONDS: until something accepts on PORT
    local port=$1 pid=$2 tries=$(($3 * 10)) _
    for _ in $(seq 1 "$tries"); do
        kill -0 "$pid" 2>/dev/null || return 1
        if python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$port" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}
cpu_ticks() { # utime + stime of a pid, in clock ticks (0 if gone)
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0
}
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

REDIS_PORT=$(helper free-port)
mkdir -p "$WORK/redis" "$WORK/p9"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$WORK/redis" --daemonize no --logfile "$WORK/redis.log" &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
wait_redis "$REDIS_PORT" || { log "redis-server did not start"; tail -n 20 "$WORK/redis.log" >&2; exit 1; }
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
log "redis-server on 127.0.0.1:$REDIS_PORT (pid $REDIS_PID)"

CEILING_PORT=$(helper free-port)
PORT=$CEILING_PORT "$CEILING_BIN" >"$WORK/ceiling.log" 2>&1 &
CEILING_PID=$!
PIDS+=("$CEILING_PID")
wait_port "$CEILING_PORT" "$CEILING_PID" 10 || { log "peer_ceiling did not start"; cat "$WORK/ceiling.log" >&2; exit 1; }

NAIVE_PORT=$(helper free-port)
PORT=$NAIVE_PORT REDIS_URL="redis://127.0.0.1:$REDIS_PORT" "$NAIVE_BIN" >"$WORK/naive.log" 2>&1 &
NAIVE_PID=$!
PIDS+=("$NAIVE_PID")
wait_port "$NAIVE_PORT" "$NAIVE_PID" 10 || { log "peer_naive did not start"; cat "$WORK/naive.log" >&2; exit 1; }

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
wait_port "$WEBDIS_PORT" "$WEBDIS_PID" 10 || { log "webdis did not start"; cat "$WORK/webdis.out" "$WORK/webdis.log" >&2 || true; exit 1; }

HP_OK=0
HP_PID=
HP_PORT=
HP_ERROR=
start_highpress() { # start_highpress [VAR=value ...]: sets HP_OK, HP_PID, HP_PORT, HP_ERROR
    HP_OK=0
    if [ ! -x "$HP_BIN" ]; then
        HP_ERROR="no binary at $HP_BIN"
        return 1
    fi
    HP_PORT=$(helper free-port)
    env HIGHPRESS_SERVER__HOST=127.0.0.1 HIGHPRESS_SERVER__PORT="$HP_PORT" \
        HIGHPRESS_STORE__KIND=redis HIGHPRESS_REDIS__ADDR="127.0.0.1:$REDIS_PORT" \
        HIGHPRESS_LOG__LEVEL=warn "$@" "$HP_BIN" standalone >>"$WORK/highpress.log" 2>&1 &
    HP_PID=$!
    PIDS+=("$HP_PID")
    if helper wait-http "http://127.0.0.1:$HP_PORT/health" 30; then
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
    local pid keep=()
    kill "$HP_PID" 2>/dev/null || true
    wait "$HP_PID" 2>/dev/null || true
    for pid in "${PIDS[@]}"; do
        [ "$pid" = "$HP_PID" ] || keep+=("$pid")
    done
    PIDS=("${keep[@]}")
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
CTR_METRICS_URL=-
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
    local pid keep=()
    for pid in $CTR_PID $GW_PID; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in $CTR_PID $GW_PID; do
        wait "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        [ "$pid" = "$CTR_PID" ] || [ "$pid" = "$GW_PID" ] || keep+=("$pid")
    done
    PIDS=("${keep[@]}")
    CTR_PID=
    GW_PID=
}
if [ "$TOPOLOGY" = split ]; then
    start_split || log "split NOT measured: $SPLIT_ERROR (the rest is still measured)"
fi

CLK_TCK=$(getconf CLK_TCK)
GIT_COMMIT=$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo none)
if [ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null || true)" ]; then
    GIT_COMMIT="$GIT_COMMIT+dirty"
fi
# With --no-build the binary may be an older commit's (another CARGO_TARGET_DIR, say): say so
# in the results rather than credit its numbers to this commit.
if [ "$BUILD" = 0 ] && [ -x "$HP_BIN" ] &&
    [ "$(stat -c %Y "$HP_BIN")" -lt "$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 0)" ]; then
    log "WARNING: $HP_BIN is older than commit $GIT_COMMIT; its numbers may be an older commit's"
    GIT_COMMIT="$GIT_COMMIT+binary-older-than-commit"
fi
WRK_VERSION=$(wrk --version 2>&1 | head -n 1 | awk '{ print $2 }' || true)
helper meta "$WORK/meta.json" \
    "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    "uname=$(uname -srm)" \
    "cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)" \
    "nproc=$(nproc)" \
    "git_commit=$GIT_COMMIT" \
    "wrk_version=$WRK_VERSION" \
    "redis_version=$(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p')" \
    "threads=$THREADS" "connections=$CONNS" "duration_s=$DURATION" "runs=$RUNS" \
    "quick=$([ "$QUICK" = 1 ] && echo true || echo false)" \
    "highpress_started=$([ "$HP_OK" = 1 ] && echo true || echo false)" \
    "highpress_error=$HP_ERROR" \
    "topology=$TOPOLOGY" "split_error=$SPLIT_ERROR" \
    "p9.keys_target=$P9_KEYS"

# ----------------------------------------------------------------------------
# One wrk run, recorded as one JSON line in RESULTS.
RESULTS=$WORK/results.jsonl
: >"$RESULTS"
wrk_once() { # wrk_once SCENARIO URL: output in $WORK/wrk.out
    local rc=0
    timeout $((DURATION + 60)) wrk -t "$THREADS" -c "$CONNS" -d "${DURATION}s" --latency \
        -s "$WORK/$1.lua" "$2" >"$WORK/wrk.out" 2>&1 || rc=$?
    [ "$rc" -eq 0 ] || log "$1: wrk exited with $rc"
}
run_wrk() { # run_wrk SCENARIO URL ROUND
    wrk_once "$1" "$2"
    helper record "$RESULTS" "$(helper wrk-json "$WORK/wrk.out")" \
        "scenario=$1" "round=$3" "clk_tck=$CLK_TCK"
}

# A storage-backed run: also the CPU of the server(s) and redis, the Redis
# commands, the engine's coalescer metrics (standalone, or the counter in the
# split) and the gateway's gRPC batching metrics (split), and the counters'
# change (read with count_of COUNT_KIND). SETTLE: seconds to wait after wrk
# before reading back (default 0.3; longer than leaderboard.flush_interval
# where the leaderboard writes of the run must be counted in it).
ENGINE_METRICS=(highpress_coalescer_flush_keys highpress_coalescer_flush_increments
    highpress_increments_acknowledged)
GATEWAY_METRICS=(highpress_gateway_batch_size_count highpress_gateway_batch_size_sum)
metrics_urls() { # metrics_urls COUNT_KIND: the engine's and the gateway's /metrics ('-': none)
    case "$1" in
        hp_*) echo "$HP_URL/metrics -" ;;
        split_*) echo "$CTR_METRICS_URL $GW_URL/metrics" ;;
        *) echo "- -" ;;
    esac
}
server_cpu() { # server_cpu "PID ...": their CPU ticks plus redis-server's
    local pid total
    total=$(cpu_ticks "$REDIS_PID")
    for pid in $1; do
        total=$((total + $(cpu_ticks "$pid")))
    done
    echo "$total"
}
measured_run() { # measured_run SCENARIO URL ROUND "SERVER_PID ..." COUNT_KIND [SETTLE]
    local scenario=$1 url=$2 round=$3 pids=$4 kind=$5 settle=${6:-0.3}
    local before after c0 c1 t0 t1 engine_url gateway_url split
    local fk0 fi0 ack0 fk1 fi1 ack1 gc0 gs0 gc1 gs1
    read -r engine_url gateway_url < <(metrics_urls "$kind")
    before=$(count_of "$kind" || true)
    read -r fk0 fi0 ack0 < <(helper metrics "$engine_url" "${ENGINE_METRICS[@]}")
    read -r gc0 gs0 < <(helper metrics "$gateway_url" "${GATEWAY_METRICS[@]}")
    rcli INFO commandstats >"$WORK/cs0.txt" 2>/dev/null || true
    t0=$(server_cpu "$pids")
    wrk_once "$scenario" "$url"
    # Let requests in flight when wrk stopped settle before reading back.
    sleep "$settle"
    t1=$(server_cpu "$pids")
    rcli INFO commandstats >"$WORK/cs1.txt" 2>/dev/null || true
    read -r fk1 fi1 ack1 < <(helper metrics "$engine_url" "${ENGINE_METRICS[@]}")
    read -r gc1 gs1 < <(helper metrics "$gateway_url" "${GATEWAY_METRICS[@]}")
    after=$(count_of "$kind" || true)
    c0=$(helper cmdstats "$WORK/cs0.txt")
    c1=$(helper cmdstats "$WORK/cs1.txt")
    read -r -a split < <(helper cmdsplit "$WORK/cs0.txt" "$WORK/cs1.txt")
    helper record "$RESULTS" "$(helper wrk-json "$WORK/wrk.out")" \
        "scenario=$scenario" "round=$round" "clk_tck=$CLK_TCK" \
        "before=$before" "after=$after" "cmds_before=$c0" "cmds_after=$c1" \
        "cpu_ticks=$((t1 - t0))" "fk_before=$fk0" "fi_before=$fi0" "fk_after=$fk1" "fi_after=$fi1" \
        "ack_before=$ack0" "ack_after=$ack1" \
        "gc_before=$gc0" "gs_before=$gs0" "gc_after=$gc1" "gs_after=$gs1" \
        "${split[@]}"
}

# Counter readers: count_of KIND prints the total of a scenario's counters, or fails.
count_of() {
    local v
    case "$1" in
        hp_hot) helper get-value "$HP_URL/api/v1/counter/bench_hp_hot_0/like" ;;
        hp_uni) helper batch-sum "$HP_URL" bench_hp_uni_ 1000 ;;
        hp_zipf) helper batch-sum "$HP_URL" bench_hp_zipf_ 100000 ;;
        hp_zipf_lboff) helper batch-sum "$HP_URL" bench_hp_zoff_ 100000 ;;
        hp_evoff) helper batch-sum "$HP_URL" bench_hp_evoff_ 1000 ;;
        hp_evon) helper batch-sum "$HP_URL" bench_hp_evon_ 1000 ;;
        hp_uoff) helper batch-sum "$HP_URL" bench_hp_uoff_ 1000 ;;
        hp_uon) helper batch-sum "$HP_URL" bench_hp_uon_ 1000 ;;
        split_hot) helper get-value "$GW_URL/api/v1/counter/bench_split_hot_0/like" ;;
        naive) v=$(rcli GET c:like:bench_naive_0) && echo "${v:-0}" ;;
        webdis) v=$(rcli GET bench_webdis_0) && echo "${v:-0}" ;;
        *) return 1 ;;
    esac
}

redis_benchmark_run() {
    local round=$1 t0 t1
    t0=$(cpu_ticks "$REDIS_PID")
    timeout 300 redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -t incr -c 50 -n "$REDIS_BENCH_N" --csv \
        >"$WORK/rb.out" 2>&1 || log "redis-benchmark exited with an error"
    t1=$(cpu_ticks "$REDIS_PID")
    helper record "$RESULTS" "$(helper redis-bench "$WORK/rb.out")" \
        "scenario=redis_benchmark_incr" "round=$round" "n=$REDIS_BENCH_N" \
        "cpu_ticks_redis=$((t1 - t0))"
}

CEILING_URL="http://127.0.0.1:$CEILING_PORT"
NAIVE_URL="http://127.0.0.1:$NAIVE_PORT"
WEBDIS_URL="http://127.0.0.1:$WEBDIS_PORT"

# Warm-up (not recorded): connections, caches, allocator.
log "warm-up"
for target in "ceiling_post_hot $CEILING_URL" "naive_post_hot $NAIVE_URL" "webdis_incrby_hot $WEBDIS_URL"; do
    read -r scn url <<<"$target"
    timeout 30 wrk -t "$THREADS" -c "$CONNS" -d 1s -s "$WORK/$scn.lua" "$url" >/dev/null 2>&1 || true
done
if [ "$HP_OK" = 1 ]; then
    timeout 30 wrk -t "$THREADS" -c "$CONNS" -d 2s -s "$WORK/highpress_post_hot.lua" "$HP_URL" >/dev/null 2>&1 || true
fi
if [ "$SPLIT_OK" = 1 ]; then
    timeout 30 wrk -t "$THREADS" -c "$CONNS" -d 2s -s "$WORK/split_post_hot.lua" "$GW_URL" >/dev/null 2>&1 || true
fi

for round in $(seq 1 "$RUNS"); do
    log "round $round/$RUNS"
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
        measured_run highpress_post_hot "$HP_URL" "$round" "$HP_PID" hp_hot
    fi
    if [ "$SPLIT_OK" = 1 ]; then
        # Right after the standalone hot run, for P4. A longer settle: in-flight
        # increments cross the gRPC hop before the counter's metrics are read.
        measured_run split_post_hot "$GW_URL" "$round" "$GW_PID $CTR_PID" split_hot 0.5
    fi
    if [ "$HP_OK" = 1 ]; then
        measured_run highpress_post_uniform "$HP_URL" "$round" "$HP_PID" hp_uni
    fi
    measured_run naive_post_hot "$NAIVE_URL" "$round" "$NAIVE_PID" naive
    measured_run webdis_incrby_hot "$WEBDIS_URL" "$round" "$WEBDIS_PID" webdis
    redis_benchmark_run "$round"
    if [ "$HP_OK" = 1 ]; then
        # Also P5b-lb: wait out one leaderboard flush interval (1 s by default)
        # so that the run's ZINCRBY/EXPIRE writes are all counted in it.
        measured_run highpress_post_zipf "$HP_URL" "$round" "$HP_PID" hp_zipf 1.3
    fi
    run_wrk ceiling_get_hot "$CEILING_URL" "$round"
    if [ "$HP_OK" = 1 ]; then
        run_wrk highpress_get_hot "$HP_URL" "$round"
    fi
done

# The split is measured only in the rounds: stop it before P5b and P9.
if [ "$TOPOLOGY" = split ]; then
    stop_split
    helper meta "$WORK/meta.json" "split_error=$SPLIT_ERROR"
fi

# ----------------------------------------------------------------------------
# P5b: the coalescer's own cost, counter writes only. highpress restarted with
# leaderboards off (HIGHPRESS_LEADERBOARD__ENABLED=false), zipf, RUNS runs;
# own key prefix. Afterwards the default configuration is restarted for P9.
P5B_ERROR=
if [ "$HP_OK" = 1 ]; then
    stop_highpress
    if start_highpress HIGHPRESS_LEADERBOARD__ENABLED=false; then
        HP_URL="http://127.0.0.1:$HP_PORT"
        log "P5b: highpress with leaderboards off on 127.0.0.1:$HP_PORT (pid $HP_PID)"
        timeout 30 wrk -t "$THREADS" -c "$CONNS" -d 2s -s "$WORK/highpress_post_hot.lua" "$HP_URL" >/dev/null 2>&1 || true
        for round in $(seq 1 "$RUNS"); do
            if ! kill -0 "$HP_PID" 2>/dev/null; then
                P5B_ERROR="highpress with leaderboards off exited during its runs"
                log "$P5B_ERROR"
                tail -n 30 "$WORK/highpress.log" >&2 || true
                break
            fi
            log "P5b: leaderboards off, run $round/$RUNS"
            measured_run highpress_post_zipf_lboff "$HP_URL" "$round" "$HP_PID" hp_zipf_lboff
        done
        stop_highpress
    else
        P5B_ERROR="highpress with HIGHPRESS_LEADERBOARD__ENABLED=false: $HP_ERROR"
        log "P5b NOT measured: $P5B_ERROR"
        HP_ERROR=
    fi
    # The rounds above measured highpress; P9 starts its own instance below.
    HP_OK=1
fi
helper meta "$WORK/meta.json" "p5b_error=$P5B_ERROR"

# ----------------------------------------------------------------------------
# E1: the cost of Kafka events. A tansu broker, then two standalones on the same
# Redis, events off and on, measured alternately (uniform, RUNS runs each).
EVENTS_ERROR=
TANSU_BIN=$(command -v tansu || echo "${HIGHPRESS_TOOLS_DIR:-$HOME/.cache/highpress-tools}/bin/tansu")
if [ "$HP_OK" = 1 ]; then
    stop_highpress
    if [ ! -x "$TANSU_BIN" ]; then
        EVENTS_ERROR="tansu not found (scripts/install-test-deps.sh installs it)"
    else
        TANSU_PORT=$(helper free-port)
        "$TANSU_BIN" broker --storage-engine memory://tansu/ \
            --listener-url "tcp://127.0.0.1:$TANSU_PORT" \
            --advertised-listener-url "tcp://127.0.0.1:$TANSU_PORT" \
            --kafka-cluster-id highpress-bench >"$WORK/tansu.log" 2>&1 &
        TANSU_PID=$!
        PIDS+=("$TANSU_PID")
        if ! wait_port "$TANSU_PORT" "$TANSU_PID" 20; then
            EVENTS_ERROR="tansu did not start"
            tail -n 20 "$WORK/tansu.log" >&2 || true
        elif ! "$TANSU_BIN" topic create counter_events --partitions 3 \
            --broker "tcp://127.0.0.1:$TANSU_PORT" >>"$WORK/tansu.log" 2>&1; then
            EVENTS_ERROR="tansu topic create counter_events failed"
            tail -n 20 "$WORK/tansu.log" >&2 || true
        fi
    fi
    EV_OFF_PID=
    EV_ON_PID=
    if [ -z "$EVENTS_ERROR" ] && start_highpress; then
        EV_OFF_PID=$HP_PID
        EV_OFF_URL="http://127.0.0.1:$HP_PORT"
        if start_highpress HIGHPRESS_KAFKA__ENABLED=true \
            HIGHPRESS_KAFKA__BROKERS="127.0.0.1:$TANSU_PORT" HIGHPRESS_KAFKA__TOPIC=counter_events; then
            EV_ON_PID=$HP_PID
            EV_ON_URL="http://127.0.0.1:$HP_PORT"
        else
            EVENTS_ERROR="highpress with events on: $HP_ERROR"
        fi
    elif [ -z "$EVENTS_ERROR" ]; then
        EVENTS_ERROR="highpress with events off: $HP_ERROR"
    fi
    if [ -z "$EVENTS_ERROR" ]; then
        log "E1: events off $EV_OFF_URL (pid $EV_OFF_PID), on $EV_ON_URL (pid $EV_ON_PID), tansu :$TANSU_PORT"
        for url in "$EV_OFF_URL" "$EV_ON_URL"; do
            timeout 30 wrk -t "$THREADS" -c "$CONNS" -d 2s -s "$WORK/highpress_post_uniform.lua" "$url" >/dev/null 2>&1 || true
        done
        for round in $(seq 1 "$RUNS"); do
            if ! { kill -0 "$EV_OFF_PID" && kill -0 "$EV_ON_PID"; } 2>/dev/null; then
                EVENTS_ERROR="a highpress of E1 exited during its runs"
                log "$EVENTS_ERROR"
                tail -n 30 "$WORK/highpress.log" >&2 || true
                break
            fi
            log "E1: events off/on, run $round/$RUNS"
            HP_URL=$EV_OFF_URL
            measured_run highpress_post_uniform_evoff "$HP_URL" "$round" "$EV_OFF_PID" hp_evoff
            HP_URL=$EV_ON_URL
            measured_run highpress_post_uniform_evon "$HP_URL" "$round" "$EV_ON_PID $TANSU_PID" hp_evon
        done
        sleep 2
        read -r ev_sent ev_dropped ev_ack < <(helper metrics "$EV_ON_URL/metrics" \
            highpress_events_sent highpress_events_dropped highpress_increments_acknowledged)
        helper meta "$WORK/meta.json" "e1.events_sent=$ev_sent" "e1.events_dropped=$ev_dropped" \
            "e1.acknowledged=$ev_ack"
    else
        log "E1 NOT measured: $EVENTS_ERROR"
    fi
    for pid in $EV_OFF_PID $EV_ON_PID; do
        HP_PID=$pid
        stop_highpress
    done
    if [ -n "${TANSU_PID:-}" ]; then
        kill "$TANSU_PID" 2>/dev/null || true
        wait "$TANSU_PID" 2>/dev/null || true
    fi
    HP_ERROR=
    HP_OK=1
fi
helper meta "$WORK/meta.json" "e1_error=$EVENTS_ERROR"

# ----------------------------------------------------------------------------
# U1: the cost of unique-per-user counting. Two standalones on the same Redis, the
# "like" type plain and unique per user, measured alternately (uniform, RUNS runs
# each); every request is a new user, so both count every request.
UNIQUE_ERROR=
if [ "$HP_OK" = 1 ]; then
    stop_highpress
    U_OFF_PID=
    U_ON_PID=
    if start_highpress; then
        U_OFF_PID=$HP_PID
        U_OFF_URL="http://127.0.0.1:$HP_PORT"
        if start_highpress HIGHPRESS_COUNTER_TYPES__LIKE__UNIQUE_PER_USER=true; then
            U_ON_PID=$HP_PID
            U_ON_URL="http://127.0.0.1:$HP_PORT"
        else
            UNIQUE_ERROR="highpress with unique_per_user: $HP_ERROR"
        fi
    else
        UNIQUE_ERROR="highpress without unique_per_user: $HP_ERROR"
    fi
    if [ -z "$UNIQUE_ERROR" ]; then
        log "U1: unique_per_user off $U_OFF_URL (pid $U_OFF_PID), on $U_ON_URL (pid $U_ON_PID)"
        for round in $(seq 1 "$RUNS"); do
            if ! { kill -0 "$U_OFF_PID" && kill -0 "$U_ON_PID"; } 2>/dev/null; then
                UNIQUE_ERROR="a highpress of U1 exited during its runs"
                log "$UNIQUE_ERROR"
                break
            fi
            log "U1: unique_per_user off/on, run $round/$RUNS"
            HP_URL=$U_OFF_URL
            measured_run highpress_post_users_uoff "$HP_URL" "$round" "$U_OFF_PID" hp_uoff
            HP_URL=$U_ON_URL
            measured_run highpress_post_users_uon "$HP_URL" "$round" "$U_ON_PID" hp_uon
        done
    else
        log "U1 NOT measured: $UNIQUE_ERROR"
    fi
    for pid in $U_OFF_PID $U_ON_PID; do
        HP_PID=$pid
        stop_highpress
    done
    HP_ERROR=
    HP_OK=1
fi
helper meta "$WORK/meta.json" "u1_error=$UNIQUE_ERROR"

# ----------------------------------------------------------------------------
# P9: resident memory of a fresh highpress after P9_KEYS distinct keys.
if [ "$HP_OK" = 1 ]; then
    stop_highpress
    if start_highpress; then
        HP_URL="http://127.0.0.1:$HP_PORT"
        rss0=$(rss_kb "$HP_PID")
        log "P9: touching $P9_KEYS distinct keys (bounded by $P9_TIMEOUT s)"
        rm -f "$WORK/p9"/done.*
        p9_start=$SECONDS
        wrk -t "$THREADS" -c "$CONNS" -d "${P9_TIMEOUT}s" \
            -s "$WORK/highpress_p9.lua" "$HP_URL" >"$WORK/p9.out" 2>&1 &
        WRK_PID=$!
        PIDS+=("$WRK_PID")
        while [ $((SECONDS - p9_start)) -lt "$P9_TIMEOUT" ] && kill -0 "$WRK_PID" 2>/dev/null; do
            n_done=$(find "$WORK/p9" -name 'done.*' | wc -l)
            [ "$n_done" -ge "$THREADS" ] && break
            sleep 0.5
        done
        p9_seconds=$((SECONDS - p9_start))
        kill -INT "$WRK_PID" 2>/dev/null || true
        wait "$WRK_PID" 2>/dev/null || true
        sleep 1
        rss1=$(rss_kb "$HP_PID")
        keys_done=$(cat "$WORK/p9"/done.* 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
        p9_json=$(helper wrk-json "$WORK/p9.out")
        helper meta "$WORK/meta.json" "p9.rss_start_kb=$rss0" "p9.rss_after_kb=$rss1" \
            "p9.keys_touched=$keys_done" "p9.seconds=$p9_seconds" "p9.wrk=$p9_json"
        if [ "$keys_done" -lt "$P9_KEYS" ]; then
            log "P9: only $keys_done of $P9_KEYS keys within $P9_TIMEOUT s"
        fi
    else
        HP_OK=0
    fi
fi
helper meta "$WORK/meta.json" \
    "highpress_started=$([ "$HP_OK" = 1 ] && echo true || echo false)" "highpress_error=$HP_ERROR"

echo
status=0
helper summarize "$RESULTS" "$WORK/meta.json" "$OUT" "$STRICT" || status=$?
echo
log "JSON written to $OUT"
if [ "$HP_OK" != 1 ]; then
    log "highpress was not measured: $HP_ERROR"
    exit 1
fi
if [ "$TOPOLOGY" = split ] && [ -n "$SPLIT_ERROR" ]; then
    log "the split topology was not (fully) measured: $SPLIT_ERROR"
    exit 1
fi
exit "$status"
