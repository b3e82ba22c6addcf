"""The router's HTTP API tells the truth and reads its parameters one way
(issue 12, items 3, 8, 9, 10, 11):

- every read endpoint (export, series, labels, label values, query,
  query_range) answers a POST form body exactly as it answers the same
  parameters in a GET query string, and so does a node's local export;
- precision=m and precision=h are accepted (InfluxDB 1.x), with the old
  names (n, ns, u, us, ms, s) still accepted;
- a gzip body sent without Content-Encoding: gzip is refused with a 400
  that says so, on /write and /api/v2/write;
- partial_response=1 warns only about shards that truly had no answer;
- a sync write with one replica killed names the replicas that acked, the
  one that failed and why, with the right counts.
"""

import gzip
import json
import time
import unittest
import urllib.parse

from harness import ClusterTestCase, http_request, parse_json, shard_ids

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
T0 = 1_700_000_000_000  # ms


def get(url, params):
    return http_request(url + "?" + urllib.parse.urlencode(params))


def post(url, params):
    return http_request(url, "POST", urllib.parse.urlencode(params).encode(), FORM)


def canon(body):
    """A JSON answer as a comparable value; export lines sorted."""
    text = body.decode()
    if text.startswith("{\"metric\"") or not text.strip():
        return sorted(l for l in text.split("\n") if l)
    return json.loads(text)


class ReadsAndWrites(ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        cls.c = cls.class_cluster(nodes=3, routers=1, shards=12, rf=1)
        cls.c.start()
        lines = []
        for i in range(20):
            lines.append("cpu,host=h%d,dc=%s usage=%d %d" % (i, "a" if i % 2 else "b", i,
                                                           (T0 + i * 1000) * 1_000_000))
            lines.append("mem,host=h%d,rack=r%d free=%d %d" % (i, i % 3, i,
                                                            (T0 + i * 1000) * 1_000_000))
        st, body = cls.c.write(lines)
        assert st == 204, (st, body)

    @classmethod
    def tearDownClass(cls):
        cls.close_class_clusters()

    def same(self, path, params):
        url = self.c.router_url() + path
        gs, _, gb = get(url, params)
        ps, _, pb = post(url, params)
        self.assertEqual(gs, 200, (path, gb[:300]))
        self.assertEqual(ps, gs, (path, "POST", pb[:300]))
        self.assertEqual(canon(pb), canon(gb), (path, params))
        return canon(gb)

    # ---- item 3: one parameter reader, GET and POST alike -------------------

    def test_post_form_equals_get_on_every_read_endpoint(self):
        rng = [("start", str(T0 // 1000 - 10)), ("end", str(T0 // 1000 + 100))]
        exp = self.same("/api/v1/export", [("match[]", "cpu_usage{dc=\"a\"}")] + rng)
        self.assertEqual(len(exp), 10)
        ser = self.same("/api/v1/series", [("match[]", "mem_free"), ("match[]", "cpu_usage{host=\"h1\"}")])
        self.assertEqual(len(ser["data"]), 21)
        labels = self.same("/api/v1/labels", [("match[]", "mem_free")])
        self.assertEqual(labels["data"], ["__name__", "host", "rack"])
        vals = self.same("/api/v1/label/host/values", [("match[]", "cpu_usage{dc=\"a\"}")])
        self.assertEqual(vals["data"], sorted("h%d" % i for i in range(1, 20, 2)))
        vals = self.same("/api/v1/label/__name__/values", [("match[]", "{rack=\"r1\"}")])
        self.assertEqual(vals["data"], ["mem_free"])
        q = self.same("/api/v1/query", [("query", "sum(cpu_usage)"), ("time", str(T0 // 1000 + 30))])
        self.assertEqual(q["data"]["result"][0]["value"][1], str(sum(range(20))))
        qr = self.same("/api/v1/query_range",
                       [("query", "count(mem_free)"), ("start", str(T0 // 1000 + 20)),
                        ("end", str(T0 // 1000 + 40)), ("step", "10s")])
        self.assertEqual(len(qr["data"]["result"][0]["values"]), 3)
        # form values win over the query string for a single-valued key;
        # match[] of both are used
        url = self.c.router_url() + "/api/v1/series?match[]=cpu_usage%7Bhost%3D%22h3%22%7D"
        st, _, b = http_request(url, "POST", b"match%5B%5D=cpu_usage%7Bhost%3D%22h4%22%7D", FORM)
        self.assertEqual(st, 200, b)
        hosts = sorted(s["host"] for s in parse_json(b)["data"])
        self.assertEqual(hosts, ["h3", "h4"])

    def test_post_without_match_still_rejected(self):
        st, _, b = post(self.c.router_url() + "/api/v1/series", [("start", "0")])
        self.assertEqual(st, 400)
        self.assertIn("no match[] parameter provided", parse_json(b)["error"])

    def test_bad_form_body_is_400(self):
        st, _, b = http_request(self.c.router_url() + "/api/v1/labels", "POST", b"match[]=%zz",
                                FORM)
        self.assertEqual(st, 400, b)
        self.assertIn("form body", parse_json(b)["error"])

    def test_node_export_post_form(self):
        url = self.c.node_http_url(0) + "/api/v1/export"
        params = [("match[]", "cpu_usage{dc=\"a\"}"), ("match[]", "mem_free{rack=\"r1\"}")]
        gs, _, gb = get(url, params)
        ps, _, pb = post(url, params)
        self.assertEqual((gs, ps), (200, 200), (gb[:200], pb[:200]))
        self.assertTrue(gb.strip())
        self.assertEqual(canon(pb), canon(gb))

    # ---- item 8: precisions --------------------------------------------------

    def test_precision_minutes_and_hours(self):
        for prec, unit_ms, val in (("m", 60_000, 28_333_334), ("h", 3_600_000, 472_223)):
            st, body = self.c.write("prec_%s,k=v x=1 %d" % (prec, val), precision=prec)
            self.assertEqual(st, 204, (prec, body))
            st, body = self.c.write("prec2_%s,k=v x=1 %d" % (prec, val), path="/api/v2/write",
                                    precision=prec)
            self.assertEqual(st, 204, (prec, body))
            for name in ("prec_" + prec, "prec2_" + prec):
                rows = self.c.export(name + "_x")
                self.assertEqual(len(rows), 1, name)
                self.assertEqual(rows[0]["timestamps"], [val * unit_ms], name)

    def test_old_precisions_still_accepted_and_bad_one_lists_all(self):
        for prec, ts in (("n", 1), ("ns", 1), ("u", 1), ("us", 1), ("ms", 1), ("s", 1)):
            st, body = self.c.write("oldprec x=1 %d" % ts, precision=prec)
            self.assertEqual(st, 204, (prec, body))
        st, body = self.c.write("oldprec x=1 1", precision="d")
        self.assertEqual(st, 400)
        for name in ("ns", "us", "ms", "s", "m", "h"):
            self.assertIn(name, body["error"])

    # ---- item 11: gzip without Content-Encoding ------------------------------

    def test_gzip_body_without_content_encoding(self):
        raw = gzip.compress(b"gz,host=a v=1 1000000000\n")
        for path in ("/write", "/api/v2/write"):
            st, body = self.c.write(raw, path=path)
            self.assertEqual(st, 400, (path, body))
            self.assertEqual(body["error"], "body is gzip-compressed: set Content-Encoding: gzip")
            st, body = self.c.write(raw, path=path, headers={"Content-Encoding": "gzip"})
            self.assertEqual(st, 204, (path, body))

    # ---- item 10: partial_response on a complete answer ----------------------

    def test_partial_response_complete_answer_has_no_warning(self):
        for path, params in (("/api/v1/series", [("match[]", "cpu_usage")]),
                             ("/api/v1/labels", []),
                             ("/api/v1/label/host/values", []),
                             ("/api/v1/query", [("query", "sum(cpu_usage)"),
                                                ("time", str(T0 // 1000 + 30))]),
                             ("/api/v1/query_range", [("query", "sum(cpu_usage)"),
                                                      ("start", str(T0 // 1000)),
                                                      ("end", str(T0 // 1000 + 30)),
                                                      ("step", "10s")])):
            for extra in ([("partial_response", "1")],
                          [("partial_response", "1"), ("read_consistency", "quorum")]):
                st, hdrs, b = get(self.c.router_url() + path, params + extra)
                self.assertEqual(st, 200, (path, b[:300]))
                self.assertNotIn("warnings", parse_json(b), (path, extra, b[:300]))
            st, hdrs, b = get(self.c.router_url() + "/api/v1/export",
                              [("match[]", "cpu_usage"), ("partial_response", "1")])
            self.assertEqual(st, 200)
            self.assertNotIn("x-strata-missing-shards", hdrs)


class PartialWarning(ClusterTestCase):

    def test_warning_names_exactly_the_unanswered_shards(self):
        c = self.cluster(nodes=3, routers=1, shards=12, rf=1)
        c.start()
        st, body = c.write(["pw,host=h%d v=1 %d" % (i, T0 * 1_000_000) for i in range(50)])
        self.assertEqual(st, 204, body)
        c.kill9(1)
        gone = ",".join(str(s) for s in c.shards_of(1))
        for path, params in (("/api/v1/series", [("match[]", "pw_v")]),
                             ("/api/v1/labels", []),
                             ("/api/v1/query", [("query", "count(pw_v)"),
                                                ("time", str(T0 // 1000 + 10))])):
            st, _, b = get(c.router_url() + path, params + [("partial_response", "1")])
            self.assertEqual(st, 200, (path, b[:300]))
            self.assertEqual(parse_json(b).get("warnings"),
                             ["partial response: no replica answered for shard(s) %s" % gone],
                             path)


    def test_replica_down_but_answer_complete_has_no_warning(self):
        c = self.cluster(nodes=3, routers=1, shards=12, rf=3)
        c.start()
        st, body = c.write(["pc,host=h%d v=1 %d" % (i, T0 * 1_000_000) for i in range(50)])
        self.assertEqual(st, 204, body)
        # a quorum write is acknowledged by two replicas; the third applies
        # it a moment later (a "one" read there could miss it on a loaded
        # machine): wait until every replica holds it
        c.wait_replicas_identical(60)
        c.kill9(2)  # every shard still has two replicas: failover completes each read
        for rc in ("one", "quorum"):
            for path, params in (("/api/v1/series", [("match[]", "pc_v")]),
                                 ("/api/v1/labels", []),
                                 ("/api/v1/query", [("query", "count(pc_v)"),
                                                    ("time", str(T0 // 1000 + 10))])):
                st, _, b = get(c.router_url() + path,
                               params + [("partial_response", "1"), ("read_consistency", rc)])
                self.assertEqual(st, 200, (path, b[:300]))
                self.assertNotIn("warnings", parse_json(b), (path, rc))
            st, _, b = get(c.router_url() + "/api/v1/series", [("match[]", "pc_v")])
            self.assertEqual(len(parse_json(b)["data"]), 50)
        # n2 down too: n1 alone still holds every shard. A "one" read is
        # complete (no warning); a quorum read is answered by one replica
        # per shard: it says so, and never "no replica answered".
        c.kill9(1)
        allshards = ",".join(str(s) for s in range(12))
        for path, params in (("/api/v1/series", [("match[]", "pc_v")]),
                             ("/api/v1/labels", []),
                             ("/api/v1/query", [("query", "count(pc_v)"),
                                                ("time", str(T0 // 1000 + 10))])):
            st, _, b = get(c.router_url() + path, params + [("partial_response", "1")])
            self.assertEqual(st, 200, (path, b[:300]))
            self.assertNotIn("warnings", parse_json(b), path)
            st, _, b = get(c.router_url() + path, params + [("partial_response", "1"),
                                                             ("read_consistency", "quorum")])
            self.assertEqual(st, 200, (path, b[:300]))
            self.assertEqual(parse_json(b).get("warnings"),
                             ["partial response: fewer than 2 replicas (read_consistency=quorum) "
                              "answered for shard(s) %s" % allshards], path)
        st, _, b = get(c.router_url() + "/api/v1/series",
                       [("match[]", "pc_v"), ("partial_response", "1"),
                        ("read_consistency", "quorum")])
        self.assertEqual(len(parse_json(b)["data"]), 50)


class SyncWriteMessage(ClusterTestCase):

    def test_503_names_acked_and_failed_replicas(self):
        c = self.cluster(nodes=3, routers=1, shards=6, rf=3,
                         cluster={"write_consistency": "sync"},
                         replication={"replica_timeout": "2s", "heartbeat_interval": "200ms"})
        c.start()
        st, body = c.write("sw,host=a v=1")
        self.assertEqual(st, 204, body)
        c.kill9(2)
        st, body = c.write(["sw,host=h%d v=1" % i for i in range(40)])
        self.assertEqual(st, 503, body)
        self.assertEqual(shard_ids(body["shards"]), set(range(6)), body)
        for e in body["shards"]:
            err = e["error"]
            self.assertIn("2 of 3 replicas acked (need 3)", err, e)
            self.assertIn("n1 ok", err, e)
            self.assertIn("n2 ok", err, e)
            self.assertIn("n3 failed: ", err, e)
            self.assertNotIn("1 of 3", err, e)


if __name__ == "__main__":
    unittest.main()
