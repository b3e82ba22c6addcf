"""PromQL through the cluster: /api/v1/query and /api/v1/query_range over
data written through a router, answered by the other router, with results
checked against values computed here by hand. Also the Prometheus error
format for bad queries and parameters."""

import json
import time
import unittest
import urllib.parse

from harness import ClusterTestCase, http_request


class QueryTest(ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        c = cls.class_cluster(nodes=3, routers=2, shards=12)
        c.start()
        cls.c = c
        # 61 points, 10 s apart, ending at a whole minute in the past:
        # req_count{host="a"} = 10*i, {host="b"} = 20*i (counters, 1/s and 2/s)
        # req_lat{host} = 0.5 + (i % 3)
        now = int(time.time())
        cls.t_end = now - now % 60 - 60
        cls.t0 = cls.t_end - 600
        lines = []
        for i in range(61):
            t = cls.t0 + 10 * i
            for h, k in (("a", 1), ("b", 2)):
                lines.append("req,host=%s count=%d,lat=%s %d" % (h, 10 * k * i, 0.5 + i % 3, t))
        status, body = c.write(lines, router=0, precision="s")
        assert status == 204, (status, body)

    def q(self, path, **params):
        url = self.c.router_url(1) + path + "?" + urllib.parse.urlencode(params)
        status, _, body = http_request(url)
        return status, json.loads(body)

    def instant(self, query, t):
        status, body = self.q("/api/v1/query", query=query, time=t)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["status"], "success")
        self.assertEqual(body["data"]["resultType"], "vector")
        return {tuple(sorted(r["metric"].items())): float(r["value"][1])
                for r in body["data"]["result"]}

    def test_selector_and_lookback(self):
        # the newest sample at or before t within 5 minutes
        got = self.instant('req_count{host="a"}', self.t_end + 30)
        self.assertEqual(got, {(("__name__", "req_count"), ("host", "a")): 600.0})
        # past the 5 minute lookback: nothing
        self.assertEqual(self.instant('req_count{host="a"}', self.t_end + 301), {})

    def test_aggregations(self):
        t = self.t_end
        self.assertEqual(self.instant("sum(req_count)", t), {(): 1800.0})
        self.assertEqual(self.instant("count(req_count)", t), {(): 2.0})
        got = self.instant("max by (host) (req_count)", t)
        self.assertEqual(got, {(("host", "a"),): 600.0, (("host", "b"),): 1200.0})
        got = self.instant("topk(1, req_count)", t)
        self.assertEqual(list(got.values()), [1200.0])

    def test_rate_range(self):
        status, body = self.q("/api/v1/query_range", query="rate(req_count[1m])",
                              start=self.t_end - 120, end=self.t_end, step=60)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["data"]["resultType"], "matrix")
        res = {r["metric"]["host"]: r["values"] for r in body["data"]["result"]}
        self.assertEqual(sorted(res), ["a", "b"])
        for host, per_s in (("a", 1.0), ("b", 2.0)):
            self.assertEqual([p[0] for p in res[host]],
                             [self.t_end - 120, self.t_end - 60, self.t_end])
            self.assertEqual([float(p[1]) for p in res[host]], [per_s] * 3)

    def test_binary_and_functions(self):
        t = self.t_end
        got = self.instant('req_count{host="b"} / ignoring(host) req_count{host="a"}', t)
        self.assertEqual(got, {(): 2.0})
        got = self.instant('req_count{host="a"} and req_lat', t)
        self.assertEqual(got, {(("__name__", "req_count"), ("host", "a")): 600.0})
        # i = 60 at t_end: lat = 0.5 + 0 ; avg over the last 30 s: i = 58,59,60 -> 2.5,1.5,0.5
        got = self.instant('avg_over_time(req_lat{host="a"}[30s])', t)
        self.assertEqual(got, {(("host", "a"),): 1.5})

    def test_windowless_rollup_instant(self):
        # MetricsQL: rate(m) uses the step as its window; an instant query's
        # step is 5m unless `step` is given. The same with and without pushdown.
        t = self.t_end
        for pd in ("1", "0"):
            def inst(query, **extra):
                status, body = self.q("/api/v1/query", query=query, time=t, pushdown=pd, **extra)
                self.assertEqual(status, 200, body)
                return {tuple(sorted(r["metric"].items())): float(r["value"][1])
                        for r in body["data"]["result"]}
            for f, sel in (("rate", "req_count"), ("increase", "req_count"),
                           ("avg_over_time", "req_lat"), ("count_over_time", "req_lat"),
                           ("max_over_time", "req_count")):
                for step, win in ((None, "5m"), ("60", "1m"), ("30s", "30s")):
                    extra = {"step": step} if step else {}
                    got = inst("%s(%s)" % (f, sel), **extra)
                    self.assertEqual(len(got), 2, (pd, f, step, got))
                    self.assertEqual(got, inst("%s(%s[%s])" % (f, sel, win)), (pd, f, step))
            a, b = (("host", "a"),), (("host", "b"),)
            got = inst("rate(req_count)")
            self.assertAlmostEqual(got[a], 1.0)
            self.assertAlmostEqual(got[b], 2.0)
            self.assertEqual(inst("count_over_time(req_lat)"), {a: 30.0, b: 30.0})
            self.assertEqual(inst("count_over_time(req_lat)", step="1m"), {a: 6.0, b: 6.0})
            # i = 58,59,60 in the last 30 s: lat 2.5, 1.5, 0.5
            self.assertEqual(inst('avg_over_time(req_lat{host="a"})', step="30s"), {a: 1.5})
            self.assertAlmostEqual(inst("sum(increase(req_count))")[()], 900.0)
        status, body = self.q("/api/v1/query", query="rate(req_count)", time=t, step="0")
        self.assertEqual(status, 400)
        self.assertIn("invalid parameter \"step\"", body["error"])
        # a range query keeps its step as the window
        status, body = self.q("/api/v1/query_range", query="count_over_time(req_lat)",
                              start=t - 120, end=t, step=60)
        self.assertEqual(status, 200, body)
        for r in body["data"]["result"]:
            self.assertEqual([float(p[1]) for p in r["values"]], [6.0] * 3)

    def test_post_form(self):
        url = self.c.router_url(1) + "/api/v1/query"
        form = urllib.parse.urlencode({"query": "sum(req_count)", "time": self.t_end}).encode()
        status, _, body = http_request(url, method="POST", body=form, headers={
            "Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["data"]["result"][0]["value"][1], "1800")

    def test_errors(self):
        status, body = self.q("/api/v1/query", query="sum(req_count")
        self.assertEqual(status, 400)
        self.assertEqual(body["errorType"], "bad_data")
        self.assertIn("parse error", body["error"])
        status, body = self.q("/api/v1/query_range", query="up", start=10, end=5, step=1)
        self.assertEqual(status, 400)
        self.assertIn("end timestamp must not be before start time", body["error"])
        status, body = self.q("/api/v1/query_range", query="up", start=0, end=10, step=0)
        self.assertEqual(status, 400)
        self.assertIn("zero or negative query resolution step", body["error"])
        status, body = self.q("/api/v1/query", query="rate(req_count)")  # MetricsQL: step window
        self.assertEqual(status, 200, body)


if __name__ == "__main__":
    unittest.main()
