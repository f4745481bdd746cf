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

    def test_readme_tables_are_the_fixtures_rendering(self):
        # README.md's two benchmark tables are this renderer's output for the run's JSON
        # (kept as the fixture). A new run's tables come with its bench.json as the fixture.
        tables = readme_tables()
        self.assertEqual(len(tables), 2, "the Benchmarks section has two tables")
        self.assertEqual("\n\n".join(tables), readme.render(load_fixture()))


if __name__ == "__main__":
    unittest.main()
