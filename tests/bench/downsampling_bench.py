#!/usr/bin/env python3
"""Downsampling benchmark: samples read and latency of a long query at step
1h over raw data and over the 1h tier, and bytes on disk per tier.

  tests/bench/downsampling_bench.py [--hosts 2] [--days 90] [--reps 5]
                                    [--decimals 0] [--build build] [--keep]
                                    [--bytes-only]

1. Three clusters from tests/integration/harness.py (1 node + 1 router,
   4 shards, real processes on 127.0.0.1): "raw" (no tiers), "1m"
   (`tiers = 7d:1m`: everything old ends in the 1-minute tier) and "1h"
   (`tiers = 7d:1m, 90d:1h`: everything old ends in the 1-hour tier).
2. Each is loaded with `strata bench` (the devops cpu workload, 10 s
   interval, integer values unless --decimals) for --days days starting 2020-01-01, so all
   of it is older than every tier age; the tiered clusters wait until
   their tiers hold all of it (strata_node_tier_watermark_seconds).
3. The same queries over the whole range at step 1h run --reps times on
   "raw" and "1h": p50 latency, the samples the node read
   (strata_node_query_samples_total delta per run: raw samples, or
   buckets) and whether the answers are identical.
4. Bytes on disk: strata_node_disk_bytes (raw engine) of "raw", and
   strata_node_tier_disk_bytes of the 1m tier ("1m") and of the 1h tier
   ("1h"), per series-day, and per bucket (bytes / buckets written); then a
   year of 10 s data with the example tiers (7 days raw, 83 days at 1m, 275
   days at 1h: each tier's measured bytes per series-day times its days,
   the loaded days being a slice of that year) against a year raw.
   --bytes-only skips step 3.

A benchmark, not a test: it prints figures. Processes are stopped by PID.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "integration"))
from harness import Cluster, binary, http_request, metric_sum, parse_metrics  # noqa: E402

START = 1577836800  # 2020-01-01T00:00:00Z
QUERIES = ["max_over_time(cpu_usage_user[1h])",
           "sum by (hostname) (rate(cpu_usage_user[1h]))",
           "sum_over_time(cpu_usage_idle[1h])"]


class TierCluster(Cluster):
    tiers = None

    def ini_text(self, **kw):
        t = super().ini_text(**kw)
        return t + ("\n[downsampling]\ntiers = %s\n" % self.tiers if self.tiers else "")


def make(tiers, tag):
    c = TierCluster(nodes=1, routers=1, shards=4, tag=tag,
                    storage={"memtable_max_age": "5s", "memtable_max_mb": "64MiB"})
    c.tiers = tiers
    c.start()
    return c


def node_metrics(c):
    return c.metrics(c.node_http_url(0))


def load(c, hosts, days, decimals):
    subprocess.run([binary("cli"), "bench", "--router", c.router_url(), "--hosts", str(hosts),
                    "--hours", str(days * 24), "--start", str(START), "--batch", "10000",
                    "--decimals", str(decimals)],
                   check=True, stdout=subprocess.DEVNULL)


def wait_tier(c, res_ms, end):
    """The tier's watermark (over the shards that moved something) is past
    the data and no raw segment is left (every shard moved)."""
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        m = node_metrics(c)
        wm = metric_sum(m, "strata_node_tier_watermark_seconds", resolution_ms=str(res_ms))
        if wm >= end and metric_sum(m, "strata_node_segments") == 0:
            return
        time.sleep(1)
    raise SystemExit("tier %d ms never reached %d" % (res_ms, end))


def run_query(c, q, end):
    params = {"query": q, "start": START, "end": end, "step": "1h"}
    url = c.router_url() + "/api/v1/query_range?" + urllib.parse.urlencode(params)
    before = metric_sum(node_metrics(c), "strata_node_query_samples_total")
    t0 = time.monotonic()
    st, hdrs, body = http_request(url, timeout=600)
    dt = time.monotonic() - t0
    if st != 200:
        raise SystemExit("%s: HTTP %d %r" % (q, st, body[:300]))
    read = metric_sum(node_metrics(c), "strata_node_query_samples_total") - before
    return dt, read, json.loads(body)["data"], hdrs.get("x-strata-resolution", "-")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=2)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--build", default="build")
    ap.add_argument("--decimals", type=int, default=0)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--bytes-only", action="store_true")
    a = ap.parse_args()
    os.environ.setdefault("STRATA_BIN_DIR", os.path.abspath(a.build))
    end = START + a.days * 86400
    clusters = {}
    try:
        for name, tiers in (("raw", None), ("1m", "7d:1m"), ("1h", "7d:1m, 90d:1h")):
            clusters[name] = c = make(tiers, "dsb-" + name)
            t0 = time.monotonic()
            load(c, a.hosts, a.days, a.decimals)
            print("%s: loaded %d hosts x %d days in %.1f s" % (name, a.hosts, a.days,
                                                                time.monotonic() - t0), flush=True)
        t0 = time.monotonic()
        wait_tier(clusters["1m"], 60000, end)
        wait_tier(clusters["1h"], 3600000, end)
        print("tiers took the data in %.1f s" % (time.monotonic() - t0), flush=True)
        series = metric_sum(node_metrics(clusters["raw"]), "strata_node_series")
        for q in ([] if a.bytes_only else QUERIES):
            out = {}
            for name in ("raw", "1h"):
                run_query(clusters[name], q, end)  # warm-up
                lat, reads = [], []
                for _ in range(a.reps):
                    dt, read, data, res = run_query(clusters[name], q, end)
                    lat.append(dt * 1000)
                    reads.append(read)
                out[name] = (statistics.median(lat), statistics.median(reads), data, res)
            r, t = out["raw"], out["1h"]
            print("%-48s raw: %8.1f ms %10d samples | 1h tier (%s): %7.1f ms %8d buckets | "
                  "%.0fx fewer, identical=%s" % (q, r[0], r[1], t[3], t[0], t[1],
                                                  r[1] / max(t[1], 1), r[2] == t[2]), flush=True)
        deadline = time.monotonic() + 300  # the raw head flushed (bytes on disk, not WAL)
        while metric_sum(node_metrics(clusters["raw"]), "strata_node_head_samples") > 0:
            if time.monotonic() > deadline:
                break
            time.sleep(1)
        raw_b = metric_sum(node_metrics(clusters["raw"]), "strata_node_disk_bytes")
        m1_b = metric_sum(node_metrics(clusters["1m"]), "strata_node_tier_disk_bytes",
                          resolution_ms="60000")
        h1_b = metric_sum(node_metrics(clusters["1h"]), "strata_node_tier_disk_bytes",
                          resolution_ms="3600000")
        sd = series * a.days
        per = {"raw": raw_b / sd, "1m": m1_b / sd, "1h": h1_b / sd}
        print("series %d; bytes per series-day: raw %.0f, 1m tier %.0f, 1h tier %.0f" %
              (series, per["raw"], per["1m"], per["1h"]))
        m1_n = metric_sum(node_metrics(clusters["1m"]), "strata_node_tier_buckets_written_total",
                          resolution_ms="60000")
        h1_n = metric_sum(node_metrics(clusters["1h"]), "strata_node_tier_buckets_written_total",
                          resolution_ms="3600000")
        print("bytes per bucket: 1m tier %.2f, 1h tier %.2f (a raw sample: %.2f)" %
              (m1_b / max(m1_n, 1), h1_b / max(h1_n, 1), raw_b / max(sd * 8640, 1)))
        year_raw = 365 * per["raw"]
        year_tiered = 7 * per["raw"] + 83 * per["1m"] + 275 * per["1h"]
        print("1 year of 10 s data per series: raw %.0f KiB, tiers 7d:1m,90d:1h %.0f KiB "
              "(%.1fx smaller)" % (year_raw / 1024, year_tiered / 1024, year_raw / year_tiered))
    finally:
        for c in clusters.values():
            c.stop()
            c.close(failed=a.keep)


if __name__ == "__main__":
    main()
