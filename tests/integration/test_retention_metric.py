"""Per-metric retention ([retention] METRIC = DURATION).

With `[retention] rm_short_v = 7d` and no global retention, a line of
rm_short older than 7 days is rejected like the global retention rejects
(partial-write 400 naming the line, the reason naming the metric, counted
in strata_router_lines_too_old_total); the same age for another metric is
written; a recent rm_short line is written.

Reads honour it too: with `rm_tiny_v = 20s`, a sample written 15 s in the
past leaves the export and the PromQL answers once it is 20 s old, while
the newer sample and another metric's sample of the same age stay (the
node's compaction drops such samples for good: unit_engine).
"""

import json
import time
import unittest

from harness import Cluster, ClusterTestCase, metric_sum


class RetentionCluster(Cluster):
    def ini_text(self, **kw):
        return super().ini_text(**kw) + "\n[retention]\nrm_short_v = 7d\nrm_tiny_v = 20s\n"


class MetricRetentionTest(ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        c = RetentionCluster(nodes=1, routers=1, shards=2, tag="ret-metric")
        cls._class_clusters = list(cls._class_clusters) + [c]
        c.start()
        cls.c = c

    def test_old_line_of_the_metric_rejected(self):
        now = int(time.time())
        old = (now - 10 * 86400) * 10**9
        c = self.c
        too_old0 = metric_sum(c.metrics(c.router_url()), "strata_router_lines_too_old_total")
        st, resp = c.write(["rm_short,host=a v=1 %d" % old,
                            "rm_other,host=a v=2 %d" % old,
                            "rm_short,host=b v=3 %d" % (now * 10**9)])
        self.assertEqual(st, 400, resp)
        self.assertEqual(resp["error"], "partial write: 1 of 3 lines rejected")
        self.assertEqual(len(resp["rejected"]), 1)
        self.assertEqual(resp["rejected"][0]["line"], 1)
        self.assertIn("is older than the retention of rm_short_v (7d)",
                      resp["rejected"][0]["reason"])
        self.assertEqual(metric_sum(c.metrics(c.router_url()),
                                    "strata_router_lines_too_old_total") - too_old0, 1)
        hosts = sorted(r["metric"]["host"] for r in c.export('{__name__="rm_short_v"}'))
        self.assertEqual(hosts, ["b"])
        self.assertEqual(len(c.export('{__name__="rm_other_v"}')), 1)

    def test_reads_hide_samples_past_the_retention(self):
        c = self.c
        now = time.time()
        old, new = int((now - 15) * 1000), int(now * 1000)
        st, resp = c.write(["rm_tiny,host=a v=1 %d" % (old * 10**6),
                            "rm_tiny,host=a v=2 %d" % (new * 10**6),
                            "rm_keep,host=a v=3 %d" % (old * 10**6)])
        self.assertEqual(st, 204, resp)

        def timestamps(metric):
            rows = c.export('{__name__="%s"}' % metric, start=int(now) - 60, end=int(now) + 60)
            return [t for r in rows for t in r["timestamps"]]

        self.assertEqual(timestamps("rm_tiny_v"), [old, new])
        c.wait_until(lambda: timestamps("rm_tiny_v") == [new], timeout=60,
                     what="the rm_tiny sample past its 20 s retention to leave the export")
        self.assertEqual(timestamps("rm_keep_v"), [old])
        st, _, body = c.get("/api/v1/query", params={
            "query": "count_over_time(rm_tiny_v[1m])", "time": str(new / 1000.0)})
        self.assertEqual(st, 200, body)
        self.assertEqual(json.loads(body)["data"]["result"][0]["value"][1], "1")


if __name__ == "__main__":
    unittest.main()
