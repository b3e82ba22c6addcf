#!/usr/bin/env python3
"""Compaction rule benchmark: line-protocol ingest with 0 rules and with
1000 rules on the same cluster.

  tests/bench/rules_bench.py [--hosts 100] [--hours 2] [--rules 1000]
                             [--build build] [--keep]

1. A 3-node cluster, RF=2 (tests/integration/harness.py: real processes on
   127.0.0.1, free ports), one router.
2. `strata bench` loads the devops cpu workload (--hosts x --hours x 10
   fields at 10 s) once to create the series (not measured), then for
   other hours with no rules (measured).
3. Creates --rules rules, each matching one cpu_usage_* series of one host
   (cpu_usage_F{hostname="host_N"} -> cpu_usage_F_1m{r="i"}, avg over 1m),
   so every sample of those series is evaluated, then loads the same
   workload for the hours right before now (other timestamps: no
   duplicates) and prints both samples/s and the buckets the nodes closed.

A benchmark, not a test: it prints figures. Every process it starts is
stopped by PID at the end; --keep keeps the temp dir.
"""

import argparse
import os
import subprocess
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

FIELDS = ["usage_user", "usage_system", "usage_idle", "usage_nice", "usage_iowait",
          "usage_irq", "usage_softirq", "usage_steal", "usage_guest", "usage_guest_nice"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--hours", type=float, default=2)
    ap.add_argument("--rules", type=int, default=1000)
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--bucket", default="1m")
    ap.add_argument("--unmatched", action="store_true",
                    help="rules on metric names the workload does not write (lookup cost only)")
    a = ap.parse_args()
    os.environ["STRATA_BIN_DIR"] = os.path.abspath(a.build)
    from harness import Cluster, binary, http_request, metric_sum

    c = Cluster(nodes=3, routers=1, rf=2, shards=12, tag="rules-bench")
    try:
        c.start()
        url = c.router_url(0)
        now = int(time.time())

        def bench(start):
            out = subprocess.run([binary("cli"), "bench", "--router", url, "--hosts",
                                  str(a.hosts), "--hours", str(a.hours), "--start", str(start),
                                  "--conns", str(a.conns)],
                                 capture_output=True, text=True, timeout=3600)
            if out.returncode != 0:
                raise SystemExit(out.stderr)
            return out.stdout.strip()

        span = int(a.hours * 3600)
        bench(now - 5 * span)  # warm-up: creates the series
        print("== 0 rules")
        print(bench(now - 3 * span))
        t0 = time.monotonic()
        for i in range(a.rules):
            f = FIELDS[i % len(FIELDS)]
            body = urllib.parse.urlencode({
                "source": '%s_%s{hostname="host_%d"}' % ("nocpu" if a.unmatched else "cpu", f,
                                                          (i // len(FIELDS)) % a.hosts),
                "aggregation": "avg", "bucket": a.bucket,
                "dest": 'cpu_%s_1m{r="%d"}' % (f, i)}).encode()
            st, _, data = http_request(url + "/api/v1/admin/rules", "POST", body,
                                       {"Content-Type": "application/x-www-form-urlencoded"})
            if st != 200:
                raise SystemExit("create rule %d: HTTP %d %r" % (i, st, data[:300]))
        print("created %d rules in %.1f s" % (a.rules, time.monotonic() - t0))
        print("== %d rules" % a.rules)
        print(bench(now - span - 60))
        time.sleep(2)  # a benchmark: let the last bucket writes land before counting
        closed = sum(metric_sum(c.node_metrics(i), "strata_node_rule_buckets_closed_total")
                     for i in range(3))
        written = sum(metric_sum(c.node_metrics(i), "strata_node_rule_buckets_written_total")
                      for i in range(3))
        errors = sum(metric_sum(c.node_metrics(i), "strata_node_rule_errors_total")
                     for i in range(3))
        redone = sum(metric_sum(c.node_metrics(i), "strata_node_rule_buckets_recomputed_total")
                     for i in range(3))
        print("buckets closed %d, written %d, recomputed for late samples %d, rule errors %d"
              % (closed, written, redone, errors))
    finally:
        c.close(failed=a.keep)


if __name__ == "__main__":
    main()
