"""Talking to the processes bench.sh started: free loopback ports, waiting for a port or an
HTTP 200, reading counters back over the REST API or from Redis (a minimal RESP client),
scraping /metrics, and reading a process's CPU ticks and RSS from /proc. A snapshot gathers
what one measured run reads before and after wrk. Every HTTP read can carry an Access: the
bearer token of a highpress with api.auth on, and the CA file that signed the certificate of
an https URL (server.tls)."""

import json
import os
import socket
import ssl
import sys
import time
import urllib.request
from collections import namedtuple

from . import parse
from .scenarios import SCENARIOS

ENGINE_METRICS = ("highpress_coalescer_flush_keys", "highpress_coalescer_flush_increments",
                  "highpress_increments_acknowledged", "highpress_rate_limited")
GATEWAY_METRICS = ("highpress_gateway_batch_size_count", "highpress_gateway_batch_size_sum")


class ProbeError(Exception):
    """A read that the run cannot do without."""


class Access(namedtuple("Access", "token cafile")):
    """How to reach a highpress over HTTP: token, sent as `Authorization: Bearer` (api.auth),
    and cafile, the CA that signed its certificate, trusted for https URLs (server.tls). Either
    may be None; a plain highpress needs neither."""

    def request(self, url, data=None, headers=None):
        """A urllib Request for url carrying the token, if any."""
        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        return urllib.request.Request(url, data=data, headers=headers)

    def context(self):
        """The TLS context for https URLs: the CA file's certificates (with the host checked
        against the certificate's names), or the system's roots without one."""
        return ssl.create_default_context(cafile=self.cafile)

    def open(self, url, timeout, data=None, headers=None):
        context = self.context() if url.startswith("https:") else None
        return urllib.request.urlopen(self.request(url, data, headers), timeout=timeout,
                                      context=context)


PLAIN = Access(None, None)


def free_ports(n=1):
    """n distinct free loopback ports (all held open until every one is chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_port(port, pid, seconds):
    """True once something accepts on 127.0.0.1:port; False if pid exits or time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return False
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def wait_http(url, seconds, access=PLAIN):
    """True once GET url answers 200 within seconds."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with access.open(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except Exception:  # noqa: BLE001 (not up yet, whatever the reason)
            pass
        time.sleep(0.2)
    return False


def http_text(url, timeout=10, access=PLAIN):
    with access.open(url, timeout=timeout) as r:
        return r.read().decode("utf-8", "replace")


def counter_value(base, key, access=PLAIN):
    """current_value of the counter key (type like) over the REST API."""
    url = f"{base}/api/v1/counter/{key}/like"
    try:
        return int(json.loads(http_text(url, access=access))["data"]["current_value"])
    except Exception as e:  # noqa: BLE001
        raise ProbeError(f"GET {url}: {e}") from e


def batch_sum(base, prefix, n, chunk=1000, access=PLAIN):
    """Sum of the counters prefix0 .. prefix{n-1} (type like) via POST /api/v1/counter/batch."""
    total = 0
    for start in range(0, n, chunk):
        queries = [{"resource_id": f"{prefix}{i}", "counter_type": "like"}
                   for i in range(start, min(n, start + chunk))]
        try:
            with access.open(base + "/api/v1/counter/batch", timeout=30,
                             data=json.dumps({"queries": queries}).encode(),
                             headers={"Content-Type": "application/json"}) as r:
                results = json.load(r)["data"]["results"]
        except Exception as e:  # noqa: BLE001
            raise ProbeError(f"batch read {base}: {e}") from e
        if len(results) != len(queries):
            raise ProbeError(f"batch read {base}: {len(results)} results for {len(queries)}")
        total += sum(int(x["current_value"]) for x in results)
    return total


def scrape(url, names, access=PLAIN):
    """metric_sums of url's /metrics text; all None when url is None or does not answer."""
    text = ""
    if url:
        try:
            text = http_text(url, access=access)
        except Exception:  # noqa: BLE001
            pass
    return parse.metric_sums(text, names)


def resp_encode(*args):
    """A Redis command as a RESP array of bulk strings."""
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def resp_read(f):
    """One RESP reply from a binary file object: bytes, int, None, a list, or RespError."""
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise ProbeError("RESP: connection closed")
    kind, body = line[:1], line[1:-2]
    if kind == b"+":
        return body
    if kind == b"-":
        raise ProbeError("Redis: " + body.decode("utf-8", "replace"))
    if kind == b":":
        return int(body)
    if kind == b"$":
        n = int(body)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(body)
        return None if n < 0 else [resp_read(f) for _ in range(n)]
    raise ProbeError(f"RESP: unexpected reply {line!r}")


def redis_command(port, *args):
    with socket.create_connection(("127.0.0.1", port), 10) as s:
        s.sendall(resp_encode(*args))
        with s.makefile("rb") as f:
            return resp_read(f)


def wait_info(port, section, wanted, seconds):
    """True once Redis on 127.0.0.1:port shows every wanted field: value in `INFO section`
    (parse.info_has); False when time runs out first."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            text = redis_command(port, "INFO", section).decode("utf-8", "replace")
            if parse.info_has(parse.info_fields(text), wanted):
                return True
        except (ProbeError, OSError):
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def read_count(scenario, url, redis_port, access=PLAIN):
    """The total of a scenario's counters, or None when it has none or the read failed."""
    how = SCENARIOS[scenario].count
    try:
        if how is None:
            return None
        if how[0] == "get":
            return counter_value(url, how[1], access)
        if how[0] == "batch":
            return batch_sum(url, how[1], how[2], access=access)
        value = redis_command(redis_port, "GET", how[1])
        return int(value) if value is not None else 0
    except (ProbeError, OSError, ValueError) as e:
        print(f"bench: {scenario}: reading the counters back: {e}", file=sys.stderr)
        return None


def cpu_ticks(pid):
    """utime + stime of pid in clock ticks (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            return parse.proc_stat_ticks(f.read())
    except (OSError, ValueError, IndexError):
        return 0


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as f:
            return parse.proc_status_rss_kb(f.read())
    except OSError:
        return 0


def _commandstats(redis_port):
    if not redis_port:
        return None
    try:
        info = redis_command(redis_port, "INFO", "commandstats")
        return parse.commandstats(info.decode("utf-8", "replace"))
    except (ProbeError, OSError) as e:
        print(f"bench: INFO commandstats: {e}", file=sys.stderr)
        return None


def snapshot(phase, scenario=None, url=None, redis_port=None, pids=(), engine_metrics=None,
             gateway_metrics=None, access=PLAIN):
    """What a measured run reads before and after wrk: the scenario's count, Redis's
    commandstats, the CPU ticks of pids, and the engine's and the gateway's metrics, all read
    from highpress with access.

    The reads are ordered so that only wrk's traffic falls between the CPU and commandstats
    readings of "before" and "after": reading the counters back (up to 100 batch requests)
    and scraping /metrics cost the servers CPU and Redis commands of their own."""
    snap = {}
    if phase == "before":
        snap["count"] = read_count(scenario, url, redis_port, access) if scenario else None
        snap["engine"] = scrape(engine_metrics, ENGINE_METRICS, access)
        snap["gateway"] = scrape(gateway_metrics, GATEWAY_METRICS, access)
        snap["commandstats"] = _commandstats(redis_port)
        snap["cpu_ticks"] = sum(cpu_ticks(p) for p in pids)
    else:
        snap["cpu_ticks"] = sum(cpu_ticks(p) for p in pids)
        snap["commandstats"] = _commandstats(redis_port)
        snap["engine"] = scrape(engine_metrics, ENGINE_METRICS, access)
        snap["gateway"] = scrape(gateway_metrics, GATEWAY_METRICS, access)
        snap["count"] = read_count(scenario, url, redis_port, access) if scenario else None
    return snap
