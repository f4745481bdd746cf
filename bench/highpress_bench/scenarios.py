"""Every measured scenario: what lua/bench.lua sends (mode, key distribution, key prefix,
number of keys) and how the scenario's counters are read back for the consistency check.

Each system has its own key prefix, so that their counters never mix in the shared Redis.
(Prefixes are short enough that a batch read of 1,000 keys stays under 64 KiB.)
Key distributions: hot = one key, uniform = rotation over 1,000 keys, zipf = Zipf s=1.1 over
100,000 keys, random = uniformly random over 2 million ids (rows H1-H3), seq = distinct keys in
sequence (P9)."""

from collections import namedtuple

ZIPF_S = 1.1
UNIFORM_KEYS = 1000
ZIPF_KEYS = 100_000
HIGH_CARDINALITY_KEYS = 2_000_000

# count: how to read the scenario's total back, or None when it has none.
#   ("get", key): GET /api/v1/counter/<key>/like on the scenario's URL;
#   ("batch", prefix, n): POST /api/v1/counter/batch over prefix0 .. prefix{n-1};
#   ("redis", key): GET <key> on the benchmark's Redis.
Scenario = namedtuple("Scenario", "name mode dist prefix nkeys count")


def _hot(name, mode, prefix, count):
    return Scenario(name, mode, "hot", prefix, 1, count)


def _many(name, mode, dist, prefix, nkeys):
    return Scenario(name, mode, dist, prefix, nkeys, ("batch", prefix, nkeys))


SCENARIOS = {s.name: s for s in [
    _hot("ceiling_post_hot", "post", "bench_ceiling_", None),
    _hot("ceiling_get_hot", "get", "bench_ceiling_", None),
    _hot("naive_post_hot", "post", "bench_naive_", ("redis", "c:like:bench_naive_0")),
    _hot("webdis_incrby_hot", "incrby", "bench_webdis_", ("redis", "bench_webdis_0")),
    _hot("highpress_post_hot", "post", "bench_hp_hot_", ("get", "bench_hp_hot_0")),
    _hot("split_post_hot", "post", "bench_split_hot_", ("get", "bench_split_hot_0")),
    _hot("highpress_get_hot", "get", "bench_hp_hot_", None),
    _many("highpress_post_uniform", "post", "uniform", "bench_hp_uni_", UNIFORM_KEYS),
    _many("highpress_post_zipf", "post", "zipf", "bench_hp_zipf_", ZIPF_KEYS),
    _many("highpress_post_zipf_lboff", "post", "zipf", "bench_hp_zoff_", ZIPF_KEYS),
    _many("highpress_post_uniform_evoff", "post", "uniform", "bench_hp_evoff_", UNIFORM_KEYS),
    _many("highpress_post_uniform_evon", "post", "uniform", "bench_hp_evon_", UNIFORM_KEYS),
    _many("highpress_post_users_uoff", "post_users", "uniform", "bench_hp_uoff_", UNIFORM_KEYS),
    _many("highpress_post_users_uon", "post_users", "uniform", "bench_hp_uon_", UNIFORM_KEYS),
    _many("highpress_post_uniform_ack0", "post", "uniform", "bench_hp_ack0_", UNIFORM_KEYS),
    _many("highpress_post_uniform_ack1", "post", "uniform", "bench_hp_ack1_", UNIFORM_KEYS),
    _many("highpress_post_uniform_fsec", "post", "uniform", "bench_hp_fsec_", UNIFORM_KEYS),
    _many("highpress_post_uniform_fsall", "post", "uniform", "bench_hp_fsall_", UNIFORM_KEYS),
    # Row S1: all off; api.auth + api.rate_limit; the same + server.tls.
    _many("highpress_post_uniform_secoff", "post", "uniform", "bench_hp_soff_", UNIFORM_KEYS),
    _many("highpress_post_uniform_auth", "post", "uniform", "bench_hp_sauth_", UNIFORM_KEYS),
    _many("highpress_post_uniform_tls", "post", "uniform", "bench_hp_stls_", UNIFORM_KEYS),
    Scenario("highpress_p9", "post", "seq", "bench_hp_p9_", 1, None),
    Scenario("highpress_high_cardinality", "post", "random", "bench_hp_hc_",
             HIGH_CARDINALITY_KEYS, None),
]}


def wrk_args(name, p9_keys=0, threads=1, done_dir="-", token=None):
    """The arguments after `--` on wrk's command line for lua/bench.lua, in its order:
    MODE DIST PREFIX NKEYS ZIPF_S SEQ_LIMIT DONE_DIR [TOKEN]. SEQ_LIMIT (seq only) is each
    thread's share of p9_keys, rounded up; DONE_DIR is where a seq thread reports that it is
    done; TOKEN, when given, is sent as a bearer token (api.auth)."""
    s = SCENARIOS[name]
    seq_limit = -(-int(p9_keys) // int(threads)) if s.dist == "seq" else 0
    args = [s.mode, s.dist, s.prefix, str(s.nkeys), f"{ZIPF_S:g}", str(seq_limit),
            done_dir if s.dist == "seq" else "-"]
    return args + [token] if token else args
