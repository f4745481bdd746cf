"""Unit tests of highpress_bench.stats: medians and the figures derived from one run."""

import unittest

from highpress_bench.stats import by_scenario, derive, median, ratio


def wrk_record(**kw):
    rec = {"scenario": "highpress_post_hot", "duration_us": 2_000_000, "requests": 10_000,
           "connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0, "issued": 10_050,
           "p50_us": 500, "p99_us": 2500, "clk_tck": 100}
    rec.update(kw)
    return rec


class MedianTest(unittest.TestCase):
    def test_median_skips_none(self):
        self.assertEqual(median([3, None, 1, 2]), 2)
        self.assertEqual(median([4.0, 1.0, 3.0, 2.0]), 2.5)
        self.assertIsNone(median([None, None]))
        self.assertIsNone(median([]))

    def test_ratio(self):
        self.assertEqual(ratio(3, 4), 0.75)
        self.assertIsNone(ratio(None, 4))
        self.assertIsNone(ratio(3, 0))
        self.assertIsNone(ratio(3, None))


class DeriveTest(unittest.TestCase):
    def test_rates_and_latency(self):
        r = derive(wrk_record())
        self.assertEqual(r["acked"], 10_000)
        self.assertEqual(r["rps"], 5000.0)
        self.assertEqual(r["p99_ms"], 2.5)
        self.assertEqual(r["p50_ms"], 0.5)
        self.assertEqual(r["errors"], 0)

    def test_errors_reduce_the_acknowledged(self):
        r = derive(wrk_record(status=30, timeout=5, read=15))
        self.assertEqual(r["socket_errors"], 20)
        self.assertEqual(r["errors"], 50)
        self.assertEqual(r["acked"], 10_000 - 50)

    def test_lost_and_phantom(self):
        ok = derive(wrk_record(before=100, after=100 + 10_020))
        self.assertEqual((ok["delta"], ok["lost"], ok["phantom"]), (10_020, 0, 0))
        lost = derive(wrk_record(before=100, after=100 + 9_990))
        self.assertEqual((lost["lost"], lost["phantom"]), (10, 0))
        over = derive(wrk_record(before=0, after=10_060))
        self.assertEqual((over["lost"], over["phantom"]), (0, 10))
        unchecked = derive(wrk_record(before=None, after=5))
        self.assertNotIn("lost", unchecked)

    def test_requests_refused_by_the_rate_limit(self):
        # The metric appears with the first refusal: absent before, 3 after.
        r = derive(wrk_record(ack_before=0.0, ack_after=10_000.0, rl_before=None, rl_after=3.0))
        self.assertEqual(r["rate_limited"], 3)
        none = derive(wrk_record(ack_before=0.0, ack_after=10_000.0, rl_before=None,
                                 rl_after=None))
        self.assertEqual(none["rate_limited"], 0)
        grown = derive(wrk_record(ack_before=5.0, ack_after=10_005.0, rl_before=7.0,
                                  rl_after=7.0))
        self.assertEqual(grown["rate_limited"], 0)
        # A scrape that failed (no acknowledged count) says nothing about refusals.
        unread = derive(wrk_record(ack_before=None, ack_after=10_000.0, rl_after=None))
        self.assertNotIn("rate_limited", unread)

    def test_cpu_commands_and_coalescing_limit(self):
        r = derive(wrk_record(cpu_ticks=50, cmds_before=1000, cmds_after=1104,
                              fk_before=10.0, fk_after=74.0, fi_before=100.0, fi_after=10_100.0))
        self.assertAlmostEqual(r["cpu_s_per_million"], 50 / 100 / 10_000 * 1e6)
        self.assertEqual(r["cmds"], 104)
        self.assertAlmostEqual(r["cmds_per_inc"], 0.0104)
        self.assertAlmostEqual(r["coalescing_limit"], 64 / 10_000)

    def test_waits_per_increment(self):
        # R1: 10,000 increments, 9,600 INCRBYs and 400 WAITs (one per flush).
        r = derive(wrk_record(cmds_before=0, cmds_after=10_000, cmds_wait=400))
        self.assertAlmostEqual(r["cmds_per_inc"], 1.0)  # WAIT included
        self.assertAlmostEqual(r["wait_per_inc"], 0.04)
        self.assertNotIn("wait_per_inc", derive(wrk_record()))

    def test_split_batching(self):
        r = derive(wrk_record(scenario="split_post_hot", ack_before=0.0, ack_after=10_000.0,
                              gc_before=0.0, gc_after=177.0, gs_before=0.0, gs_after=10_000.0))
        self.assertEqual(r["engine_acked"], 10_000.0)
        self.assertAlmostEqual(r["grpc_calls_per_request"], 0.0177)
        self.assertAlmostEqual(r["grpc_avg_batch"], 10_000 / 177)

    def test_missing_metrics_leave_no_figure(self):
        r = derive(wrk_record(fk_before=None, fk_after=None, gc_before=None, gc_after=None))
        for key in ("coalescing_limit", "grpc_calls_per_request", "cmds_per_inc"):
            self.assertNotIn(key, r)

    def test_redis_benchmark_record_is_unchanged(self):
        rec = {"scenario": "redis_benchmark_incr", "rps": 74289.0, "p99_ms": 0.8}
        self.assertEqual(derive(dict(rec)), rec)

    def test_by_scenario_keeps_order(self):
        recs = [{"scenario": "a", "n": 1}, {"scenario": "b", "n": 2}, {"scenario": "a", "n": 3}]
        self.assertEqual(by_scenario(recs), {"a": [recs[0], recs[2]], "b": [recs[1]]})


if __name__ == "__main__":
    unittest.main()
