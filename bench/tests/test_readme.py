"""Unit tests of highpress_bench.readme: the number formats, and the README's benchmark
tables rendered from a fixed bench.json (tests/fixtures/readme-bench.json), compared with the
tables in README.md itself."""

import copy
import json
import os
import unittest

from highpress_bench import readme

HERE = os.path.dirname(__file__)
FIXTURE = os.path.join(HERE, "fixtures", "readme-bench.json")
README = os.path.join(HERE, "..", "..", "README.md")


def load_fixture():
    with open(FIXTURE, encoding="utf-8") as f:
        return json.load(f)


def readme_tables():
    """The markdown tables of the README's "## Benchmarks" section, each as one string."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("\n## Benchmarks\n"):]
    end = section.find("\n## ", 1)
    section = section if end < 0 else section[:end]
    tables, current = [], []
    for line in section.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append("\n".join(current))
            current = []
    if current:
        tables.append("\n".join(current))
    return tables


class FormatTest(unittest.TestCase):
    def test_significant_figures(self):
        self.assertEqual(readme.significant(0.0104), "0.0104")
        self.assertEqual(readme.significant(0.01411), "0.0141")
        self.assertEqual(readme.significant(0.6414), "0.641")
        self.assertEqual(readme.significant(2.1), "2.10")
        self.assertEqual(readme.significant(1.4666), "1.47")
        # Three figures would make 1.0012 read as exactly one command per increment.
        self.assertEqual(readme.significant(1.0012), "1.001")
        self.assertEqual(readme.significant(1), "1")
        self.assertEqual(readme.significant(1.0), "1.00")


class RenderTest(unittest.TestCase):
    def test_targets_rows(self):
        lines = readme.targets_table(load_fixture()).splitlines()
        self.assertEqual(lines[0], "| row | what | measured | target | met |")
        self.assertEqual(lines[2], "| P1 | standalone increments/s ÷ ceiling, c=500, hot key "
                                   "| 0.87 | ≥ 0.95 | no |")
        self.assertIn("| P5b-lb | the same with leaderboards on (informational) "
                      "| 0.637 cmd/inc, 1.00 × limit | – | – |", lines)
        self.assertIn("| P8 | errors and lost acknowledged increments, all runs, both "
                      "topologies | 0 | 0 | yes |", lines)
        self.assertIn("| H3 | Redis bytes per counter, leaderboards on, after that load "
                      "| 73 B (1,958,141 counters; off 73 B) | ≤ 80 B | yes |", lines)

    def test_peers_rows_leave_out_the_plain_sides_of_e1_and_u1(self):
        table = readme.peers_table(load_fixture())
        self.assertIn("| redis-benchmark `INCR -c 50` | 126,199 | 0.6 ms | 1 | – |", table)
        self.assertIn("| naive: axum + one `INCRBY` per request | 76,907 | 12.0 ms | 1.001 "
                      "| 17.2 |", table)
        self.assertNotIn("84,199", table)  # events off
        self.assertNotIn("78,297", table)  # unique off
        self.assertNotIn("76,301", table)  # min_replicas_ack 0
        self.assertNotIn("70,603", table)  # appendfsync everysec
        self.assertNotIn("85,985", table)  # security off
        self.assertEqual(len(table.splitlines()), 2 + 17)

    def test_unmeasured_rows(self):
        bench = copy.deepcopy(load_fixture())
        for row in bench["targets"]:
            if row["row"] in ("P4", "P8"):
                row["measured"], row["met"] = None, None
            if row["row"] == "P8":
                row["split"] = False
        bench["peers"] = [p for p in bench["peers"] if p["scenario"] != "split_post_hot"]
        lines = readme.targets_table(bench).splitlines()
        self.assertIn("| P4 | gateway + 1 counter ÷ standalone, hot | n/a | ≥ 0.6 | n/a |", lines)
        self.assertIn("| P8 | errors and lost acknowledged increments, all runs, standalone "
                      "| n/a | 0 | n/a |", lines)
        self.assertNotIn("gateway + 1 counter, hot", readme.peers_table(bench))

    def test_r1_and_r2_rows_and_peers(self):
        bench = load_fixture()
        lines = readme.targets_table(bench).splitlines()
        i = lines.index(next(line for line in lines if line.startswith("| R1 |")))
        self.assertTrue(lines[i - 1].startswith("| U1 |"))
        self.assertEqual(lines[i], "| R1 | increments/s with `redis.min_replicas_ack: 1` ÷ 0 "
                                   "(a `WAIT` per flush), one replica, uniform 1,000 "
                                   "(informational) | 0.98 (75,151 ÷ 76,301; p99 12.9 ms ÷ "
                                   "12.7 ms; 0.976 ÷ 0.959 cmd/inc) | – | – |")
        self.assertEqual(lines[i + 1], "| R2 | increments/s with Redis AOF `appendfsync always` "
                                       "÷ `everysec`, uniform 1,000 (informational) | 0.99 "
                                       "(69,829 ÷ 70,603; p99 12.7 ms ÷ 15.4 ms) | – | – |")
        table = readme.peers_table(bench)
        self.assertIn("| **highpress** standalone, uniform 1,000, `WAIT` for 1 replica "
                      "| 75,151 | 12.9 ms | 0.976 | 17.6 |", table)
        self.assertIn("| **highpress** standalone, uniform 1,000, AOF fsync always "
                      "| 69,829 | 12.7 ms | 0.959 | 18.5 |", table)

    def test_r2_without_a_p99_and_a_run_without_r1_or_r2(self):
        bench = copy.deepcopy(load_fixture())
        r2 = next(r for r in bench["targets"] if r["row"] == "R2")
        r2["everysec_p99_ms"] = None
        lines = readme.targets_table(bench).splitlines()
        self.assertIn("| R2 | increments/s with Redis AOF `appendfsync always` ÷ `everysec`, "
                      "uniform 1,000 (informational) | 0.99 (69,829 ÷ 70,603; p99 12.7 ms ÷ –) "
                      "| – | – |", lines)
        bench["targets"] = [r for r in bench["targets"] if r["row"] not in ("R1", "R2")]
        bench["peers"] = [p for p in bench["peers"]
                          if p["scenario"] not in ("highpress_post_uniform_ack1",
                                                   "highpress_post_uniform_fsall")]
        self.assertFalse(any(line.startswith(("| R1", "| R2"))
                             for line in readme.targets_table(bench).splitlines()))
        self.assertNotIn("`WAIT` for 1 replica", readme.peers_table(bench))

    def test_s1_row_and_its_peers(self):
        bench = copy.deepcopy(load_fixture())
        bench["targets"].append({
            "row": "S1", "measured": 78_333 / 96_358, "informational": True, "met": None,
            "off": 96_358, "auth": 95_563, "tls": 78_333, "auth_ratio": 95_563 / 96_358,
            "off_p99_ms": 9.1, "auth_p99_ms": 9.4, "tls_p99_ms": None, "rate_limited": 0})
        bench["peers"].append({"scenario": "highpress_post_uniform_tls", "median": 78_333,
                               "p99_ms": 12.25, "cmds_per_inc": 0.97,
                               "cpu_s_per_million": 15.04})
        lines = readme.targets_table(bench).splitlines()
        self.assertEqual(lines[-1], "| S1 | increments/s with `api.auth` + `api.rate_limit` "
                                    "(never reached) + `server.tls` ÷ all off, uniform 1,000 "
                                    "(informational) | 0.81 (78,333 ÷ 96,358; without TLS "
                                    "0.99 (95,563); p99 – / 9.4 ms / 9.1 ms; 429s: 0) | – | – |")
        self.assertIn("| **highpress** standalone, uniform 1,000, auth + rate limits + TLS "
                      "| 78,333 | 12.2 ms | 0.970 | 15.0 |", readme.peers_table(bench))

    def test_readme_tables_are_the_fixtures_rendering(self):
        # README.md's two benchmark tables are this renderer's output for the run's JSON
        # (kept as the fixture). A new run's tables come with its bench.json as the fixture.
        tables = readme_tables()
        self.assertEqual(len(tables), 2, "the Benchmarks section has two tables")
        self.assertEqual("\n\n".join(tables), readme.render(load_fixture()))


if __name__ == "__main__":
    unittest.main()
