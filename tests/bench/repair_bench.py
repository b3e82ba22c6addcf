#!/usr/bin/env python3
"""Repair benchmark: anti-entropy throughput, its effect on ingest, digest
size and the rebuild time of a wiped replica.

  tests/bench/repair_bench.py [--hosts 100] [--hours 3] [--build build] [--keep]
                              [--rebuild-only] [--rounds 2]

1. A cluster from tests/integration/harness.py: 3 nodes, RF=3, 6 shards,
   scheduled repair off. n3 is stopped, the devops workload (`strata bench`:
   HOSTS x HOURS x 10 fields at 10 s) is loaded through the router, then
   n1/n2 are stopped, their hint queues for n3 deleted, and all restarted:
   n3 lacks everything and only repair can give it back.
2. Ingest alone: `strata bench --hours 0.25` (its samples/s).
3. The same ingest while `strata repair` runs: ingest samples/s, and the
   repair's samples moved / seconds.
4. A repair with nothing to move: the bytes received are the digests
   (per shard and per series).
5. Rebuild: n3 is kill -9'd, its data dir removed and it is started again;
   the time until strata_node_rebuilding is 0, and the samples it pulled.
   A/B in the same run, interleaved (--rounds of each): streaming only
   (n3 started with STRATA_REPAIR_NO_FILES=1: samples pulled page by page,
   as before segment files were copied) against the default (sealed
   segment files copied as files, the rest pulled); each time n3's export
   must hold as many samples as n1's.
   --rebuild-only: load the workload with every node up, then only step 5.

A benchmark, not a test: it prints figures. Every process it starts is
stopped by PID at the end; --keep keeps the temp dir (data, logs).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--hours", type=float, default=3)
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--rebuild-only", action="store_true")
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    os.environ["STRATA_BIN_DIR"] = os.path.abspath(a.build)
    from harness import Cluster, metric_sum

    c = Cluster(nodes=3, routers=1, shards=6, rf=3, tag="repair-bench",
                storage={"memtable_max_age": "5s"},
                replication={"repair_interval": "0s", "replica_timeout": "2s",
                             "hint_max_bytes": "4GiB"}).start()
    cli = os.path.join(a.build, "cli", "strata")

    def bench(hours, quiet=True):
        t = time.monotonic()
        r = subprocess.run([cli, "bench", "--hosts", str(a.hosts), "--hours", str(hours),
                            "--router", c.router_url(0)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=7200)
        secs = time.monotonic() - t
        out = r.stdout.decode()
        samples = a.hosts * 10 * int(hours * 3600 / 10)
        if not quiet:
            print(out[-400:])
        return secs, samples, r.returncode

    def repair(*args):
        t = time.monotonic()
        r = subprocess.run([cli, "repair", "--router", c.router_url(0)] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=7200)
        secs = time.monotonic() - t
        out = r.stdout.decode()
        moved = sum(int(m) for m in re.findall(r"series, (\d+) samples", out))
        rx = 0.0
        for num, unit in re.findall(r"([\d.]+) (B|kB|MB|GB) received", out):
            rx += float(num) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[unit]
        return secs, moved, rx, out

    def loadavg():
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])

    def rebuild(stream):
        c.kill9(2)
        shutil.rmtree(c.data_dir(2))
        if stream:
            os.environ["STRATA_REPAIR_NO_FILES"] = "1"
        try:
            t = time.monotonic()
            c.start_node(2)
        finally:
            os.environ.pop("STRATA_REPAIR_NO_FILES", None)
        c.wait_until(lambda: metric_sum(c.node_metrics(2), "strata_node_rebuilding") == 0,
                     3600, "n3 to rebuild")
        secs = time.monotonic() - t
        m = c.node_metrics(2)
        moved = metric_sum(m, "strata_node_repair_samples_total")
        files = metric_sum(m, "strata_node_repair_files_copied_total")
        fbytes = metric_sum(m, "strata_node_repair_file_bytes_total")
        have = [metric_sum(c.node_metrics(i), "strata_node_series") for i in (0, 2)]
        print("rebuild of a wiped n3 (%s): %.1f s, %d samples moved = %.0f samples/s, %d files "
              "(%.1f MB) copied; series n1 %d, n3 %d; load %s"
              % ("streaming only" if stream else "file copy", secs, moved,
                 moved / secs if secs else 0, files, fbytes / 1e6, have[0], have[1], loadavg()))
        return secs

    def rebuild_ab():
        c.wait_hints_drained(600)
        # every head flushed: the data sits in sealed segments, as on a node
        # that has been running for a while
        c.wait_until(lambda: all(metric_sum(c.node_metrics(i), "strata_node_head_samples") == 0
                                 for i in range(3)), 600, "heads flushed")
        times = {True: [], False: []}
        for _ in range(a.rounds):
            for stream in (True, False):
                times[stream].append(rebuild(stream))
        s, f = min(times[True]), min(times[False])
        print("rebuild A/B (best of %d): streaming %.1f s, file copy %.1f s: %.1fx"
              % (a.rounds, s, f, s / f if f else 0))

    try:
        c.wait_peers_up()
        if a.rebuild_only:
            secs, samples, rc = bench(a.hours, quiet=False)
            print("load: %d samples in %.1f s (exit %d); load %s" % (samples, secs, rc,
                                                                      loadavg()))
            rebuild_ab()
            return
        assert c.sigterm(2) == 0
        secs, samples, rc = bench(a.hours, quiet=False)
        print("load (n3 down): %d samples in %.1f s (exit %d)" % (samples, secs, rc))
        for i in (0, 1):
            assert c.sigterm(i) == 0
            shutil.rmtree(os.path.join(c.data_dir(i), "hints", c.node_ids[2]),
                          ignore_errors=True)
        c.start_all()
        c.wait_peers_up()

        secs, samples, rc = bench(0.25)
        print("ingest alone: %d samples in %.1f s = %.0f samples/s" % (samples, secs,
                                                                        samples / secs))
        res = {}

        def run_repair():
            res["r"] = repair()
        th = threading.Thread(target=run_repair)
        th.start()
        secs, samples, rc = bench(0.25)
        th.join()
        rs, moved, rx, out = res["r"]
        print("ingest during repair: %d samples in %.1f s = %.0f samples/s" % (
            samples, secs, samples / secs))
        print("repair (with ingest): %d samples moved in %.1f s = %.0f samples/s, %.1f MB "
              "received\n%s" % (moved, rs, moved / rs if rs else 0, rx / 1e6, out))

        c.wait_hints_drained(600)  # hints of the ingest during repair: not a divergence
        rs, moved, rx, out = repair()
        series = sum(metric_sum(c.node_metrics(i), "strata_node_series") for i in range(3)) / 3
        print("repair with nothing to move: %.2f s, %d samples, %.1f kB of digests for %d "
              "digest exchanges (6 shards x 2 peers x 3 nodes); %.0f series per node"
              % (rs, moved, rx / 1e3, 36, series))
        print(out)
        print("  digest bytes per exchange: %.0f; per series: %.1f"
              % (rx / 36, rx / 36 / (series / 6) if series else 0))

        rebuild_ab()
    finally:
        c.stop()
        c.close(failed=a.keep)


if __name__ == "__main__":
    main()
