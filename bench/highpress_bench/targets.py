"""The target rows (P1 ... P10, H1 ... H3, and the informational P4-batching, P4-p99, P5b-lb,
E1, U1, R1, R2, S1) and the peers' rows, computed from every run's record and the run's metadata.
Each row keeps its measured value, the figures behind it, a terminal rendering ("shown") and
whether it met its target ("met": True, False, or None when not measured or informational)."""

from collections import namedtuple

from .parse import number
from .stats import by_scenario, derive, median, ratio


class Target(namedtuple("Target", "op bound unit")):
    """A row's target: op is ">=" or "<=", bound is written as the target is quoted."""

    @property
    def value(self):
        return float(self.bound)

    def met(self, measured):
        if measured is None:
            return None
        return measured >= self.value if self.op == ">=" else measured <= self.value

    def text(self):
        sign = "≥" if self.op == ">=" else "≤"
        return f"{sign} {self.bound}{' ' + self.unit if self.unit else ''}"


TARGETS = {
    "P1": Target(">=", "0.95", ""),
    "P1u": Target(">=", "0.85", ""),
    "P2": Target(">=", "1.6", ""),
    "P3": Target(">=", "1.0", ""),
    "P4": Target(">=", "0.6", ""),
    "P5a": Target("<=", "0.02", ""),
    "P5b": Target("<=", "1.1", ""),
    "P6": Target(">=", "0.95", ""),
    "P7": Target("<=", "20", "ms"),
    "P8": Target("<=", "0", ""),
    "P9": Target("<=", "128", "MB"),
    "H1": Target(">=", "0.9", ""),
    "H2": Target("<=", "1.3", ""),
    "H3": Target("<=", "80", "B"),
    "P10": Target("<=", "1.15", ""),
}
INFORMATIONAL = ("P4-batching", "P4-p99", "P5b-lb", "E1", "U1", "R1", "R2", "S1")

# The peers' rows: scenario, the system as bench.json names it, unit. (scripts/scale_model.py
# reads the "system" names.)
PEERS = [
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
    ("highpress_post_uniform_evoff", "highpress POST increment, uniform 1,000, events off (E1)",
     "req/s"),
    ("highpress_post_uniform_evon", "highpress POST increment, uniform 1,000, events on (E1)",
     "req/s"),
    ("highpress_post_users_uoff", "highpress POST like, new users, uniform 1,000, plain (U1)",
     "req/s"),
    ("highpress_post_users_uon",
     "highpress POST like, new users, uniform 1,000, unique per user (U1)", "req/s"),
    ("highpress_post_uniform_ack0",
     "highpress POST increment, uniform 1,000, one replica, min_replicas_ack 0 (R1)", "req/s"),
    ("highpress_post_uniform_ack1",
     "highpress POST increment, uniform 1,000, one replica, min_replicas_ack 1 (R1)", "req/s"),
    ("highpress_post_uniform_fsec",
     "highpress POST increment, uniform 1,000, Redis AOF appendfsync everysec (R2)", "req/s"),
    ("highpress_post_uniform_fsall",
     "highpress POST increment, uniform 1,000, Redis AOF appendfsync always (R2)", "req/s"),
    ("highpress_post_uniform_secoff",
     "highpress POST increment, uniform 1,000, auth, rate limits and TLS off (S1)", "req/s"),
    ("highpress_post_uniform_auth",
     "highpress POST increment, uniform 1,000, api.auth + api.rate_limit (S1)", "req/s"),
    ("highpress_post_uniform_tls",
     "highpress POST increment, uniform 1,000, api.auth + api.rate_limit + server.tls (S1)",
     "req/s"),
    ("highpress_get_hot", "highpress GET counter, hot", "req/s"),
]
# The runs P8 checks: every highpress run that writes.
P8_SCENARIOS = ("highpress_post_hot", "highpress_post_uniform", "highpress_post_zipf",
                "highpress_post_zipf_lboff", "split_post_hot", "highpress_post_uniform_evoff",
                "highpress_post_uniform_evon", "highpress_post_users_uoff",
                "highpress_post_users_uon", "highpress_post_uniform_ack0",
                "highpress_post_uniform_ack1", "highpress_post_uniform_fsec",
                "highpress_post_uniform_fsall", "highpress_post_uniform_secoff",
                "highpress_post_uniform_auth", "highpress_post_uniform_tls")
CMD_KIND_NAMES = ("incrby", "ranking", "expire", "other")


def fmt(v, nd=2):
    """A figure for the terminal: n/a, thousands with separators, else nd decimals."""
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    if isinstance(v, int) and abs(v) < 1000:
        return str(v)
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{nd}f}"


def commands_by_kind(runs):
    """Redis commands by kind over a scenario's runs: totals, per acknowledged increment and
    shares (None when the runs did not count them)."""
    runs = [r for r in runs if r.get("cmds_incrby") is not None]
    acked = sum(r.get("acked", 0) for r in runs)
    if not runs or not acked:
        return None
    totals = {k: sum(r.get("cmds_" + k) or 0 for r in runs) for k in CMD_KIND_NAMES}
    all_cmds = sum(totals.values())
    return {"runs": len(runs), "acked": acked, "commands": totals,
            "per_inc": {k: totals[k] / acked for k in CMD_KIND_NAMES},
            "share": {k: (totals[k] / all_cmds if all_cmds else None) for k in CMD_KIND_NAMES}}


def _ms(v):
    return "n/a" if v is None else f"{v:.1f} ms"


def _cpi(v):
    return "n/a" if v is None else f"{v:.3f}"


def _errors(runs):
    return sum(r.get("errors", 0) or 0 for r in runs)


def replication(by, meta):
    """Rows R1 and R2 (informational), each from two scenarios measured alternately in the
    same run, uniform over 1,000 keys. R1: increments/s with redis.min_replicas_ack 1 (a WAIT
    per flush) ÷ 0, one replica attached to both; the p99s and Redis commands per increment
    (WAIT included) of each. R2: increments/s with the Redis AOF on, appendfsync always ÷
    everysec, and both p99s. A run's non-2xx answers count in P8 (P8_SCENARIOS); here they
    are shown next to the figure."""
    def med(scn, field):
        return median([r.get(field) for r in by.get(scn, [])])

    a0, a1 = "highpress_post_uniform_ack0", "highpress_post_uniform_ack1"
    ack0, ack1 = med(a0, "rps"), med(a1, "rps")
    r1 = ratio(ack1, ack0)
    r1_fig = {"ack1": ack1, "ack0": ack0, "ack1_p99_ms": med(a1, "p99_ms"),
              "ack0_p99_ms": med(a0, "p99_ms"), "ack1_cmds_per_inc": med(a1, "cmds_per_inc"),
              "ack0_cmds_per_inc": med(a0, "cmds_per_inc"),
              "ack1_wait_per_inc": med(a1, "wait_per_inc"),
              "errors": _errors(by.get(a0, []) + by.get(a1, []))}
    if r1 is None:
        r1_shown = "n/a (" + (meta.get("r1_error") or "not measured") + ")"
    else:
        r1_shown = (f"{r1:.2f} ({fmt(ack1, 0)} ÷ {fmt(ack0, 0)} inc/s; p99 "
                    f"{_ms(r1_fig['ack1_p99_ms'])} ÷ {_ms(r1_fig['ack0_p99_ms'])}; "
                    f"{_cpi(r1_fig['ack1_cmds_per_inc'])} ÷ {_cpi(r1_fig['ack0_cmds_per_inc'])} "
                    f"Redis cmd/inc, WAIT {_cpi(r1_fig['ack1_wait_per_inc'])}/inc)")
        if r1_fig["errors"]:
            r1_shown += f" {r1_fig['errors']} ERRORS"

    f0, f1 = "highpress_post_uniform_fsec", "highpress_post_uniform_fsall"
    everysec, always = med(f0, "rps"), med(f1, "rps")
    r2 = ratio(always, everysec)
    r2_fig = {"always": always, "everysec": everysec, "always_p99_ms": med(f1, "p99_ms"),
              "everysec_p99_ms": med(f0, "p99_ms"),
              "filesystem": (meta.get("r2") or {}).get("filesystem"),
              "errors": _errors(by.get(f0, []) + by.get(f1, []))}
    if r2 is None:
        r2_shown = "n/a (" + (meta.get("r2_error") or "not measured") + ")"
    else:
        r2_shown = (f"{r2:.2f} ({fmt(always, 0)} ÷ {fmt(everysec, 0)} inc/s; p99 "
                    f"{_ms(r2_fig['always_p99_ms'])} ÷ {_ms(r2_fig['everysec_p99_ms'])}"
                    + (f"; AOF on {r2_fig['filesystem']}" if r2_fig["filesystem"] else "") + ")")
        if r2_fig["errors"]:
            r2_shown += f" {r2_fig['errors']} ERRORS"
    return [
        _row("R1", "standalone increments/s with redis.min_replicas_ack 1 (a WAIT per flush) ÷ "
                   "0, one replica on the same machine, uniform (1,000 keys), same run, "
                   "informational", r1, r1_shown, **r1_fig),
        _row("R2", "standalone increments/s with Redis AOF appendfsync always ÷ everysec, "
                   "uniform (1,000 keys), same run, informational", r2, r2_shown, **r2_fig),
    ]


def security(by, meta):
    """Row S1 (informational), from three scenarios measured alternately in the same run,
    uniform over 1,000 keys: increments/s with api.auth (one token) + api.rate_limit (never
    reached) + server.tls (HTTPS) ÷ all three off; the same without TLS ÷ off; each side's p99;
    and the requests answered 429 on the rate-limited sides, which must be 0 for the ratio to
    be the cost of the checks rather than of refusals (the harness reads
    highpress_rate_limited_total; None when no run could scrape it)."""
    def med(scn, field):
        return median([r.get(field) for r in by.get(scn, [])])

    names = ("highpress_post_uniform_secoff", "highpress_post_uniform_auth",
             "highpress_post_uniform_tls")
    off, auth, tls = (med(n, "rps") for n in names)
    refused = [r["rate_limited"] for n in names[1:] for r in by.get(n, [])
               if r.get("rate_limited") is not None]
    fig = {"off": off, "auth": auth, "tls": tls, "auth_ratio": ratio(auth, off),
           "off_p99_ms": med(names[0], "p99_ms"), "auth_p99_ms": med(names[1], "p99_ms"),
           "tls_p99_ms": med(names[2], "p99_ms"),
           "rate_limited": sum(refused) if refused else None,
           "errors": _errors([r for n in names for r in by.get(n, [])])}
    s1 = ratio(tls, off)
    if s1 is None:
        shown = "n/a (" + (meta.get("s1_error") or "not measured") + ")"
    else:
        limited = fig["rate_limited"]
        without_tls = "n/a" if fig["auth_ratio"] is None else f"{fig['auth_ratio']:.2f}"
        shown = (f"{s1:.2f} ({fmt(tls, 0)} ÷ {fmt(off, 0)} inc/s; without TLS "
                 f"{without_tls} ({fmt(auth, 0)}); p99 "
                 f"{_ms(fig['tls_p99_ms'])} / {_ms(fig['auth_p99_ms'])} / "
                 f"{_ms(fig['off_p99_ms'])}; "
                 + ("429s not read" if limited is None else f"{limited:,.0f} answered 429")
                 + ")")
        if fig["errors"]:
            shown += f" {fig['errors']} ERRORS"
    return _row("S1", "standalone increments/s with api.auth + api.rate_limit (never reached) "
                      "+ server.tls ÷ all off, uniform (1,000 keys), same run, informational",
                s1, shown, **fig)


def _row(rid, what, measured, shown=None, **extra):
    row = {"row": rid, "what": what, "measured": measured,
           "shown": shown if shown is not None else fmt(measured)}
    if rid in TARGETS:
        row["target"] = TARGETS[rid].text()
        row["met"] = TARGETS[rid].met(measured)
    else:
        row["target"] = "n/a (informational)"
        row["met"] = None
        row["informational"] = True
    row.update(extra)
    return row


def high_cardinality(hc):
    """Rows H1-H3 from the metadata's "hc": per leaderboard setting ("on", "off"), the 30 s
    segments of random increments over 2 million ids, each with its throughput and Redis CPU
    seconds, and Redis's memory empty and at the end."""
    def side(lb):
        run = hc.get(lb) or {}
        segs = run.get("segments") or []
        requests = sum(sg.get("requests") or 0 for sg in segs)
        cpu = sum(sg.get("redis_cpu_s") or 0 for sg in segs)
        boards = run.get("boards") or {}
        counters = (run.get("keys") or 0) - len(boards)
        used, empty = run.get("used_memory"), run.get("used_memory_empty") or 0
        return {
            "rps": [sg.get("rps") for sg in segs],
            "last_rps": segs[-1].get("rps") if segs else None,
            "errors": sum(sg.get("errors") or 0 for sg in segs),
            "cpu_us_per_inc": cpu * 1e6 / requests if requests else None,
            "counters": counters,
            "bytes_per_counter": (used - empty) / counters if used and counters > 0 else None,
            "boards": boards,
        }
    on, off = side("on"), side("off")
    h1 = ratio(on["last_rps"], off["last_rps"])
    h2 = ratio(on["cpu_us_per_inc"], off["cpu_us_per_inc"])
    segs = len(on["rps"])

    def per_segment(x):
        return " / ".join(fmt(v, 0) for v in x["rps"])
    why = "n/a (" + (hc.get("error") or "not measured") + ")"
    h1_shown = why if h1 is None else (
        f"{h1:.2f} (segment {segs}: {fmt(on['last_rps'], 0)} ÷ {fmt(off['last_rps'], 0)} inc/s; "
        f"on {per_segment(on)}, off {per_segment(off)}; errors {on['errors'] + off['errors']})")
    h2_shown = why if h2 is None else (
        f"{h2:.2f} ({on['cpu_us_per_inc']:.2f} ÷ {off['cpu_us_per_inc']:.2f} µs per increment)")
    h3 = on["bytes_per_counter"]
    sizes = sorted(set(on["boards"].values()))
    h3_shown = why if h3 is None else (
        f"{h3:.0f} B ({on['counters']:,} counters; off: "
        f"{fmt(off['bytes_per_counter'], 0)} B; rankings of {', '.join(map(str, sizes))} "
        f"members)")
    return [
        _row("H1", "increments/s with leaderboards on ÷ off, random over 2M ids, last "
                   "segment", h1, h1_shown, on=on["rps"], off=off["rps"]),
        _row("H2", "Redis CPU per increment, leaderboards on ÷ off, same load", h2, h2_shown,
             on_us=on["cpu_us_per_inc"], off_us=off["cpu_us_per_inc"]),
        _row("H3", "Redis bytes per counter, leaderboards on, after that load", h3, h3_shown,
             counters=on["counters"], off_bytes=off["bytes_per_counter"]),
    ]


def instructions(p10):
    """Row P10 from the metadata's "p10": per system, the instructions callgrind counted and
    the requests answered meanwhile. A system whose run had errors has no figure."""
    def per_request(system):
        run = p10.get(system) or {}
        if run.get("errors") or not run.get("requests") or not run.get("instructions"):
            return None
        return run["instructions"] / run["requests"]
    each = {s: per_request(s) for s in ("highpress", "ceiling", "naive", "webdis")}
    p10_ratio = ratio(each["highpress"], each["ceiling"])
    shown = "n/a (" + (p10.get("error") or "not measured") + ")" if p10_ratio is None else (
        f"{p10_ratio:.2f} ({fmt(each['highpress'], 0)} ÷ {fmt(each['ceiling'], 0)} instructions "
        f"per request; naive {fmt(each['naive'], 0)}, webdis {fmt(each['webdis'], 0)})")
    return _row("P10", f"CPU instructions per acknowledged increment ÷ the ceiling's per "
                       f"request (callgrind, hot, c={p10.get('connections')})", p10_ratio, shown,
                **{f"{s}_per_request": v for s, v in each.items()})


def compute(records, meta):
    """Every row from the runs' records (derived in place) and the metadata: a dict with
    "rows", "peers", "p5b_lb_commands_by_kind", "p5b_commands_by_kind", "records" and the
    flags "highpress_ok", "split_asked", "split_ok"."""
    recs = [derive(r) for r in records]
    by = by_scenario(recs)
    conns = meta.get("connections")

    def med(scn, field):
        return median([r.get(field) for r in by.get(scn, [])])

    hp_ok = bool(meta.get("highpress_started", False))
    ceil_post, ceil_get = med("ceiling_post_hot", "rps"), med("ceiling_get_hot", "rps")
    hp_hot, hp_uni = med("highpress_post_hot", "rps"), med("highpress_post_uniform", "rps")
    hp_get = med("highpress_get_hot", "rps")
    webdis, rbench = med("webdis_incrby_hot", "rps"), med("redis_benchmark_incr", "rps")
    p5a = med("highpress_post_hot", "cmds_per_inc")

    # P5b: leaderboards off (a highpress restarted for it); P5b-lb: the rounds' zipf runs,
    # leaderboards on (default config), informational.
    zipf_cpi = med("highpress_post_zipf_lboff", "cmds_per_inc")
    zipf_limit = med("highpress_post_zipf_lboff", "coalescing_limit")
    p5b = ratio(zipf_cpi, zipf_limit)
    lb_cpi = med("highpress_post_zipf", "cmds_per_inc")
    lb_limit = med("highpress_post_zipf", "coalescing_limit")
    p5b_lb = ratio(lb_cpi, lb_limit)
    lb_split = commands_by_kind(by.get("highpress_post_zipf", []))
    lboff_split = commands_by_kind(by.get("highpress_post_zipf_lboff", []))
    if lb_split:
        lb_split["scenario"] = "highpress_post_zipf"
    if lboff_split:
        lboff_split["scenario"] = "highpress_post_zipf_lboff"

    # E1: events on ÷ off, uniform, same run (two standalones measured alternately).
    ev_off = med("highpress_post_uniform_evoff", "rps")
    ev_on = med("highpress_post_uniform_evon", "rps")
    e1 = ratio(ev_on, ev_off)
    e1_meta = meta.get("e1", {})
    ev_sent, ev_dropped = number(e1_meta.get("events_sent")), number(e1_meta.get("events_dropped"))
    # Redis commands per increment on each side: with events on, the outbox appends, the relay's
    # reads and trims and its lease renewals count too.
    ev_on_cpi = med("highpress_post_uniform_evon", "cmds_per_inc")
    ev_off_cpi = med("highpress_post_uniform_evoff", "cmds_per_inc")
    if e1 is None:
        e1_shown = "n/a (" + (meta.get("e1_error") or "not measured") + ")"
    else:
        e1_shown = (f"{e1:.2f} ({fmt(ev_on, 0)} ÷ {fmt(ev_off, 0)} inc/s; "
                    f"{_cpi(ev_on_cpi)} ÷ {_cpi(ev_off_cpi)} Redis cmd/inc; "
                    f"{ev_sent or 0:,.0f} events sent, {ev_dropped or 0:,.0f} dropped)")
    # U1: unique_per_user on ÷ off, uniform, every request a new user, same run.
    u_off, u_on = med("highpress_post_users_uoff", "rps"), med("highpress_post_users_uon", "rps")
    u1 = ratio(u_on, u_off)
    u1_shown = ("n/a (" + (meta.get("u1_error") or "not measured") + ")" if u1 is None
                else f"{u1:.2f} ({fmt(u_on, 0)} ÷ {fmt(u_off, 0)} inc/s)")
    p7 = med("highpress_post_hot", "p99_ms")

    # P4: the split topology (gateway + 1 counter), hot, same rounds as the standalone.
    split_asked = meta.get("topology") == "split"
    split_runs = by.get("split_post_hot", [])
    split_ok = split_asked and bool(split_runs)
    split_hot = med("split_post_hot", "rps")
    p4 = ratio(split_hot, hp_hot)
    p4_calls = med("split_post_hot", "grpc_calls_per_request")
    p4_batch = med("split_post_hot", "grpc_avg_batch")
    p4_p99 = med("split_post_hot", "p99_ms")
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

    hp_runs = [r for s in P8_SCENARIOS for r in by.get(s, [])]
    p8_errors = sum(r.get("errors", 0) for r in hp_runs)
    p8_lost = sum(r["lost"] for r in hp_runs if r.get("lost") is not None)
    p8_phantom = sum(r["phantom"] for r in hp_runs if r.get("phantom") is not None)
    p8_unchecked = sum(1 for r in hp_runs if r.get("lost") is None)
    p8 = (p8_errors + p8_lost + p8_phantom) if hp_runs else None
    p8_shown = "n/a"
    if p8 is not None:
        p8_shown = f"{p8} ({p8_errors} errors, {p8_lost} lost, {p8_phantom} over"
        p8_shown += f", {p8_unchecked} runs unchecked)" if p8_unchecked else ")"

    p9 = meta.get("p9", {})
    p9_mb = p9.get("rss_after_kb") / 1024.0 if p9.get("rss_after_kb") else None
    p9_shown = "n/a" if p9_mb is None else (
        f"{p9_mb:.1f} MB ({p9.get('keys_touched', 0):,} keys, "
        f"start {p9.get('rss_start_kb', 0) / 1024:.1f} MB)")

    p5b_shown = "n/a" if p5b is None else (
        f"{p5b:.2f} ({zipf_cpi:.3f} cmd/inc ÷ limit {zipf_limit:.3f})")
    if p5b is None and meta.get("p5b_error"):
        p5b_shown = f"n/a ({meta['p5b_error']})"
    elif lboff_split and lboff_split["commands"]["ranking"]:
        # The switch did not take effect: this is not the counter-writes-only cost.
        p5b_shown += f" WARNING: {lboff_split['commands']['ranking']} ranking commands seen"
    p5b_lb_shown = "n/a" if p5b_lb is None else (
        f"{lb_cpi:.3f} cmd/inc, {p5b_lb:.2f} × limit {lb_limit:.3f}")

    rows = [
        _row("P1", f"standalone increments/s ÷ ceiling, c={conns}, hot", ratio(hp_hot, ceil_post)),
        _row("P1u", "the same, uniform (1,000 keys) ÷ ceiling hot", ratio(hp_uni, ceil_post)),
        _row("P2", "standalone increments/s ÷ webdis INCRBY, hot", ratio(hp_hot, webdis)),
        _row("P3", "standalone increments/s ÷ redis-benchmark INCR -c 50 ops/s",
             ratio(hp_hot, rbench)),
        _row("P4", f"gateway+counter increments/s ÷ standalone, c={conns}, hot (same run)",
             p4, p4_shown, split=split_hot, standalone=hp_hot),
        _row("P4-batching", "gRPC IncrementBatch calls per REST request, split, hot, "
                            "informational", p4_calls, p4_batch_shown, avg_batch=p4_batch,
             grpc_calls=calls_tot, grpc_items=items_tot, counter_acked=acked_tot),
        _row("P4-p99", f"p99 latency ms of the split, c={conns}, hot, informational",
             p4_p99, p4_p99_shown),
        _row("P5a", "Redis commands per acknowledged increment, hot", p5a,
             None if p5a is None else f"{p5a:.4f}"),
        _row("P5b", "Redis commands per increment, zipf, ÷ coalescing limit (leaderboards off)",
             p5b, p5b_shown, cmds_per_inc=zipf_cpi, coalescing_limit=zipf_limit),
        _row("P5b-lb", "the same with leaderboards on (default config), informational",
             p5b_lb, p5b_lb_shown, cmds_per_inc=lb_cpi, coalescing_limit=lb_limit),
        _row("E1", "standalone increments/s with Kafka events on ÷ off, uniform (1,000 keys), "
                   "same run, Apache Kafka on the same machine, informational", e1, e1_shown,
             events_on=ev_on, events_off=ev_off, events_sent=ev_sent, events_dropped=ev_dropped,
             events_on_cmds_per_inc=ev_on_cpi, events_off_cmds_per_inc=ev_off_cpi),
        _row("U1", "standalone increments/s with the like type unique per user ÷ plain, uniform "
                   "(1,000 keys), a new user per request, same run, informational", u1, u1_shown,
             unique_on=u_on, unique_off=u_off),
        *replication(by, meta),
        security(by, meta),
        _row("P6", "hot-key GET reads/s ÷ ceiling GET", ratio(hp_get, ceil_get)),
        _row("P7", f"p99 latency ms, c={conns}, hot", p7),
        _row("P8", "errors + lost acknowledged increments, all highpress runs"
             + (" (standalone and split)" if split_ok else ""), p8, p8_shown,
             errors=p8_errors, lost=p8_lost, phantom=p8_phantom, unchecked_runs=p8_unchecked,
             split=split_ok),
        _row("P9", f"RSS MB after {p9.get('keys_target', 0):,} distinct keys touched", p9_mb,
             p9_shown, keys_target=p9.get("keys_target")),
        *high_cardinality(meta.get("hc") or {}),
        instructions(meta.get("p10") or {}),
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

    peers = []
    for scn, system, unit in PEERS:
        if scn not in by:
            continue
        runs = by[scn]
        lost = [r["lost"] for r in runs if r.get("lost") is not None]
        cmds_per_inc = med(scn, "cmds_per_inc")
        if scn == "redis_benchmark_incr":
            cmds_per_inc = 1  # INCR: one command per operation, by construction.
        peers.append({
            "scenario": scn, "system": system, "unit": unit,
            "median": med(scn, "rps"), "runs": [r.get("rps") for r in runs],
            "p99_ms": med(scn, "p99_ms"),
            "cpu_s_per_million": med(scn, "cpu_s_per_million"),
            "cmds_per_inc": cmds_per_inc,
            "grpc_calls_per_request": med(scn, "grpc_calls_per_request"),
            "grpc_avg_batch": med(scn, "grpc_avg_batch"),
            "errors": sum(r.get("errors", 0) or 0 for r in runs),
            "lost": sum(lost) if lost else None,
        })
    return {"rows": rows, "peers": peers, "p5b_lb_commands_by_kind": lb_split,
            "p5b_commands_by_kind": lboff_split, "records": recs, "highpress_ok": hp_ok,
            "split_asked": split_asked, "split_ok": split_ok}
