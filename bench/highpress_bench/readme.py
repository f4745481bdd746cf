"""The README's benchmark tables, rendered from a bench.json: the targets table (row, what,
measured, target, met) and the peers table (req/s, p99, Redis commands and CPU per
increment), in the README's wording and number formats. `python3 -m highpress_bench readme
FILE` prints them; the README's tables are that output, pasted."""

import math

from .targets import TARGETS

# The README's wording of each row; {c} is the run's wrk connections, {keys} P9's keys.
ROW_WHAT = {
    "P1": "standalone increments/s ÷ ceiling, c={c}, hot key",
    "P1u": "the same, uniform over 1,000 keys",
    "P2": "standalone ÷ webdis `INCRBY`, hot",
    "P3": "standalone ÷ `redis-benchmark INCR -c 50`",
    "P4": "gateway + 1 counter ÷ standalone, hot",
    "P4-batching": "gRPC calls per REST request in the split (average micro-batch)",
    "P4-p99": "p99 of the split at c={c}",
    "P5a": "Redis commands per acknowledged increment, hot",
    "P5b": "commands per increment, Zipf 1.1 over 100k keys, ÷ coalescing limit "
           "(leaderboards off)",
    "P5b-lb": "the same with leaderboards on (informational)",
    "E1": "increments/s with Kafka events on ÷ off, uniform 1,000 (informational)",
    "U1": "increments/s with `like` unique per user ÷ plain, a new user per request, "
          "uniform 1,000 (informational)",
    "R1": "increments/s with `redis.min_replicas_ack: 1` ÷ 0 (a `WAIT` per flush), one "
          "replica, uniform 1,000 (informational)",
    "R2": "increments/s with Redis AOF `appendfsync always` ÷ `everysec`, uniform 1,000 "
          "(informational)",
    "S1": "increments/s with `api.auth` + `api.rate_limit` (never reached) + `server.tls` ÷ "
          "all off, uniform 1,000 (informational)",
    "P6": "hot-key GET reads/s ÷ ceiling GET",
    "P7": "p99 at c={c}, hot",
    "P8": "errors and lost acknowledged increments, all runs, {topologies}",
    "P9": "RSS after {keys} distinct keys",
    "H1": "increments/s, leaderboards on ÷ off, random over 2M ids, last segment",
    "H2": "Redis CPU per increment, leaderboards on ÷ off, same load",
    "H3": "Redis bytes per counter, leaderboards on, after that load",
    "P10": "CPU instructions per increment ÷ the ceiling's per request (callgrind, hot, c={p10c})",
}

# The README's peers table: scenario and the system as the README names it.
PEER_SYSTEM = [
    ("ceiling_post_hot", "ceiling: axum, parses the body, fixed answer"),
    ("ceiling_get_hot", "ceiling GET (extracts the path, fixed answer)"),
    ("naive_post_hot", "naive: axum + one `INCRBY` per request"),
    ("webdis_incrby_hot", "webdis `INCRBY`"),
    ("redis_benchmark_incr", "redis-benchmark `INCR -c 50`"),
    ("highpress_post_hot", "**highpress** standalone, hot"),
    ("split_post_hot", "**highpress** gateway + 1 counter, hot"),
    ("highpress_post_uniform", "**highpress** standalone, uniform 1,000"),
    ("highpress_post_zipf", "**highpress** standalone, Zipf 100k"),
    ("highpress_post_zipf_lboff", "**highpress** standalone, Zipf 100k, leaderboards off"),
    ("highpress_post_uniform_evon", "**highpress** standalone, uniform 1,000, events on"),
    ("highpress_post_users_uon", "**highpress** standalone, unique likes, uniform 1,000"),
    ("highpress_post_uniform_ack1",
     "**highpress** standalone, uniform 1,000, `WAIT` for 1 replica"),
    ("highpress_post_uniform_fsall", "**highpress** standalone, uniform 1,000, AOF fsync always"),
    ("highpress_post_uniform_auth",
     "**highpress** standalone, uniform 1,000, auth + rate limits"),
    ("highpress_post_uniform_tls",
     "**highpress** standalone, uniform 1,000, auth + rate limits + TLS"),
    ("highpress_get_hot", "**highpress** GET, hot"),
]

NA = "n/a"
DASH = "–"


def significant(v, digits=3):
    """v to `digits` significant figures, trailing zeros kept (2.10); one more figure when
    that would round a value that is not 1 to 1 (1.001, not 1.00). An int is printed as is."""
    if isinstance(v, int):
        return str(v)
    if v == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(v))))
    text = f"{v:.{decimals}f}"
    if float(text) == 1 and v != 1 and digits == 3:
        return significant(v, 4)
    return text


def thousands(v):
    return f"{v:,.0f}"


def ratio2(v):
    return f"{v:.2f}"


def ms(v):
    return f"{v:.1f} ms"


def _measured(row):
    """The README's rendering of one row's measured value."""
    rid, v = row["row"], row.get("measured")
    if v is None:
        return NA
    if rid in ("P1", "P1u", "P2", "P3", "P4", "P6"):
        return ratio2(v)
    if rid == "P4-batching":
        return f"{v:.4f} ({row['avg_batch']:.1f})"
    if rid in ("P4-p99", "P7"):
        return ms(v)
    if rid == "P5a":
        return significant(v)
    if rid == "P5b":
        return f"{v:.2f} ({row['cmds_per_inc']:.3f} ÷ {row['coalescing_limit']:.3f})"
    if rid == "P5b-lb":
        return f"{significant(row['cmds_per_inc'])} cmd/inc, {v:.2f} × limit"
    if rid == "E1":
        cmds = ""
        if row.get("events_on_cmds_per_inc") is not None:
            cmds = (f"{significant(row['events_on_cmds_per_inc'])} ÷ "
                    f"{_or_dash(row.get('events_off_cmds_per_inc'), significant)} Redis cmd/inc; ")
        return (f"{v:.2f} ({thousands(row['events_on'])} ÷ {thousands(row['events_off'])}; "
                f"{cmds}{thousands(row.get('events_sent') or 0)} events sent, "
                f"{thousands(row.get('events_dropped') or 0)} dropped)")
    if rid == "U1":
        return f"{v:.2f} ({thousands(row['unique_on'])} ÷ {thousands(row['unique_off'])})"
    if rid == "R1":
        return (f"{v:.2f} ({thousands(row['ack1'])} ÷ {thousands(row['ack0'])}; p99 "
                f"{_or_dash(row.get('ack1_p99_ms'), ms)} ÷ "
                f"{_or_dash(row.get('ack0_p99_ms'), ms)}; "
                f"{_or_dash(row.get('ack1_cmds_per_inc'), significant)} ÷ "
                f"{_or_dash(row.get('ack0_cmds_per_inc'), significant)} cmd/inc)")
    if rid == "R2":
        return (f"{v:.2f} ({thousands(row['always'])} ÷ {thousands(row['everysec'])}; p99 "
                f"{_or_dash(row.get('always_p99_ms'), ms)} ÷ "
                f"{_or_dash(row.get('everysec_p99_ms'), ms)})")
    if rid == "S1":
        limited = row.get("rate_limited")
        return (f"{v:.2f} ({thousands(row['tls'])} ÷ {thousands(row['off'])}; without TLS "
                f"{_or_dash(row.get('auth_ratio'), ratio2)} "
                f"({_or_dash(row.get('auth'), thousands)}); p99 "
                f"{_or_dash(row.get('tls_p99_ms'), ms)} / {_or_dash(row.get('auth_p99_ms'), ms)}"
                f" / {_or_dash(row.get('off_p99_ms'), ms)}; 429s: "
                f"{_or_dash(limited, thousands)})")
    if rid == "P8":
        if v == 0:
            return "0"
        return (f"{v} ({row.get('errors', 0)} errors, {row.get('lost', 0)} lost, "
                f"{row.get('phantom', 0)} over)")
    if rid == "P9":
        return f"{v:.1f} MB"
    if rid == "P10":
        return (f"{v:.2f} ({thousands(row['highpress_per_request'])} ÷ "
                f"{thousands(row['ceiling_per_request'])}; naive "
                f"{_or_dash(row.get('naive_per_request'), thousands)}, webdis "
                f"{_or_dash(row.get('webdis_per_request'), thousands)})")
    if rid == "H1":
        return f"{v:.2f} ({thousands(row['on'][-1])} ÷ {thousands(row['off'][-1])})"
    if rid == "H2":
        return f"{v:.2f} ({row['on_us']:.2f} ÷ {row['off_us']:.2f} µs)"
    if rid == "H3":
        off = row.get("off_bytes")
        return f"{v:.0f} B ({thousands(row['counters'])} counters; off {off:.0f} B)" if off \
            else f"{v:.0f} B ({thousands(row['counters'])} counters)"
    return str(v)


def _target(rid):
    if rid not in TARGETS:
        return DASH
    if rid == "P8":
        return TARGETS[rid].bound  # "0": nothing may be lost
    return TARGETS[rid].text()


def _met(row):
    if row.get("informational"):
        return DASH
    if row.get("met") is None:
        return NA
    return "yes" if row["met"] else "no"


def targets_table(bench):
    conns = bench.get("connections")
    p9_keys = bench.get("p9", {}).get("keys_target")
    p8 = next((r for r in bench["targets"] if r["row"] == "P8"), {})
    fill = {"c": conns, "keys": f"{p9_keys:,}" if p9_keys else "n/a",
            "p10c": bench.get("p10", {}).get("connections", "n/a"),
            "topologies": "both topologies" if p8.get("split") else "standalone"}
    lines = ["| row | what | measured | target | met |", "|---|---|---|---|---|"]
    for row in bench["targets"]:
        rid = row["row"]
        what = ROW_WHAT.get(rid, row.get("what", "")).format(**fill)
        lines.append(f"| {rid} | {what} | {_measured(row)} | {_target(rid)} | {_met(row)} |")
    return "\n".join(lines)


def _or_dash(v, render):
    return DASH if v is None else render(v)


def peers_table(bench):
    peers = {p["scenario"]: p for p in bench["peers"]}
    lines = ["| system | req/s (ops/s) | p99 | Redis cmds per increment "
             "| CPU s per 1M increments (servers + Redis) |", "|---|---|---|---|---|"]
    for scenario, system in PEER_SYSTEM:
        p = peers.get(scenario)
        if p is None:
            continue
        lines.append(f"| {system} | {_or_dash(p.get('median'), thousands)} "
                     f"| {_or_dash(p.get('p99_ms'), ms)} "
                     f"| {_or_dash(p.get('cmds_per_inc'), significant)} "
                     f"| {_or_dash(p.get('cpu_s_per_million'), lambda v: f'{v:.1f}')} |")
    return "\n".join(lines)


def render(bench):
    """Both tables, separated by a blank line."""
    return targets_table(bench) + "\n\n" + peers_table(bench)
