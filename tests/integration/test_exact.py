"""Exactness at the edges, end to end: 3 nodes, 2 routers, 12 shards, RF 2.

Written because a mutation check (docs/testing.md, "Mutation check by hand")
found bugs the suite let through; each test here names the bug it guards.

- Bounds are inclusive on every read path. Samples sit EXACTLY on the
  request bounds S and E (odd milliseconds), with neighbours 1 ms outside:
  router /api/v1/export (unix seconds and RFC 3339), /api/v1/series,
  node-local /api/v1/export?shard=N, /api/v1/query at time = a sample's ts,
  /api/v1/query_range with steps landing exactly on samples, each query
  with pushdown on and pushdown=0, through both routers. /api/v1/labels and
  /api/v1/label/<n>/values take only match[] (docs/api.md): the series at
  the bounds must be there; exclusion is not asserted for them.
- -0.0 written through line protocol comes back as -0 from export and from
  queries, as Prometheus 2.42 prints it (`vector(-0)` gives "-0");
  VictoriaMetrics prints 0 there, and 0.3 for 0.30000000000000004 (its
  decimal storage). Values that need 17 significant digits come back
  bit-exact.
- Line protocol with an escape as the last character of the measurement,
  a tag key, a tag value and a field key, written through /write, read back
  through /api/v1/series and export with the exact labels.
- Placement: every series is stored on the shard topo_shard_of_labels()
  (common/cluster/topo.h) documents, on every replica of that shard and on
  no other shard; with sharding = series and with sharding = metric. The
  documented shard comes from the strata-shard-of helper (shard_of.c).
"""

import math
import unittest

from harness import (ALL, ClusterTestCase, Model, api_time, assert_samples_equal, export_to_dict,
                     f64, recent_base_s, rfc3339_ms, selector, series_key)

LOOKBACK_MS = 5 * 60 * 1000
STEP_MS = 60 * 1000
COPIES = 8  # each case in 8 series (label copy=k), so the cases spread over shards

# values that need up to 17 significant digits to round-trip
HARD_VALUES = [0.1 + 0.2, 1 / 3, 2 / 3, 1e23, 9.999999999999999e22, 5e-324,
               2.2250738585072014e-308, 2.225073858507201e-308, 1.7976931348623157e308,
               123456789.12345679, 1.0000000000000002, 0.9999999999999999,
               9007199254740993.0, math.pi, math.e, -1e-7, 12345678901234567890.0,
               4.35, 2.675, 1.5e-323, 8.41e21, 5.0000000000000001e-300, 0.3]


def _edge_data(S, E):
    """(lines, model) of the bound cases: per copy k, a series whose only
    sample is at S, at E, 1 ms before S, 1 ms after E, and one spanning
    both bounds (S-1, S, S+1, a middle sample, E-1, E, E+1)."""
    model = Model()
    lines = []
    cases = {"at_start": [S], "at_end": [E], "before_start": [S - 1], "after_end": [E + 1],
             "span": [S - 1, S, S + 1, S + 123457, E - 1, E, E + 1]}
    n = 0
    for k in range(COPIES):
        for case, stamps in sorted(cases.items()):
            labels = {"__name__": "edge_v", "case": case, "copy": str(k)}
            for ts in stamps:
                n += 1
                val = n + 0.25
                lines.append("edge,case=%s,copy=%d v=%r %d" % (case, k, val, ts))
                model.add([(labels, ts, val)])
    return lines, model


def _instant_expect(model, pred, t, window=LOOKBACK_MS, fn=None):
    """{series key: value} of a selector at time t: the latest sample in
    (t - window, t] (fn: a function of all those samples instead)."""
    out = {}
    for key, samples in model.data.items():
        if not pred(dict(key)):
            continue
        inwin = [(ts, v) for ts, v in sorted(samples.items()) if t - window < ts <= t]
        if inwin:
            out[key] = fn([v for _, v in inwin]) if fn else inwin[-1][1]
    return out


class ExactTest(ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        cls.c = cls.start_class_cluster(nodes=3, routers=2, shards=12, rf=2)
        base = recent_base_s() * 1000
        cls.S = base + 60007
        cls.E = cls.S + 10 * STEP_MS
        lines, cls.edge = _edge_data(cls.S, cls.E)
        cls.all = cls.edge.copy()
        # -0.0 in every float spelling, and values needing 17 digits
        cls.t_val = cls.S + 5
        for i, sp in enumerate(["-0.0", "-0", "-0e0", "-0.0e-5", "-.0"]):
            lines.append("negz,sp=s%d v=%s %d" % (i, sp, cls.t_val))
            cls.all.add([({"__name__": "negz_v", "sp": "s%d" % i}, cls.t_val, -0.0)])
        for i, v in enumerate(HARD_VALUES):
            lines.append("hard,i=%02d v=%r %d" % (i, v, cls.t_val))
            cls.all.add([({"__name__": "hard_v", "i": "%02d" % i}, cls.t_val, v)])
        # escapes as the last character of every name token
        cls.t_esc = cls.S + 9
        esc = [("cpu\\ ,host=web\\,,dc=a\\  value=1",
                {"__name__": "cpu _value", "host": "web,", "dc": "a "}, 1.0),
               ("esc\\,,k\\==v\\=,k2\\ =v\\, f\\==2,g\\,=3,h\\ =4",
                {"__name__": "esc,_f=", "k=": "v=", "k2 ": "v,"}, 2.0),
               ("esc\\,,k\\==v\\=,k2\\ =v\\, f\\==2,g\\,=3,h\\ =4",
                {"__name__": "esc,_g,", "k=": "v=", "k2 ": "v,"}, 3.0),
               ("esc\\,,k\\==v\\=,k2\\ =v\\, f\\==2,g\\,=3,h\\ =4",
                {"__name__": "esc,_h ", "k=": "v=", "k2 ": "v,"}, 4.0),
               ("esc2,t=a\\\\\\, v=5", {"__name__": "esc2_v", "t": "a\\\\,"}, 5.0)]
        cls.esc_series = []
        seen = set()
        for line, labels, val in esc:
            if line not in seen:
                seen.add(line)
                lines.append("%s %d" % (line, cls.t_esc))
            cls.esc_series.append(labels)
            cls.all.add([(labels, cls.t_esc, val)])
        st, body = cls.c.write(lines, precision="ms")
        if st != 204:
            # tearDownClass does not run after a failed setUpClass
            cls._class_failed = True
            cls.close_class_clusters(failed=True)
            raise AssertionError("write: %d %r" % (st, body))

    # -- helpers --------------------------------------------------------------

    def query(self, path, router=0, **params):
        st, body = self.c.api(path, router, sorted(params.items()))
        self.assertEqual(st, 200, "%s %r: %r" % (path, params, body))
        return body["data"]

    def assert_vector(self, result, expect, what):
        got = {}
        for r in result:
            key = series_key(r["metric"])
            self.assertNotIn(key, got, "%s: series twice: %r" % (what, r["metric"]))
            got[key] = (r["value"][0], r["value"][1])
        self.assertEqual(sorted(got), sorted(expect), "%s: series differ" % what)
        for key, (t, v) in got.items():
            self.assertEqual(f64(float(v)), f64(expect[key][1]),
                             "%s: %r: got %r want %r" % (what, dict(key), v, expect[key][1]))
            self.assertEqual(round(float(t) * 1000), expect[key][0], "%s: timestamp" % what)

    def check_instant(self, query, pred, t, expect_by_key, what):
        expect = {k: (t, v) for k, v in expect_by_key.items()}
        for router in (0, 1):
            for pushdown in ("1", "0"):
                d = self.query("/api/v1/query", router, query=query, time=api_time(t),
                               pushdown=pushdown)
                self.assertEqual(d["resultType"], "vector")
                self.assert_vector(d["result"], expect, "%s at %d router %d pushdown=%s"
                                   % (query, t, router, pushdown))

    # -- bounds -------------------------------------------------------------

    def test_export_bounds_inclusive(self):
        """Guards: `end` (or `start`) made exclusive in export / engine scan."""
        sel, pred = selector("edge_v")
        S, E = self.S, self.E
        for router in (0, 1):
            for lo, hi in ((S, E), (S, S), (E, E), (S - 1, E + 1), (S + 1, E - 1)):
                for fmt in (api_time, rfc3339_ms):
                    got = export_to_dict(self.c.export(sel, router, fmt(lo), fmt(hi)))
                    assert_samples_equal(self.edge.select(pred, lo, hi), got,
                                         "export [%d, %d] (%s) router %d"
                                         % (lo - S, hi - S, fmt.__name__, router))

    def test_node_export_bounds_inclusive(self):
        """Guards: exclusive bounds in the node's local export / engine scan."""
        sel, pred = selector("edge_v")
        S, E = self.S, self.E
        placement = self.c.cluster_placement()
        for lo, hi in ((S, E), (S, S), (E, E)):
            want = self.edge.select(pred, lo, hi)
            union = {}
            for shard, replicas in placement.items():
                per_replica = []
                for nid in replicas:
                    rows = self.c.node_export(self.c.node_index(nid), shard=shard, match=sel,
                                              start=api_time(lo), end=api_time(hi))
                    per_replica.append(export_to_dict(rows, "%s shard %d" % (nid, shard)))
                for other in per_replica[1:]:
                    self.assertEqual(other, per_replica[0], "replicas of shard %d differ" % shard)
                for k, v in per_replica[0].items():
                    self.assertNotIn(k, union, "series %r in two shards" % (dict(k),))
                    union[k] = v
            assert_samples_equal(want, union, "node-local exports [%d, %d]" % (lo - S, hi - S))

    def test_series_bounds_inclusive(self):
        sel, pred = selector("edge_v")
        S, E = self.S, self.E
        for router in (0, 1):
            for lo, hi in ((S, E), (S, S), (E, E), (E + 1, E + 1)):
                st, body = self.c.api("/api/v1/series", router,
                                      [("match[]", sel), ("start", api_time(lo)),
                                       ("end", api_time(hi))])
                self.assertEqual(st, 200, body)
                got = sorted(series_key(m) for m in body["data"])
                want = sorted(self.edge.select(pred, lo, hi))
                self.assertEqual(got, want, "/series [%d, %d] router %d"
                                 % (lo - S, hi - S, router))

    def test_labels_include_series_at_bounds(self):
        """/labels and /label/<n>/values take only match[] (docs/api.md); with
        start/end given anyway, series whose only sample is at a bound are
        still listed."""
        S, E = self.S, self.E
        for router in (0, 1):
            for lo, hi in ((S, E), (S, S), (E, E)):
                params = [("match[]", 'edge_v{case=~"at_start|at_end"}'),
                          ("start", api_time(lo)), ("end", api_time(hi))]
                st, body = self.c.api("/api/v1/label/case/values", router, params)
                self.assertEqual(st, 200, body)
                for case in ("at_start", "at_end"):
                    if (case == "at_start" and lo <= S <= hi) or (case == "at_end" and
                                                                  lo <= E <= hi):
                        self.assertIn(case, body["data"])
                st, body = self.c.api("/api/v1/labels", router, params)
                self.assertEqual(st, 200, body)
                self.assertIn("case", body["data"])
                self.assertIn("copy", body["data"])

    def test_instant_query_at_sample(self):
        """A query at time = a sample's timestamp sees that sample (the
        engine scan's end is inclusive), and not the one 1 ms later."""
        sel, pred = selector("edge_v")
        for t in (self.S, self.E, self.S + 123457, self.E + 1, self.S - 1):
            self.check_instant(sel, pred, t, _instant_expect(self.edge, pred, t),
                               "edge_v")
        # a rollup whose window ends exactly on samples (pushed down)
        q = "max_over_time(edge_v[2m])"
        for t in (self.S, self.E):
            exp = _instant_expect(self.edge, pred, t, window=120000, fn=max)
            exp = {tuple(kv for kv in k if kv[0] != "__name__"): v for k, v in exp.items()}
            self.check_instant(q, pred, t, exp, q)

    def test_range_query_steps_on_samples(self):
        sel, pred = selector("edge_v")
        S, E = self.S, self.E
        for lo, hi in ((S, E), (E, E), (S, S)):
            expect = {}
            t = lo
            while t <= hi:
                for k, v in _instant_expect(self.edge, pred, t).items():
                    expect.setdefault(k, []).append((t, v))
                t += STEP_MS
            for router in (0, 1):
                for pushdown in ("1", "0"):
                    what = "query_range [%d, %d] router %d pushdown=%s" % (lo - S, hi - S,
                                                                           router, pushdown)
                    d = self.query("/api/v1/query_range", router, query=sel, start=api_time(lo),
                                   end=api_time(hi), step="60", pushdown=pushdown)
                    self.assertEqual(d["resultType"], "matrix")
                    got = {}
                    for r in d["result"]:
                        got[series_key(r["metric"])] = [(round(float(ts) * 1000), float(v))
                                                        for ts, v in r["values"]]
                    self.assertEqual(sorted(got), sorted(expect), what)
                    for k in expect:
                        self.assertEqual([(t, f64(v)) for t, v in got[k]],
                                         [(t, f64(v)) for t, v in expect[k]],
                                         "%s: %r" % (what, dict(k)))

    # -- values ---------------------------------------------------------------

    def test_negative_zero(self):
        """-0.0 stays -0: export prints -0, queries print "-0" (Prometheus
        does the same); -(-0) is 0."""
        sel, pred = selector("negz_v")
        want = self.all.select(pred)
        self.assertEqual(len(want), 5)
        for router in (0, 1):
            st, raw = self.c.export_raw(sel, router)
            self.assertEqual(st, 200)
            for line in raw.decode().splitlines():
                self.assertIn('"values":[-0]', line)
            assert_samples_equal(want, export_to_dict(self.c.export(sel, router)), "export")
            for pushdown in ("1", "0"):
                d = self.query("/api/v1/query", router, query=sel, time=api_time(self.t_val),
                               pushdown=pushdown)
                self.assertEqual(len(d["result"]), 5)
                for r in d["result"]:
                    self.assertEqual(r["value"][1], "-0", r)
                d = self.query("/api/v1/query", router, query="-" + sel,
                               time=api_time(self.t_val), pushdown=pushdown)
                for r in d["result"]:
                    self.assertEqual(r["value"][1], "0", r)
        union = {}
        for i in range(3):
            union.update(export_to_dict(self.c.node_export(i, match=sel)))
        assert_samples_equal(want, union, "node-local export")

    def test_round_trip_17_digits(self):
        sel, pred = selector("hard_v")
        want = self.all.select(pred)
        self.assertEqual(len(want), len(HARD_VALUES))
        self.check_instant(sel, pred, self.t_val, _instant_expect(self.all, pred, self.t_val),
                           "hard_v")
        for router in (0, 1):
            assert_samples_equal(want, export_to_dict(self.c.export(sel, router)), "export")
            for pushdown in ("1", "0"):
                d = self.query("/api/v1/query_range", router, query=sel,
                               start=api_time(self.t_val), end=api_time(self.t_val + 120000),
                               step="60", pushdown=pushdown)
                for r in d["result"]:
                    exp = want[series_key(r["metric"])][self.t_val]
                    for _, v in r["values"]:
                        self.assertEqual(f64(float(v)), f64(exp), "%r: %s vs %r"
                                         % (r["metric"], v, exp))

    # -- line protocol escapes ----------------------------------------------------

    def test_trailing_escapes_end_to_end(self):
        """Guards: an escape as the last character of a name left in place
        (`cpu\\ ,host=web\\,,dc=a\\  value=1` stored host `web\\,`)."""
        want = sorted(series_key(l) for l in self.esc_series)
        sels = ['{__name__=~"cpu _value|esc,_..|esc2_v"}']
        for router in (0, 1):
            st, body = self.c.series(sels, router)
            self.assertEqual(st, 200, body)
            self.assertEqual(sorted(series_key(m) for m in body["data"]), want)
            got = export_to_dict(self.c.export(sels, router))
            self.assertEqual(sorted(got), want)
        st, body = self.c.label_values("host", match=sels)
        self.assertEqual(body["data"], ["web,"])
        st, body = self.c.label_values("k2 ", match=sels)
        self.assertEqual(body["data"], ["v,"])

    # -- placement ------------------------------------------------------------

    def test_placement_is_documented(self):
        """Guards: the router placing series with another hash than
        topo_shard_of_labels(). Every series of this class (edge, -0, 17
        digits, escapes, and 300 more with varied labels) is on its
        documented shard, on every replica of it, and on no other shard."""
        more = Model()
        lines = []
        for i in range(300):
            labels = {"__name__": "place_m%d_v" % (i % 7), "host": "h%03d" % i,
                      "dc": ["a", "b", "c", "d d", "e,e"][i % 5]}
            if i % 3 == 0:
                labels["extra"] = "x" * (i % 40 + 1)
            lines.append("place_m%d,%s v=%d %d" % (
                i % 7, ",".join("%s=%s" % (k, v.replace(" ", "\\ ").replace(",", "\\,"))
                                for k, v in sorted(labels.items()) if k != "__name__"),
                i, self.t_val))
            more.add([(labels, self.t_val, float(i))])
        st, body = self.c.write(lines, precision="ms")
        self.assertEqual(st, 204, body)
        check_placement(self, self.c, [self.all, more])


def check_placement(tc, c, models):
    keys = sorted({k for m in models for k in m.data})
    shards = c.documented_shards([dict(k) for k in keys])
    documented = dict(zip(keys, shards))
    nshards = int(c.cluster_kv["shards"])
    tc.assertTrue(all(0 <= x < nshards for x in shards), shards)
    tc.assertGreater(len(set(shards)), 1, "all series on one shard: the test proves nothing")
    found = {}
    for shard, replicas in c.cluster_placement().items():
        for nid in replicas:
            got = export_to_dict(c.node_export(c.node_index(nid), shard=shard, match=ALL[0]),
                                 "%s shard %d" % (nid, shard))
            for k in got:
                if k not in documented:
                    continue  # a series of another test
                tc.assertEqual(documented[k], shard,
                               "%r stored on shard %d (%s), documented shard %d"
                               % (dict(k), shard, nid, documented[k]))
                found.setdefault(k, set()).add(nid)
    placement = c.cluster_placement()
    for k in keys:
        tc.assertEqual(found.get(k, set()), set(placement[documented[k]]),
                       "%r: replicas holding it" % (dict(k),))


class PlacementByMetricTest(ClusterTestCase):
    """sharding = metric: the shard is a function of __name__ only."""

    def test_placement_by_metric(self):
        c = self.cluster(nodes=3, routers=1, shards=12, rf=1, cluster={"sharding": "metric"})
        c.start()
        model = Model()
        lines = []
        ts = recent_base_s() * 1000
        for i in range(120):
            labels = {"__name__": "bym%d_v" % (i % 40), "host": "h%d" % i}
            lines.append("bym%d,host=h%d v=%d %d" % (i % 40, i, i, ts))
            model.add([(labels, ts, float(i))])
        st, body = c.write(lines, precision="ms")
        self.assertEqual(st, 204, body)
        check_placement(self, c, [model])
        c.stop()


if __name__ == "__main__":
    unittest.main()
