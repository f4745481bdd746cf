"""Pure parsers for what the benchmark's tools print: wrk (the BENCHJSON line that
lua/bench.lua writes), redis-benchmark --csv, Prometheus /metrics text, Redis INFO
commandstats, /proc/<pid>/stat and /proc/<pid>/status, and version strings. No I/O here."""

import json
import re

# The Redis commands whose calls are counted by kind (P5b-lb); the rest are "other".
CMD_KINDS = ("incrby", "ranking", "expire")
# The leaderboards' commands: ZINCRBY before top-K; since, the EVAL of one ranking's script and
# the sorted-set commands it runs (Redis counts a script's own calls in commandstats).
RANKING_CMDS = frozenset(("zincrby", "zadd", "zrem", "zcard", "zremrangebyrank", "zrevrange",
                          "eval"))

_METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_CMDSTAT_LINE = re.compile(r"^cmdstat_([^:]+):calls=(\d+)")


def wrk_benchjson(text):
    """The JSON object on wrk's `BENCHJSON {...}` line ({} when there is none)."""
    for line in text.splitlines():
        if line.startswith("BENCHJSON "):
            try:
                return json.loads(line[len("BENCHJSON "):])
            except ValueError:
                return {}
    return {}


def redis_benchmark_csv(text):
    """The INCR line of `redis-benchmark --csv`: {"rps", "p99_ms"} ({} when absent).

    Columns: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",
    "p95_latency_ms","p99_latency_ms","max_latency_ms"."""
    for line in text.splitlines():
        cells = [c.strip().strip('"') for c in line.strip().split(",")]
        if cells and cells[0] == "INCR" and len(cells) >= 2:
            try:
                rps = float(cells[1])
                p99 = float(cells[6]) if len(cells) >= 7 else None
            except ValueError:
                continue
            return {"rps": rps, "p99_ms": p99}
    return {}


def metric_sums(text, names):
    """For each name, the sum over label sets of `name` or `name_total` in Prometheus text,
    or None when the metric does not appear."""
    sums = {name: None for name in names}
    for line in text.splitlines():
        m = _METRIC_LINE.match(line)
        if not m:
            continue
        for name in names:
            if m.group(1) in (name, name + "_total"):
                try:
                    value = float(m.group(3))
                except ValueError:
                    continue
                sums[name] = (sums[name] or 0.0) + value
    return sums


def commandstats(text):
    """calls= per command from INFO commandstats, without the INFO command itself."""
    calls = {}
    for line in text.splitlines():
        m = _CMDSTAT_LINE.match(line.strip())
        if m and m.group(1) != "info":
            calls[m.group(1)] = calls.get(m.group(1), 0) + int(m.group(2))
    return calls


def command_kinds(calls):
    """Calls grouped as incrby, ranking (RANKING_CMDS), expire and other."""
    kinds = dict.fromkeys(CMD_KINDS + ("other",), 0)
    for cmd, n in calls.items():
        kind = "ranking" if cmd in RANKING_CMDS else cmd
        kinds[kind if kind in CMD_KINDS else "other"] += n
    return kinds


def info_fields(text):
    """The `field:value` lines of a Redis INFO answer, as a dict of numbers (or text)."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and not key.startswith("#"):
            n = number(value)
            out[key] = value if n is None else n
    return out


def info_has(fields, wanted):
    """Whether INFO fields (info_fields) show every wanted `field: value` (values compared as
    text, so "1" matches 1)."""
    return all(k in fields and str(fields[k]) == str(v) for k, v in wanted.items())


def callgrind_total(text):
    """The instructions a callgrind output file counted (its `totals:` line, else `summary:`),
    or None."""
    found = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("totals", "summary") and value.split():
            found[key] = int(value.split()[0])
    return found.get("totals", found.get("summary"))


def proc_stat_ticks(text):
    """utime + stime, in clock ticks, from the text of /proc/<pid>/stat."""
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def proc_status_rss_kb(text):
    """VmRSS in kB from the text of /proc/<pid>/status (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def redis_version(text):
    """'7.0.15' from `redis-server --version` ('' when it does not say)."""
    m = re.search(r"v=([0-9.]+)", text)
    return m.group(1) if m else ""


def wrk_version(text):
    """'4.1.0' from `wrk --version` ('' when it does not say)."""
    words = text.splitlines()[0].split() if text.strip() else []
    return words[1] if len(words) >= 2 else ""


def cpu_model(cpuinfo):
    """The first 'model name' of /proc/cpuinfo ('' when absent)."""
    for line in cpuinfo.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return ""


def number(text):
    """A k=v field's value: None for '', 'none' or 'null', an int or float when it parses as
    one, else the text itself."""
    if text in ("", "none", "null", None):
        return None
    try:
        f = float(text)
    except ValueError:
        return text
    return int(f) if f.is_integer() and "." not in str(text) else f
