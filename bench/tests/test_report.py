"""Unit tests of highpress_bench.report: a run's record from two snapshots, the metadata
file, and bench.json with the terminal report (temporary files, no processes)."""

import json
import os
import tempfile
import unittest

from highpress_bench import report


def snapshot(count, calls, ticks, fk=None, fi=None, ack=None):
    return {"count": count, "commandstats": calls, "cpu_ticks": ticks,
            "engine": {"highpress_coalescer_flush_keys": fk,
                       "highpress_coalescer_flush_increments": fi,
                       "highpress_increments_acknowledged": ack},
            "gateway": {"highpress_gateway_batch_size_count": None,
                        "highpress_gateway_batch_size_sum": None}}


class RunRecordTest(unittest.TestCase):
    def test_fields_from_two_snapshots(self):
        before = snapshot(100, {"incrby": 10, "zadd": 4, "get": 1}, 500, 1.0, 10.0, 10.0)
        after = snapshot(1100, {"incrby": 30, "zadd": 12, "expire": 2, "get": 1}, 650,
                         21.0, 1010.0, 1010.0)
        rec = report.run_record({"requests": 1000}, "highpress_post_zipf", 2, 100, before,
                                after, {"n": 5})
        self.assertEqual(rec["scenario"], "highpress_post_zipf")
        self.assertEqual((rec["before"], rec["after"]), (100, 1100))
        self.assertEqual((rec["cmds_before"], rec["cmds_after"]), (15, 45))
        self.assertEqual(rec["cpu_ticks"], 150)
        self.assertEqual((rec["fk_before"], rec["fk_after"]), (1.0, 21.0))
        self.assertEqual((rec["cmds_incrby"], rec["cmds_ranking"], rec["cmds_expire"],
                          rec["cmds_other"]), (20, 8, 2, 0))
        self.assertIsNone(rec["gc_before"])
        self.assertEqual(rec["n"], 5)
        self.assertEqual(rec["cmds_wait"], 0)

    def test_waits_are_counted_and_among_the_commands(self):
        before = snapshot(0, {"incrby": 100, "wait": 7}, 0)
        after = snapshot(1000, {"incrby": 1060, "wait": 47}, 0)
        rec = report.run_record({"requests": 1000}, "highpress_post_uniform_ack1", 1, 100,
                                before, after)
        self.assertEqual(rec["cmds_wait"], 40)
        self.assertEqual(rec["cmds_after"] - rec["cmds_before"], 1000)
        self.assertEqual(rec["cmds_other"], 40)

    def test_without_redis_the_command_fields_are_none(self):
        rec = report.run_record({}, "naive_post_hot", 1, 100, snapshot(0, None, 1),
                                snapshot(5, None, 2))
        self.assertIsNone(rec["cmds_before"])
        self.assertNotIn("cmds_incrby", rec)


class FilesTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def path(self, name):
        return os.path.join(self.dir.name, name)

    def test_meta_updates(self):
        meta = self.path("meta.json")
        report.update_meta(meta, ["runs=3", "topology=split", "p9.keys_target=200000",
                                  "highpress_started=true", "split_error="])
        report.update_meta(meta, ["p9.rss_after_kb=73216", "e1.events_sent=null"])
        self.assertEqual(report.read_json(meta), {
            "runs": 3, "topology": "split", "highpress_started": True, "split_error": "",
            "p9": {"keys_target": 200000, "rss_after_kb": 73216},
            "e1": {"events_sent": None}})

    def test_summarize_writes_bench_json_and_reports(self):
        results, meta, out = self.path("r.jsonl"), self.path("m.json"), self.path("o/b.json")
        wrk = {"duration_us": 1_000_000, "requests": 80_000, "status": 0, "issued": 80_000,
               "p99_us": 15_000}
        report.append_record(results, dict(wrk, scenario="ceiling_post_hot", round=1))
        report.append_record(results, dict(wrk, scenario="highpress_post_hot", round=1,
                                           requests=76_000, before=0, after=76_000))
        report.update_meta(meta, ["connections=500", "highpress_started=true",
                                  "topology=standalone"])
        text, unmet, hp_ok = report.summarize(results, meta, out)
        doc = report.read_json(out)
        p1 = next(r for r in doc["targets"] if r["row"] == "P1")
        self.assertAlmostEqual(p1["measured"], 0.95)
        self.assertIs(p1["met"], True)
        self.assertEqual(len(doc["runs_raw"]), 2)
        self.assertEqual([p["scenario"] for p in doc["peers"]],
                         ["ceiling_post_hot", "highpress_post_hot"])
        self.assertIn("| P1 | standalone increments/s ÷ ceiling, c=500, hot | 0.95 | ≥ 0.95 "
                      "| yes |", text)
        self.assertEqual(unmet, [])  # P3 without redis-benchmark is n/a, not unmet
        self.assertTrue(hp_ok)
        self.assertEqual(json.loads(json.dumps(doc))["connections"], 500)


if __name__ == "__main__":
    unittest.main()
