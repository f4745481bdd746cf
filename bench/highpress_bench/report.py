"""The benchmark's files and its report: the results file (one JSON record per run, appended
as the runs happen), the metadata file (k=v updates), the terminal report, and bench.json
(the metadata, the target rows, the peers and every raw run)."""

import json
import os

from .parse import command_kinds, number
from .targets import compute, fmt


def append_record(path, record):
    """Appends one run's record to the results file (JSON lines)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def read_records(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def update_meta(path, pairs):
    """Sets k=v pairs in the metadata file (created when absent). A value is JSON when it
    parses as JSON, else the text; a key "outer.inner" sets a field of the object "outer"."""
    doc = read_json(path) if os.path.exists(path) else {}
    for pair in pairs:
        key, _, text = pair.partition("=")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        if "." in key:
            outer, inner = key.split(".", 1)
            doc.setdefault(outer, {})[inner] = value
        else:
            doc[key] = value
    write_json(path, doc, indent=None)


def fields(pairs):
    """k=v pairs as a dict of numbers (see parse.number)."""
    out = {}
    for pair in pairs:
        key, _, text = pair.partition("=")
        out[key] = number(text)
    return out


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_json(path, doc, indent=2):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=indent)
        f.write("\n")
    os.replace(tmp, path)


def terminal_report(meta, result):
    """The text bench.sh prints: the run, the target rows and the peers' raw figures."""
    rows, peers = result["rows"], result["peers"]
    lines = [f"highpress benchmark, {meta.get('date')}, {meta.get('uname')}, "
             f"{meta.get('cpu_model')}, {meta.get('nproc')} cores, commit {meta.get('git_commit')}",
             f"load generator wrk ({meta.get('wrk_version')}), {meta.get('threads')} threads, "
             f"c={meta.get('connections')}, {meta.get('duration_s')} s per run, medians of "
             f"{meta.get('runs')} alternating rounds; "
             + ("modes standalone and gateway + 1 counter (gRPC)" if result["split_asked"]
                else "mode standalone (split not measured: --topology standalone)")
             + f" on Redis {meta.get('redis_version')}; hot = 1 key, uniform = 1,000 keys in "
             "rotation, zipf = s 1.1 over 100,000 keys"]
    if not result["highpress_ok"]:
        lines.append(f"highpress: NOT MEASURED: {meta.get('highpress_error') or 'did not start'}")
    if result["split_ok"] and meta.get("split_error"):
        lines.append(f"split: {meta['split_error']}; P4 rows from the runs before that")
    lines += ["", "| row | what | measured | target | met? |", "|---|---|---|---|---|"]
    for r in rows:
        met = "n/a" if r["met"] is None else ("yes" if r["met"] else "NO")
        if r.get("informational"):
            met = "–"
        lines.append(f"| {r['row']} | {r['what']} | {r['shown']} | {r['target']} | {met} |")
    lb = result["p5b_lb_commands_by_kind"]
    if lb and result["highpress_ok"]:
        n, per, share = lb["commands"], lb["per_inc"], lb["share"]
        lines += ["", "P5b-lb Redis commands by kind (leaderboards on, zipf, "
                  f"{lb['runs']} runs, {lb['acked']:,} increments): "
                  + ", ".join(f"{k.upper() if k != 'other' else k} {n[k]:,} "
                              f"({per[k]:.3f}/inc, {(share[k] or 0) * 100:.0f}%)"
                              for k in ("incrby", "ranking", "expire", "other"))]
    lines += ["", "| system | median | unit | runs | p99 ms | CPU s per 1M (server(s) + redis) "
              "| Redis cmds per inc | errors | lost |", "|---|---|---|---|---|---|---|---|---|"]
    for p in peers:
        runs = ", ".join(fmt(x, 0) for x in p["runs"])
        lost = "n/a" if p["lost"] is None else str(p["lost"])
        lines.append(f"| {p['system']} | {fmt(p['median'], 0)} | {p['unit']} | {runs} "
                     f"| {fmt(p['p99_ms'])} | {fmt(p['cpu_s_per_million'])} "
                     f"| {fmt(p['cmds_per_inc'], 4)} | {p['errors']} | {lost} |")
    return "\n".join(lines)


def bench_document(meta, result):
    """bench.json: the metadata, then the rows, the peers and the raw runs."""
    doc = dict(meta)
    doc["targets"] = result["rows"]
    doc["p5b_lb_commands_by_kind"] = result["p5b_lb_commands_by_kind"]
    doc["p5b_commands_by_kind"] = result["p5b_commands_by_kind"]
    doc["peers"] = result["peers"]
    doc["runs_raw"] = result["records"]
    return doc


def summarize(results_path, meta_path, out_path):
    """Computes every row, writes bench.json and returns (terminal text, unmet row ids,
    whether highpress was measured)."""
    meta = read_json(meta_path)
    result = compute(read_records(results_path), meta)
    write_json(out_path, bench_document(meta, result))
    unmet = [r["row"] for r in result["rows"] if r["met"] is False]
    return terminal_report(meta, result), unmet, result["highpress_ok"]


def run_record(wrk, scenario, round_no, clk_tck, before=None, after=None, extra=None):
    """One run's record for the results file: wrk's (or redis-benchmark's) figures, the
    scenario and round, and from a before and an after snapshot (probe.snapshot) the fields
    stats.derive reads: before/after (counters), cmds_before/cmds_after, cpu_ticks, the
    engine's fk_/fi_/ack_/rl_ and the gateway's gc_/gs_ before and after, and cmds_<kind>, the
    change of Redis calls by kind, and cmds_wait, the change of WAIT calls (row R1)."""
    rec = dict(wrk)
    rec.update({"scenario": scenario, "round": round_no, "clk_tck": clk_tck})
    if before is not None and after is not None:
        rec["before"], rec["after"] = before["count"], after["count"]
        c0, c1 = before["commandstats"], after["commandstats"]
        rec["cmds_before"] = sum(c0.values()) if c0 is not None else None
        rec["cmds_after"] = sum(c1.values()) if c1 is not None else None
        rec["cpu_ticks"] = after["cpu_ticks"] - before["cpu_ticks"]
        for short, name in (("fk", "highpress_coalescer_flush_keys"),
                            ("fi", "highpress_coalescer_flush_increments"),
                            ("ack", "highpress_increments_acknowledged"),
                            ("rl", "highpress_rate_limited")):
            rec[short + "_before"] = before["engine"].get(name)
            rec[short + "_after"] = after["engine"].get(name)
        for short, name in (("gc", "highpress_gateway_batch_size_count"),
                            ("gs", "highpress_gateway_batch_size_sum")):
            rec[short + "_before"] = before["gateway"].get(name)
            rec[short + "_after"] = after["gateway"].get(name)
        if c0 is not None and c1 is not None:
            k0, k1 = command_kinds(c0), command_kinds(c1)
            for kind in k0:
                rec["cmds_" + kind] = k1[kind] - k0[kind]
            rec["cmds_wait"] = c1.get("wait", 0) - c0.get("wait", 0)
    rec.update(extra or {})
    return rec
