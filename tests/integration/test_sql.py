"""SQL through the cluster: POST/GET /sql (JSON and CSV) and the PostgreSQL
wire protocol (psql, python3-psycopg2) on a 3-node cluster whose series
land on every node. Expected results are computed here from the written
data; for a set of aggregates SQL and the equivalent PromQL agree."""

import csv
import io
import json
import math
import os
import shutil
import socket
import struct
import subprocess
import time
import unittest
import urllib.parse

from harness import ClusterTestCase, free_port, http_request

HOSTS = ["host_%d" % i for i in range(8)]
REGIONS = ["eu", "us"]
N = 60  # points per host, 10 s apart


def value(h, i, f):
    return float((h * 7 + i * 3 + f * 11) % 100) + 0.25 * f


class SqlTest(ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        cls.pg_port = free_port()
        # 1-minute partitions, a head of one: each write of the tests (minutes
        # of data) is flushed to segments at once, so reads go through them
        c = cls.class_cluster(nodes=3, routers=1, shards=12,
                              storage={"partition": "1m", "head_max_partitions": "1"},
                              router={"pg_listen": "127.0.0.1:%d" % cls.pg_port})
        cls.c = c
        c.start()
        now = int(time.time())
        cls.t0 = now - now % 60 - 3600  # a whole minute, an hour ago
        rows = []  # (host, region, ts_ms, usage_user, usage_system)
        lines = []
        for h in range(len(HOSTS)):
            for i in range(N):
                t = cls.t0 + 10 * i
                uu, us = value(h, i, 0), value(h, i, 1)
                rows.append((HOSTS[h], REGIONS[h % 2], t * 1000, uu, us))
                lines.append("cpu,hostname=%s,region=%s usage_user=%s,usage_system=%s %d"
                             % (HOSTS[h], REGIONS[h % 2], uu, us, t))
        status, body = c.write(lines, router=0, precision="s")
        assert status == 204, (status, body)
        cls.rows = rows

    # ---- helpers -----------------------------------------------------------

    def sql(self, q, method="POST", accept=None, form=False):
        url = self.c.router_url(0) + "/sql"
        hdrs = {}
        if accept:
            hdrs["Accept"] = accept
        if method == "GET":
            status, h, body = http_request(url + "?" + urllib.parse.urlencode({"q": q}),
                                           headers=hdrs)
        elif form:
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
            status, h, body = http_request(url, "POST", urllib.parse.urlencode({"q": q}).encode(),
                                           hdrs)
        else:
            status, h, body = http_request(url, "POST", q.encode(), hdrs)
        return status, body

    def rows_of(self, q, **kw):
        status, body = self.sql(q, **kw)
        self.assertEqual(status, 200, body)
        doc = json.loads(body)
        return [c["name"] for c in doc["columns"]], doc["rows"]

    def where(self, host=None):
        return [r for r in self.rows if host is None or r[0] == host]

    def iso(self, ms):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms // 1000))

    def trange(self):
        return "time >= '%s' AND time < '%s'" % (self.iso(self.t0 * 1000),
                                                  self.iso((self.t0 + 10 * N) * 1000))

    # ---- tests -------------------------------------------------------------

    def test_series_on_every_node(self):
        for i in range(3):
            status, _, body = http_request(self.c.node_http_url(i) +
                                           "/api/v1/export?match[]=cpu_usage_user")
            self.assertEqual(status, 200)
            self.assertTrue(body.strip(), "node %d holds no cpu series" % i)

    def test_count_and_aggregates(self):
        cols, rows = self.rows_of("SELECT count(*), count(usage_user), sum(usage_user), "
                                  "min(usage_system), max(usage_system), avg(usage_user) "
                                  "FROM cpu WHERE " + self.trange())
        d = self.rows
        self.assertEqual(cols, ["count", "count", "sum", "min", "max", "avg"])
        self.assertEqual(rows[0][0], len(d))
        self.assertEqual(rows[0][1], len(d))
        self.assertAlmostEqual(rows[0][2], sum(r[3] for r in d))
        self.assertEqual(rows[0][3], min(r[4] for r in d))
        self.assertEqual(rows[0][4], max(r[4] for r in d))
        self.assertAlmostEqual(rows[0][5], sum(r[3] for r in d) / len(d))

    def test_filters(self):
        q = ("SELECT count(*) AS n, avg(usage_user) AS a FROM cpu WHERE hostname = 'host_3' "
             "AND usage_user > 40 AND " + self.trange())
        _, rows = self.rows_of(q)
        d = [r for r in self.rows if r[0] == "host_3" and r[3] > 40]
        self.assertEqual(rows[0][0], len(d))
        self.assertAlmostEqual(rows[0][1], sum(r[3] for r in d) / len(d))
        _, rows = self.rows_of("SELECT count(*) FROM cpu WHERE hostname IN ('host_1', 'host_2') "
                               "AND region != 'eu'")
        self.assertEqual(rows[0][0], len([r for r in self.rows if r[0] in ("host_1",)]))
        _, rows = self.rows_of("SELECT count(*) FROM cpu WHERE hostname LIKE 'host\\_1%' "
                               "OR hostname ~ '^host_[67]$'")
        self.assertEqual(rows[0][0], len([r for r in self.rows
                                          if r[0] in ("host_1", "host_6", "host_7")]))
        t1 = self.t0 + 100
        _, rows = self.rows_of("SELECT count(*) FROM cpu WHERE time BETWEEN '%s' AND '%s'"
                               % (self.iso(t1 * 1000), self.iso((t1 + 50) * 1000)))
        self.assertEqual(rows[0][0], len([r for r in self.rows
                                          if t1 * 1000 <= r[2] <= (t1 + 50) * 1000]))
        _, rows = self.rows_of("SELECT count(*) FROM cpu WHERE time >= now() - interval '2 hours'")
        self.assertEqual(rows[0][0], len(self.rows))

    def test_group_by_time_bucket(self):
        q = ("SELECT hostname, time_bucket('1 minute', time) AS minute, max(usage_user) AS m "
             "FROM cpu WHERE " + self.trange() + " GROUP BY hostname, minute "
             "ORDER BY hostname, minute")
        cols, rows = self.rows_of(q)
        self.assertEqual(cols, ["hostname", "minute", "m"])
        want = {}
        for h, _, ts, uu, _ in self.rows:
            k = (h, ts - ts % 60000)
            want[k] = max(want.get(k, -1), uu)
        expect = [[h, self.iso(b), m] for (h, b), m in sorted(want.items())]
        self.assertEqual(rows, expect)
        # date_bin is the same bucketing
        _, rows2 = self.rows_of(q.replace("time_bucket('1 minute', time)",
                                          "date_bin(interval '1 minute', time)"))
        self.assertEqual(rows2, expect)

    def test_group_having_order_limit(self):
        q = ("SELECT region, count(*) AS n, stddev(usage_user) AS sd FROM cpu GROUP BY region "
             "HAVING count(*) > 10 ORDER BY n DESC, region LIMIT 1")
        _, rows = self.rows_of(q)
        per = {}
        for r in self.rows:
            per.setdefault(r[1], []).append(r[3])
        best = sorted(per.items(), key=lambda kv: (-len(kv[1]), kv[0]))[0]
        vals = best[1]
        mean = sum(vals) / len(vals)
        sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
        self.assertEqual(rows[0][0], best[0])
        self.assertEqual(rows[0][1], len(vals))
        self.assertAlmostEqual(rows[0][2], sd)

    def test_raw_order_by_time_desc(self):
        cols, rows = self.rows_of("SELECT time, hostname, usage_user FROM cpu "
                                  "WHERE hostname = 'host_5' ORDER BY time DESC LIMIT 3 OFFSET 1")
        d = sorted(self.where("host_5"), key=lambda r: -r[2])[1:4]
        self.assertEqual(rows, [[self.iso(r[2]), "host_5", r[3]] for r in d])
        cols, rows = self.rows_of("SELECT * FROM cpu WHERE hostname = 'host_0' LIMIT 1")
        self.assertEqual(cols, ["time", "hostname", "region", "usage_system", "usage_user"])

    def test_order_by_time_topn(self):
        """ORDER BY time DESC|ASC LIMIT n [OFFSET m] (the nodes' TOPN finds
        the window): equal to sorting the written rows; rows of equal time
        come in tag-set order (hostname, then region)."""
        def expect(rows, desc, off, lim):
            k = sorted(rows, key=lambda r: ((-r[2] if desc else r[2]), r[0], r[1]))
            return [[self.iso(r[2]), r[0], r[1], r[3]] for r in k[off:off + lim]]

        cols = "SELECT time, hostname, region, usage_user FROM cpu "
        t_mid = (self.t0 + 10 * (N // 2)) * 1000
        cases = [
            ("ORDER BY time DESC LIMIT 7", self.rows, True, 0, 7),
            ("ORDER BY time ASC LIMIT 5 OFFSET 3", self.rows, False, 3, 5),
            ("ORDER BY time DESC LIMIT 3 OFFSET 9", self.rows, True, 9, 3),
            ("WHERE region = 'us' AND time < '%s' ORDER BY time DESC LIMIT 4 OFFSET 2"
             % self.iso(t_mid), [r for r in self.rows if r[1] == "us" and r[2] < t_mid],
             True, 2, 4),
            ("WHERE hostname IN ('host_3', 'host_4') AND time >= '%s' ORDER BY time LIMIT 3"
             % self.iso(t_mid), [r for r in self.rows if r[0] in ("host_3", "host_4")
                                 and r[2] >= t_mid], False, 0, 3),
            # a value filter: the window the keys give is short, it grows
            ("WHERE usage_user > 90 ORDER BY time DESC LIMIT 6",
             [r for r in self.rows if r[3] > 90], True, 0, 6),
            # more rows asked than there are: all of them
            ("WHERE hostname = 'host_2' ORDER BY time DESC LIMIT %d" % (N + 5),
             self.where("host_2"), True, 0, N + 5),
        ]
        before = self.topn_windows()
        for q, rows, desc, off, lim in cases:
            _, got = self.rows_of(cols + q)
            self.assertEqual(got, expect(rows, desc, off, lim), q)
        # every case found its window through the nodes' TOPN (no probing)
        self.assertGreaterEqual(self.topn_windows() - before, len(cases))

    def topn_windows(self):
        _, _, body = http_request(self.c.router_url(0) + "/metrics")
        for line in body.decode().splitlines():
            if line.startswith('strata_router_sql_topn_total{how="window"}'):
                return float(line.split()[-1])
        return 0.0

    def test_percentile(self):
        _, rows = self.rows_of("SELECT percentile_cont(0.9) WITHIN GROUP (ORDER BY usage_user), "
                               "approx_percentile(usage_user, 0.5) FROM cpu "
                               "WHERE hostname = 'host_2'")
        v = sorted(r[3] for r in self.where("host_2"))

        def pc(p):
            pos = p * (len(v) - 1)
            lo, hi = math.floor(pos), math.ceil(pos)
            return v[lo] + (v[hi] - v[lo]) * (pos - lo)
        self.assertAlmostEqual(rows[0][0], pc(0.9))
        self.assertAlmostEqual(rows[0][1], pc(0.5))

    def test_metric_name_table(self):
        # every metric is a table with time, labels and value
        _, rows = self.rows_of("SELECT count(value), max(value) FROM cpu_usage_user")
        self.assertEqual(rows[0][0], len(self.rows))
        self.assertEqual(rows[0][1], max(r[3] for r in self.rows))

    def test_sql_equals_promql(self):
        end = self.t0 + 10 * N  # exclusive; PromQL windows are (t-R, t]
        for agg, fn in (("sum", "sum_over_time"), ("count", "count_over_time"),
                        ("max", "max_over_time"), ("min", "min_over_time")):
            _, rows = self.rows_of(
                "SELECT hostname, %s(usage_user) FROM cpu WHERE %s GROUP BY hostname "
                "ORDER BY hostname" % (agg, self.trange()))
            outer = "sum" if agg in ("sum", "count") else agg
            pq = "%s by (hostname) (%s(cpu_usage_user[%ds]))" % (outer, fn, 10 * N)
            url = (self.c.router_url(0) + "/api/v1/query?" +
                   urllib.parse.urlencode({"query": pq, "time": "%.3f" % (end - 0.001)}))
            status, _, body = http_request(url)
            self.assertEqual(status, 200, body)
            prom = {r["metric"]["hostname"]: float(r["value"][1])
                    for r in json.loads(body)["data"]["result"]}
            self.assertEqual(len(rows), len(HOSTS))
            for h, v in rows:
                self.assertAlmostEqual(v, prom[h], msg="%s %s" % (agg, h))

    def test_pushdown_equals_raw(self):
        """Aggregates the nodes compute (exact WHERE) equal the raw path
        (forced by a WHERE the reads cannot apply), over buckets the range
        cuts at both ends; the pushed queries show in the router's counter."""
        a, b = (self.t0 + 25) * 1000, (self.t0 + 575) * 1000
        rng = "time >= %d::timestamptz AND time < %d::timestamptz" % (a, b)
        for sel, grp in (
                ("hostname, time_bucket('1 minute', time) AS m, count(usage_user), "
                 "sum(usage_user) AS s, min(usage_system), max(usage_system), avg(usage_user)",
                 "GROUP BY hostname, m ORDER BY hostname, m"),
                ("region, avg(usage_system) AS a, count(usage_user) AS n",
                 "GROUP BY region HAVING count(usage_user) > 5 ORDER BY a DESC"),
                ("date_bin(interval '90 seconds', time) AS m, max(usage_user)",
                 "GROUP BY 1 ORDER BY 1 LIMIT 4 OFFSET 1"),
                ("avg(usage_user), count(usage_user)", "")):
            before = self.pushed()
            cols, pushed = self.rows_of("SELECT %s FROM cpu WHERE hostname IN ('host_1', "
                                        "'host_2', 'host_5') AND %s %s" % (sel, rng, grp))
            self.assertGreater(self.pushed(), before, sel)
            cols2, raw = self.rows_of("SELECT %s FROM cpu WHERE hostname IN ('host_1', 'host_2', "
                                      "'host_5') AND %s AND usage_user > -1 %s" % (sel, rng, grp))
            self.assertEqual(cols, cols2)
            self.assertEqual(len(pushed), len(raw))
            self.assertTrue(pushed)
            for p, r in zip(pushed, raw):
                for x, y in zip(p, r):
                    if isinstance(x, float):
                        self.assertAlmostEqual(x, y, msg=sel)
                    else:
                        self.assertEqual(x, y, sel)
        # by hand: the first bucket is cut at a
        _, rows = self.rows_of("SELECT time_bucket('1 minute', time) AS m, count(usage_user) FROM "
                               "cpu WHERE %s GROUP BY m ORDER BY m LIMIT 1" % rng)
        first = [r for r in self.rows if a <= r[2] < (self.t0 + 60) * 1000]
        self.assertEqual(rows, [[self.iso(self.t0 * 1000), len(first)]])

    def node_metric(self, name):
        total = 0.0
        for i in range(3):
            status, _, body = http_request(self.c.node_http_url(i) + "/metrics")
            for line in body.decode().splitlines():
                if line.startswith(name):
                    total += float(line.split()[-1])
        return total

    def test_count_from_headers(self):
        """count(f) pushed down is counted from segment block headers where
        blocks lie wholly in the range (cut blocks, heads and deleted ranges
        decoded): it equals the raw path, after a delete too."""
        lines, t = [], self.t0
        for h in range(4):
            for i in range(240):  # 40 minutes at 10 s
                lines.append("disk,host=d%d used=%d.5,free=%d %d" % (h, i, i * 3, t + 10 * i))
        status, body = self.c.write(lines, router=0, precision="s")
        self.assertEqual(status, 204, body)
        status, body = self.sql("DELETE FROM disk WHERE host = 'd1' AND time >= '%s' AND "
                                "time < '%s'" % (self.iso((t + 600) * 1000),
                                                 self.iso((t + 900) * 1000)))
        self.assertEqual(status, 200, body)
        want = {"d0": 240, "d1": 210, "d2": 240, "d3": 240}
        before = self.node_metric("strata_node_query_samples_counted_unread_total")
        full = "time >= '%s' AND time < '%s'" % (self.iso((t - 60) * 1000),
                                                  self.iso((t + 2460) * 1000))
        cut = "time >= '%s' AND time < '%s'" % (self.iso((t + 95) * 1000),
                                                 self.iso((t + 2005) * 1000))
        for rng, sel in ((full, lambda i: True), (cut, lambda i: 95 <= 10 * i < 2005)):
            exp = {h: sum(1 for i in range(240) if sel(i) and
                          not (h == "d1" and 60 <= i < 90)) for h in want}
            q = "SELECT host, count(used) AS n, count(free) FROM disk WHERE %s%s GROUP BY host " \
                "ORDER BY host"
            _, pushed = self.rows_of(q % (rng, ""))
            _, raw = self.rows_of(q % (rng, " AND used > -1"))
            self.assertEqual(pushed, raw)
            self.assertEqual(pushed, [[h, exp[h], exp[h]] for h in sorted(exp)])
            _, tot = self.rows_of("SELECT count(used) FROM disk WHERE host IN ('d0', 'd1') AND "
                                  + rng)
            self.assertEqual(tot, [[exp["d0"] + exp["d1"]]])
        # the write is flushed (head_max_partitions) in the background: once it
        # is, blocks are counted unread, with the same answer
        deadline = time.monotonic() + 60
        for _ in range(600):
            _, tot = self.rows_of("SELECT count(used) FROM disk WHERE " + full)
            self.assertEqual(tot, [[sum(want.values())]])
            if self.node_metric("strata_node_query_samples_counted_unread_total") > before:
                break
            self.assertLess(time.monotonic(), deadline, "no count from block headers")
            time.sleep(0.1)

    def pushed(self):
        status, _, body = http_request(self.c.router_url(0) + "/metrics")
        for line in body.decode().splitlines():
            if line.startswith("strata_router_query_pushed_total"):
                return float(line.split()[-1])
        return 0.0

    def router_metric(self, name):
        status, _, body = http_request(self.c.router_url(0) + "/metrics")
        for line in body.decode().splitlines():
            if line.startswith(name):
                return float(line.split()[-1])
        return 0.0

    def test_count_star(self):
        """count(*) counts rows (tag set, time) from the nodes' timestamp
        fingerprints where a tag set's fields agree, and from the samples of
        the tag sets whose fields differ (written apart, at other times,
        missing in some rows, deleted for one field): it equals the rows
        counted here from what was written, and the row-building path."""
        t = self.t0
        data = {}  # host -> (region, {field: set of ms})

        def put(host, region, field, secs):
            data.setdefault(host, (region, {}))[1].setdefault(field, set()).update(
                s * 1000 for s in secs)

        lines = []
        every = [t + 10 * i for i in range(N)]
        for s_ in every:  # r0: all fields in one line
            lines.append("rc,host=r0,region=eu a=1,b=2,c=3 %d" % s_)
        put("r0", "eu", "a", every), put("r0", "eu", "b", every), put("r0", "eu", "c", every)
        for i, s_ in enumerate(every):  # r2: b in every other row only
            lines.append("rc,host=r2,region=eu a=%d%s %d" % (i, ",b=1" if i % 2 == 0 else "", s_))
        put("r2", "eu", "a", every), put("r2", "eu", "b", every[::2])
        for s_ in every:  # r3: b 5 s after a
            lines.append("rc,host=r3,region=us a=1 %d" % s_)
            lines.append("rc,host=r3,region=us b=1 %d" % (s_ + 5))
        put("r3", "us", "a", every), put("r3", "us", "b", [s_ + 5 for s_ in every])
        for h, r in (("r4", "eu"), ("r5", "us")):
            for s_ in every:
                lines.append("rc,host=%s,region=%s a=1,b=2 %d" % (h, r, s_))
            put(h, r, "a", every), put(h, r, "b", every)
        for i, s_ in enumerate(every):  # a tag value full of regex characters
            if i < 30:
                lines.append("rc,host=r.6|x,region=eu a=1 %d" % s_)
            if i >= 20:
                lines.append("rc,host=r.6|x,region=eu c=1 %d" % s_)
        put("r.6|x", "eu", "a", every[:30]), put("r.6|x", "eu", "c", every[20:])
        status, body = self.c.write(lines, router=0, precision="s")
        self.assertEqual(status, 204, body)
        # r1: its fields in two separate writes
        for f in ("a", "b"):
            status, body = self.c.write(["rc,host=r1,region=us %s=1 %d" % (f, s_) for s_ in every],
                                        router=0, precision="s")
            self.assertEqual(status, 204, body)
            put("r1", "us", f, every)
        # r4 loses a range of rows, r5 a range of field a only
        status, body = self.sql("DELETE FROM rc WHERE host = 'r4' AND time >= '%s' AND "
                                "time < '%s'" % (self.iso((t + 100) * 1000),
                                                 self.iso((t + 200) * 1000)))
        self.assertEqual(status, 200, body)
        data["r4"][1]["a"] -= {(t + 10 * i) * 1000 for i in range(10, 20)}
        data["r4"][1]["b"] -= {(t + 10 * i) * 1000 for i in range(10, 20)}
        url = self.c.router_url(0) + "/api/v1/admin/tsdb/delete_series?" + urllib.parse.urlencode(
            [("match[]", 'rc_a{host="r5"}'), ("start", str(t + 300)), ("end", str(t + 395))])
        status, _, body = http_request(url, "POST", b"")
        self.assertIn(status, (200, 204), body)
        data["r5"][1]["a"] -= {(t + 10 * i) * 1000 for i in range(30, 40)}

        def rows(host, lo, hi):
            return len({ms for f in data[host][1].values() for ms in f if lo <= ms < hi})

        def rng(lo, hi):
            return "time >= '%s' AND time < '%s'" % (self.iso(lo), self.iso(hi))

        full = ((t - 60) * 1000, (t + 10 * N + 60) * 1000)
        cut = ((t + 95) * 1000, (t + 405) * 1000)
        hosts = sorted(data)
        before = {p: self.router_metric('strata_router_sql_count_star_total{path="%s"}' % p)
                  for p in ("fingerprints", "samples", "rows")}
        checks = [
            ("SELECT count(*) FROM rc WHERE " + rng(*full),
             [[sum(rows(h, *full) for h in hosts)]]),
            ("SELECT count(*) FROM rc", [[sum(rows(h, *full) for h in hosts)]]),
            ("SELECT host, count(*) AS n FROM rc WHERE %s GROUP BY host ORDER BY host"
             % rng(*full), [[h, rows(h, *full)] for h in hosts]),
            ("SELECT host, count(*) FROM rc WHERE host IN ('r2', 'r3', 'r.6|x', 'r5') AND %s "
             "GROUP BY 1 ORDER BY 2 DESC, 1" % rng(*cut),
             sorted([[h, rows(h, *cut)] for h in ("r2", "r3", "r.6|x", "r5")],
                    key=lambda r: (-r[1], r[0]))),
            ("SELECT count(*) FROM rc WHERE region = 'eu' AND " + rng(*cut),
             [[sum(rows(h, *cut) for h in hosts if data[h][0] == "eu")]]),
            ("SELECT region, count(*) AS n FROM rc WHERE %s GROUP BY region HAVING "
             "count(*) > 200 ORDER BY n DESC" % rng(*full),
             [[r, n] for r, n in sorted(((r, sum(rows(h, *full) for h in hosts
                                                 if data[h][0] == r)) for r in ("eu", "us")),
                                        key=lambda x: -x[1]) if n > 200]),
        ]
        for q, want in checks:
            cols, got = self.rows_of(q)
            self.assertEqual(got, want, q)
            # the row-building path (a condition the reads cannot apply) agrees
            raw_q = q.replace("FROM rc", "FROM rc WHERE host LIKE '%'", 1) \
                if "WHERE" not in q else q.replace(" WHERE ", " WHERE host LIKE '%' AND ", 1)
            st1, b1 = self.sql(q)
            st2, b2 = self.sql(raw_q)
            self.assertEqual((st1, json.loads(b1)), (st2, json.loads(b2)), raw_q)
        after = {p: self.router_metric('strata_router_sql_count_star_total{path="%s"}' % p)
                 for p in before}
        self.assertGreater(after["samples"], before["samples"])
        # tag sets whose fields agree: fingerprints alone
        _, got = self.rows_of("SELECT count(*) FROM rc WHERE host IN ('r0', 'r1', 'r4') AND "
                              + rng(*full))
        self.assertEqual(got, [[sum(rows(h, *full) for h in ("r0", "r1", "r4"))]])
        self.assertGreater(self.router_metric(
            'strata_router_sql_count_star_total{path="fingerprints"}'), after["fingerprints"])
        # no rows, GROUP BY a field: the rows are read, same answers
        _, got = self.rows_of("SELECT count(*) FROM rc WHERE host = 'nosuch'")
        self.assertEqual(got, [[0]])
        _, got = self.rows_of("SELECT b, count(*) FROM rc WHERE host = 'r2' AND %s GROUP BY b "
                              "ORDER BY b" % rng(*full))
        self.assertEqual(got, [[1, 30], [None, 30]])
        self.assertGreater(self.router_metric('strata_router_sql_count_star_total{path="rows"}'),
                           after["rows"])
        # the PostgreSQL door: the same count
        p = self.psql("-At", "-c", "SELECT count(*) FROM rc WHERE " + rng(*full))
        self.assertEqual(p.stdout.strip(), str(sum(rows(h, *full) for h in hosts)))

    def test_show_and_catalog(self):
        _, rows = self.rows_of("SHOW TABLES")
        names = [r[0] for r in rows]
        for t in ("cpu", "cpu_usage_user", "cpu_usage_system"):
            self.assertIn(t, names)
        cols, rows = self.rows_of("SHOW COLUMNS FROM cpu")
        self.assertEqual([r[0] for r in rows],
                         ["time", "hostname", "region", "usage_system", "usage_user"])
        _, rows = self.rows_of("SELECT table_name FROM information_schema.tables "
                               "WHERE table_name LIKE 'cpu%' ORDER BY table_name")
        self.assertEqual([r[0] for r in rows], ["cpu", "cpu_usage_system", "cpu_usage_user"])
        _, rows = self.rows_of("SELECT column_name, data_type FROM information_schema.columns "
                               "WHERE table_name = 'cpu' ORDER BY ordinal_position")
        self.assertEqual(rows[0], ["time", "timestamp with time zone"])
        self.assertEqual(rows[-1], ["usage_user", "double precision"])

    def test_http_forms_and_csv(self):
        q = "SELECT count(*) AS n FROM cpu WHERE hostname = 'host_4'"
        for kw in ({"method": "GET"}, {"form": True}, {}):
            status, body = self.sql(q, **kw)
            self.assertEqual(status, 200, body)
            self.assertEqual(json.loads(body)["rows"], [[N]])
        # curl --data-binary "SELECT ..." sends the form content type with a
        # bare statement: the body is the statement
        status, _, body = http_request(self.c.router_url(0) + "/sql", "POST", q.encode(),
                                       {"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["rows"], [[N]])
        status, body = self.sql("SELECT time, usage_user FROM cpu WHERE hostname = 'host_4' "
                                "ORDER BY time LIMIT 2", accept="text/csv")
        self.assertEqual(status, 200)
        got = list(csv.reader(io.StringIO(body.decode())))
        d = sorted(self.where("host_4"), key=lambda r: r[2])[:2]
        self.assertEqual(got[0], ["time", "usage_user"])
        self.assertEqual(got[1:], [[self.iso(r[2]), "%g" % r[3]] for r in d])

    def test_errors(self):
        status, body = self.sql("SELECT count(* FROM cpu")
        self.assertEqual(status, 400)
        doc = json.loads(body)
        self.assertIn("syntax error at position 16", doc["error"])
        self.assertEqual(doc["position"], 16)
        self.assertEqual(doc["sqlstate"], "42601")
        status, body = self.sql("SELECT nope FROM cpu")
        self.assertEqual(status, 400)
        self.assertIn('column "nope" does not exist', json.loads(body)["error"])
        status, body = self.sql("DELETE FROM cpu WHERE usage_user > 5")
        self.assertEqual(status, 400)
        self.assertIn("DELETE takes a WHERE of bounds on time and tag matchers",
                      json.loads(body)["error"])
        status, body = self.sql("")
        self.assertEqual(status, 400)
        status, body = self.sql("SELECT 1/0")
        self.assertEqual(status, 400)
        self.assertIn("division by zero", json.loads(body)["error"])

    def test_insert(self):
        t = self.t0 + 5
        q = ("INSERT INTO weather (time, city, temp, hum) VALUES "
             "('%s', 'paris', 21.5, 40), ('%s', 'oslo', -3, 80), (%d, 'paris', 22, NULL)"
             % (self.iso(t * 1000), self.iso(t * 1000), (t + 10) * 1000))
        status, body = self.sql(q)
        self.assertEqual(status, 204, body)
        cols, rows = self.rows_of("SELECT time, city, hum, temp FROM weather ORDER BY time, city")
        self.assertEqual(rows, [[self.iso(t * 1000), "oslo", 80, -3],
                                [self.iso(t * 1000), "paris", 40, 21.5],
                                [self.iso((t + 10) * 1000), "paris", None, 22]])
        # the same data through PromQL: line protocol's mapping
        url = (self.c.router_url(0) + "/api/v1/query?" + urllib.parse.urlencode(
            {"query": 'weather_temp{city="oslo"}', "time": t + 1}))
        status, _, body = http_request(url)
        self.assertEqual(json.loads(body)["data"]["result"][0]["value"][1], "-3")
        status, body = self.sql("INSERT INTO weather (time, city) VALUES (now(), 'x')")
        self.assertEqual(status, 400)
        self.assertIn("no field value", body.decode())
        status, body = self.sql("INSERT INTO weather (time, temp) VALUES (now(), 1, 2)")
        self.assertEqual(status, 400)
        self.assertIn("more values than", body.decode())

    def export_count(self, match):
        url = (self.c.router_url(0) + "/api/v1/export?" + urllib.parse.urlencode(
            {"match[]": match, "start": self.t0 - 60, "end": self.t0 + 10 * N + 60}))
        status, _, body = http_request(url)
        self.assertEqual(status, 200, body)
        return sum(len(json.loads(line)["values"]) for line in body.decode().splitlines()
                   if line.strip())

    def test_delete(self):
        # its own table: the other tests read cpu
        lines, t = [], self.t0
        for h in ("a", "b", "c"):
            for i in range(10):
                lines.append("mem,host=%s,dc=x used=%d,free=%d %d" % (h, i, 100 - i, t + 10 * i))
        status, body = self.c.write(lines, router=0, precision="s")
        self.assertEqual(status, 204, body)
        self.assertEqual(self.rows_of("SELECT count(*) FROM mem")[1], [[30]])
        # host a, the samples at t+30 .. t+50 (3 rows, 2 fields = 6 samples)
        status, body = self.sql("DELETE FROM mem WHERE host = 'a' AND time >= '%s' AND "
                                "time < '%s'" % (self.iso((t + 30) * 1000),
                                                 self.iso((t + 60) * 1000)))
        self.assertEqual(status, 200, body)
        doc = json.loads(body)
        self.assertEqual(doc["command"], "DELETE 6")
        self.assertEqual(doc["deleted"], 6)
        _, rows = self.rows_of("SELECT time FROM mem WHERE host = 'a' ORDER BY time")
        self.assertEqual(rows, [[self.iso((t + 10 * i) * 1000)] for i in range(10)
                                if not 3 <= i < 6])
        self.assertEqual(self.export_count('{__name__=~"mem_.+",host="a"}'), 14)
        self.assertEqual(self.export_count('{__name__=~"mem_.+",host="b"}'), 20)
        # over PostgreSQL: all of host b
        p = self.psql("-c", "DELETE FROM mem WHERE host IN ('b')")
        self.assertIn("DELETE 20", p.stdout)
        self.assertEqual(self.rows_of("SELECT count(*) FROM mem WHERE host = 'b'")[1], [[0]])
        self.assertEqual(self.export_count('{__name__=~"mem_.+",host="b"}'), 0)
        self.assertEqual(self.export_count('{__name__=~"mem_.+",host="c"}'), 20)
        self.assertEqual(self.rows_of("SELECT count(*) FROM mem")[1], [[17]])
        # nothing left to delete
        p = self.psql("-c", "DELETE FROM mem WHERE host = 'b'")
        self.assertIn("DELETE 0", p.stdout)

    def test_order_by_time_after_delete(self):
        """TOPN reads block headers and knows no tombstones: a deleted newest
        sample is one of its keys, the read that names only the keys' tag
        sets comes up short, and the window grows over every tag set."""
        lines, t = [], self.t0 - 600
        for h in ("a", "b", "c"):
            for i in range(5):
                lines.append("tn,host=%s v=%d %d" % (h, i, t + 10 * i))
        status, body = self.c.write(lines, router=0, precision="s")
        self.assertEqual(status, 204, body)
        last = (t + 40) * 1000
        status, body = self.sql("DELETE FROM tn WHERE host = 'a' AND time >= '%s'"
                                % self.iso(last))
        self.assertEqual(status, 200, body)
        _, rows = self.rows_of("SELECT time, host, v FROM tn ORDER BY time DESC LIMIT 2")
        self.assertEqual(rows, [[self.iso(last), "b", 4], [self.iso(last), "c", 4]])
        _, rows = self.rows_of("SELECT time, host FROM tn WHERE host IN ('a', 'c') "
                               "ORDER BY time DESC LIMIT 2")
        self.assertEqual(rows, [[self.iso(last), "c"], [self.iso(last - 10000), "a"]])

    def test_no_from(self):
        cols, rows = self.rows_of("SELECT 1 + 2 AS x, version(), 'a' || 'b'")
        self.assertEqual(cols, ["x", "version", "?column?"])
        self.assertEqual(rows[0][0], 3)
        self.assertEqual(rows[0][2], "ab")


    # ---- PostgreSQL wire protocol --------------------------------------------

    def psql(self, *args, ok=True):
        exe = shutil.which("psql")
        self.assertIsNotNone(exe, "psql not installed (Debian postgresql-client)")
        env = dict(os.environ, PGCONNECT_TIMEOUT="10", PGPASSWORD="", PGOPTIONS="")
        p = subprocess.run([exe, "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "tester",
                            "-d", "strata", "-X", "-v", "ON_ERROR_STOP=1"] + list(args),
                           capture_output=True, text=True, timeout=60, env=env)
        if ok:
            self.assertEqual(p.returncode, 0, p.stderr)
        return p

    def test_psql_simple(self):
        p = self.psql("-At", "-c", "SELECT count(*), max(usage_user) FROM cpu "
                      "WHERE hostname = 'host_1'")
        d = self.where("host_1")
        self.assertEqual(p.stdout.strip(), "%d|%g" % (len(d), max(r[3] for r in d)))
        p = self.psql("-At", "-F", ",", "-c", "SELECT time, hostname FROM cpu WHERE "
                      "hostname = 'host_0' ORDER BY time LIMIT 1")
        t = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(self.t0))
        self.assertEqual(p.stdout.strip(), t + ",host_0")
        # two statements in one Query, a transaction block, SET and SHOW
        p = self.psql("-At", "-c", "BEGIN; SELECT 1; COMMIT")
        self.assertEqual(p.stdout.split(), ["BEGIN", "1", "COMMIT"])
        p = self.psql("-At", "-c", "SHOW server_version")
        self.assertEqual(p.stdout.strip(), "14.0")

    def test_psql_errors(self):
        p = self.psql("-c", "SELECT count(* FROM cpu", ok=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("syntax error at position 16", p.stderr)
        p = self.psql("-c", "DELETE FROM cpu WHERE usage_user > 1", ok=False)
        self.assertIn("DELETE takes a WHERE", p.stderr)
        # the session goes on after an error
        p = self.psql("-At", "-v", "ON_ERROR_STOP=0", "-c", "SELECT nope FROM cpu", "-c",
                      "SELECT 2", ok=False)
        self.assertIn("2", p.stdout)

    def test_psql_catalog(self):
        p = self.psql("-c", "\\dt")
        self.assertIn("cpu_usage_user", p.stdout)
        self.assertIn("public", p.stdout)
        p = self.psql("-c", "\\d cpu")
        for col in ("time", "hostname", "region", "usage_user", "usage_system",
                    "timestamp with time zone", "double precision"):
            self.assertIn(col, p.stdout)

    def test_psycopg2(self):
        # Debian's python3-psycopg2 lives with /usr/bin/python3
        script = r"""
import json, sys, psycopg2
c = psycopg2.connect(host="127.0.0.1", port=int(sys.argv[1]), user="u", dbname="strata",
                     connect_timeout=10)
cur = c.cursor()
cur.execute("SELECT time, hostname, usage_user FROM cpu WHERE hostname = %s "
            "ORDER BY time DESC LIMIT 2", ("host_6",))
rows = cur.fetchall()
types = [d.type_code for d in cur.description]
cur.execute("SELECT count(*) FROM cpu WHERE usage_user >= %s AND hostname IN %s",
            (50, ("host_6", "host_7")))
n = cur.fetchone()[0]
c.rollback()
print(json.dumps({"rows": [[r[0].timestamp(), r[1], r[2]] for r in rows], "types": types,
                  "n": n, "tz": str(rows[0][0].tzinfo)}))
"""
        p = subprocess.run(["/usr/bin/python3", "-c", script, str(self.pg_port)],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        out = json.loads(p.stdout)
        d = sorted(self.where("host_6"), key=lambda r: -r[2])[:2]
        self.assertEqual(out["rows"], [[r[2] / 1000, "host_6", r[3]] for r in d])
        self.assertEqual(out["types"], [1184, 25, 701])
        self.assertEqual(out["n"], len([r for r in self.rows
                                        if r[0] in ("host_6", "host_7") and r[3] >= 50]))

    def test_pg_insert(self):
        """INSERT over PostgreSQL (simple protocol; psycopg2 below and node-pg
        in test_pgjs use the extended one): CommandComplete INSERT 0 n, the
        rows read back over HTTP; a bad row is an ErrorResponse."""
        t = self.t0 + 7
        p = subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "u",
                            "-d", "strata", "-v", "ON_ERROR_STOP=1", "-c",
                            "INSERT INTO pgins (time, site, level) VALUES ('%s', 'x', 1.5), "
                            "('%s', 'y', 2)" % (self.iso(t * 1000), self.iso(t * 1000))],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("INSERT 0 2", p.stdout)
        _, rows = self.rows_of("SELECT site, level FROM pgins ORDER BY site")
        self.assertEqual(rows, [["x", 1.5], ["y", 2]])
        script = r"""
import json, sys, psycopg2
c = psycopg2.connect(host="127.0.0.1", port=int(sys.argv[1]), user="u", dbname="strata",
                     connect_timeout=10)
c.autocommit = True
cur = c.cursor()
cur.execute("INSERT INTO pgins (time, site, level) VALUES (%s, %s, %s)",
            (int(sys.argv[2]), "z", 7.25))
n = cur.rowcount
try:
    cur.execute("INSERT INTO pgins (time, site) VALUES (now(), 'w')")
    err = None
except psycopg2.Error as e:
    err = e.pgcode
print(json.dumps({"n": n, "err": err}))
"""
        p = subprocess.run(["/usr/bin/python3", "-c", script, str(self.pg_port),
                            str((t + 1) * 1000)], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout), {"n": 1, "err": "22000"})
        _, rows = self.rows_of("SELECT time, level FROM pgins WHERE site = 'z'")
        self.assertEqual(rows, [[self.iso((t + 1) * 1000), 7.25]])

    def test_gapfill(self):
        """time_bucket_gapfill adds the empty buckets (aggregates NULL);
        locf carries the last value on, interpolate draws the line; the
        pushed-down and the raw read agree."""
        lo, hi = self.t0 * 1000, (self.t0 + 10 * N) * 1000
        # host_1's samples with a hole: none in the 2nd and 3rd minute
        d = [r for r in self.where("host_1") if not (lo + 60000 <= r[2] < lo + 180000)]
        hole = "(time < '%s' OR time >= '%s')" % (self.iso(lo + 60000), self.iso(lo + 180000))
        rng = "time >= '%s' AND time < '%s'" % (self.iso(lo), self.iso(hi + 120000))
        q = ("SELECT time_bucket_gapfill('1 minute', time) AS b, max(usage_user) AS m, "
             "locf(max(usage_user)) AS l, interpolate(max(usage_user)) AS i, count(*) AS n "
             "FROM cpu WHERE hostname = 'host_1' AND %s AND %s GROUP BY b ORDER BY b"
             % (hole, rng))
        _, rows = self.rows_of(q)
        buckets = list(range(lo, hi + 120000, 60000))
        self.assertEqual([r[0] for r in rows], [self.iso(b) for b in buckets])
        mx = {b: max((r[3] for r in d if b <= r[2] < b + 60000), default=None) for b in buckets}
        self.assertEqual([r[1] for r in rows], [mx[b] for b in buckets])
        self.assertEqual([r[4] for r in rows],
                         [len([r for r in d if b <= r[2] < b + 60000]) or None for b in buckets])
        last = None
        for b, r in zip(buckets, rows):
            last = mx[b] if mx[b] is not None else last
            self.assertEqual(r[2], last)
        # the hole: minutes 1 and 2, between minute 0 and 3
        v0, v3 = mx[buckets[0]], mx[buckets[3]]
        self.assertAlmostEqual(rows[1][3], v0 + (v3 - v0) / 3)
        self.assertAlmostEqual(rows[2][3], v0 + 2 * (v3 - v0) / 3)
        self.assertIsNone(rows[-1][3])  # nothing after the end to draw to
        # pushdown (exact WHERE) equals the raw read (a value condition)
        q1 = ("SELECT hostname, time_bucket_gapfill('1 minute', time) AS b, avg(usage_user) AS a "
              "FROM cpu WHERE hostname IN ('host_1', 'host_2') AND %s GROUP BY hostname, b "
              "ORDER BY hostname, b" % rng)
        _, pushed = self.rows_of(q1)
        _, raw = self.rows_of(q1.replace("GROUP BY", "AND usage_user > -1 GROUP BY"))
        self.assertEqual(len(pushed), 2 * len(buckets))
        self.assertEqual([r[:2] for r in pushed], [r[:2] for r in raw])
        for a, b in zip(pushed, raw):
            if a[2] is None:
                self.assertIsNone(b[2])
            else:
                self.assertAlmostEqual(a[2], b[2])
        status, body = self.sql("SELECT time_bucket_gapfill('1 second', time) AS b, count(*) "
                                "FROM cpu GROUP BY b")
        self.assertEqual(status, 400)
        self.assertIn("bound time in WHERE", json.loads(body)["error"])

    def test_pgjs(self):
        """npm's node-postgres (pinned in pgjs/package-lock.json): prepared
        statements with parameters, binary results, errors with SQLSTATE, an
        INSERT, all over the extended protocol."""
        from console_env import npm_install
        modules = npm_install(os.environ.get("STRATA_BIN_DIR", "build"), "pgjs")
        t = (self.t0 + 3) * 1000
        here = os.path.dirname(os.path.abspath(__file__))
        p = subprocess.run(["node", os.path.join(here, "pgjs", "pg_client.js"), str(self.pg_port),
                            "pgjs", str(t)], env=dict(os.environ, NODE_PATH=modules),
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        out = json.loads(p.stdout.strip().splitlines()[-1])
        self.assertEqual(out["insert"], {"command": "INSERT", "rowCount": 3})
        self.assertEqual(out["count"], 3)
        self.assertEqual(out["prepared"], [[[t, "a", 1.5], [t + 1000, "a", 2.5]],
                                           [[t, "b", -4]]])
        self.assertEqual(out["binary"], [["a", "2", 2.5], ["b", "1", 4]])
        self.assertEqual(out["binary_types"], [["host", 25, "binary"], ["n", 20, "binary"],
                                               ["m", 701, "binary"]])
        self.assertEqual(out["errors"], ["42601", "42703", "22000"])
        self.assertEqual(out["after_errors"], 42)

    def test_extended_protocol(self):
        """Parse/Bind/Describe/Execute/Sync by hand: $n parameters (text and
        binary int8), binary results (timestamptz, float8, int8), a row limit
        with PortalSuspended, Describe of a statement, an error skipped to
        Sync, SSLRequest answered 'N'."""
        pg = PgClient(self.pg_port)
        try:
            q = "SELECT time, usage_user FROM cpu WHERE hostname = $1 ORDER BY time LIMIT 5"
            pg.send(b"P", cstr("s1") + cstr(q) + struct.pack("!hI", 1, 25))
            pg.send(b"D", b"S" + cstr("s1"))
            pg.send(b"B", cstr("p1") + cstr("s1") + struct.pack("!hh", 1, 0) +
                    struct.pack("!h", 1) + struct.pack("!i", 6) + b"host_2" +
                    struct.pack("!hh", 1, 1))
            pg.send(b"D", b"P" + cstr("p1"))
            pg.send(b"E", cstr("p1") + struct.pack("!i", 2))
            pg.send(b"E", cstr("p1") + struct.pack("!i", 0))
            pg.send(b"S", b"")
            msgs = pg.until_ready()
            types = [t for t, _ in msgs]
            self.assertEqual(types, [b"1", b"t", b"T", b"2", b"T", b"D", b"D", b"s", b"D", b"D",
                                     b"D", b"C", b"Z"])
            self.assertEqual(struct.unpack("!hI", msgs[1][1]), (1, 25))
            cols = parse_row_desc(msgs[4][1])
            self.assertEqual(cols, [("time", 1184, 1), ("usage_user", 701, 1)])
            d = sorted(self.where("host_2"), key=lambda r: r[2])[:5]
            got = []
            for t, body in msgs:
                if t == b"D":
                    (n,) = struct.unpack("!h", body[:2])
                    l1, us = struct.unpack("!iq", body[2:14])
                    l2, v = struct.unpack("!id", body[14:26])
                    got.append((us // 1000 + 946684800000, v))
            self.assertEqual(got, [(r[2], r[3]) for r in d])
            self.assertEqual(msgs[11][1], b"SELECT 5\0")
            # a binary int8 parameter, an int8 result in binary
            q2 = "SELECT count(*) AS n FROM cpu WHERE usage_user > $1"
            pg.send(b"P", cstr("") + cstr(q2) + struct.pack("!hI", 1, 20))
            pg.send(b"B", cstr("") + cstr("") + struct.pack("!hh", 1, 1) +
                    struct.pack("!hiq", 1, 8, 50) + struct.pack("!hh", 1, 1))
            pg.send(b"E", cstr("") + struct.pack("!i", 0))
            pg.send(b"S", b"")
            msgs = pg.until_ready()
            self.assertEqual([t for t, _ in msgs], [b"1", b"2", b"D", b"C", b"Z"])
            self.assertEqual(struct.unpack("!hiq", msgs[2][1]),
                             (1, 8, len([r for r in self.rows if r[3] > 50])))
            # an error: the rest up to Sync is skipped, the session goes on
            pg.send(b"P", cstr("") + cstr("SELEKT 1") + struct.pack("!h", 0))
            pg.send(b"B", cstr("") + cstr("") + struct.pack("!hhh", 0, 0, 0))
            pg.send(b"E", cstr("") + struct.pack("!i", 0))
            pg.send(b"E", cstr("") + struct.pack("!i", 0))
            pg.send(b"S", b"")
            msgs = pg.until_ready()
            self.assertEqual([t for t, _ in msgs], [b"1", b"2", b"E", b"Z"])
            self.assertIn(b"C42601\0", msgs[2][1])
        finally:
            pg.close()

    def test_pg_bad_input(self):
        """A message announcing more than the limit: FATAL 54000 and close,
        counted; an unknown protocol version refused; garbage after the
        startup closes the session; the router serves on."""
        pg = PgClient(self.pg_port)
        pg.s.sendall(b"Q" + struct.pack("!I", 64 << 20))
        t, body = pg.recv()
        self.assertEqual(t, b"E")
        self.assertIn(b"C54000\0", body)
        self.assertIn(b"message too long", body)
        self.assertEqual(pg.s.recv(100), b"")  # closed
        pg.s.close()
        s = socket.create_connection(("127.0.0.1", self.pg_port), timeout=30)
        s.sendall(struct.pack("!II", 8, 0x00020000))  # protocol 2.0
        data = s.recv(1000)
        self.assertEqual(data[:1], b"E")
        self.assertIn(b"unsupported frontend protocol", data)
        s.close()
        status, _, body = http_request(self.c.router_url(0) + "/metrics")
        self.assertRegex(body.decode(), r"strata_router_pg_protocol_errors_total [1-9]")
        _, rows = self.rows_of("SELECT 1")
        self.assertEqual(rows, [[1]])


def cstr(s):
    return s.encode() + b"\0"


def parse_row_desc(body):
    (n,) = struct.unpack("!h", body[:2])
    at, out = 2, []
    for _ in range(n):
        z = body.index(b"\0", at)
        name = body[at:z].decode()
        at = z + 1
        _, _, oid, _, _, fmt = struct.unpack("!IhIhih", body[at:at + 18])
        at += 18
        out.append((name, oid, fmt))
    return out


class PgClient:
    """A PostgreSQL protocol client written here, for what psql and psycopg2
    do not send (the extended protocol with binary formats)."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = b""
        self.s.sendall(struct.pack("!II", 8, 80877103))
        assert self.read_exact(1) == b"N"
        body = struct.pack("!I", 196608) + cstr("user") + cstr("t") + cstr("database") + \
            cstr("strata") + b"\0"
        self.s.sendall(struct.pack("!I", len(body) + 4) + body)
        msgs = self.until_ready()
        assert msgs[0] == (b"R", struct.pack("!I", 0)), msgs[0]
        params = dict(m[1][:-1].split(b"\0", 1) for m in msgs if m[0] == b"S")
        for k in (b"server_version", b"client_encoding", b"DateStyle", b"integer_datetimes",
                  b"standard_conforming_strings"):
            assert k in params, k

    def read_exact(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("server closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, t, body):
        self.s.sendall(t + struct.pack("!I", len(body) + 4) + body)

    def recv(self):
        t = self.read_exact(1)
        (n,) = struct.unpack("!I", self.read_exact(4))
        return t, self.read_exact(n - 4)

    def until_ready(self):
        out = []
        for _ in range(10000000):
            m = self.recv()
            out.append(m)
            if m[0] == b"Z":
                return out
        raise AssertionError("no ReadyForQuery")

    def close(self):
        try:
            self.send(b"X", b"")
        finally:
            self.s.close()


if __name__ == "__main__":
    unittest.main()
