"""Medians, and the figures derived from one run's record: acknowledged requests and their
rate, errors, lost and phantom increments, CPU per million increments, Redis commands per
increment (and the WAITs among them), the coalescing limit, the split's gRPC batching, and the
requests the rate limit refused."""

import statistics


def median(values):
    """The median of the values that are not None (None when none is left)."""
    xs = [x for x in values if x is not None]
    return statistics.median(xs) if xs else None


def ratio(a, b):
    """a ÷ b, or None when either is missing or b is 0."""
    return a / b if a is not None and b else None


def _delta(r, before, after):
    if r.get(before) is None or r.get(after) is None:
        return None
    return r[after] - r[before]


def derive(r):
    """Adds the derived figures to one wrk run's record (in place; returned too). A record
    without "requests" (redis-benchmark's) is returned unchanged."""
    if "requests" not in r:
        return r
    dur = r.get("duration_us") or 0
    sock = sum(r.get(k, 0) for k in ("connect", "read", "write", "timeout"))
    r["socket_errors"] = sock
    r["errors"] = sock + r.get("status", 0)
    # Acknowledged = complete 2xx/3xx responses, minus socket errors (a lower bound).
    r["acked"] = max(0, r["requests"] - r.get("status", 0) - sock)
    r["rps"] = r["acked"] / (dur / 1e6) if dur else None
    r["p99_ms"] = r["p99_us"] / 1000.0 if r.get("p99_us") else None
    r["p50_ms"] = r["p50_us"] / 1000.0 if r.get("p50_us") else None
    delta = _delta(r, "before", "after")
    if delta is not None:
        r["delta"] = delta
        # Lost: acknowledged increments missing from the counter. Phantom: more than was
        # ever sent. Requests in flight when wrk stops may or may not be applied: they are
        # attempted, not acknowledged (issued - acked of them).
        r["lost"] = max(0, r["acked"] - delta)
        r["phantom"] = max(0, delta - r.get("issued", delta))
    if r.get("cpu_ticks") is not None and r.get("clk_tck") and r["acked"]:
        r["cpu_s_per_million"] = r["cpu_ticks"] / r["clk_tck"] / r["acked"] * 1e6
    cmds = _delta(r, "cmds_before", "cmds_after")
    if cmds is not None and r["acked"]:
        r["cmds"] = cmds
        r["cmds_per_inc"] = cmds / r["acked"]
    # Row R1: the WAITs among those commands (one per flush with redis.min_replicas_ack).
    if r.get("cmds_wait") is not None and r["acked"]:
        r["wait_per_inc"] = r["cmds_wait"] / r["acked"]
    keys, incs = _delta(r, "fk_before", "fk_after"), _delta(r, "fi_before", "fi_after")
    if keys is not None and incs is not None:
        r["coalescing_limit"] = keys / incs if incs > 0 else None
    # Split topology: the gateway's gRPC calls (histogram _count) and the increments they
    # carried (_sum), against the increments the counter acknowledged.
    engine_acked = _delta(r, "ack_before", "ack_after")
    if engine_acked is not None:
        r["engine_acked"] = engine_acked
        # Answered 429 by api.rate_limit during the run. highpress_rate_limited_total shows up
        # with its first refusal: absent from a scrape that worked (the acknowledged count is
        # there) means none yet.
        refused = [r.get(k) or 0 for k in ("rl_before", "rl_after")]
        r["rate_limited"] = refused[1] - refused[0]
    calls, items = _delta(r, "gc_before", "gc_after"), _delta(r, "gs_before", "gs_after")
    if calls is not None and items is not None:
        r["grpc_calls"], r["grpc_items"] = calls, items
        per = r.get("engine_acked") or r["acked"]
        r["grpc_calls_per_request"] = calls / per if per else None
        r["grpc_avg_batch"] = items / calls if calls else None
    return r


def by_scenario(records):
    """The records grouped by their "scenario", in the order they came."""
    groups = {}
    for r in records:
        groups.setdefault(r["scenario"], []).append(r)
    return groups
