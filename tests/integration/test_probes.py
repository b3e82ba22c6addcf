"""The endpoints Grafana and client libraries probe, and InfluxDB 1.x /query
(issue 13).

- /api/v1/status/buildinfo, metadata, query_exemplars, format_query,
  status/tsdb, rules and alerts answer the same JSON shape (keys and value
  types, recursively) as a real Prometheus 2.42 started here on a free
  port, scraping itself so its lists are not empty;
- /api/v1/status/tsdb counts are right on known data (3 nodes, RF 2: every
  series counted once), with limit= and match[];
- format_query prints through the PromQL formatter; bad queries are 400
  worded like Prometheus;
- /query: CREATE DATABASE, SHOW DATABASES, SHOW MEASUREMENTS, SHOW TAG KEYS
  FROM, SHOW FIELD KEYS [FROM] from the index; anything else a 400 with an
  InfluxDB-style {"error": ...}.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.parse

from harness import ClusterTestCase, free_port, http_request, parse_json

T0 = 1_700_000_000_000
PROM_START_TIMEOUT = 60.0


def shape(v):
    """Keys and value types, recursively; a list's shape is its first
    element's (an empty list: [])."""
    if isinstance(v, dict):
        return {k: shape(x) for k, x in v.items()}
    if isinstance(v, list):
        return [shape(v[0])] if v else []
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    return type(v).__name__


def same_shape(a, b):
    """Shapes equal, an empty list matching any list."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_shape(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return not a or not b or same_shape(a[0], b[0])
    return a == b


class Prometheus:
    """A real prometheus on a free port, scraping itself every second."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="strata-it-prom-")
        self.port = free_port()
        cfg = os.path.join(self.dir, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\nscrape_configs:\n"
                    "  - job_name: self\n    static_configs:\n"
                    "      - targets: ['127.0.0.1:%d']\n" % self.port)
        self.log = open(os.path.join(self.dir, "prometheus.log"), "wb")
        self.proc = subprocess.Popen(
            ["prometheus", "--config.file=" + cfg,
             "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
             "--web.listen-address=127.0.0.1:%d" % self.port],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.url = "http://127.0.0.1:%d" % self.port

    def wait(self, cond, what):
        deadline = time.monotonic() + PROM_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("prometheus exited: %s" % self.tail())
            try:
                if cond():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("prometheus: no %s within %.0f s: %s"
                             % (what, PROM_START_TIMEOUT, self.tail()))

    def get(self, path):
        return http_request(self.url + path, timeout=10)

    def tail(self):
        with open(os.path.join(self.dir, "prometheus.log"), "rb") as f:
            return f.read()[-2000:].decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


PROBES = [
    "/api/v1/status/buildinfo",
    "/api/v1/metadata",
    "/api/v1/metadata?metric=up",
    "/api/v1/query_exemplars?query=up&start=0&end=100",
    "/api/v1/format_query?query=" + urllib.parse.quote("sum(rate(x[5m]))by(a)"),
    "/api/v1/format_query?query=" + urllib.parse.quote("sum("),
    "/api/v1/format_query",
    "/api/v1/status/tsdb",
    "/api/v1/rules",
    "/api/v1/alerts",
]

# series: (metric, labels)
SERIES = [
    ("cpu_usage", {"host": "a", "dc": "x"}),
    ("cpu_usage", {"host": "b", "dc": "x"}),
    ("cpu_usage", {"host": "c", "dc": "yy"}),
    ("cpu_idle", {"host": "a", "dc": "x"}),
    ("mem", {"host": "a"}),
]


class Probes(ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        cls.start_class_cluster(nodes=3, routers=1, shards=12, rf=2)
        cls.c = cls._class_clusters[0]
        lines = []
        for name, labels in SERIES:
            m = dict(labels, __name__=name)
            lines.append(json.dumps({"metric": m, "values": [1, 2], "timestamps": [T0, T0 + 1]}))
        st, _, data = http_request(cls.c.router_url(0) + "/api/v1/import", "POST",
                                   "\n".join(lines).encode())
        assert st == 204, (st, data)

    def get(self, path):
        return http_request(self.c.router_url(0) + path)

    def test_shapes_match_prometheus(self):
        prom = Prometheus()
        try:
            prom.wait(lambda: prom.get("/-/ready")[0] == 200, "ready")
            # (not /status/tsdb: Prometheus caches its cardinality lists for
            # minutes, so the first call must come after the first scrape)
            q = "/api/v1/query?query=" + urllib.parse.quote("count(up)")
            prom.wait(lambda: parse_json(prom.get(q)[2])["data"]["result"], "scraped series")
            for path in PROBES:
                pst, _, pbody = prom.get(path)
                sst, hdr, sbody = self.get(path)
                self.assertEqual(sst, pst, (path, sbody, pbody))
                self.assertTrue(hdr.get("content-type", "").startswith("application/json"), path)
                p, s = shape(parse_json(pbody)), shape(parse_json(sbody))
                if path.startswith("/api/v1/metadata"):
                    # Prometheus has metadata of its scrapes (metric names as
                    # keys), Strata honestly none: compare the envelope
                    self.assertEqual(parse_json(sbody), {"status": "success", "data": {}})
                    p["data"] = {}
                self.assertTrue(same_shape(p, s), "%s: Strata %s, Prometheus %s" % (path, s, p))
                tsdb = parse_json(pbody)["data"] if "tsdb" in path else None
                if tsdb:  # the lists were compared element-wise: both non-empty
                    self.assertTrue(tsdb["seriesCountByMetricName"])
            # the formatter prints the same text here
            path = "/api/v1/format_query?query=" + urllib.parse.quote("sum(rate(x[5m]))by(a)")
            self.assertEqual(parse_json(self.get(path)[2]), parse_json(prom.get(path)[2]))
        finally:
            prom.stop()

    def test_tsdb_numbers(self):
        st, _, body = self.get("/api/v1/status/tsdb")
        self.assertEqual(st, 200, body)
        d = parse_json(body)["data"]
        self.assertEqual(d["headStats"]["numSeries"], 5)
        self.assertEqual(d["seriesCountByMetricName"], [
            {"name": "cpu_usage", "value": 3}, {"name": "cpu_idle", "value": 1},
            {"name": "mem", "value": 1}])
        self.assertEqual(d["labelValueCountByLabelName"], [
            {"name": "__name__", "value": 3}, {"name": "host", "value": 3},
            {"name": "dc", "value": 2}])
        # bytes of values times the series carrying them
        self.assertEqual(d["memoryInBytesByLabelName"], [
            {"name": "__name__", "value": 3 * 9 + 8 + 3}, {"name": "dc", "value": 1 * 3 + 2},
            {"name": "host", "value": 5}])
        self.assertEqual(d["seriesCountByLabelValuePair"][:3], [
            {"name": "__name__=cpu_usage", "value": 3}, {"name": "dc=x", "value": 3},
            {"name": "host=a", "value": 3}])
        self.assertEqual(d["headStats"]["numLabelPairs"], 8)
        st, _, body = self.get("/api/v1/status/tsdb?limit=1&" +
                               urllib.parse.urlencode({"match[]": '{host="a"}'}))
        d = parse_json(body)["data"]
        self.assertEqual(d["headStats"]["numSeries"], 3)
        self.assertEqual(d["seriesCountByMetricName"], [{"name": "cpu_idle", "value": 1}])
        self.assertEqual(d["seriesCountByLabelValuePair"], [{"name": "host=a", "value": 3}])
        for bad in ["limit=0", "limit=x", "match[]=%7B", "match[]=a&match[]=b"]:
            st, _, body = self.get("/api/v1/status/tsdb?" + bad)
            self.assertEqual(st, 400, (bad, body))
            self.assertEqual(parse_json(body)["status"], "error")

    def test_format_query(self):
        st, _, body = self.get("/api/v1/format_query?query=" +
                               urllib.parse.quote('foo{a="b"}+on(x)bar offset 90m'))
        self.assertEqual((st, parse_json(body)["data"]),
                         (200, 'foo{a="b"} + on(x) bar offset 1h30m'))
        st, _, body = http_request(self.c.router_url(0) + "/api/v1/format_query", "POST",
                                   b"query=rate(x%5B5m%5D)",
                                   {"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual((st, parse_json(body)["data"]), (200, "rate(x[5m])"))

    def query(self, q, method="GET"):
        url = self.c.router_url(0) + "/query"
        if method == "GET":
            st, _, body = http_request(url + "?" + urllib.parse.urlencode({"q": q}))
        else:
            st, _, body = http_request(url, "POST", urllib.parse.urlencode({"q": q}).encode(),
                                       {"Content-Type": "application/x-www-form-urlencoded"})
        return st, parse_json(body)

    def test_influx_query(self):
        self.assertEqual(self.query('CREATE DATABASE "telegraf"', "POST"),
                         (200, {"results": [{"statement_id": 0}]}))
        self.assertEqual(self.query("show databases"), (200, {"results": [{"statement_id": 0, "series": [
            {"name": "databases", "columns": ["name"], "values": [["strata"]]}]}]}))
        self.assertEqual(self.query("SHOW MEASUREMENTS;"), (200, {"results": [{"statement_id": 0, "series": [
            {"name": "measurements", "columns": ["name"],
             "values": [["cpu"], ["mem"]]}]}]}))
        self.assertEqual(self.query('SHOW TAG KEYS FROM "cpu"'), (200, {"results": [{"statement_id": 0, "series": [
            {"name": "cpu", "columns": ["tagKey"], "values": [["dc"], ["host"]]}]}]}))
        self.assertEqual(self.query("SHOW FIELD KEYS"), (200, {"results": [{"statement_id": 0, "series": [
            {"name": "cpu", "columns": ["fieldKey", "fieldType"],
             "values": [["idle", "float"], ["usage", "float"]]},
            {"name": "mem", "columns": ["fieldKey", "fieldType"],
             "values": [["value", "float"]]}]}]}))
        self.assertEqual(self.query("SHOW FIELD KEYS FROM nothing"),
                         (200, {"results": [{"statement_id": 0}]}))
        for bad in ["SELECT * FROM cpu", "SHOW TAG KEYS", "DROP DATABASE x", "SHOW SERIES"]:
            st, body = self.query(bad)
            self.assertEqual(st, 400, bad)
            self.assertTrue(body["error"].startswith("error parsing query: Strata answers only"),
                            body)
        st, _, body = http_request(self.c.router_url(0) + "/query")
        self.assertEqual((st, parse_json(body)), (400, {"error": "missing required parameter \"q\""}))
        st, _, text = http_request(self.c.router_url(0) + "/metrics")
        self.assertIn(b'strata_router_influx_queries_total{result="ok"} 6', text)
        self.assertIn(b'strata_router_influx_queries_total{result="refused"} 5', text)


if __name__ == "__main__":
    unittest.main()
