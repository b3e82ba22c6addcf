"""Writes are bounded: refused visibly, per line or per limit, never silently.

FutureTimestampTest: a line whose timestamp is more than [storage]
max_future (1d) ahead of the router's clock is rejected like any bad line
(400 partial write naming the line and "... is more than 1d ahead of the
server clock (max_future)"), counted in
strata_router_lines_too_far_future_total; the other lines are stored.

HeadBudgetTest: with head_max_mb = 16 and flushes that only the budget
triggers, a large write is answered 503 with a Retry-After header and a
JSON error naming the busy node and head_max_mb; retrying (after
Retry-After) ends in 204, and everything acknowledged is readable.

CardinalityTest: with max_series = 100 on a single node, a write of 150
new series is a 400 partial write naming max_series, its value, the node
and the samples dropped; the first 100 series are stored and stay
writable; the refusals are counted on the node
(strata_node_series_refused_total{limit="max_series"}) and on the router
(strata_router_samples_refused_total{limit="max_series"}).

MillionSeriesTest: one ~16 MB write of 1M new series through the router to
a 3-node RF=3 cluster is answered 204 while no node is ever declared down
(router /cluster polled throughout; no "node down" / "peer down" in the
logs): heartbeats never wait behind a huge frame (the router sends writes
in pieces of about 1 MiB, a few in flight per node)."""

import threading
import time
import unittest

from harness import ClusterTestCase, http_request, metric_by, metric_sum, parse_json, scaled

DAY_NS = 86400 * 10**9


def now_ns():
    return int(time.time()) * 10**9


class FutureTimestampTest(ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        cls.c = cls.start_class_cluster(nodes=2, routers=1, shards=4, rf=2)

    def test_far_future_line_rejected_others_written(self):
        t = now_ns()
        far = t + 2 * DAY_NS
        body = ["ff,host=a v=1 %d" % t,
                "ff_far,host=far v=2 %d" % far,
                "ff,host=b v=3 %d" % (t + 3600 * 10**9)]  # 1 h ahead: inside the window
        before = metric_sum(self.c.metrics(self.c.router_url()),
                            "strata_router_lines_too_far_future_total")
        st, resp = self.c.write(body)
        self.assertEqual(st, 400, resp)
        self.assertEqual(resp["error"], "partial write: 1 of 3 lines rejected")
        self.assertEqual(len(resp["rejected"]), 1, resp)
        self.assertEqual(resp["rejected"][0]["line"], 2)
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(far // 10**9))
        self.assertEqual(resp["rejected"][0]["reason"],
                         "timestamp %s is more than 1d ahead of the server clock (max_future)"
                         % when)
        rows = {r["metric"]["host"]: r["values"] for r in self.c.export('{__name__="ff_v"}')}
        self.assertEqual(rows, {"a": [1], "b": [3]})
        self.assertEqual(self.c.export('{__name__="ff_far_v"}'), [])
        after = metric_sum(self.c.metrics(self.c.router_url()),
                           "strata_router_lines_too_far_future_total")
        self.assertEqual(after - before, 1)


class HeadBudgetTest(ClusterTestCase):

    def test_busy_503_retry_after_then_written(self):
        c = self.cluster(nodes=1, routers=1, shards=2, rf=1,
                         storage={"head_max_mb": "16", "memtable_max_mb": "1GiB",
                                  "memtable_max_age": "1h"},
                         router={"request_timeout": "60s", "max_body_bytes": "64MiB"}).start()
        t0 = int(time.time()) * 1000 - 3600 * 1000
        n_series, per = 30000, 10  # not scaled: the bodies must reach head_max_mb

        def body(b):
            lines = ["hb,s=%d v=%d %d" % (s, k, t0 + (b * per + k) * 1000)
                     for k in range(per) for s in range(n_series)]
            return ("\n".join(lines) + "\n").encode()

        def post(data):
            return http_request(c.router_url() + "/write?precision=ms", "POST", data,
                                timeout=120)

        # writes of about 6 MB of head each (a body must fit in the budget
        # once flushed) until one meets the budget
        busy, refused_body, bodies = None, None, 0
        for b in range(16):
            data = body(b)
            bodies = b + 1
            st, hdrs, resp = post(data)
            if st == 503:
                busy, refused_body = (hdrs, parse_json(resp)), data
                break
            self.assertEqual(st, 204, resp[:500])
        self.assertIsNotNone(busy, "the writes never met head_max_mb: the test proves nothing")
        hdrs, resp = busy
        self.assertIn("retry-after", hdrs, resp)
        self.assertGreaterEqual(int(hdrs["retry-after"]), 1)
        self.assertIn("head_max_mb", resp["error"])
        self.assertIn("node n1 busy", resp["shards"][0]["error"], resp)
        self.assertIn("head_max", resp["shards"][0]["error"], resp)
        # what a sender does: wait Retry-After, send the same body again
        ok = False
        deadline = time.monotonic() + 180
        for attempt in range(60):
            time.sleep(min(int(hdrs.get("retry-after", "1")), 5))
            st, hdrs, resp = post(refused_body)
            if st == 204:
                ok = True
                break
            self.assertEqual(st, 503, resp[:500])
            if time.monotonic() > deadline:
                break
        self.assertTrue(ok, "writes never succeeded again after 503: %s" % (busy,))
        m = c.node_metrics(0)
        self.assertGreater(metric_sum(m, "strata_node_writes_refused_busy_total"), 0)
        self.assertGreater(metric_sum(c.metrics(c.router_url()), "strata_router_write_busy_total"),
                           0)
        rows = c.export('{__name__="hb_v",s="7"}')
        self.assertEqual(len(rows), 1)
        self.assertEqual(len(rows[0]["values"]), per * bodies)
        c.stop()


class CardinalityTest(ClusterTestCase):

    def test_max_series_partial_write(self):
        c = self.cluster(nodes=1, routers=1, shards=2, rf=1,
                         storage={"max_series": "100"}).start()
        t = now_ns()
        st, resp = c.write(["card,s=%d v=1 %d" % (i, t) for i in range(100)])
        self.assertEqual(st, 204, resp)
        st, resp = c.write(["card,s=%d v=2 %d" % (i, t + 10**9) for i in range(150)])
        self.assertEqual(st, 400, resp)
        self.assertIn("max_series", resp["error"])
        self.assertIn("(100)", resp["error"])
        self.assertIn("n1", resp["error"])
        refused = resp["refused"]
        self.assertEqual(sum(r["samples_dropped"] for r in refused), 50, resp)
        for r in refused:
            self.assertEqual((r["limit"], r["value"], r["node"]), ("max_series", 100, "n1"), r)
        # the existing series were written by that same request, and stay writable
        rows = c.export('{__name__="card_v"}')
        self.assertEqual(len(rows), 100)
        self.assertTrue(all(r["values"] == [1, 2] for r in rows), rows[:3])
        st, resp = c.write(["card,s=%d v=3 %d" % (i, t + 2 * 10**9) for i in range(100)])
        self.assertEqual(st, 204, resp)
        nm = c.node_metrics(0)
        self.assertEqual(metric_by(nm, "strata_node_series_refused_total", "limit")
                         .get("max_series"), 50)
        rm = c.metrics(c.router_url())
        self.assertEqual(metric_by(rm, "strata_router_samples_refused_total", "limit")
                         .get("max_series"), 50)
        c.stop()


class MillionSeriesTest(ClusterTestCase):

    def test_1m_series_no_node_declared_down(self):
        c = self.cluster(nodes=3, routers=1, shards=12, rf=3,
                         storage={"memtable_max_mb": "64MiB"},
                         router={"request_timeout": "120s", "max_body_bytes": "64MiB"},
                         replication={"heartbeat_interval": "1s"}).start()
        c.wait_peers_up()
        n = scaled(1000000, 100000)
        body = "".join("m1m,s=%07d v=1\n" % i for i in range(n)).encode()
        result = {}

        def write():
            try:
                result["r"] = http_request(c.router_url() + "/write", "POST", body, timeout=240)
            except Exception as e:  # reported by the main thread
                result["e"] = e

        th = threading.Thread(target=write)
        th.start()
        seen = set()
        polls = 0
        deadline = time.monotonic() + 300
        while th.is_alive() and time.monotonic() < deadline:
            st, _, data = http_request(c.router_url() + "/cluster", timeout=60)
            self.assertEqual(st, 200)
            for node in parse_json(data)["nodes"]:
                seen.add(node["state"])
            polls += 1
            th.join(0.25)
        th.join(60)
        self.assertNotIn("e", result, result.get("e"))
        self.assertIn("r", result, "the write did not finish")
        st, _, data = result["r"]
        self.assertEqual(st, 204, data[:1000])
        self.assertGreater(polls, 0)
        self.assertFalse(seen & {"down", "connecting"}, "a node was declared down: %s" % seen)
        self.assertEqual(c.log_lines(c.routers[0], r'msg="node down"'), [])
        for p in c.nodes:
            self.assertEqual(c.log_lines(p, r'msg="peer down"'), [], p.name)
        rows = c.export('{__name__="m1m_v",s="0000042"}')
        self.assertEqual(len(rows), 1)
        c.stop()


if __name__ == "__main__":
    unittest.main()
