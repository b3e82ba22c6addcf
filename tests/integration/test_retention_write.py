"""Writes older than the retention are never acknowledged as kept.

RouterRetentionTest: with [storage] retention = 30d, the router rejects each
line older than now - 30d like any other bad line (partial-write 400 naming
exactly those lines and the reason; the recent lines written and readable),
on /write and /api/v2/write alike, and counts them in
strata_router_lines_too_old_total (and strata_router_lines_rejected_total).
The labels of the rejected series appear nowhere.

NodeSafetyNetTest: a router whose cluster.ini keeps data forever in front of
nodes keeping 30 days (as when clocks disagree): the nodes drop the old
samples (strata_node_samples_too_old_total) and never index their series,
so /api/v1/labels and /api/v1/label/<name>/values do not list them."""

import time
import unittest

from harness import ClusterTestCase, metric_sum

OLD_2016_NS = 1451606400 * 10**9  # 2016-01-01T00:00:00Z
OLD_REASON = "timestamp 2016-01-01T00:00:00Z is older than the retention (30d)"


def now_ns():
    return int(time.time()) * 10**9


class RetentionChecks:
    c = None

    def labels(self):
        st, body = self.c.labels()
        self.assertEqual(st, 200, body)
        return body["data"]

    def values(self, name):
        st, body = self.c.label_values(name)
        self.assertEqual(st, 200, body)
        return body["data"]

    def assert_absent(self, metric, label, value):
        """No trace of a series that was never stored (metric: its
        measurement_field name): not exported, not in /series, its label
        name and values not listed."""
        self.assertEqual(self.c.export('{__name__="%s"}' % metric), [])
        st, body = self.c.series('{__name__="%s"}' % metric)
        self.assertEqual((st, body["data"]), (200, []), body)
        self.assertNotIn(label, self.labels())
        self.assertEqual(self.values(label), [])
        self.assertNotIn(value, self.values("host"))
        self.assertNotIn(metric, self.values("__name__"))


class RouterRetentionTest(RetentionChecks, ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        cls.c = cls.start_class_cluster(nodes=2, routers=1, shards=4, rf=2,
                                        storage={"retention": "30d"})

    def router_counter(self, name):
        return metric_sum(self.c.metrics(self.c.router_url()), name)

    def test_old_lines_rejected_recent_written(self):
        t = now_ns()
        body = ["rw_new,host=a v=1 %d" % (t - 3600 * 10**9),
                "rw_old,host=old2016a,rw_gone=x v=2 %d" % OLD_2016_NS,
                "rw_new,host=b v=3 %d" % (t - 60 * 10**9),
                "rw_old,host=old2016b,rw_gone=y v=4 %d" % (OLD_2016_NS + 60 * 10**9),
                "rw_new,host=a v=5 %d" % t]
        too_old0 = self.router_counter("strata_router_lines_too_old_total")
        bad0 = self.router_counter("strata_router_lines_rejected_total")
        st, resp = self.c.write(body)
        self.assertEqual(st, 400, resp)
        self.assertEqual(resp["error"], "partial write: 2 of 5 lines rejected")
        self.assertEqual(resp["rejected"], [
            {"line": 2, "reason": OLD_REASON},
            {"line": 4, "reason": "timestamp 2016-01-01T00:01:00Z is older than the "
                                  "retention (30d)"}])
        rows = {r["metric"]["host"]: r["values"] for r in self.c.export('{__name__="rw_new_v"}')}
        self.assertEqual(rows, {"a": [1, 5], "b": [3]})
        self.assert_absent("rw_old_v", "rw_gone", "old2016a")
        self.assertNotIn("old2016b", self.values("host"))
        self.assertEqual(self.router_counter("strata_router_lines_too_old_total") - too_old0, 2)
        self.assertEqual(self.router_counter("strata_router_lines_rejected_total") - bad0, 2)

    def test_v2_write_and_precision(self):
        t = int(time.time())
        st, resp = self.c.write(["rw2_old,host=old2016c,rw2_gone=z v=1 %d" % (OLD_2016_NS // 10**9),
                                 "rw2_new,host=c v=2 %d" % t],
                                path="/api/v2/write", precision="s")
        self.assertEqual(st, 400, resp)
        self.assertEqual(resp["rejected"], [{"line": 1, "reason": OLD_REASON}])
        rows = self.c.export('{__name__="rw2_new_v"}')
        self.assertEqual([r["timestamps"] for r in rows], [[t * 1000]])
        self.assert_absent("rw2_old_v", "rw2_gone", "old2016c")

    def test_only_recent_lines_still_204(self):
        st, resp = self.c.write("rw3,host=d v=1 %d" % now_ns())
        self.assertEqual(st, 204, resp)


class NodeSafetyNetTest(RetentionChecks, ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        keep30 = {"storage": {"retention": "30d"}}
        cls.c = cls.start_class_cluster(nodes=2, routers=1, shards=4, rf=2,
                                        node_overrides={0: keep30, 1: keep30})

    def test_dropped_series_not_listed(self):
        st, resp = self.c.write(["sn_old,host=old2016d,sn_gone=w v=1 %d" % OLD_2016_NS,
                                 "sn_new,host=e v=2 %d" % now_ns()], consistency="sync")
        self.assertEqual(st, 204, resp)  # this router keeps data forever
        dropped = sum(metric_sum(self.c.node_metrics(i), "strata_node_samples_too_old_total")
                      for i in range(2))
        self.assertEqual(dropped, 2)  # rf = 2: one sample dropped on each replica
        self.assertEqual(len(self.c.export('{__name__="sn_new_v"}')), 1)
        self.assert_absent("sn_old_v", "sn_gone", "old2016d")


if __name__ == "__main__":
    unittest.main()
