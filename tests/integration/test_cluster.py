"""Write through one router, read back through the other; node-local exports.

One 3-node / 2-router cluster (12 shards, RF 1) for the whole class. The data
set is written once in setUpClass through router 0 and mirrored in a Python
model (last write wins); every test reads it back and compares bit-exactly.
"""

import datetime
import json
import math
import re
import time
import unittest

from harness import (ALL, Bool, ClusterTestCase, Model, RawFloat, Str, U, assert_samples_equal,
                     chunks, devops_lines, export_to_dict, f64, http_request, http_status, lp_line,
                     recent_base_s, selector)


def build_dataset(base_s):
    """Returns a list of write requests (path, params, [(line, samples)])
    in the order they must be sent."""
    reqs = []

    # A. devops cpu data, ns precision, 20 hosts x 60 points (1200 lines),
    #    in bodies of 300 lines; the time-major order is shuffled per body
    #    (out-of-order within a series across bodies too: bodies go newest
    #    first).
    cpu = devops_lines(hosts=20, points=60, start_s=base_s, step_s=10, seed=7, decimals=2)
    cpu_bodies = chunks(cpu, 300)
    for body in reversed(cpu_bodies):
        reqs.append(("/write", {}, body))

    # B. mem: integer, unsigned and boolean fields, ms precision, via the
    #    v2 endpoint with bucket/org (ignored), 20 hosts x 40 points.
    mem = []
    bools = ["t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"]
    for p in range(40):
        ts = (base_s + 5 * p) * 1000 + 7
        for h in range(20):
            mem.append(lp_line("mem", {"hostname": "host_%d" % h, "region": "r%d" % (h % 3)},
                               [("used", 1000000 * h + p * 4096 - 5 * h),
                                ("free", U(2**40 + 37 * p + h)),
                                ("swapped", Bool(bools[(p + h) % len(bools)])),
                                ("pct", (h * 40 + p) / 7.0)], ts, "ms"))
    for body in chunks(mem, 400):
        reqs.append(("/api/v2/write", {"precision": "ms", "bucket": "b", "org": "o",
                                       "consistency": "sync"}, body))

    # C. escaped characters and UTF-8 in every position, us precision.
    esc = []
    names = [
        ("we ird,meas", {"t k=1": "v,a l=ue", "host": "München"}),
        ("utf8_测量", {"emoji": "🚀日本", "ключ": "значение"}),
        ("bs", {"path": "C:\\temp\\x", "quote": 'say "hi"', "eq": "a=b"}),
        ("dotted.name-x", {"a.b": "c-d", "empty_like": "\u00a0"}),
    ]
    for p in range(30):
        ts = (base_s + 3 * p) * 10**6 + 999  # sub-ms part floors away
        for m, tags in names:
            esc.append(lp_line(m, tags, [("f ld=1", p * 0.25), ("x,y", p * 3),
                                         ("s", Str("a string, \"quoted\" = ignored"))],
                               ts, "us"))
    reqs.append(("/write", {"precision": "us", "db": "ignored"}, esc))

    # D. float64 edge values, s precision: must round-trip bit-exactly.
    special = [0.1, -0.0, 0.0, 5e-324, 2.2250738585072014e-308, 2.225073858507201e-308,
               1.7976931348623157e308, -1.7976931348623157e308, 1 / 3, 2 / 3, 1e16, 1e-7,
               123456789.12345679, 9007199254740993.0, math.pi, -math.e, 1e22, 1e23,
               4.35, 0.30000000000000004]
    sp = []
    for i, v in enumerate(special):
        sp.append(lp_line("edge", {"kind": "float", "i": str(i)}, [("v", v)], base_s + i, "s"))
    for i, v in enumerate([9007199254740993, -9223372036854775808, 9223372036854775807,
                           0, -1, 123456789012345678]):
        sp.append(lp_line("edge", {"kind": "int", "i": str(i)}, [("v", v)], base_s + i, "s"))
    for i, v in enumerate([0, 18446744073709551615, 9007199254740993]):
        sp.append(lp_line("edge", {"kind": "uint", "i": str(i)}, [("v", U(v))], base_s + i, "s"))
    for i, t in enumerate(["1.", ".5", "-.5e-3", "1E3", "12e+2", "007", "-0"]):
        sp.append(lp_line("edge", {"kind": "spelled", "i": str(i)}, [("v", RawFloat(t))],
                          base_s + i, "s"))
    reqs.append(("/write", {"precision": "s"}, sp))

    # E. out of order, duplicates inside one body (the later line wins) and
    #    across bodies (the later request wins); duplicate field keys in a
    #    line (the last value wins); blank and comment lines.
    ooo = []
    order = [7, 3, 9, 0, 5, 1, 8, 2, 6, 4]
    for k in order:
        ooo.append(lp_line("ooo", {"s": "a"}, [("v", float(k))], (base_s + k) * 10**9))
    for k in (3, 5):
        ooo.append(lp_line("ooo", {"s": "a"}, [("v", 100.0 + k)], (base_s + k) * 10**9))
    ooo.append(lp_line("ooo", {"s": "b"}, [("v", 1.0), ("v", 2.0)], base_s * 10**9))
    ooo.insert(4, ("", []))
    ooo.insert(6, ("# a comment line", []))
    reqs.append(("/write", {}, ooo))
    reqs.append(("/write", {}, [lp_line("ooo", {"s": "a"}, [("v", -1.5)], (base_s + 9) * 10**9),
                                lp_line("ooo", {"s": "a"}, [("v", 42.0)], (base_s + 11) * 10**9)]))

    # F. a line with only a string field produces no series.
    reqs.append(("/write", {}, [lp_line("onlystr", {"a": "b"}, [("msg", Str("hello"))],
                                        base_s * 10**9)]))
    return reqs


class WriteReadTest(ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        cls.c = cls.start_class_cluster(nodes=3, routers=2, shards=12, rf=1)
        cls.base_s = recent_base_s()
        cls.model = Model()
        try:
            for path, params, body in build_dataset(cls.base_s):
                st, resp = cls.c.write([line for line, _ in body], router=0, path=path, **params)
                if st != 204:
                    raise AssertionError("write %s %s: HTTP %d %.2000r" % (path, params, st, resp))
                cls.model.add_lines(body)
            # A line without a timestamp gets the router's clock.
            cls.before_ms = int(time.time() * 1000)
            st, resp = cls.c.write("nots,x=y v=5", router=0)
            cls.after_ms = int(math.ceil(time.time() * 1000))
            if st != 204:
                raise AssertionError("write without timestamp: HTTP %d %r" % (st, resp))
        except BaseException:
            cls._class_failed = True
            cls.close_class_clusters(failed=True)
            raise

    # -- helpers ----------------------------------------------------------

    def model_without_nots(self):
        return {k: v for k, v in self.model.data.items() if dict(k)["__name__"] != "nots_v"}

    def export_dict(self, sel, router=1, **kw):
        return export_to_dict(self.c.export(sel, router=router, **kw), "export %r" % (sel,))

    # -- 1. exact round trip ----------------------------------------------

    def test_export_all_matches_model(self):
        got = self.export_dict(ALL[0])
        nots = {k: v for k, v in got.items() if dict(k)["__name__"] == "nots_v"}
        self.assertEqual([dict(k) for k in nots], [{"__name__": "nots_v", "x": "y"}])
        (ts, v), = list(nots.values())[0].items()
        self.assertEqual(v, 5)
        self.assertTrue(self.before_ms <= ts <= self.after_ms,
                        "router clock timestamp %d not within [%d, %d]"
                        % (ts, self.before_ms, self.after_ms))
        got = {k: v for k, v in got.items() if dict(k)["__name__"] != "nots_v"}
        assert_samples_equal(self.model_without_nots(), got, "router 1 export of everything")
        self.assertGreater(self.model.n_samples(), 15000)

    def test_both_routers_agree(self):
        a = self.export_dict(ALL[0], router=0)
        b = self.export_dict(ALL[0], router=1)
        self.assertEqual(set(a), set(b))
        for k in a:
            self.assertEqual([(t, f64(v)) for t, v in sorted(a[k].items())],
                             [(t, f64(v)) for t, v in sorted(b[k].items())])

    def test_special_cases_spelled_out(self):
        # Independent of the model: a few facts written out by hand.
        got = self.export_dict('{__name__="ooo_v"}')
        b = self.base_s * 1000
        a = got[(("__name__", "ooo_v"), ("s", "a"))]
        expect = {b + k * 1000: float(k) for k in range(10)}
        expect[b + 3000], expect[b + 5000] = 103.0, 105.0  # later line in the body
        expect[b + 9000] = -1.5  # later request
        expect[b + 11000] = 42.0
        self.assertEqual(a, expect)
        self.assertEqual(got[(("__name__", "ooo_v"), ("s", "b"))], {b: 2.0})
        # No series from string fields.
        self.assertEqual(self.c.export('{__name__=~"onlystr.*"}', router=1), [])
        self.assertEqual(self.c.export('{__name__=~"[a-z_]+_s"}', router=1), [])
        # Escapes and UTF-8 arrive unescaped, as sent.
        e = self.export_dict('{__name__="we ird,meas_f ld=1"}')
        self.assertEqual(list(e), [(("__name__", "we ird,meas_f ld=1"), ("host", "München"),
                                    ("t k=1", "v,a l=ue"))])
        vals = list(e.values())[0]
        self.assertEqual(len(vals), 30)
        self.assertEqual(min(vals), (self.base_s * 10**6 + 999) // 1000)  # floor to ms
        # Booleans 1/0, unsigned max, int64 min.
        m = self.export_dict('{__name__="edge_v",kind=~"int|uint"}')
        vals = {dict(k)["kind"] + dict(k)["i"]: list(v.values())[0] for k, v in m.items()}
        self.assertEqual(f64(vals["uint1"]), f64(18446744073709551615.0))
        self.assertEqual(f64(vals["int1"]), f64(-9223372036854775808.0))
        self.assertEqual(f64(vals["int0"]), f64(9007199254740992.0))
        sw = self.export_dict('mem_swapped{hostname="host_0"}')
        self.assertEqual(set(list(sw.values())[0].values()), {0.0, 1.0})
        neg0 = self.export_dict('{__name__="edge_v",kind="float",i="1"}')
        self.assertEqual(f64(list(neg0.values())[0][b + 1000]), f64(-0.0))

    def test_selectors(self):
        cases = [
            selector("cpu_usage_user", ("hostname", "=", "host_3")),
            selector(None, ("__name__", "=~", "cpu_usage_(user|system)"),
                     ("region", "!=", "eu-west-1")),
            selector("mem_used", ("hostname", "!~", "host_1.*")),
            selector("mem_pct", ("region", "=~", "r1|r2"), ("hostname", "!=", "host_5")),
            selector(None, ("hostname", "=~", "host_1")),  # anchored: not host_10..19
            selector(None, ("__name__", "=~", "cpu.*"), ("nosuchlabel", "=", "")),
            selector(None, ("host", "=", "München")),
            selector(None, ("emoji", "=~", "🚀.*")),
            selector(None, ("quote", "=", 'say "hi"')),
            selector(None, ("path", "=", "C:\\temp\\x")),
            selector("edge_v", ("kind", "=", "nosuch")),
            selector("cpu_usage_idle"),
        ]
        for text, pred in cases:
            with self.subTest(selector=text):
                exp = {k: v for k, v in self.model.select(pred).items()}
                assert_samples_equal(exp, self.export_dict(text), "export %s" % text)
        # Several match[]: union, each series once.
        a, pa = cases[0]
        b, pb = cases[2]
        exp = self.model.select(lambda l: pa(l) or pb(l))
        assert_samples_equal(exp, self.export_dict([a, b, a]), "export of a union")

    def test_time_range(self):
        b = self.base_s
        start = datetime.datetime.fromtimestamp(b + 55, datetime.timezone.utc)
        start = start.strftime("%Y-%m-%dT%H:%M:%SZ")
        for st, en in [(start, b + 205), (b + 55, b + 205), (b + 55, None), (None, b + 205)]:
            with self.subTest(start=st, end=en):
                got = self.export_dict('{__name__=~"cpu_.*"}', start=st, end=en)
                exp = self.model.select(lambda l: l["__name__"].startswith("cpu_"),
                                        (b + 55) * 1000 if st is not None else None,
                                        (b + 205) * 1000 if en is not None else None)
                assert_samples_equal(exp, got, "export start=%s end=%s" % (st, en))

    def test_series_labels_values(self):
        model = self.model_without_nots()
        model[(("__name__", "nots_v"), ("x", "y"))] = {}
        for text, pred in [ALL, selector(None, ("__name__", "=~", "mem_.*")),
                           selector("cpu_usage_user", ("region", "=", "us-east-1"))]:
            with self.subTest(selector=text):
                st, js = self.c.series(text, router=1)
                self.assertEqual(st, 200, js)
                self.assertEqual(js.get("status"), "success", js)
                got = [tuple(sorted(d.items())) for d in js["data"]]
                self.assertEqual(len(got), len(set(got)), "duplicate series in /series")
                self.assertEqual(set(got), {k for k in model if pred(dict(k))})
        names = sorted({n for k in model for n, _ in k})
        st, js = self.c.labels(router=1)
        self.assertEqual(st, 200, js)
        self.assertEqual(js["status"], "success")
        self.assertEqual(js["data"], sorted(js["data"]), "labels not sorted")
        # Whether __name__ is listed is not fixed by the contract; the rest is.
        self.assertEqual([n for n in js["data"] if n != "__name__"],
                         [n for n in names if n != "__name__"])
        for name in ["hostname", "region", "ключ", "t k=1", "__name__"]:
            with self.subTest(label=name):
                st, js = self.c.label_values(name, router=1)
                self.assertEqual(st, 200, js)
                self.assertEqual(js["status"], "success")
                exp = sorted({v for k in model for n, v in k if n == name})
                self.assertEqual(js["data"], exp)
        st, js = self.c.label_values("hostname", router=1, match="mem_used")
        self.assertEqual(st, 200, js)
        self.assertEqual(js["data"], sorted("host_%d" % h for h in range(20)))
        st, js = self.c.label_values("region", router=0, match='mem_used{hostname="host_4"}')
        self.assertEqual(st, 200, js)
        self.assertEqual(js["data"], ["r1"])
        st, js = self.c.label_values("nosuchlabel", router=1)
        self.assertEqual((st, js["data"]), (200, []))

    def test_bad_selector(self):
        for bad in ['{a="b"', 'cpu{a=~"("}', '{a~"b"}', "", 'cpu{a="b",,}', "1cpu"]:
            with self.subTest(selector=bad):
                st, data = self.c.export_raw(bad, router=1)
                self.assertEqual(st, 400, data[:300])
                js = self.c.get("/api/v1/series", 1, [("match[]", bad)])
                self.assertEqual(js[0], 400)
                body = json.loads(js[2])
                self.assertEqual(body.get("status"), "error")
                self.assertEqual(body.get("errorType"), "bad_data")
                self.assertTrue(body.get("error"))

    # -- operations endpoints --------------------------------------------

    def test_cluster_endpoint(self):
        fps = set()
        for r in range(2):
            info = self.c.cluster_info(router=r)
            self.assertEqual(info["cluster"], "itest")
            self.assertEqual(info["shards"], 12)
            self.assertEqual(info["replication_factor"], 1)
            self.assertRegex(info["fingerprint"], r"^[0-9a-fA-F]{1,16}$")
            fps.add(int(info["fingerprint"], 16))
            self.assertEqual([(n["id"], n["rpc"], n["http"], n["state"]) for n in info["nodes"]],
                             [(nid, self.c.node_rpc_addr(i), self.c.node_http_url(i)[7:], "up")
                              for i, nid in enumerate(self.c.node_ids)])
            placement = {p["shard"]: p["replicas"] for p in info["placement"]}
            self.assertEqual(placement, self.c.default_placement())
        self.assertEqual(len(fps), 1, "routers disagree on the fingerprint")

    def test_health_ready_metrics(self):
        urls = [self.c.router_url(i) for i in range(2)] + \
               [self.c.node_http_url(i) for i in range(3)]
        for u in urls:
            with self.subTest(url=u):
                self.assertEqual(http_status(u + "/health", timeout=5.0), 200)
                self.assertEqual(http_status(u + "/ready", timeout=5.0), 200)
                m = self.c.metrics(u)
                self.assertTrue(m, "no samples in %s/metrics" % u)

    # -- 2. node-local exports --------------------------------------------

    def test_node_local_exports(self):
        info = self.c.cluster_info(router=0)
        placement = {p["shard"]: p["replicas"] for p in info["placement"]}
        whole = {k: v for k, v in self.model.data.items()}
        per_node = []
        for i, nid in enumerate(self.c.node_ids):
            per_node.append(export_to_dict(self.c.node_export(i), "node %s export" % nid))
        # Each series lives on exactly one node (RF 1), all nodes hold some.
        owner = {}
        for i, d in enumerate(per_node):
            self.assertTrue(d, "node %s holds no series at all" % self.c.node_ids[i])
            for k in d:
                self.assertNotIn(k, owner, "series %s on %s and %s" %
                                 (dict(k), owner.get(k), self.c.node_ids[i]))
                owner[k] = self.c.node_ids[i]
        union = {}
        for d in per_node:
            union.update(d)
        # The no-timestamp line's sample is checked in test_export_all.
        nots = [k for k in union if dict(k)["__name__"] == "nots_v"]
        self.assertEqual(len(nots), 1)
        whole[nots[0]] = union[nots[0]]
        assert_samples_equal(whole, union, "union of node-local exports")

        # shard= returns exactly that shard's series; shards partition a node.
        seen_shard = {}
        for i, nid in enumerate(self.c.node_ids):
            mine = sorted(s for s, reps in placement.items() if nid in reps)
            self.assertEqual(mine, self.c.shards_of(i))
            acc = {}
            for s in mine:
                d = export_to_dict(self.c.node_export(i, shard=s), "%s shard %d" % (nid, s))
                for k in d:
                    self.assertNotIn(k, seen_shard, "series %s in shards %s and %d" %
                                     (dict(k), seen_shard.get(k), s))
                    seen_shard[k] = s
                acc.update(d)
            assert_samples_equal(per_node[i], acc, "%s: union of its shards" % nid)
            # A shard this node does not hold: nothing (empty 200 or a 4xx).
            other = [s for s in placement if nid not in placement[s]]
            for s in other[:2]:
                st, _, data = self.c_get_node(i, "/api/v1/export?shard=%d" % s)
                if st == 200:
                    self.assertEqual(data.strip(), b"",
                                     "%s returned data for shard %d it does not hold" % (nid, s))
                else:
                    self.assertTrue(400 <= st < 500, "HTTP %d" % st)
        used = set(seen_shard.values())
        self.assertGreater(len(used), 6, "series spread over too few shards: %s" % sorted(used))

    def test_node_export_match(self):
        text, pred = selector("cpu_usage_user", ("hostname", "=~", "host_1.*"))
        acc = {}
        for i in range(3):
            d = export_to_dict(self.c.node_export(i, match=text), "node match export")
            for k in d:
                self.assertNotIn(k, acc)
            acc.update(d)
        assert_samples_equal(self.model.select(pred), acc, "node exports with match[]")
        # match[] together with shard=
        for i in range(3):
            s = self.c.shards_of(i)[0]
            d = export_to_dict(self.c.node_export(i, shard=s, match=text))
            full = export_to_dict(self.c.node_export(i, shard=s))
            self.assertEqual(d, {k: v for k, v in full.items() if pred(dict(k))})

    def c_get_node(self, i, path):
        return http_request(self.c.node_http_url(i) + path)

if __name__ == "__main__":
    unittest.main()
