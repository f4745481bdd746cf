"""Unit tests of highpress_bench.targets: the rows' ratios, pass/fail and n/a cases, from
synthetic run records."""

import unittest

from highpress_bench.targets import TARGETS, compute, high_cardinality, instructions


def run(scenario, rps, round_no=1, **kw):
    """A wrk record whose derived rps is exactly rps (1 s run, no errors)."""
    rec = {"scenario": scenario, "round": round_no, "duration_us": 1_000_000, "requests": rps,
           "connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0, "issued": rps,
           "p50_us": 1000, "p99_us": 14_100, "clk_tck": 100}
    rec.update(kw)
    return rec


def checked(scenario, rps, round_no=1, **kw):
    """A storage-backed run whose counters grew by exactly rps (unless after is given)."""
    kw.setdefault("before", 0)
    kw.setdefault("after", rps)
    return run(scenario, rps, round_no, **kw)


META = {"connections": 500, "highpress_started": True, "topology": "split",
        "p9": {"keys_target": 1_000_000, "rss_after_kb": 73_216, "rss_start_kb": 10_240,
               "keys_touched": 1_000_000},
        "e1": {"events_sent": 1385152.0, "events_dropped": 0.0}}


def records():
    return [
        run("ceiling_post_hot", 80_000), run("ceiling_post_hot", 84_000, 2),
        run("ceiling_post_hot", 82_000, 3),
        checked("highpress_post_hot", 72_000, cmds_before=0, cmds_after=720),
        checked("highpress_post_hot", 70_000, 2, cmds_before=720, cmds_after=1420),
        checked("highpress_post_hot", 71_000, 3, cmds_before=1420, cmds_after=2130),
        checked("split_post_hot", 49_000, gc_before=0, gc_after=490, gs_before=0,
                gs_after=49_000, ack_before=0, ack_after=49_000),
        checked("highpress_post_uniform", 62_000),
        checked("webdis_incrby_hot", 60_000),
        {"scenario": "redis_benchmark_incr", "round": 1, "rps": 74_000.0, "p99_ms": 0.8},
        checked("highpress_post_zipf_lboff", 50_000, cmds_before=0, cmds_after=32_000,
                fk_before=0, fk_after=32_000, fi_before=0, fi_after=50_000,
                cmds_incrby=32_000, cmds_ranking=0, cmds_expire=0, cmds_other=0),
        checked("highpress_post_uniform_evoff", 50_000),
        checked("highpress_post_uniform_evon", 55_000),
        run("ceiling_get_hot", 80_000), run("highpress_get_hot", 72_000),
    ]


def rows_of(result):
    return {r["row"]: r for r in result["rows"]}


class RowsTest(unittest.TestCase):
    def setUp(self):
        self.result = compute(records(), META)
        self.rows = rows_of(self.result)

    def test_p1_is_the_median_ratio_and_misses_its_target(self):
        p1 = self.rows["P1"]
        self.assertAlmostEqual(p1["measured"], 71_000 / 82_000)
        self.assertEqual(p1["shown"], "0.87")
        self.assertEqual(p1["target"], "≥ 0.95")
        self.assertIs(p1["met"], False)

    def test_p1u_misses_its_target(self):
        self.assertAlmostEqual(self.rows["P1u"]["measured"], 62_000 / 82_000)
        self.assertIs(self.rows["P1u"]["met"], False)

    def test_p3_against_redis_benchmark(self):
        self.assertAlmostEqual(self.rows["P3"]["measured"], 71_000 / 74_000)
        self.assertIs(self.rows["P3"]["met"], False)

    def test_p4_and_its_batching(self):
        p4 = self.rows["P4"]
        self.assertAlmostEqual(p4["measured"], 49_000 / 71_000)
        self.assertIs(p4["met"], True)
        self.assertEqual(p4["shown"], "0.69 (49,000 ÷ 71,000 inc/s)")
        batching = self.rows["P4-batching"]
        self.assertAlmostEqual(batching["measured"], 0.01)
        self.assertAlmostEqual(batching["avg_batch"], 100.0)
        self.assertIsNone(batching["met"])
        self.assertTrue(batching["informational"])

    def test_p5a_and_p5b(self):
        self.assertAlmostEqual(self.rows["P5a"]["measured"], 0.01)
        self.assertIs(self.rows["P5a"]["met"], True)
        p5b = self.rows["P5b"]
        self.assertAlmostEqual(p5b["measured"], 1.0)
        self.assertAlmostEqual(p5b["cmds_per_inc"], 0.64)
        self.assertIs(p5b["met"], True)
        self.assertNotIn("WARNING", p5b["shown"])

    def test_p5b_warns_when_leaderboards_were_not_off(self):
        recs = records()
        for r in recs:
            if r["scenario"] == "highpress_post_zipf_lboff":
                r["cmds_ranking"] = 12
        p5b = rows_of(compute(recs, META))["P5b"]
        self.assertIn("WARNING: 12 ranking commands seen", p5b["shown"])

    def test_e1_and_missing_u1(self):
        e1 = self.rows["E1"]
        self.assertAlmostEqual(e1["measured"], 1.1)
        self.assertEqual(e1["events_sent"], 1385152.0)
        self.assertIn("1,385,152 events sent, 0 dropped", e1["shown"])
        self.assertIsNone(self.rows["U1"]["measured"])
        self.assertEqual(self.rows["U1"]["shown"], "n/a (not measured)")

    def test_p6_p7_p9(self):
        self.assertAlmostEqual(self.rows["P6"]["measured"], 0.9)
        self.assertIs(self.rows["P6"]["met"], False)
        self.assertAlmostEqual(self.rows["P7"]["measured"], 14.1)
        self.assertIs(self.rows["P7"]["met"], True)
        self.assertAlmostEqual(self.rows["P9"]["measured"], 71.5)
        self.assertIs(self.rows["P9"]["met"], True)

    def test_p8_counts_errors_lost_and_phantom(self):
        self.assertEqual(self.rows["P8"]["measured"], 0)
        self.assertIs(self.rows["P8"]["met"], True)
        recs = records()
        recs.append(checked("highpress_post_uniform", 1000, round_no=2, after=990, status=3))
        recs.append(checked("split_post_hot", 1000, round_no=2, after=1005, issued=1000))
        p8 = rows_of(compute(recs, META))["P8"]
        # 3 errors; lost: 997 acknowledged, 990 counted; 5 more counted than issued.
        self.assertEqual((p8["errors"], p8["lost"], p8["phantom"]), (3, 7, 5))
        self.assertEqual(p8["measured"], 15)
        self.assertIs(p8["met"], False)


def replication_records():
    """R1 and R2: three alternating rounds of each side (uniform, own prefixes)."""
    recs = []
    for i, (a0, a1, ev, al) in enumerate([(40_000, 36_000, 41_000, 38_000),
                                          (42_000, 37_000, 40_000, 39_000),
                                          (44_000, 38_000, 42_000, 33_000)], start=1):
        # ack 0: 0.95 commands per increment; ack 1: the same INCRBYs plus a WAIT per flush.
        recs.append(checked("highpress_post_uniform_ack0", a0, i, p99_us=20_000,
                            cmds_before=0, cmds_after=int(a0 * 0.95), cmds_wait=0))
        recs.append(checked("highpress_post_uniform_ack1", a1, i, p99_us=30_000 + i * 1000,
                            cmds_before=0, cmds_after=int(a1 * 0.95) + a1 // 50,
                            cmds_wait=a1 // 50))
        recs.append(checked("highpress_post_uniform_fsec", ev, i, p99_us=21_000))
        recs.append(checked("highpress_post_uniform_fsall", al, i, p99_us=25_000 + i * 500))
    return recs


class ReplicationTest(unittest.TestCase):
    META = dict(META, r2={"filesystem": "ext2/ext3"})

    def rows(self, extra=(), meta=None):
        return rows_of(compute(records() + replication_records() + list(extra),
                               meta or self.META))

    def test_r1_is_ack1_over_ack0_with_p99s_and_commands_per_increment(self):
        r1 = self.rows()["R1"]
        self.assertAlmostEqual(r1["measured"], 37_000 / 42_000)
        self.assertEqual((r1["ack1"], r1["ack0"]), (37_000, 42_000))
        self.assertAlmostEqual(r1["ack1_p99_ms"], 32.0)
        self.assertAlmostEqual(r1["ack0_p99_ms"], 20.0)
        self.assertAlmostEqual(r1["ack0_cmds_per_inc"], 0.95)
        self.assertAlmostEqual(r1["ack1_cmds_per_inc"], 0.97)  # WAIT included
        self.assertAlmostEqual(r1["ack1_wait_per_inc"], 0.02)
        self.assertEqual(r1["shown"], "0.88 (37,000 ÷ 42,000 inc/s; p99 32.0 ms ÷ 20.0 ms; "
                                      "0.970 ÷ 0.950 Redis cmd/inc, WAIT 0.020/inc)")
        self.assertEqual(r1["target"], "n/a (informational)")
        self.assertIsNone(r1["met"])
        self.assertTrue(r1["informational"])

    def test_r2_is_always_over_everysec_with_p99s(self):
        r2 = self.rows()["R2"]
        self.assertAlmostEqual(r2["measured"], 38_000 / 41_000)
        self.assertAlmostEqual(r2["always_p99_ms"], 26.0)
        self.assertAlmostEqual(r2["everysec_p99_ms"], 21.0)
        self.assertEqual(r2["shown"], "0.93 (38,000 ÷ 41,000 inc/s; p99 26.0 ms ÷ 21.0 ms; "
                                      "AOF on ext2/ext3)")
        self.assertIsNone(r2["met"])
        self.assertTrue(r2["informational"])

    def test_a_non_2xx_answer_fails_p8_and_is_shown(self):
        # A 503 (WAIT not acknowledged in time) in an ack-1 run.
        bad = checked("highpress_post_uniform_ack1", 1000, 4, status=2, after=998)
        rows = self.rows([bad])
        self.assertIn("2 ERRORS", rows["R1"]["shown"])
        self.assertEqual(rows["R1"]["errors"], 2)
        self.assertEqual(rows["P8"]["errors"], 2)
        self.assertIs(rows["P8"]["met"], False)
        self.assertNotIn("ERRORS", rows["R2"]["shown"])

    def test_not_measured_says_why(self):
        meta = dict(META, r1_error="the replica did not connect (connected_slaves:1) within "
                                   "30 s")
        rows = rows_of(compute(records(), meta))
        self.assertIsNone(rows["R1"]["measured"])
        self.assertEqual(rows["R1"]["shown"], "n/a (the replica did not connect "
                                              "(connected_slaves:1) within 30 s)")
        self.assertEqual(rows["R2"]["shown"], "n/a (not measured)")
        self.assertIsNone(rows["R2"]["met"])

    def test_peers_list_both_sides_of_r1_and_r2(self):
        peers = compute(records() + replication_records(), self.META)["peers"]
        names = [p["scenario"] for p in peers]
        self.assertEqual(names[-5:], ["highpress_post_uniform_ack0",
                                      "highpress_post_uniform_ack1",
                                      "highpress_post_uniform_fsec",
                                      "highpress_post_uniform_fsall", "highpress_get_hot"])
        ack1 = next(p for p in peers if p["scenario"] == "highpress_post_uniform_ack1")
        self.assertAlmostEqual(ack1["cmds_per_inc"], 0.97)
        self.assertEqual(ack1["lost"], 0)


def security_records(refused=(0, 0, 0)):
    """S1: three alternating rounds of all off, auth + rate limits, and the same + TLS."""
    recs = []
    for i, (off, auth, tls) in enumerate([(50_000, 49_000, 41_000), (52_000, 50_000, 40_000),
                                          (48_000, 51_000, 42_000)], start=1):
        scrape = {"ack_before": 0.0, "rl_before": None}
        recs.append(checked("highpress_post_uniform_secoff", off, i, p99_us=9_000,
                            ack_after=float(off), rl_after=None, **scrape))
        recs.append(checked("highpress_post_uniform_auth", auth, i, p99_us=9_500,
                            ack_after=float(auth), rl_after=refused[i - 1] or None, **scrape))
        recs.append(checked("highpress_post_uniform_tls", tls, i, p99_us=11_000 + i * 100,
                            ack_after=float(tls), rl_after=None, **scrape))
    return recs


class SecurityTest(unittest.TestCase):
    def test_s1_is_all_on_over_all_off_with_auth_alone_and_the_p99s(self):
        s1 = rows_of(compute(records() + security_records(), META))["S1"]
        self.assertAlmostEqual(s1["measured"], 41_000 / 50_000)
        self.assertEqual((s1["tls"], s1["auth"], s1["off"]), (41_000, 50_000, 50_000))
        self.assertAlmostEqual(s1["auth_ratio"], 1.0)
        self.assertAlmostEqual(s1["tls_p99_ms"], 11.2)
        self.assertAlmostEqual(s1["auth_p99_ms"], 9.5)
        self.assertAlmostEqual(s1["off_p99_ms"], 9.0)
        self.assertEqual(s1["rate_limited"], 0)
        self.assertEqual(s1["shown"], "0.82 (41,000 ÷ 50,000 inc/s; without TLS 1.00 (50,000); "
                                      "p99 11.2 ms / 9.5 ms / 9.0 ms; 0 answered 429)")
        self.assertIsNone(s1["met"])
        self.assertTrue(s1["informational"])

    def test_refusals_are_counted_and_errors_shown(self):
        recs = records() + security_records(refused=(0, 4, 0))
        recs.append(checked("highpress_post_uniform_auth", 1000, 4, status=4))
        rows = rows_of(compute(recs, META))
        self.assertEqual(rows["S1"]["rate_limited"], 4)
        self.assertIn("4 answered 429", rows["S1"]["shown"])
        self.assertIn("4 ERRORS", rows["S1"]["shown"])
        self.assertEqual(rows["P8"]["errors"], 4)

    def test_not_measured_says_why_and_the_peers_list_the_three_sides(self):
        meta = dict(META, s1_error="openssl or curl not found")
        self.assertEqual(rows_of(compute(records(), meta))["S1"]["shown"],
                         "n/a (openssl or curl not found)")
        peers = [p["scenario"] for p in compute(records() + security_records(), META)["peers"]]
        self.assertEqual(peers[-4:], ["highpress_post_uniform_secoff",
                                      "highpress_post_uniform_auth",
                                      "highpress_post_uniform_tls", "highpress_get_hot"])


class NotMeasuredTest(unittest.TestCase):
    def test_standalone_topology_leaves_p4_na(self):
        recs = [r for r in records() if r["scenario"] != "split_post_hot"]
        rows = rows_of(compute(recs, dict(META, topology="standalone")))
        self.assertIsNone(rows["P4"]["met"])
        self.assertEqual(rows["P4"]["shown"], "n/a (not measured: --topology standalone)")

    def test_split_asked_but_absent_is_not_met(self):
        recs = [r for r in records() if r["scenario"] != "split_post_hot"]
        rows = rows_of(compute(recs, dict(META, split_error="gateway exited at start-up")))
        self.assertIs(rows["P4"]["met"], False)
        self.assertIn("gateway exited at start-up", rows["P4"]["shown"])

    def test_highpress_not_started_makes_every_row_na(self):
        result = compute(records(), dict(META, highpress_started=False))
        for r in result["rows"]:
            self.assertIsNone(r["met"], r["row"])
            self.assertEqual(r["shown"], "n/a (highpress did not start)")


class PeersTest(unittest.TestCase):
    def test_peers_in_order_with_medians(self):
        peers = compute(records(), META)["peers"]
        names = [p["scenario"] for p in peers]
        # The peers' order, without the scenarios that did not run (naive, zipf, U1).
        self.assertEqual(names, ["ceiling_post_hot", "ceiling_get_hot", "webdis_incrby_hot",
                                 "redis_benchmark_incr", "highpress_post_hot", "split_post_hot",
                                 "highpress_post_uniform", "highpress_post_zipf_lboff",
                                 "highpress_post_uniform_evoff", "highpress_post_uniform_evon",
                                 "highpress_get_hot"])
        ceiling = peers[0]
        self.assertEqual(ceiling["median"], 82_000.0)
        self.assertEqual(ceiling["runs"], [80_000.0, 84_000.0, 82_000.0])
        self.assertIsNone(ceiling["lost"])
        rb = next(p for p in peers if p["scenario"] == "redis_benchmark_incr")
        self.assertEqual(rb["cmds_per_inc"], 1)
        self.assertEqual(rb["unit"], "ops/s")
        hot = next(p for p in peers if p["scenario"] == "highpress_post_hot")
        self.assertEqual(hot["lost"], 0)
        self.assertAlmostEqual(hot["cmds_per_inc"], 0.01)

    def test_high_cardinality_rows_are_na_when_not_measured(self):
        rows = rows_of(compute(records(), META))
        for rid in ("H1", "H2", "H3"):
            self.assertIsNone(rows[rid]["measured"])
            self.assertIsNone(rows[rid]["met"])
        rows = rows_of({"rows": high_cardinality({"error": "highpress exited"})})
        self.assertEqual(rows["H1"]["shown"], "n/a (highpress exited)")

    def test_target_texts(self):
        self.assertEqual(TARGETS["P7"].text(), "≤ 20 ms")
        self.assertEqual(TARGETS["P2"].text(), "≥ 1.6")
        self.assertIs(TARGETS["P5a"].met(0.02), True)
        self.assertIs(TARGETS["P5a"].met(0.0201), False)


def hc_side(rps, cpu_s, used, keys, boards):
    return {"segments": [{"requests": r * 30, "errors": 0, "seconds": 30.0, "rps": r,
                          "redis_cpu_s": c} for r, c in zip(rps, cpu_s)],
            "used_memory_empty": 1_000_000, "used_memory": used, "keys": keys,
            "boards": boards}


class HighCardinalityTest(unittest.TestCase):
    def setUp(self):
        boards = {f"lb:like:{b}": 1000 for b in ("all", "hour:2026120315", "day:20261203",
                                                 "week:2026W49")}
        hc = {"on": hc_side([30_000, 36_000], [2.8, 3.2], 1_000_000 + 2_000_000 * 72,
                            2_000_004, boards),
              "off": hc_side([40_000, 40_000], [3.0, 3.0], 1_000_000 + 2_000_000 * 70,
                             2_000_000, {})}
        self.rows = rows_of({"rows": high_cardinality(hc)})

    def test_h1_compares_the_last_segments(self):
        h1 = self.rows["H1"]
        self.assertAlmostEqual(h1["measured"], 36_000 / 40_000)
        self.assertIs(h1["met"], True)
        self.assertEqual(h1["on"], [30_000, 36_000])
        self.assertIn("segment 2: 36,000 ÷ 40,000 inc/s", h1["shown"])

    def test_h2_is_redis_cpu_per_increment_on_over_off(self):
        h2 = self.rows["H2"]
        on_us = 6.0e6 / (66_000 * 30)
        off_us = 6.0e6 / (80_000 * 30)
        self.assertAlmostEqual(h2["measured"], on_us / off_us)
        self.assertIs(h2["met"], True)

    def test_h3_is_bytes_per_counter_without_the_rankings_keys(self):
        h3 = self.rows["H3"]
        self.assertAlmostEqual(h3["measured"], 72.0)
        self.assertEqual(h3["counters"], 2_000_000)
        self.assertAlmostEqual(h3["off_bytes"], 70.0)
        self.assertIs(h3["met"], True)
        self.assertIn("rankings of 1000 members", h3["shown"])


class InstructionsTest(unittest.TestCase):
    def test_p10_is_highpress_over_the_ceiling_per_request(self):
        row = instructions({"connections": 50,
                            "highpress": {"requests": 10, "errors": 0, "instructions": 230},
                            "ceiling": {"requests": 20, "errors": 0, "instructions": 400},
                            "naive": {"requests": 10, "errors": 0, "instructions": 310},
                            "webdis": {"requests": 10, "errors": 3, "instructions": 100}})
        self.assertAlmostEqual(row["measured"], 23 / 20)
        self.assertIs(row["met"], True)
        self.assertIsNone(row["webdis_per_request"])  # a run with errors has no figure
        self.assertIn("naive 31, webdis n/a", row["shown"])
        self.assertIn("c=50", row["what"])

    def test_p10_not_measured_says_why(self):
        row = instructions({"error": "valgrind not found"})
        self.assertIsNone(row["measured"])
        self.assertEqual(row["shown"], "n/a (valgrind not found)")


if __name__ == "__main__":
    unittest.main()
