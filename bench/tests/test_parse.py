"""Unit tests of highpress_bench.parse against captured tool output (tests/fixtures)."""

import os
import unittest

from highpress_bench import parse

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def fixture(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as f:
        return f.read()


class WrkTest(unittest.TestCase):
    def test_benchjson_line_of_a_captured_run(self):
        got = parse.wrk_benchjson(fixture("wrk-zipf.out"))
        self.assertEqual(got["requests"], 69981)
        self.assertEqual(got["duration_us"], 2099979)
        self.assertEqual(got["issued"], 69991)
        self.assertEqual(got["p99_us"], 2589)
        self.assertEqual((got["connect"], got["read"], got["write"], got["status"],
                          got["timeout"]), (0, 0, 0, 0, 0))

    def test_no_benchjson_line_is_empty(self):
        self.assertEqual(parse.wrk_benchjson("Running 2s test @ http://x\nunable to connect\n"), {})
        self.assertEqual(parse.wrk_benchjson("BENCHJSON {truncated"), {})

    def test_version(self):
        self.assertEqual(parse.wrk_version("wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012"),
                         "debian/4.1.0-3+b2")
        self.assertEqual(parse.wrk_version(""), "")


class RedisBenchmarkTest(unittest.TestCase):
    def test_incr_line_of_a_captured_csv(self):
        got = parse.redis_benchmark_csv(fixture("redis-benchmark.csv"))
        self.assertEqual(got, {"rps": 79681.28, "p99_ms": 1.199})

    def test_without_incr_line(self):
        self.assertEqual(parse.redis_benchmark_csv('"test","rps"\nCould not connect\n'), {})


class MetricsTest(unittest.TestCase):
    TEXT = "\n".join([
        "# HELP highpress_coalescer_flush_keys_total Keys per flush.",
        "# TYPE highpress_coalescer_flush_keys_total counter",
        'highpress_coalescer_flush_keys_total{shard="0"} 10',
        'highpress_coalescer_flush_keys_total{shard="1"} 5.5',
        "highpress_coalescer_flush_increments 1000",
        "highpress_gateway_batch_size_count 40",
        "highpress_gateway_batch_size_sum 2256",
        "highpress_coalescer_flush_keys_totalx 99",
    ])

    def test_sums_over_label_sets_with_or_without_total(self):
        got = parse.metric_sums(self.TEXT, ("highpress_coalescer_flush_keys",
                                            "highpress_coalescer_flush_increments",
                                            "highpress_gateway_batch_size_count"))
        self.assertEqual(got, {"highpress_coalescer_flush_keys": 15.5,
                               "highpress_coalescer_flush_increments": 1000.0,
                               "highpress_gateway_batch_size_count": 40.0})

    def test_absent_metric_is_none(self):
        self.assertEqual(parse.metric_sums(self.TEXT, ("highpress_events_sent",)),
                         {"highpress_events_sent": None})
        self.assertEqual(parse.metric_sums("", ("a",)), {"a": None})


class CommandstatsTest(unittest.TestCase):
    TEXT = ("# Commandstats\r\n"
            "cmdstat_incrby:calls=120,usec=1,usec_per_call=0.01,rejected_calls=0\r\n"
            "cmdstat_zincrby:calls=400,usec=1\r\n"
            "cmdstat_eval:calls=3,usec=1\r\n"
            "cmdstat_zadd:calls=5,usec=1\r\n"
            "cmdstat_expire:calls=30,usec=1\r\n"
            "cmdstat_evalsha:calls=7,usec=1\r\n"
            "cmdstat_info:calls=12,usec=1\r\n"
            "cmdstat_config|get:calls=2,usec=24\r\n")

    def test_calls_without_info(self):
        self.assertEqual(parse.commandstats(self.TEXT),
                         {"incrby": 120, "zincrby": 400, "eval": 3, "zadd": 5, "expire": 30,
                          "evalsha": 7, "config|get": 2})

    def test_kinds(self):
        self.assertEqual(parse.command_kinds(parse.commandstats(self.TEXT)),
                         {"incrby": 120, "ranking": 408, "expire": 30, "other": 9})


class ProcTest(unittest.TestCase):
    def test_stat_ticks_are_utime_plus_stime(self):
        # pid (comm) state ppid ... utime=14th field, stime=15th; comm with a space and ')'.
        line = ("4796 (my (odd) cmd) R 4791 4791 20612 0 -1 4194304 99 0 0 0 "
                "250 37 0 0 20 0 1 0 5103013 3133440 380")
        self.assertEqual(parse.proc_stat_ticks(line), 287)

    def test_status_rss(self):
        self.assertEqual(parse.proc_status_rss_kb("Name:\tx\nVmRSS:\t   73216 kB\nThreads: 3\n"),
                         73216)
        self.assertEqual(parse.proc_status_rss_kb("Name:\tzombie\n"), 0)


class SmallParsersTest(unittest.TestCase):
    def test_redis_version(self):
        self.assertEqual(parse.redis_version(
            "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64"), "7.0.15")

    def test_cpu_model(self):
        self.assertEqual(parse.cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\n"),
                         "AMD EPYC 7B13")

    def test_number(self):
        self.assertIsNone(parse.number("none"))
        self.assertIsNone(parse.number(""))
        self.assertEqual(parse.number("42"), 42)
        self.assertIsInstance(parse.number("42"), int)
        self.assertEqual(parse.number("1385152.0"), 1385152.0)
        self.assertIsInstance(parse.number("1385152.0"), float)
        self.assertEqual(parse.number("abc"), "abc")


class InfoTest(unittest.TestCase):
    def test_info_fields_of_a_memory_section(self):
        text = "# Memory\r\nused_memory:137361704\r\nused_memory_human:131.00M\r\n"
        got = parse.info_fields(text)
        self.assertEqual(got["used_memory"], 137361704)
        self.assertEqual(got["used_memory_human"], "131.00M")
        self.assertNotIn("# Memory", got)

    def test_info_has_the_fields_that_r1_and_r2_wait_for(self):
        replication = parse.info_fields("# Replication\r\nrole:master\r\nconnected_slaves:1\r\n")
        self.assertTrue(parse.info_has(replication, {"connected_slaves": "1"}))
        self.assertFalse(parse.info_has(replication, {"connected_slaves": "2"}))
        self.assertFalse(parse.info_has(replication, {"master_link_status": "up"}))
        persistence = parse.info_fields("aof_enabled:1\r\naof_rewrite_in_progress:1\r\n")
        self.assertFalse(parse.info_has(persistence, {"aof_enabled": "1",
                                                      "aof_rewrite_in_progress": "0"}))
        self.assertTrue(parse.info_has(parse.info_fields("master_link_status:up\r\n"),
                                       {"master_link_status": "up"}))

    def test_callgrind_total(self):
        text = "events: Ir\nsummary: 393434303\n\ntotals: 393434303\n"
        self.assertEqual(parse.callgrind_total(text), 393434303)
        self.assertEqual(parse.callgrind_total("summary: 7\n"), 7)
        self.assertIsNone(parse.callgrind_total("events: Ir\n"))


if __name__ == "__main__":
    unittest.main()
