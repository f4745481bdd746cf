"""highpress_bench: the computing half of bench/bench.sh, highpress's side-by-side benchmark.

bench/bench.sh starts and stops the processes (redis-server, highpress, the peers, webdis,
Apache Kafka, wrk, redis-benchmark); everything it measures, derives, reports or renders is done
here, through `python3 -m highpress_bench SUBCOMMAND` (see __main__.py). The modules:

- scenarios: every measured scenario (wrk script arguments, key prefix, how its counters are read back);
- parse: pure parsers for what the tools print (wrk, redis-benchmark, /metrics, INFO, /proc);
- probe: talking to the running processes (HTTP, RESP, /proc) to take before/after snapshots;
- stats: medians and the figures derived from one run's record;
- targets: the target rows (P1 ... P10, H1 ... H3, E1, U1, R1, R2) and the peers' rows;
- report: the results and metadata files, the terminal report and bench.json;
- readme: the README's benchmark tables, rendered from a bench.json.
"""
