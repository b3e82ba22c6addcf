"""Query pushdown (docs/query.md) with real processes: every query here runs
twice through the router, with pushdown (the default) and with
`pushdown=0` (the router fetches raw samples and evaluates everything), as
range queries at two steps and as instant queries, and the answers must be
the same (relative tolerance 1e-9: partial sums add up in another order).

Also checked: which queries are pushed (the X-Strata-Pushdown header counts
the pushed subtrees; the router's raw-selection and pushed-part counters
move as the plan says, so a pushed `sum by (rate)` moves no raw sample);
label-set clashes between nodes give the same 422 as without pushdown; a
bad regex is a 400 parse error; quorum reads do not push; a replica killed
with -9 is failed over with pushdown on.

The data: 3 nodes, RF 2, 12 shards. 24 hosts in 3 regions, 1 h at 10 s:
a gauge with decimals, a counter with resets, a classic histogram, and
two metrics with the same labels (for the clash); and 700 series of one
metric at 200 s (more than a node reads on its event loop).
"""

import json
import math
import random
import time
import unittest
import urllib.parse

from harness import ClusterTestCase, http_request, parse_metrics

HOSTS = 24
WIDE = 700  # series of the metric wide_v
POINTS = 360
REL_TOL = 1e-9

# (query, expected number of pushed subtrees with pushdown on, instant only)
QUERIES = [
    ("rate(reqs_total[5m])", 1),
    ("sum by (region) (rate(reqs_total[5m]))", 1),
    ("sum without (host) (rate(reqs_total[5m]))", 1),
    ("avg by (region) (cpu_usage)", 1),
    ("avg(avg_over_time(cpu_usage[10m]))", 1),
    ("count by (region) (cpu_usage > 50)", 1),
    ("min by (region) (cpu_usage)", 1),
    ("max(max_over_time(cpu_usage[15m]))", 1),
    ("group by (region) (cpu_usage)", 1),
    ("topk(3, rate(reqs_total[5m]))", 1),
    ("bottomk(2, cpu_usage)", 1),
    ("topk by (region) (2, cpu_usage)", 1),
    ("sum(rate(reqs_total[5m])) / sum(rate(reqs_total[5m] offset 10m))", 2),
    ("histogram_quantile(0.9, sum by (le) (rate(lat_bucket[5m])))", 1),
    ("histogram_quantile(0.5, sum by (le, region) (rate(lat_bucket[5m])))", 1),
    ("stddev by (region) (cpu_usage)", 1),
    ("quantile(0.75, rate(reqs_total[5m]))", 1),
    ("max_over_time(sum(rate(reqs_total[5m]))[30m:1m])", 1),
    ("max_over_time(rate(reqs_total[5m])[20m:2m])", 1),
    ("round(cpu_usage * 2, 0.5) - 1", 1),
    ('label_replace(rate(reqs_total[5m]), "h", "$1", "host", "host-(.*)")', 1),
    ("rate(reqs_total[5m]) / on(host) group_left cpu_usage", 2),
    ("cpu_usage and on(host) rate(reqs_total[5m]) > 1", 2),
    ("increase(reqs_total[10m] @ end())", 1),
    ("sum(changes(cpu_usage[10m]))", 1),
    ("count_values(\"v\", floor(cpu_usage / 10))", 1),
    ("absent(nonexistent_metric)", 1),
    ("sort_desc(sum by (host) (rate(reqs_total[5m])))", 1),
    ("timestamp(cpu_usage)", 1),
    ("cpu_usage", 1),
    ("-cpu_usage", 1),
    ("1 + 2", 0),
]


def values_equal(a, b):
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= max(REL_TOL * max(abs(a), abs(b)), 1e-12)


class PushdownTest(ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        c = cls.class_cluster(nodes=3, routers=1, shards=12, rf=2)
        c.start()
        cls.c = c
        now = int(time.time())
        cls.t_end = now - now % 60 - 120
        cls.t0 = cls.t_end - POINTS * 10
        rng = random.Random(7)
        lines = []
        les = ("0.1", "0.5", "1", "+Inf")
        for h in range(HOSTS):
            host, region = "host-%d" % h, "r%d" % (h % 3)
            count = rng.randrange(1000)
            buckets = [0, 0, 0, 0]
            for i in range(POINTS):
                t = (cls.t0 + 10 * i) * 1000 + rng.choice((125, 250, 625))
                if rng.random() < 0.01:
                    count = rng.randrange(10)
                count += rng.randrange(50)
                cpu = round(rng.uniform(0, 100), 3)
                lines.append("cpu,host=%s,region=%s usage=%s %d" % (host, region, cpu, t))
                lines.append("reqs,host=%s,region=%s total=%di %d" % (host, region, count, t))
                for k in range(4):
                    buckets[k] += rng.randrange(5) * (k + 1)
                for k, le in enumerate(les):
                    lines.append("lat,host=%s,region=%s,le=%s bucket=%di %d"
                                 % (host, region, le, buckets[k], t))
                # the same labels under two names, on different shards
                lines.append("clash,host=%s a=%d,b=%d %d" % (host, i, i + 1, t))
        # more series than a node reads on its event loop (node_query.c,
        # NQ_INLINE_SERIES 256): such reads go to its thread pool
        for w in range(WIDE):
            for i in range(0, POINTS, 20):
                t = (cls.t0 + 10 * i) * 1000 + 500
                lines.append("wide,w=%d,g=%d v=%d %d" % (w, w % 7, (w * 31 + i) % 97, t))
        for k in range(0, len(lines), 20000):
            status, body = c.write(lines[k:k + 20000], precision="ms")
            assert status == 204, (status, body)

    def q(self, path, **params):
        url = self.c.router_url(0) + path + "?" + urllib.parse.urlencode(params)
        status, headers, body = http_request(url, timeout=60)
        return status, headers, json.loads(body)

    def router_metrics(self):
        status, _, body = http_request(self.c.router_url(0) + "/metrics")
        self.assertEqual(status, 200)
        m = parse_metrics(body)
        return (m[("strata_router_query_pushed_total", frozenset())],
                m[("strata_router_query_raw_selects_total", frozenset())])

    def both(self, path, **params):
        """Run with and without pushdown; return (pushed answer, raw answer, pushed count)."""
        s1, h1, b1 = self.q(path, **params)
        s0, h0, b0 = self.q(path, pushdown="0", **params)
        self.assertEqual(h0.get("x-strata-pushdown"), "0" if s0 == 200 else None)
        self.assertEqual((s1, b1.get("errorType")), (s0, b0.get("errorType")),
                         "%s %r: %r vs %r" % (path, params, b1, b0))
        return b1, b0, h1.get("x-strata-pushdown")

    def assert_same(self, got, want, what):
        self.assertEqual(got["status"], want["status"], what)
        if got["status"] != "success":
            return
        g, w = got["data"], want["data"]
        self.assertEqual(g["resultType"], w["resultType"], what)

        def by_labels(res):
            out = {}
            for r in res:
                key = tuple(sorted(r["metric"].items()))
                self.assertNotIn(key, out, what)
                out[key] = r.get("values") or [r["value"]]
            return out

        if g["resultType"] == "scalar":
            self.assertTrue(values_equal(g["result"][1], w["result"][1]), what)
            return
        gs, ws = by_labels(g["result"]), by_labels(w["result"])
        self.assertEqual(sorted(gs), sorted(ws), what)
        for key in gs:
            self.assertEqual([p[0] for p in gs[key]], [p[0] for p in ws[key]], (what, key))
            for (_, a), (_, b) in zip(gs[key], ws[key]):
                self.assertTrue(values_equal(a, b), "%s %r: %s vs %s" % (what, key, a, b))

    def test_same_answers(self):
        checked = 0
        for query, npushed in QUERIES:
            with self.subTest(query=query):
                for step in ("60", "37"):
                    got, want, pushed = self.both(
                        "/api/v1/query_range", query=query, start=str(self.t0 + 600),
                        end=str(self.t_end), step=step)
                    self.assert_same(got, want, "%s step %s" % (query, step))
                    self.assertEqual(pushed, str(npushed), query)
                    if got["data"]["result"] or query in ("absent(nonexistent_metric)",):
                        checked += 1
                for t in (self.t_end - 1234, self.t_end):
                    got, want, pushed = self.both("/api/v1/query", query=query, time=str(t))
                    self.assert_same(got, want, "%s at %d" % (query, t))
                    self.assertEqual(pushed, str(npushed), query)
        self.assertGreater(checked, len(QUERIES))

    def test_wide_selections(self):
        # a node answers small reads on its loop and sends wide ones (more
        # series than its loop's budget) to its pool: the same answers
        for query in ("sum by (g) (wide_v)", "count(wide_v)", "wide_v", "max(wide_v{g=\"3\"})"):
            with self.subTest(query=query):
                got, want, _ = self.both("/api/v1/query_range", query=query,
                                         start=str(self.t0 + 600), end=str(self.t_end), step="60")
                self.assert_same(got, want, query)
                self.assertTrue(got["data"]["result"], query)
                got, want, _ = self.both("/api/v1/query", query=query, time=str(self.t_end))
                self.assert_same(got, want, query)
        s, _, b = self.q("/api/v1/query", query="count(wide_v)", time=str(self.t_end))
        self.assertEqual(s, 200, b)
        self.assertEqual(b["data"]["result"][0]["value"][1], str(WIDE))

    def test_pushed_aggregate_moves_no_raw_samples(self):
        p0, r0 = self.router_metrics()
        s, h, b = self.q("/api/v1/query_range", query="sum by (region) (rate(reqs_total[5m]))",
                         start=str(self.t0), end=str(self.t_end), step="60")
        self.assertEqual(s, 200, b)
        self.assertEqual(len(b["data"]["result"]), 3)
        p1, r1 = self.router_metrics()
        self.assertEqual(r1, r0, "raw selections were fetched for a pushed query")
        # one QUERY per node that answers for some shards (3 nodes, RF 2)
        self.assertGreaterEqual(p1 - p0, 2)
        s, h, b = self.q("/api/v1/query_range", query="sum by (region) (rate(reqs_total[5m]))",
                         start=str(self.t0), end=str(self.t_end), step="60", pushdown="0")
        self.assertEqual(s, 200, b)
        p2, r2 = self.router_metrics()
        self.assertEqual(p2, p1)
        self.assertGreater(r2, r1)

    def test_label_clash_between_nodes(self):
        # clash_a and clash_b hold the same labels once the name is dropped:
        # the nodes each see part of them, the router must still refuse
        q = 'rate({__name__=~"clash_a|clash_b"}[5m])'
        got, want, pushed = self.both("/api/v1/query", query=q, time=str(self.t_end))
        self.assertEqual(pushed, None)
        self.assertEqual(got["errorType"], "execution")
        self.assertIn("same labelset", got["error"])

    def test_bad_regex_is_a_parse_error(self):
        s, _, b = self.q("/api/v1/query", query='cpu_usage{host=~"("}', time=str(self.t_end))
        self.assertEqual(s, 400, b)
        self.assertEqual(b["errorType"], "bad_data")
        self.assertIn("error parsing regexp", b["error"])

    def test_quorum_reads_fetch_raw_samples(self):
        s, h, b = self.q("/api/v1/query", query="sum(rate(reqs_total[5m]))",
                         time=str(self.t_end), read_consistency="quorum")
        self.assertEqual(s, 200, b)
        self.assertEqual(h.get("x-strata-pushdown"), "0")
        s1, h1, b1 = self.q("/api/v1/query", query="sum(rate(reqs_total[5m]))",
                            time=str(self.t_end))
        self.assertEqual(h1.get("x-strata-pushdown"), "1")
        self.assertTrue(values_equal(b["data"]["result"][0]["value"][1],
                                     b1["data"]["result"][0]["value"][1]))

    def test_bad_pushdown_parameter(self):
        s, _, b = self.q("/api/v1/query", query="cpu_usage", pushdown="maybe")
        self.assertEqual(s, 400, b)
        self.assertIn("pushdown", b["error"])

    def test_zz_failover_with_pushdown(self):
        q = "sum by (region) (rate(reqs_total[5m]))"
        params = dict(query=q, start=str(self.t0 + 600), end=str(self.t_end), step="60")
        s, _, before = self.q("/api/v1/query_range", **params)
        self.assertEqual(s, 200, before)
        self.c.kill9(1)
        try:
            # the first query may still go to the dead node: it must fail over
            s, h, after = self.q("/api/v1/query_range", **params)
            self.assertEqual(s, 200, after)
            self.assertEqual(h.get("x-strata-pushdown"), "1")
            self.assert_same(after, before, "after kill -9 of n2")
        finally:
            self.c.restart(1)


if __name__ == "__main__":
    unittest.main()


class LimitsTest(ClusterTestCase):
    """[router] query_max_series / query_max_samples, with and without
    pushdown: a clear 422 naming the limit, and the router keeps serving."""

    @classmethod
    def setUpClass(cls):
        c = cls.class_cluster(nodes=3, routers=1, shards=6, rf=1,
                              router={"query_max_series": "10", "query_max_samples": "3000"})
        c.start()
        cls.c = c
        now = int(time.time())
        cls.t_end = now - now % 60 - 120
        lines = []
        for h in range(20):
            for i in range(100):
                lines.append("lim,host=h%d v=%d %d" % (h, i, cls.t_end - 990 + 10 * i))
        status, body = c.write(lines, precision="s")
        assert status == 204, (status, body)

    def q(self, **params):
        url = self.c.router_url(0) + "/api/v1/query?" + urllib.parse.urlencode(params)
        status, _, body = http_request(url, timeout=60)
        return status, json.loads(body)

    def test_max_series(self):
        for pushdown in ("1", "0"):
            s, b = self.q(query="sum(lim_v)", time=str(self.t_end), pushdown=pushdown)
            self.assertEqual(s, 422, b)
            self.assertEqual(b["errorType"], "execution")
            self.assertIn("too many series", b["error"])
            self.assertIn("query_max_series = 10", b["error"])
        # within the limit
        s, b = self.q(query='sum(lim_v{host=~"h[0-4]"})', time=str(self.t_end))
        self.assertEqual(s, 200, b)
        self.assertEqual(b["data"]["result"][0]["value"][1], str(5 * 99))

    def test_max_samples(self):
        # 10 series x 100 samples over 20 min: over 3000 only as a range
        # query over the whole window with raw samples for a 20m rollup
        q = 'max_over_time(lim_v{host=~"h[0-9]"}[20m])'
        for pushdown in ("1", "0"):
            url = self.c.router_url(0) + "/api/v1/query_range?" + urllib.parse.urlencode(
                {"query": q, "start": str(self.t_end - 900), "end": str(self.t_end),
                 "step": "1", "pushdown": pushdown})
            s, _, body = http_request(url, timeout=60)
            b = json.loads(body)
            self.assertEqual(s, 422, b)
            self.assertIn("too many samples", b["error"])
            self.assertIn("query_max_samples = 3000", b["error"])
        s, b = self.q(query='max_over_time(lim_v{host="h1"}[20m])', time=str(self.t_end))
        self.assertEqual(s, 200, b)
