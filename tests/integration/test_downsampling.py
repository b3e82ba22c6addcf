"""Downsampling tiers ([downsampling] tiers) with real processes.

Two clusters get the same data, 50 hours of 10-second samples from
2020-01-01 (strata bench --print, integer-valued): one with
`tiers = 7d:1m, 90d:1h`, one without tiers (raw). On the tiered cluster the
background pass moves the data into the 1-minute tier and then into the
1-hour tier and drops what it moved (raw partitions, then 1-minute ones).
An export of that range (read_consistency one or quorum: the router's
buffered path) reads through the tiers: each 1-hour bucket's last
sample, with its own timestamp and value, the samples of the raw cluster's
export that are the last of their hour (the rule raw PromQL selections
follow too).

Then the same PromQL range queries, at steps and windows that are
multiples of 1 hour, must give identical answers on both clusters for the
functions documented as exact on buckets (sum/count/min/max/last/present
_over_time, rate, increase, delta, and aggregations of them), and the
tiered answer carries `X-Strata-Resolution: 1h`. A query the tiers cannot
answer exactly (avg_over_time, or times that are not multiples of any tier
width) says `raw` instead; one on times that are multiples of 1m but not 1h
reads the 1h buckets (all that is left) and says `1h`. Raw selections
over moved data read each bucket's last sample.
"""

import json
import subprocess
import time
import unittest

from harness import (Cluster, ClusterTestCase, binary, export_to_dict, metric_sum,
                     parse_export)

START = 1577836800  # 2020-01-01T00:00:00Z
HOURS = 50
HOSTS = 3
TIERS = "7d:1m, 90d:1h"

EXACT = [
    "sum_over_time(cpu_usage_user[1h])",
    "count_over_time(cpu_usage_user[2h])",
    "min_over_time(cpu_usage_idle[1h])",
    "max_over_time(cpu_usage_idle[3h])",
    "last_over_time(cpu_usage_system[1h])",
    "present_over_time(cpu_usage_system[1h])",
    "rate(cpu_usage_user[1h])",
    "increase(cpu_usage_nice[2h])",
    "delta(cpu_usage_irq[1h])",
    "sum by (hostname) (rate(cpu_usage_user[1h]))",
    "max(max_over_time(cpu_usage_steal[1h]))",
    "sum_over_time(cpu_usage_user[1h] offset 1h)",
]


class TierCluster(Cluster):
    """A cluster whose cluster.ini has a [downsampling] section."""

    def ini_text(self, **kw):
        return super().ini_text(**kw) + "\n[downsampling]\ntiers = %s\n" % TIERS


def generate():
    out = subprocess.run([binary("cli"), "bench", "--print", "--hosts", str(HOSTS), "--hours",
                          str(HOURS), "--start", str(START)], check=True,
                         stdout=subprocess.PIPE).stdout
    return out.decode().splitlines()


class DownsamplingTest(ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        storage = {"memtable_max_age": "1s"}
        cls.raw = cls.start_class_cluster(nodes=2, routers=1, shards=4, storage=storage,
                                          tag="ds-raw")
        tiered = TierCluster(nodes=2, routers=1, shards=4, storage=storage, tag="ds-tier")
        cls._class_clusters = list(cls._class_clusters) + [tiered]
        tiered.start()
        cls.tier = tiered
        lines = generate()
        for c in (cls.raw, cls.tier):
            for i in range(0, len(lines), 5000):
                st, body = c.write(lines[i:i + 5000])
                assert st == 204, (st, body)
        cls.wait_moved()

    @classmethod
    def wait_moved(cls):
        """Every node's 1h tier holds the whole data range (the watermark
        counts the shards that moved something; no raw segment is left
        once every shard has)."""
        want = START + HOURS * 3600

        def moved():
            for i in range(2):
                m = cls.tier.metrics(cls.tier.node_http_url(i))
                if metric_sum(m, "strata_node_tier_watermark_seconds",
                              resolution_ms="3600000") < want or \
                        metric_sum(m, "strata_node_segments") != 0:
                    return False
            return True

        cls.tier.wait_until(moved, timeout=240, what="the 1h tier to take the data")

    def query(self, c, q, step, start=START, end=START + (HOURS - 2) * 3600):
        st, hdrs, body = c.get("/api/v1/query_range",
                               params={"query": q, "start": start, "end": end, "step": step})
        self.assertEqual(st, 200, body)
        return hdrs, json.loads(body)["data"]

    def test_export_reads_bucket_last_samples(self):
        sel = '{__name__="cpu_usage_user"}'
        end = START + HOURS * 3600
        want = {}
        for key, samples in export_to_dict(self.raw.export(sel, start=START, end=end)).items():
            last = {}  # bucket end -> the bucket's last (ts, value)
            for ts in sorted(samples):
                last[-(-ts // 3600000) * 3600000] = (ts, samples[ts])
            want[key] = dict(last.values())
        self.assertTrue(want)
        got = export_to_dict(self.tier.export(sel, start=START, end=end))
        self.assertEqual(got, want)
        st, _, body = self.tier.get("/api/v1/export", params=[
            ("match[]", sel), ("start", str(START)), ("end", str(end)),
            ("read_consistency", "quorum")])
        self.assertEqual(st, 200, body[:300])
        self.assertEqual(export_to_dict(parse_export(body)), want)

    def test_exact_functions_identical(self):
        for q in EXACT:
            for step in ("1h", "3h"):
                with self.subTest(q=q, step=step):
                    h_raw, want = self.query(self.raw, q, step)
                    h_tier, got = self.query(self.tier, q, step)
                    self.assertTrue(want["result"], q)
                    self.assertEqual(got, want)
                    self.assertEqual(h_tier.get("x-strata-resolution"), "1h")
                    self.assertNotIn("x-strata-resolution", h_raw)

    def test_not_exact_says_raw(self):
        h, _ = self.query(self.tier, "avg_over_time(cpu_usage_user[1h])", "1h")
        self.assertEqual(h.get("x-strata-resolution"), "raw")
        h, _ = self.query(self.tier, "sum_over_time(cpu_usage_user[1h])", "1h",
                          start=START + 5)
        self.assertEqual(h.get("x-strata-resolution"), "raw")
        # aligned to 1m but not 1h: asks 1m buckets, and only 1h ones are left
        h, _ = self.query(self.tier, "sum_over_time(cpu_usage_user[1h])", "1h",
                          start=START + 600)
        self.assertEqual(h.get("x-strata-resolution"), "1h")

    def test_selector_reads_bucket_last_samples(self):
        """Raw selections over moved data read each bucket's last sample:
        with samples on every 10 s the last one of an hour sits on the hour,
        so a plain selector at whole hours matches the raw cluster."""
        h_raw, want = self.query(self.raw, "cpu_usage_user", "1h")
        h, got = self.query(self.tier, "cpu_usage_user", "1h")
        self.assertTrue(want["result"])
        self.assertEqual(got, want)
        self.assertEqual(h.get("x-strata-resolution"), "raw")
        h, got = self.query(self.tier, "avg_over_time(cpu_usage_user[2h])", "1h")
        self.assertTrue(got["result"])

    def test_metrics(self):
        m = self.tier.metrics(self.tier.node_http_url(0))
        self.assertGreater(metric_sum(m, "strata_node_tier_buckets_written_total",
                                      resolution_ms="60000"), 0)
        self.assertGreater(metric_sum(m, "strata_node_tier_buckets_written_total",
                                      resolution_ms="3600000"), 0)
        self.assertEqual(metric_sum(m, "strata_node_tier_errors_total"), 0)


if __name__ == "__main__":
    unittest.main()
