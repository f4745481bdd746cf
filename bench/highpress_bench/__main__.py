"""The command line bench/bench.sh calls: `python3 -m highpress_bench SUBCOMMAND ...` with
bench on PYTHONPATH. Each subcommand is one step of the benchmark that computes,
reads or writes something; bash only starts and stops the processes between them."""

import argparse
import datetime
import glob
import json
import os
import platform
import subprocess
import sys

from . import parse, probe, readme, report, scenarios


def _run_text(argv, cwd=None):
    """A short tool's output (stdout + stderr), '' when it cannot run."""
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=20,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr) if done.returncode == 0 else ""


def cmd_free_port(a):
    print("\n".join(str(p) for p in probe.free_ports(a.n)))


def cmd_wait_port(a):
    return 0 if probe.wait_port(a.port, a.pid, a.seconds) else 1


def _access(a):
    """The token and CA file given with --token and --cacert (probe.Access)."""
    return probe.Access(a.token or None, a.cacert or None)


def cmd_wait_http(a):
    return 0 if probe.wait_http(a.url, a.seconds, _access(a)) else 1


def cmd_wait_redis_info(a):
    wanted = dict(p.split("=", 1) for p in a.fields)
    return 0 if probe.wait_info(a.port, a.section, wanted, a.seconds) else 1


def cmd_wrk_args(a):
    print("\n".join(scenarios.wrk_args(a.scenario, a.p9_keys, a.threads, a.done_dir,
                                       a.token or None)))


def cmd_cpu_ticks(a):
    print(probe.cpu_ticks(a.pid))


def cmd_snapshot(a):
    snap = probe.snapshot(a.phase, a.scenario, a.url, a.redis_port, [int(p) for p in a.pids.split()],
                          a.engine_metrics, a.gateway_metrics, _access(a))
    report.write_json(a.out, snap, indent=None)


def _read_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def cmd_record(a):
    text = _read_text(a.output)
    figures = parse.redis_benchmark_csv(text) if a.redis_benchmark else parse.wrk_benchjson(text)
    before = report.read_json(a.before) if a.before else None
    after = report.read_json(a.after) if a.after else None
    extra = report.fields(a.fields)
    if a.redis_benchmark and before is not None and after is not None:
        # redis-benchmark: only Redis's CPU, no counters to check.
        extra["cpu_ticks_redis"] = after["cpu_ticks"] - before["cpu_ticks"]
        before = after = None
    rec = report.run_record(figures, a.scenario, a.round, os.sysconf("SC_CLK_TCK"), before,
                            after, extra)
    report.append_record(a.results, rec)


def cmd_meta(a):
    report.update_meta(a.file, a.pairs)


def _git_commit(root, hp_bin, built):
    commit = _run_text(["git", "-C", root, "rev-parse", "--short=12", "HEAD"]).strip() or "none"
    if _run_text(["git", "-C", root, "status", "--porcelain"]).strip():
        commit += "+dirty"
    # Without a build the binary may be an older commit's (another CARGO_TARGET_DIR, say):
    # say so in the results rather than credit its numbers to this commit.
    if not built and os.path.exists(hp_bin):
        committed = _run_text(["git", "-C", root, "log", "-1", "--format=%ct"]).strip()
        if committed and os.stat(hp_bin).st_mtime < int(committed):
            print(f"bench: WARNING: {hp_bin} is older than commit {commit}; its numbers may be "
                  "an older commit's", file=sys.stderr)
            commit += "+binary-older-than-commit"
    return commit


def cmd_meta_env(a):
    """The machine, the tools and the commit, into the metadata file."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            cpu = parse.cpu_model(f.read())
    except OSError:
        cpu = platform.processor()
    uname = os.uname()
    doc = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "uname": f"{uname.sysname} {uname.release} {uname.machine}",
        "cpu_model": cpu,
        "nproc": len(os.sched_getaffinity(0)),
        "git_commit": _git_commit(a.root, a.hp_bin, not a.no_build),
        "wrk_version": parse.wrk_version(_wrk_version_text()),
        "redis_version": parse.redis_version(_run_text(["redis-server", "--version"])),
    }
    report.update_meta(a.file, [f"{k}={json.dumps(v)}" for k, v in doc.items()])


def _wrk_version_text():
    # `wrk --version` exits 1 after printing its version.
    try:
        done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=20,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout + done.stderr


def cmd_meta_metrics(a):
    """Metrics scraped from url into the metadata: key=metric pairs."""
    wanted = dict(p.split("=", 1) for p in a.pairs)
    sums = probe.scrape(a.url, tuple(wanted.values()), _access(a))
    report.update_meta(a.file, [f"{k}={json.dumps(sums[m])}" for k, m in wanted.items()])


def cmd_p9_start(a):
    report.update_meta(a.meta, [f"p9.rss_start_kb={probe.rss_kb(a.pid)}"])


def _done_files(done_dir):
    return sorted(glob.glob(os.path.join(done_dir, "done.*")))


def cmd_p9_done(a):
    return 0 if len(_done_files(a.done_dir)) >= a.threads else 1


def cmd_p9_finish(a):
    keys = 0
    for path in _done_files(a.done_dir):
        keys += int(parse.number(_read_text(path).strip()) or 0)
    wrk = parse.wrk_benchjson(_read_text(a.wrk))
    report.update_meta(a.meta, [f"p9.rss_after_kb={probe.rss_kb(a.pid)}",
                                f"p9.keys_touched={keys}", f"p9.seconds={a.seconds}",
                                f"p9.wrk={json.dumps(wrk)}"])
    if keys < a.keys:
        print(f"bench: P9: only {keys} of {a.keys} keys within the time bound", file=sys.stderr)


def cmd_hc_segment(a):
    """One 30 s segment of the high-cardinality rows: throughput and Redis CPU seconds."""
    meta = report.read_json(a.meta) if os.path.exists(a.meta) else {}
    runs = meta.setdefault("hc", {}).setdefault(a.leaderboards, {})
    wrk = parse.wrk_benchjson(_read_text(a.wrk)) or {}
    seconds = (wrk.get("duration_us") or 0) / 1e6
    requests = wrk.get("requests") or 0
    errors = sum(wrk.get(k) or 0 for k in ("connect", "read", "write", "status", "timeout"))
    runs.setdefault("segments", []).append({
        "requests": requests, "errors": errors, "seconds": seconds,
        "rps": requests / seconds if seconds else None,
        "redis_cpu_s": a.redis_ticks / os.sysconf("SC_CLK_TCK"),
    })
    report.write_json(a.meta, meta, indent=None)


def cmd_hc_memory(a):
    """Redis's memory at the start (empty) or the end of a high-cardinality run: used_memory,
    the keys, and each ranking's size."""
    meta = report.read_json(a.meta) if os.path.exists(a.meta) else {}
    runs = meta.setdefault("hc", {}).setdefault(a.leaderboards, {})
    info = parse.info_fields(probe.redis_command(a.redis_port, "INFO", "memory")
                             .decode("utf-8", "replace"))
    if a.phase == "start":
        runs["used_memory_empty"] = info.get("used_memory")
    else:
        boards = [k.decode() for k in probe.redis_command(a.redis_port, "KEYS", "lb:*")]
        runs["used_memory"] = info.get("used_memory")
        runs["keys"] = probe.redis_command(a.redis_port, "DBSIZE")
        runs["boards"] = {k: probe.redis_command(a.redis_port, "ZCARD", k) for k in boards}
    report.write_json(a.meta, meta, indent=None)


def cmd_p10_record(a):
    """One system's instruction count: what callgrind counted while wrk ran, and its requests."""
    wrk = parse.wrk_benchjson(_read_text(a.wrk)) or {}
    totals = [parse.callgrind_total(_read_text(path)) for path in a.callgrind]
    instructions = sum(t for t in totals if t is not None) if any(totals) else None
    errors = sum(wrk.get(k) or 0 for k in ("connect", "read", "write", "status", "timeout"))
    figures = {"requests": wrk.get("requests"), "errors": errors, "instructions": instructions}
    report.update_meta(a.meta, [f"p10.{a.system}={json.dumps(figures)}"])


def cmd_summarize(a):
    text, unmet, hp_ok = report.summarize(a.results, a.meta, a.out)
    print(text)
    if a.strict and (unmet or not hp_ok):
        return 1
    return 0


def cmd_readme(a):
    print(readme.render(report.read_json(a.bench)))


def parser():
    p = argparse.ArgumentParser(prog="highpress_bench",
                                description="The computing steps of bench/bench.sh.")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name, fn, help_text):
        s = sub.add_parser(name, help=help_text)
        s.set_defaults(fn=fn)
        return s

    def access(s):
        s.add_argument("--token", default="", help="bearer token for highpress (api.auth)")
        s.add_argument("--cacert", default="",
                       help="CA file to trust for https URLs (server.tls)")

    s = add("free-port", cmd_free_port, "print N free loopback ports, one a line")
    s.add_argument("n", type=int, nargs="?", default=1)
    s = add("wait-port", cmd_wait_port, "exit 0 once 127.0.0.1:PORT accepts (1 if PID exits)")
    s.add_argument("port", type=int)
    s.add_argument("pid", type=int)
    s.add_argument("seconds", type=float)
    s = add("wait-http", cmd_wait_http, "exit 0 once URL answers 200")
    s.add_argument("url")
    s.add_argument("seconds", type=float)
    access(s)
    s = add("wait-redis-info", cmd_wait_redis_info,
            "exit 0 once Redis on 127.0.0.1:PORT shows every FIELD=VALUE in INFO SECTION")
    s.add_argument("port", type=int)
    s.add_argument("section")
    s.add_argument("seconds", type=float)
    s.add_argument("fields", nargs="+", metavar="FIELD=VALUE")
    s = add("wrk-args", cmd_wrk_args, "lua/bench.lua's arguments for SCENARIO, one a line")
    s.add_argument("scenario", choices=sorted(scenarios.SCENARIOS))
    s.add_argument("--p9-keys", type=int, default=0)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--done-dir", default="-")
    s.add_argument("--token", default="", help="sent by lua/bench.lua as a bearer token")
    s = add("cpu-ticks", cmd_cpu_ticks, "print the CPU clock ticks (utime + stime) of PID")
    s.add_argument("pid", type=int)
    s = add("snapshot", cmd_snapshot, "write what a measured run reads before/after wrk")
    s.add_argument("phase", choices=("before", "after"))
    s.add_argument("out")
    s.add_argument("--scenario", choices=sorted(scenarios.SCENARIOS))
    s.add_argument("--url")
    s.add_argument("--redis-port", type=int)
    s.add_argument("--pids", default="")
    s.add_argument("--engine-metrics")
    s.add_argument("--gateway-metrics")
    access(s)
    s = add("record", cmd_record, "append one run's record to the results file")
    s.add_argument("results")
    s.add_argument("--scenario", required=True)
    s.add_argument("--round", type=int, required=True)
    s.add_argument("--output", required=True, help="wrk's (or redis-benchmark's) output")
    s.add_argument("--redis-benchmark", action="store_true")
    s.add_argument("--before")
    s.add_argument("--after")
    s.add_argument("--field", dest="fields", action="append", default=[], metavar="K=V",
                   help="an extra field of the record (repeatable)")
    s = add("meta", cmd_meta, "set k=v pairs in the metadata file")
    s.add_argument("file")
    s.add_argument("pairs", nargs="*")
    s = add("meta-env", cmd_meta_env, "record the machine, the tools and the commit")
    s.add_argument("file")
    s.add_argument("--root", required=True)
    s.add_argument("--hp-bin", required=True)
    s.add_argument("--no-build", action="store_true")
    s = add("meta-metrics", cmd_meta_metrics, "record metrics from URL as key=metric")
    s.add_argument("file")
    s.add_argument("url")
    s.add_argument("pairs", nargs="+")
    access(s)
    s = add("p9-start", cmd_p9_start, "record P9's starting RSS")
    s.add_argument("meta")
    s.add_argument("pid", type=int)
    s = add("p9-done", cmd_p9_done, "exit 0 once THREADS wrk threads wrote done.*")
    s.add_argument("done_dir")
    s.add_argument("threads", type=int)
    s = add("p9-finish", cmd_p9_finish, "record P9's final RSS and keys")
    s.add_argument("meta")
    s.add_argument("pid", type=int)
    s.add_argument("--done-dir", required=True)
    s.add_argument("--seconds", type=int, required=True)
    s.add_argument("--wrk", required=True)
    s.add_argument("--keys", type=int, required=True)
    s = add("hc-segment", cmd_hc_segment, "record one segment of the high-cardinality rows")
    s.add_argument("meta")
    s.add_argument("--leaderboards", choices=("on", "off"), required=True)
    s.add_argument("--wrk", required=True)
    s.add_argument("--redis-ticks", type=int, required=True, help="Redis's CPU clock ticks")
    s = add("hc-memory", cmd_hc_memory, "record Redis's memory for the high-cardinality rows")
    s.add_argument("meta")
    s.add_argument("phase", choices=("start", "end"))
    s.add_argument("--leaderboards", choices=("on", "off"), required=True)
    s.add_argument("--redis-port", type=int, required=True)
    s = add("p10-record", cmd_p10_record, "record one system's callgrind instruction count")
    s.add_argument("meta")
    s.add_argument("--system", required=True)
    s.add_argument("--wrk", required=True)
    s.add_argument("callgrind", nargs="+", help="callgrind's output files")
    s = add("summarize", cmd_summarize, "print the report and write bench.json")
    s.add_argument("results")
    s.add_argument("meta")
    s.add_argument("out")
    s.add_argument("--strict", action="store_true", help="exit 1 when a target is not met")
    s = add("readme", cmd_readme, "print the README's benchmark tables from a bench.json")
    s.add_argument("bench")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    return args.fn(args) or 0


if __name__ == "__main__":
    sys.exit(main())
