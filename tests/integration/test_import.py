"""Import and export formats (issue 13): /api/v1/import (JSON lines),
/api/v1/import/prometheus, /api/v1/import/csv and /api/v1/export/csv on a
real cluster (3 nodes, RF 2).

- golden bodies with malformed lines: 400 naming each bad line and why,
  every good line stored (read back through /api/v1/export);
- export -> import into a fresh cluster -> export is byte-identical, with
  NaN, +Inf, -Inf, -0, subnormals and the extremes of float64 in it;
- gzip bodies, a refused format= spec, CSV written and read back with the
  same column spec.
"""

import gzip
import json
import struct
import unittest
import urllib.parse

from harness import ClusterTestCase, http_request, parse_export, parse_json

T0 = 1_700_000_000_000  # ms


def post(c, path, body, params=None, headers=None):
    url = c.router_url(0) + path
    if params:
        url += "?" + urllib.parse.urlencode(params)
    st, _, data = http_request(url, "POST", body, headers or {})
    return st, data


def bits(v):
    return struct.unpack("<Q", struct.pack("<d", v))[0]


def by_name(export):
    return {json.dumps(s["metric"], sort_keys=True): s for s in export}


SPECIAL = [float("nan"), float("inf"), float("-inf"), -0.0, 5e-324, 2.2250738585072009e-308,
           1.7976931348623157e308, 0.1, -123456789.125, 2.0 ** 53 + 2, 1e-310]


class Import(ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        cls.start_class_cluster(nodes=3, routers=1, shards=12, rf=2)
        cls.c = cls._class_clusters[0]

    def test_json_golden(self):
        body = "\n".join([
            '{"metric":{"__name__":"jg","host":"a"},"values":[1,2.5],"timestamps":[%d,%d]}'
            % (T0, T0 + 1000),
            '{"metric":{"__name__":"jg","host":"b"},"values":[1],"timestamps":[1,2]}',
            '{"metric":{"host":"c"},"values":[1],"timestamps":[%d]}' % T0,
            '',
            '{"metric":{"__name__":"jg","host":"d"},"values":[true],"timestamps":[%d]}' % T0,
            'not json',
            ' {"timestamps":[%d],"values":[-0],"metric":{"host":"e","__name__":"jg"}} ' % T0,
        ]).encode()
        st, data = post(self.c, "/api/v1/import", body)
        self.assertEqual(st, 400, data)
        err = parse_json(data)
        self.assertEqual(err["error"], "partial write: 4 of 6 lines rejected")
        self.assertEqual(err["rejected"], [
            {"line": 2, "reason": "\"values\" has 1 items but \"timestamps\" has 2"},
            {"line": 3, "reason": "no metric name (__name__)"},
            {"line": 5, "reason": "invalid value 'true' in \"values\""},
            {"line": 6, "reason": "expected '{' at the start of the line"},
        ])
        got = by_name(self.c.export('{__name__="jg"}'))
        self.assertEqual(sorted(got), ['{"__name__": "jg", "host": "a"}',
                                       '{"__name__": "jg", "host": "e"}'])
        a = got['{"__name__": "jg", "host": "a"}']
        self.assertEqual((a["values"], a["timestamps"]), ([1, 2.5], [T0, T0 + 1000]))
        e = got['{"__name__": "jg", "host": "e"}']
        self.assertEqual(bits(e["values"][0]), bits(-0.0))
        # a fully good body: 204, and gzip works like /write
        good = b'{"metric":{"__name__":"jz"},"values":[7],"timestamps":[%d]}\n' % T0
        st, data = post(self.c, "/api/v1/import", gzip.compress(good),
                        headers={"Content-Encoding": "gzip"})
        self.assertEqual(st, 204, data)
        self.assertEqual(self.c.export("jz")[0]["values"], [7])
        st, data = post(self.c, "/api/v1/import", gzip.compress(good))
        self.assertEqual(st, 400)
        self.assertIn(b"Content-Encoding: gzip", data)
        st, _, _ = http_request(self.c.router_url(0) + "/api/v1/import")
        self.assertEqual(st, 405)

    def test_roundtrip_bit_exact(self):
        lines = []
        for i, v in enumerate(SPECIAL):
            js = ("NaN" if v != v else "Infinity" if v == float("inf") else
                  "-Infinity" if v == float("-inf") else repr(v))
            lines.append('{"metric":{"__name__":"rt","i":"%02d","q":"\\"\\\\\\n\\u00e9"},'
                         '"values":[%s,1],"timestamps":[%d,%d]}' % (i, js, T0 + i, T0 + 9999))
        st, data = post(self.c, "/api/v1/import", "\n".join(lines).encode())
        self.assertEqual(st, 204, data)
        st, first = self.c.export_raw("rt")
        self.assertEqual(st, 200)
        exported = parse_export(first)
        self.assertEqual(len(exported), len(SPECIAL))
        for s in exported:
            want = SPECIAL[int(s["metric"]["i"])]
            got = s["values"][0]
            if want != want:
                self.assertNotEqual(got, got)
            else:
                self.assertEqual(bits(got), bits(want), s)
        fresh = self.cluster(nodes=2, routers=1, shards=8, rf=1)
        fresh.start()
        st, data = post(fresh, "/api/v1/import", first)
        self.assertEqual(st, 204, data)
        st, second = fresh.export_raw("rt")
        self.assertEqual(st, 200)
        self.assertEqual(sorted(first.split(b"\n")), sorted(second.split(b"\n")))
        # and back again into the first cluster: still the same bytes
        st, data = post(self.c, "/api/v1/import", second)
        self.assertEqual(st, 204, data)
        st, third = self.c.export_raw("rt")
        self.assertEqual(sorted(first.split(b"\n")), sorted(third.split(b"\n")))
        fresh.stop()

    def test_prometheus_golden(self):
        body = "\n".join([
            "# HELP pg_total a counter",
            "# TYPE pg_total counter",
            'pg_total{code="200",path="/a"} 5 %d' % T0,
            'pg_total{code="500"} +Inf',
            "pg_up 1",
            'pg_bad{code=200} 1',
            "pg_bad 1 2 3",
            'pg_bad{x="\\q"} 1',
            "pg_total{} NaN %d" % (T0 + 5),
        ]).encode()
        st, data = post(self.c, "/api/v1/import/prometheus", body, {"timestamp": str(T0 + 7)})
        self.assertEqual(st, 400, data)
        err = parse_json(data)
        self.assertEqual([r["line"] for r in err["rejected"]], [6, 7, 8])
        self.assertEqual(err["rejected"][0]["reason"], "expected '\"' to open a label value")
        self.assertEqual(err["rejected"][1]["reason"], "unexpected '3' after the timestamp")
        got = by_name(self.c.export('{__name__=~"pg_.*"}'))
        self.assertEqual(got['{"__name__": "pg_total", "code": "200", "path": "/a"}']["timestamps"],
                         [T0])
        inf = got['{"__name__": "pg_total", "code": "500"}']
        self.assertEqual((inf["values"], inf["timestamps"]), ([float("inf")], [T0 + 7]))
        self.assertEqual(got['{"__name__": "pg_up"}']["timestamps"], [T0 + 7])
        nan = got['{"__name__": "pg_total"}']
        self.assertTrue(nan["values"][0] != nan["values"][0])
        self.assertNotIn('{"__name__": "pg_bad"}', got)
        st, data = post(self.c, "/api/v1/import/prometheus", b"x 1\n", {"timestamp": "yesterday"})
        self.assertEqual(st, 400)
        self.assertIn(b"invalid timestamp", data)

    def test_csv(self):
        spec = "2:metric:csv_ask,3:metric:csv_bid,1:label:ticker,4:time:unix_s"
        body = "\n".join([
            "GOOG,1.5,2.5,%d" % (T0 // 1000),
            '"MS,FT",3,,%d.250' % (T0 // 1000),
            "BAD,x,1,%d" % (T0 // 1000),
            "SHORT,1",
        ]).encode()
        st, data = post(self.c, "/api/v1/import/csv", body, {"format": spec})
        self.assertEqual(st, 400, data)
        err = parse_json(data)
        self.assertEqual(err["error"], "partial write: 2 of 4 lines rejected")  # rows, not series
        self.assertEqual(err["rejected"], [
            {"line": 3, "reason": "invalid value 'x' in column 2"},
            {"line": 4, "reason": "row has 2 columns; the format uses column 4"},
        ])
        got = by_name(self.c.export('{__name__=~"csv_.*"}'))
        self.assertEqual(sorted(got), [
            '{"__name__": "csv_ask", "ticker": "GOOG"}',
            '{"__name__": "csv_ask", "ticker": "MS,FT"}',
            '{"__name__": "csv_bid", "ticker": "GOOG"}',
        ])
        self.assertEqual(got['{"__name__": "csv_ask", "ticker": "MS,FT"}']["timestamps"],
                         [T0 + 250])
        # CSV export with the import spec reads back as the same data
        st, _, out = self.c.get("/api/v1/export/csv",
                                params=[("format", spec), ("match[]", '{__name__=~"csv_.*"}')])
        self.assertEqual(st, 200, out)
        self.assertEqual(sorted(out.decode().splitlines()), sorted([
            "GOOG,1.5,,%d" % (T0 // 1000),
            "GOOG,,2.5,%d" % (T0 // 1000),
            '"MS,FT",3,,%d.250' % (T0 // 1000),
        ]))
        fresh = self.cluster(nodes=1, routers=1, shards=4, rf=1)
        fresh.start()
        st, data = post(fresh, "/api/v1/import/csv", out, {"format": spec})
        self.assertEqual(st, 204, data)
        self.assertEqual(by_name(fresh.export('{__name__=~"csv_.*"}')), got)
        fresh.stop()
        # VictoriaMetrics' export spec
        st, _, out = self.c.get("/api/v1/export/csv", params=[
            ("format", "__name__,ticker,__value__,__timestamp__:rfc3339"),
            ("match[]", 'csv_ask{ticker="GOOG"}')])
        self.assertEqual((st, out), (200, b"csv_ask,GOOG,1.5,2023-11-14T22:13:20.000Z\n"))
        # refused specs
        for bad, why in [("1:label:a", "the format has no metric column"),
                         ("1:metric:a,2:time:unix_h", "invalid time format 'unix_h'")]:
            st, data = post(self.c, "/api/v1/import/csv", b"1,2\n", {"format": bad})
            self.assertEqual(st, 400)
            self.assertIn(why.encode(), data)
        st, data = post(self.c, "/api/v1/import/csv", b"1,2\n")
        self.assertEqual(st, 400)
        self.assertIn(b"missing format=", data)
        st, _, data = self.c.get("/api/v1/export/csv", params=[("match[]", "x")])
        self.assertEqual(st, 400)
        st, _, text = http_request(self.c.router_url(0) + "/metrics")
        self.assertIn(b'strata_router_import_requests_total{format="csv"}', text)
        self.assertIn(b"strata_router_import_refused_total", text)

if __name__ == "__main__":
    unittest.main()
