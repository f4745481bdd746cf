"""Unit tests of highpress_bench.scenarios: lua/bench.lua's arguments per scenario."""

import json
import os
import unittest

from highpress_bench.scenarios import SCENARIOS, wrk_args

LUA = os.path.join(os.path.dirname(__file__), "..", "lua", "bench.lua")


class WrkArgsTest(unittest.TestCase):
    def test_key_distributions(self):
        self.assertEqual(wrk_args("highpress_post_hot"),
                         ["post", "hot", "bench_hp_hot_", "1", "1.1", "0", "-"])
        self.assertEqual(wrk_args("highpress_post_uniform")[:4],
                         ["post", "uniform", "bench_hp_uni_", "1000"])
        self.assertEqual(wrk_args("highpress_post_zipf")[:5],
                         ["post", "zipf", "bench_hp_zipf_", "100000", "1.1"])
        self.assertEqual(wrk_args("webdis_incrby_hot")[:2], ["incrby", "hot"])
        self.assertEqual(wrk_args("highpress_post_users_uon")[0], "post_users")

    def test_p9_splits_the_keys_over_the_threads_rounding_up(self):
        self.assertEqual(wrk_args("highpress_p9", 1_000_000, 3, "/tmp/p9"),
                         ["post", "seq", "bench_hp_p9_", "1", "1.1", "333334", "/tmp/p9"])
        self.assertEqual(wrk_args("highpress_p9", 200_000, 2, "/d")[5], "100000")

    def test_prefixes_are_distinct_and_short(self):
        writers = [s for s in SCENARIOS.values() if s.mode != "get"]
        prefixes = [s.prefix for s in writers]
        self.assertEqual(len(prefixes), len(set(prefixes)))
        # A batch read of 1,000 keys (probe.batch_sum) stays under 64 KiB.
        for s in SCENARIOS.values():
            if s.count and s.count[0] == "batch":
                last = s.nkeys - 1
                queries = [{"resource_id": f"{s.prefix}{i}", "counter_type": "like"}
                           for i in range(max(0, last - 999), last + 1)]
                self.assertLess(len(json.dumps({"queries": queries})), 64 * 1024, s.name)

    def test_counted_by_their_own_keys(self):
        self.assertEqual(SCENARIOS["highpress_post_zipf"].count,
                         ("batch", "bench_hp_zipf_", 100_000))
        self.assertEqual(SCENARIOS["naive_post_hot"].count, ("redis", "c:like:bench_naive_0"))
        self.assertIsNone(SCENARIOS["highpress_get_hot"].count)

    def test_r1_and_r2_sides_are_uniform_posts_with_their_own_keys(self):
        names = ("highpress_post_uniform_ack0", "highpress_post_uniform_ack1",
                 "highpress_post_uniform_fsec", "highpress_post_uniform_fsall")
        for name in names:
            s = SCENARIOS[name]
            self.assertEqual((s.mode, s.dist, s.nkeys), ("post", "uniform", 1000), name)
            self.assertEqual(s.count, ("batch", s.prefix, 1000), name)
        self.assertEqual(len({SCENARIOS[n].prefix for n in names}), 4)

    def test_s1_sides_are_uniform_posts_and_a_token_is_the_eighth_argument(self):
        names = ("highpress_post_uniform_secoff", "highpress_post_uniform_auth",
                 "highpress_post_uniform_tls")
        for name in names:
            s = SCENARIOS[name]
            self.assertEqual((s.mode, s.dist, s.nkeys), ("post", "uniform", 1000), name)
            self.assertEqual(s.count, ("batch", s.prefix, 1000), name)
        self.assertEqual(len({SCENARIOS[n].prefix for n in names}), 3)
        self.assertEqual(len(wrk_args("highpress_post_uniform_auth")), 7)
        self.assertEqual(wrk_args("highpress_post_uniform_auth", token="")[-1], "-")
        self.assertEqual(wrk_args("highpress_post_uniform_auth", token="0123abcd"),
                         ["post", "uniform", "bench_hp_sauth_", "1000", "1.1", "0", "-",
                          "0123abcd"])

    def test_the_lua_reads_the_arguments_in_this_order(self):
        with open(LUA, encoding="utf-8") as f:
            lua = f.read()
        self.assertIn("mode, dist, prefix = args[1], args[2], args[3]", lua)
        self.assertIn("nkeys, zipf_s, seq_limit = tonumber(args[4]), tonumber(args[5]), "
                      "tonumber(args[6])", lua)
        self.assertIn("done_dir = args[7]", lua)
        self.assertIn('json_headers["Authorization"] = "Bearer " .. args[8]', lua)


if __name__ == "__main__":
    unittest.main()
