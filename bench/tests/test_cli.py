"""Unit tests of the command line (highpress_bench.__main__) as bench/bench.sh calls it:
every subcommand's arguments parse, and record, meta, summarize and readme run end to end on
temporary files (no processes)."""

import contextlib
import io
import json
import os
import shutil
import tempfile
import unittest

from highpress_bench.__main__ import main, parser

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


class ParseTest(unittest.TestCase):
    def test_the_command_lines_of_bench_sh_parse(self):
        for argv in (
            ["free-port"], ["free-port", "3"],
            ["wait-port", "4000", "123", "10"], ["wait-http", "http://127.0.0.1:1/health", "30"],
            ["wait-redis-info", "6379", "replication", "30", "connected_slaves=1"],
            ["wait-redis-info", "6379", "persistence", "60", "aof_enabled=1",
             "aof_rewrite_in_progress=0", "aof_rewrite_scheduled=0"],
            ["wrk-args", "highpress_p9", "--p9-keys", "200000", "--threads", "2",
             "--done-dir", "/tmp/w/p9"],
            ["snapshot", "before", "/tmp/w/b.json", "--scenario", "split_post_hot", "--url",
             "http://127.0.0.1:2", "--redis-port", "3", "--pids", "1 2 3",
             "--engine-metrics", "http://127.0.0.1:4/metrics",
             "--gateway-metrics", "http://127.0.0.1:2/metrics"],
            ["snapshot", "after", "/tmp/w/a.json", "--pids", "1"],
            ["record", "/tmp/w/r.jsonl", "--scenario", "redis_benchmark_incr", "--round", "1",
             "--output", "/tmp/w/rb.out", "--redis-benchmark", "--before", "b", "--after", "a",
             "--field", "n=200000"],
            ["meta", "/tmp/w/m.json", "runs=1", "p9.keys_target=200000"],
            ["meta-env", "/tmp/w/m.json", "--root", "/r", "--hp-bin", "/b", "--no-build"],
            ["meta-metrics", "/tmp/w/m.json", "http://x/metrics", "e1.events_sent=a"],
            ["p9-start", "/tmp/w/m.json", "12"], ["p9-done", "/tmp/w/p9", "2"],
            ["p9-finish", "/tmp/w/m.json", "12", "--done-dir", "/tmp/w/p9", "--seconds", "9",
             "--wrk", "/tmp/w/p9.out", "--keys", "200000"],
            ["cpu-ticks", "12"],
            ["p10-record", "/tmp/w/m.json", "--system", "webdis", "--wrk", "/tmp/w/c.wrk",
             "/tmp/w/callgrind.webdis", "/tmp/w/callgrind.webdis.1"],
            ["wrk-args", "highpress_high_cardinality", "--threads", "2"],
            ["hc-segment", "/tmp/w/m.json", "--leaderboards", "on", "--wrk", "/tmp/w/hc.out",
             "--redis-ticks", "300"],
            ["hc-memory", "/tmp/w/m.json", "end", "--leaderboards", "off", "--redis-port", "3"],
            ["summarize", "r", "m", "o", "--strict"], ["readme", "b.json"],
            # Row S1: a highpress with api.auth and server.tls.
            ["wait-http", "https://127.0.0.1:1/health", "30", "--cacert", "/tmp/w/s1/ca.crt"],
            ["wrk-args", "highpress_post_uniform_tls", "--p9-keys", "1", "--threads", "2",
             "--done-dir", "/tmp/w/p9", "--token", ""],
            ["snapshot", "before", "/tmp/w/b.json", "--scenario", "highpress_post_uniform_tls",
             "--url", "https://127.0.0.1:2", "--redis-port", "3", "--pids", "1 2",
             "--token", "abc", "--cacert", "/tmp/w/s1/ca.crt",
             "--engine-metrics", "https://127.0.0.1:2/metrics"],
            ["meta-metrics", "/tmp/w/m.json", "https://x/metrics", "s1.x=a", "--token", "t",
             "--cacert", "c"],
        ):
            with self.subTest(argv=argv):
                parser().parse_args(argv)


class RunTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir)

    def path(self, name):
        return os.path.join(self.dir, name)

    def run_main(self, *argv):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = main(list(argv))
        return status, out.getvalue()

    def write_snapshot(self, name, count, calls, ticks):
        with open(self.path(name), "w", encoding="utf-8") as f:
            json.dump({"count": count, "commandstats": calls, "cpu_ticks": ticks,
                       "engine": {}, "gateway": {}}, f)
        return self.path(name)

    def test_record_meta_summarize_readme(self):
        results, meta, out = self.path("r.jsonl"), self.path("m.json"), self.path("bench.json")
        before = self.write_snapshot("b.json", 0, {"incrby": 0}, 100)
        after = self.write_snapshot("a.json", 69_981, {"incrby": 69_981}, 300)
        self.run_main("record", results, "--scenario", "naive_post_hot", "--round", "1",
                      "--output", os.path.join(FIXTURES, "wrk-zipf.out"), "--before", before,
                      "--after", after)
        self.run_main("record", results, "--scenario", "redis_benchmark_incr", "--round", "1",
                      "--output", os.path.join(FIXTURES, "redis-benchmark.csv"),
                      "--redis-benchmark", "--before", before, "--after", after,
                      "--field", "n=20000")
        self.run_main("meta", meta, "connections=20", "highpress_started=false",
                      "topology=standalone", "highpress_error=no binary")
        with open(results, encoding="utf-8") as f:
            recs = [json.loads(line) for line in f]
        self.assertEqual(recs[0]["requests"], 69_981)
        self.assertEqual((recs[0]["before"], recs[0]["after"], recs[0]["cpu_ticks"]),
                         (0, 69_981, 200))
        self.assertEqual(recs[1]["rps"], 79681.28)
        self.assertEqual((recs[1]["n"], recs[1]["cpu_ticks_redis"]), (20_000, 200))

        status, text = self.run_main("summarize", results, meta, out, "--strict")
        self.assertEqual(status, 1)  # --strict, and highpress was not measured
        self.assertIn("highpress: NOT MEASURED: no binary", text)
        self.assertIn("| naive axum + INCRBY, hot | 33,325 | req/s |", text)
        status, tables = self.run_main("readme", out)
        self.assertEqual(status, 0)
        self.assertIn("| naive: axum + one `INCRBY` per request | 33,325 | 2.6 ms | 1.00 ", tables)

    def test_wrk_args_with_and_without_a_token(self):
        _, plain = self.run_main("wrk-args", "highpress_post_uniform_auth", "--token", "")
        self.assertEqual(len(plain.splitlines()), 7)
        _, with_token = self.run_main("wrk-args", "highpress_post_uniform_auth", "--token",
                                      "0123abcd")
        self.assertEqual(with_token.splitlines()[-1], "0123abcd")

    def test_p9_done_and_finish(self):
        done_dir = self.path("p9")
        os.mkdir(done_dir)
        for tid, n in (("1", "100000\n"), ("2", "99999\n")):
            with open(os.path.join(done_dir, "done." + tid), "w", encoding="utf-8") as f:
                f.write(n)
        self.assertEqual(self.run_main("p9-done", done_dir, "2")[0], 0)
        self.assertEqual(self.run_main("p9-done", done_dir, "3")[0], 1)
        meta = self.path("m.json")
        with contextlib.redirect_stderr(io.StringIO()) as err:
            self.run_main("p9-finish", meta, str(2 ** 22 + 1), "--done-dir", done_dir,
                          "--seconds", "7", "--wrk", os.path.join(FIXTURES, "wrk-zipf.out"),
                          "--keys", "200000")
        with open(meta, encoding="utf-8") as f:
            p9 = json.load(f)["p9"]
        self.assertEqual(p9["keys_touched"], 199_999)
        self.assertEqual(p9["seconds"], 7)
        self.assertEqual(p9["wrk"]["requests"], 69_981)
        self.assertIn("only 199999 of 200000 keys", err.getvalue())


if __name__ == "__main__":
    unittest.main()
