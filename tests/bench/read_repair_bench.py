#!/usr/bin/env python3
"""Read repair benchmark: what detection costs a quorum read, and how fast a
stale replica converges after one quorum read.

  tests/bench/read_repair_bench.py [--hosts 100] [--hours 1] [--reps 9]
                                   [--build build] [--keep]

1. A cluster from tests/integration/harness.py: 3 nodes, RF=3, 6 shards,
   scheduled repair off, two routers on the same nodes: router 0 with
   [replication] read_repair = on, router 1 restarted with a copy of
   cluster.ini saying off (the key is per host). The devops workload
   (`strata bench`: HOSTS x HOURS x 10 fields at 10 s) is loaded.
2. Cost (A/B, interleaved, the same data, replicas in agreement): each
   round runs every query of QUERIES with read_consistency=quorum on
   router 0 and on router 1, alternating which goes first; then both
   routers are restarted with the configs swapped and the rounds run
   again (so a difference between the two processes cancels out); p50
   per query, read repair on vs off.
3. Convergence: n3 is stopped, 20 minutes of the workload loaded at
   timestamps the first load does not have (5 h ago),
   n1/n2 stopped, their hint queues for n3 deleted, all restarted; one
   quorum export of everything on router 0, then the time until n3's
   node-local export of every shard the read asked it for equals n1's.

A benchmark, not a test: it prints figures (with /proc/loadavg). Every
process it starts is stopped by PID at the end; --keep keeps the temp dir.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

QUERIES = [
    ("export cpu_usage_user", "/api/v1/export", lambda s, e: [
        ("match[]", "cpu_usage_user"), ("start", str(s)), ("end", str(e))]),
    ("avg by host avg_over_time", "/api/v1/query_range", lambda s, e: [
        ("query", "avg by (hostname) (avg_over_time(cpu_usage_user[5m]))"),
        ("start", str(s)), ("end", str(e)), ("step", "60")]),
    ("sum rate", "/api/v1/query_range", lambda s, e: [
        ("query", "sum(rate(cpu_usage_system[5m]))"), ("start", str(s)), ("end", str(e)),
        ("step", "60")]),
]


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--hours", type=float, default=1)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    os.environ["STRATA_BIN_DIR"] = os.path.abspath(a.build)
    from harness import Cluster, metric_sum

    repl = {"repair_interval": "0s", "replica_timeout": "2s", "hint_max_bytes": "4GiB"}
    c = Cluster(nodes=3, routers=2, shards=6, rf=3, tag="read-repair-bench",
                replication=repl, router={"request_timeout": "60s"}).start()
    cli = os.path.join(a.build, "cli", "strata")

    def bench(hours, start=None):
        extra = ["--start", str(start)] if start else []
        r = subprocess.run([cli, "bench", "--hosts", str(a.hosts), "--hours", str(hours),
                            "--router", c.router_url(0)] + extra, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=7200)
        assert r.returncode == 0, r.stdout.decode()[-600:]

    try:
        off = c.write_config(os.path.join(c.dir, "cluster-rr-off.ini"),
                             replication=dict(repl, read_repair="off"))
        c.routers[1].terminate()
        c.routers[1].argv[2] = off
        c.start_router(1)
        c.wait_peers_up()
        t = time.monotonic()
        bench(a.hours)
        c.wait_hints_drained(600)
        print("loaded %d hosts x %.2f h in %.1f s" % (a.hosts, a.hours, time.monotonic() - t))
        end = int(time.time())
        start = end - int(a.hours * 3600) - 7200

        def run(router, path, params):
            t = time.monotonic()
            st, _, body = c.get(path, router, params + [("read_consistency", "quorum")],
                                timeout=120)
            assert st == 200, (st, body[:300])
            return (time.monotonic() - t) * 1000

        on_cfg, off_cfg = c.config_path, off
        divs = 0  # divergent reads seen by the router with read repair on
        lat = {(q[0], on): [] for q in QUERIES for on in (True, False)}
        la0 = loadavg()
        for swap in (False, True):
            if swap:  # the other way round: router 0 off, router 1 on
                for i, cfg in ((0, off_cfg), (1, on_cfg)):
                    c.routers[i].terminate()
                    c.routers[i].argv[2] = cfg
                    c.start_router(i)
                c.wait_peers_up()
            on_router = 1 if swap else 0
            for q in QUERIES:  # warm-up
                for r in (0, 1):
                    run(r, q[1], q[2](start, end))
            for rep in range(a.reps):
                for q in QUERIES:
                    for r in ((0, 1) if rep % 2 == 0 else (1, 0)):
                        lat[(q[0], r == on_router)].append(run(r, q[1], q[2](start, end)))
            divs += metric_sum(c.metrics(c.router_url(on_router)),
                               "strata_router_read_repair_divergent_total")
        print("\nquorum read p50 over 2 x %d interleaved rounds, each router once on and once "
              "off (loadavg before %s, after %s)" % (a.reps, la0, loadavg()))
        print("%-30s %12s %12s %8s" % ("query", "rr on (ms)", "rr off (ms)", "on/off"))
        for q in QUERIES:
            on = statistics.median(lat[(q[0], True)])
            offm = statistics.median(lat[(q[0], False)])
            print("%-30s %12.1f %12.1f %8.3f" % (q[0], on, offm, on / offm))
        print("divergent reads seen while the replicas agreed: %d" % divs)
        # back to router 0 on for the convergence
        for i, cfg in ((0, on_cfg), (1, off_cfg)):
            c.routers[i].terminate()
            c.routers[i].argv[2] = cfg
            c.start_router(i)
        c.wait_peers_up()

        # convergence after one quorum read
        assert c.sigterm(2) == 0
        bench(1 / 3, start=int(time.time()) - 5 * 3600)  # timestamps the first load has not
        for i in (0, 1):
            assert c.sigterm(i) == 0
            shutil.rmtree(os.path.join(c.data_dir(i), "hints", c.node_ids[2]),
                          ignore_errors=True)
        c.start_all()
        c.wait_peers_up()
        for n in c.node_ids:
            c.wait_node_state(n, "up")
        n3 = c.node_ids[2]
        shards = [s for s, reps in c.cluster_placement().items() if n3 in reps[:2]]

        def lacking():
            miss = 0
            for s in shards:
                want = c.node_shard_data(0, s)
                got = c.node_shard_data(2, s)
                for k, v in want.items():
                    g = got.get(k, {})
                    miss += sum(1 for t in v if t not in g)
            return miss

        before = lacking()
        t = time.monotonic()
        st, _, _ = c.get("/api/v1/export", 0, [("match[]", '{__name__=~".+"}'),
                                               ("read_consistency", "quorum")], timeout=600)
        read_s = time.monotonic() - t
        assert st == 200
        c.wait_until(lambda: lacking() == 0, 600, "n3 to converge")
        secs = time.monotonic() - t
        m = c.metrics(c.router_url(0))
        print("\nconvergence: n3 lacked %d samples in the %d shards the read asked it for; "
              "the quorum export took %.2f s; n3 held them all %.2f s after the read started "
              "(repairs started %d, dropped %d; n3 pulled %d samples; loadavg %s)"
              % (before, len(shards), read_s, secs,
                 metric_sum(m, "strata_router_read_repairs_total"),
                 metric_sum(m, "strata_router_read_repair_dropped_total"),
                 metric_sum(c.node_metrics(2), "strata_node_repair_samples_total"), loadavg()))
    finally:
        c.stop()
        c.close(failed=a.keep)


if __name__ == "__main__":
    main()
