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
                                   "| 0.86 | ≥ 0.95 | no |")
        self.assertIn("| P5b-lb | the same with leaderboards on (informational) "
                      "| 0.640 cmd/inc, 1.00 × limit | – | – |", lines)
        self.assertIn("| P8 | errors and lost acknowledged increments, all runs, both "
                      "topologies | 0 | 0 | yes |", lines)
        self.assertIn("| H3 | Redis bytes per counter, leaderboards on, after that load "
                      "| 74 B (1,819,936 counters; off 73 B) | ≤ 80 B | yes |", lines)

    def test_peers_rows_leave_out_the_plain_sides_of_e1_and_u1(self):
        table = readme.peers_table(load_fixture())
        self.assertIn("| redis-benchmark `INCR -c 50` | 86,498 | 0.7 ms | 1 | – |", table)
        self.assertIn("| naive: axum + one `INCRBY` per request | 40,921 | 19.9 ms | 1.001 "
                      "| 34.4 |", table)
        self.assertNotIn("43,658", table)  # events off
        self.assertNotIn("41,154", table)  # unique off
        self.assertEqual(len(table.splitlines()), 2 + 13)

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
        # The fixture's run predates R1 and R2: they are absent from its tables (test below);
        # a run that measured them renders them like E1 and U1.
        bench = copy.deepcopy(load_fixture())
        self.assertNotIn("R1", [r["row"] for r in bench["targets"]])
        u1 = next(i for i, r in enumerate(bench["targets"]) if r["row"] == "U1")
        bench["targets"][u1 + 1:u1 + 1] = [
            {"row": "R1", "measured": 0.881, "target": "n/a (informational)", "met": None,
             "informational": True, "ack1": 37_000.0, "ack0": 42_000.0, "ack1_p99_ms": 32.04,
             "ack0_p99_ms": 20.0, "ack1_cmds_per_inc": 0.97, "ack0_cmds_per_inc": 0.95},
            {"row": "R2", "measured": 0.927, "target": "n/a (informational)", "met": None,
             "informational": True, "always": 38_000.0, "everysec": 41_000.0,
             "always_p99_ms": 26.0, "everysec_p99_ms": None}]
        bench["peers"].append({"scenario": "highpress_post_uniform_ack1", "median": 37_000.0,
                               "p99_ms": 32.04, "cmds_per_inc": 0.97,
                               "cpu_s_per_million": 40.0})
        lines = readme.targets_table(bench).splitlines()
        i = lines.index(next(line for line in lines if line.startswith("| R1 |")))
        self.assertTrue(lines[i - 1].startswith("| U1 |"))
        self.assertEqual(lines[i], "| R1 | increments/s with `redis.min_replicas_ack: 1` ÷ 0 "
                                   "(a `WAIT` per flush), one replica, uniform 1,000 "
                                   "(informational) | 0.88 (37,000 ÷ 42,000; p99 32.0 ms ÷ "
                                   "20.0 ms; 0.970 ÷ 0.950 cmd/inc) | – | – |")
        self.assertEqual(lines[i + 1], "| R2 | increments/s with Redis AOF `appendfsync always` "
                                       "÷ `everysec`, uniform 1,000 (informational) | 0.93 "
                                       "(38,000 ÷ 41,000; p99 26.0 ms ÷ –) | – | – |")
        table = readme.peers_table(bench)
        self.assertIn("| **highpress** standalone, uniform 1,000, `WAIT` for 1 replica "
                      "| 37,000 | 32.0 ms | 0.970 | 40.0 |", table)
        self.assertNotIn("AOF fsync always", table)  # not in this run's peers

    def test_readme_tables_are_the_fixtures_rendering(self):
        # README.md's two benchmark tables are this renderer's output for the run's JSON
        # (kept as the fixture). A new run's tables come with its bench.json as the fixture.
        tables = readme_tables()
        self.assertEqual(len(tables), 2, "the Benchmarks section has two tables")
        self.assertEqual("\n\n".join(tables), readme.render(load_fixture()))


if __name__ == "__main__":
    unittest.main()
