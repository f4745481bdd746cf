#!/usr/bin/env python3
"""Scale model: how many gateway pods, counter pods and Redis Cluster shards a target rate needs.

Inputs are measured on one box (see docs/scale.md for where each comes from); the model is
arithmetic on them, not a measurement of a cluster. Usage:

    scripts/scale_model.py [--rate 1000000] [--bench target/bench/bench.json]

With --bench, CPU per increment and commands per increment are read from that benchmark run;
otherwise the figures recorded in docs/scale.md are used.
"""

import argparse
import json
import math

# Defaults: the README's benchmark of 2026-12-07, commit 772191a (its bench.json is
# bench/tests/fixtures/readme-bench.json), 2-vCPU Intel Xeon VM.
DEFAULTS = {
    # CPU seconds per million acknowledged increments, highpress processes plus Redis.
    "cpu_split_hot": 18.4,
    # Redis commands per acknowledged increment by key distribution (c=500).
    "cmds": {"hot": 0.0111, "uniform_1k": 0.960, "zipf_100k": 0.633},
    # Share of the split's highpress CPU spent in the gateway (HTTP, JSON, gRPC client) rather
    # than the counter: /proc/<pid>/stat over a 6 s wrk run, hot key, c=500, measured once on
    # 2026-11-25 at 7f41dbf (docs/scale.md): gateway 676 ticks, counter 97, Redis 19.
    "gateway_share": 676 / (676 + 97),
}

# Redis: pipelined INCRBY throughput of one shard (one core). redis-benchmark INCR -P 16
# measured 1.28M ops/s on this kind of machine (docs/scale.md, "Redis ops per shard": a
# measurement outside `make bench`); plan at 40 % of it.
REDIS_OPS_PER_SHARD = 1_280_000 * 0.4
# Plan pods at 70 % CPU, one core each.
POD_UTILISATION = 0.7


# The bench.json scenario each commands-per-increment figure is read from.
CMDS_SCENARIOS = {"highpress_post_hot": "hot", "highpress_post_uniform": "uniform_1k",
                  "highpress_post_zipf_lboff": "zipf_100k"}


def load_bench(path):
    with open(path) as f:
        bench = json.load(f)
    figures = dict(DEFAULTS)
    cmds = dict(DEFAULTS["cmds"])
    # The peers' rows of bench.json, by scenario (the "system" names of the E1 and U1 rows
    # also say "uniform", so they are not matched by name).
    for peer in bench.get("peers", []):
        scenario = peer.get("scenario")
        if scenario == "split_post_hot" and peer.get("cpu_s_per_million"):
            figures["cpu_split_hot"] = peer["cpu_s_per_million"]
        dist = CMDS_SCENARIOS.get(scenario)
        if dist and peer.get("cmds_per_inc") is not None:
            cmds[dist] = peer["cmds_per_inc"]
    figures["cmds"] = cmds
    return figures


def plan(rate, figures):
    cores = rate * figures["cpu_split_hot"] / 1e6 / POD_UTILISATION
    gateways = math.ceil(cores * figures["gateway_share"])
    counters = math.ceil(cores * (1 - figures["gateway_share"]))
    rows = []
    for dist, per_inc in figures["cmds"].items():
        ops = rate * per_inc
        shards = max(1, math.ceil(ops / REDIS_OPS_PER_SHARD))
        rows.append((dist, per_inc, ops, shards))
    return cores, gateways, counters, rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1_000_000, help="increments per second")
    parser.add_argument("--bench", help="a bench.json written by bench/bench.sh")
    args = parser.parse_args()
    figures = load_bench(args.bench) if args.bench else DEFAULTS
    cores, gateways, counters, rows = plan(args.rate, figures)
    print(f"target: {args.rate:,.0f} increments/s")
    print(f"CPU: {figures['cpu_split_hot']} s per 1M increments (split, hot) -> {cores:,.1f} cores at "
          f"{POD_UTILISATION:.0%} utilisation")
    print(f"pods (1 core each): {gateways} gateways + {counters} counters")
    print()
    print("| keys | Redis cmds per increment | Redis ops/s | shards (at "
          f"{REDIS_OPS_PER_SHARD:,.0f} ops/s each) |")
    print("|---|---|---|---|")
    for dist, per_inc, ops, shards in rows:
        print(f"| {dist} | {per_inc:.4f} | {ops:,.0f} | {shards} |")


if __name__ == "__main__":
    main()
