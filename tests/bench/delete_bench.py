#!/usr/bin/env python3
"""Delete benchmark: latency of deletes and bytes before/after the purge on
the devops workload.

  tests/bench/delete_bench.py [--hosts 1000] [--hours 3] [--nodes 3]
                              [--build build] [--keep]

1. A cluster from tests/integration/harness.py (real processes on
   127.0.0.1, free ports, rf=1), loaded with `strata bench` (the CLI of
   --build: 1000 hosts x 3 h x 10 fields at 10 s by default, ending now).
2. Waits until every head is flushed (the deleted samples sit in segments:
   reads mask them, the purge rewrites them).
3. Times, through the router: a dry run and a delete of one series, of one
   host (10 series), of every host matching host_1.* (111 hosts) over the
   last hour, and of one metric on every host over all time.
4. Prints the nodes' disk bytes, forces the purge (POST
   /api/v1/admin/tsdb/clean_tombstones, timed) and prints the disk bytes and
   strata_node_purge_bytes_reclaimed_total after it.

A benchmark, not a test: it prints figures. Every process it starts is
stopped by PID at the end; --keep keeps the temp dir (data, logs).
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--hours", type=float, default=3)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    os.environ["STRATA_BIN_DIR"] = os.path.abspath(a.build)
    from harness import Cluster, http_request, metric_sum

    c = Cluster(nodes=a.nodes, routers=1, shards=4 * a.nodes, rf=1, tag="delete-bench",
                storage={"memtable_max_age": "2s"}).start()
    try:
        cli = os.path.join(a.build, "cli", "strata")
        t = time.monotonic()
        r = subprocess.run([cli, "bench", "--hosts", str(a.hosts), "--hours", str(a.hours),
                            "--router", c.router_url(0)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=3600)
        print("load: %.1f s, exit %d\n%s" % (time.monotonic() - t, r.returncode,
                                             r.stdout.decode()[-600:]))

        def node_sum(name):
            return sum(metric_sum(c.node_metrics(i), name) for i in range(a.nodes))

        c.wait_until(lambda: node_sum("strata_node_head_samples") == 0, 600, "heads flushed")
        print("disk bytes after load: %d" % node_sum("strata_node_disk_bytes"))
        now = time.time()

        def delete(match, start=None, end=None, dry=False):
            p = [("match[]", match)]
            if start is not None:
                p += [("start", "%.3f" % start), ("end", "%.3f" % end)]
            if dry:
                p.append(("dry_run", "1"))
            url = c.router_url(0) + "/api/v1/admin/tsdb/delete_series?" + urllib.parse.urlencode(p)
            t0 = time.monotonic()
            st, _, body = http_request(url, "POST", b"", timeout=600)
            ms = (time.monotonic() - t0) * 1000
            print("%-8s %-48s %-10s HTTP %d  %8.1f ms  %s" % (
                "dry-run" if dry else "delete", match, "last 1h" if start else "all time", st,
                ms, body.decode()[:120]))

        cases = [('cpu_usage_user{hostname="host_5"}', None, None),
                 ('{hostname="host_6"}', None, None),
                 ('{__name__=~"cpu_usage_.*",hostname=~"host_1.*"}', now - 3600, now),
                 ('cpu_usage_steal', None, None)]
        for m, s, e in cases:
            delete(m, s, e, dry=True)
            delete(m, s, e)
        print("tombstones pending: %d" % node_sum("strata_node_tombstones_pending"))
        before = node_sum("strata_node_disk_bytes")
        t0 = time.monotonic()
        st, _, body = http_request(c.router_url(0) + "/api/v1/admin/tsdb/clean_tombstones",
                                   "POST", b"", timeout=3600)
        ms = (time.monotonic() - t0) * 1000
        after = node_sum("strata_node_disk_bytes")
        print("purge: HTTP %d in %.0f ms; disk bytes %d -> %d; reclaimed %d; pending %d" % (
            st, ms, before, after, node_sum("strata_node_purge_bytes_reclaimed_total"),
            node_sum("strata_node_tombstones_pending")))
    finally:
        c.close(failed=a.keep)


if __name__ == "__main__":
    main()
