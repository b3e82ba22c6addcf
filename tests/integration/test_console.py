"""The web console served by strata-router (issue 20), in a real browser.

Debian's chromium, driven headless by puppeteer-core (console/console.js),
against a real 3-node cluster (RF 2) with data:
- the files: / is index.html (no-cache, ETag, 304 on If-None-Match), the
  hashed /ui/ files are immutable for a year, gzip when accepted;
- the query page draws one chart line per series of a known query, its
  table equals the API's answer at the same time, an invalid query shows
  the API's error with a caret at the position it names, and the page makes
  no request to anywhere but the router;
- the cluster page shows a node down within seconds of kill -9, and up
  again after its restart;
- the cardinality page lists the top metric first and clicks through to it;
- the JSON view (in the dark theme) holds the API's answer.

Screenshots of each page go to <build>/console-screenshots/ (not git).
Skipped (ctest SKIP, CONSOLE_SKIP in the output) only when chromium is
absent; CI installs it.
"""

import gzip
import json
import os
import re
import time
import unittest

from console_env import chromium_missing, npm_install, run_step
from harness import ClusterTestCase, bin_dir, http_request, parse_json

N_HOSTS = 5   # console_test{host=...} (line protocol console,host= test=): the chart's series
N_BIG = 40    # console_big{i=...}: the top metric
POINTS = 30   # one a minute over the last half hour
DOWN_WITHIN_S = 15.0


class ConsoleTest(ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        why = chromium_missing()
        if why:
            print("CONSOLE_SKIP: " + why)
            raise unittest.SkipTest(why)
        cls.shots = os.path.join(bin_dir(), "console-screenshots")
        os.makedirs(cls.shots, exist_ok=True)
        cls.modules = npm_install(bin_dir())
        cls.c = cls.class_cluster(nodes=3, routers=1, shards=6, rf=2).start()
        now = int(time.time())
        lines = []
        for p in range(POINTS):
            ts = (now - 60 * (POINTS - p)) * 10**9
            for h in range(N_HOSTS):
                lines.append("console,host=h%d test=%d %d" % (h, h * 100 + p, ts))
            for i in range(N_BIG):
                lines.append("console,i=%d big=%d %d" % (i, p, ts))
        st, body = cls.c.write(lines, consistency="all")
        assert st == 204, (st, body)
        cls.url = cls.c.router_url(0)

    @classmethod
    def tearDownClass(cls):
        cls.close_class_clusters()

    def step(self, name, *args, **kw):
        return run_step(self.modules, self.shots, name, self.url, *args, **kw)

    def test_files_and_cache_headers(self):
        st, h, body = http_request(self.url + "/")
        self.assertEqual(st, 200)
        self.assertTrue(h["content-type"].startswith("text/html"), h)
        self.assertEqual(h["cache-control"], "no-cache")
        assets = re.findall(r'(?:src|href)="ui/([^"]+)"', body.decode())
        self.assertEqual(len(assets), 2, body[:500])
        st, _, _ = http_request(self.url + "/", headers={"If-None-Match": h["etag"]})
        self.assertEqual(st, 304)
        for a in assets:
            st, h2, raw = http_request(self.url + "/ui/" + a)
            self.assertEqual(st, 200, a)
            self.assertIn("immutable", h2["cache-control"])
            self.assertIn("max-age=31536000", h2["cache-control"])
            self.assertTrue(h2["content-type"].startswith(
                "text/javascript" if a.endswith(".js") else "text/css"), h2)
            st, h3, gz = http_request(self.url + "/ui/" + a, headers={"Accept-Encoding": "gzip"})
            self.assertEqual(h3.get("content-encoding"), "gzip")
            self.assertEqual(gzip.decompress(gz), raw)
            self.assertLess(len(gz), len(raw))
        st, _, _ = http_request(self.url + "/ui/nope.js")
        self.assertEqual(st, 404)
        st, _, _ = http_request(self.url + "/", "POST", b"x")
        self.assertEqual(st, 405)
        st, _, m = http_request(self.url + "/metrics")
        self.assertIn(b'strata_router_console_requests_total{result="not_modified"} 1', m)

    def test_status_nodes(self):
        """/api/v1/status/nodes: every node up with its STATS figures; the
        series count (summed over the nodes / RF) reaches what was written."""
        want = N_HOSTS + N_BIG

        def nodes():
            st, _, body = http_request(self.url + "/api/v1/status/nodes")
            self.assertEqual(st, 200)
            d = parse_json(body)["data"]
            hist = d["series_history"]
            return d if hist and hist[-1][1] == want else None

        # one sample every 10 s: the one after the write has every series
        d = self.c.wait_until(nodes, timeout=60, what="series_history to reach %d" % want)
        self.assertEqual([n["id"] for n in d["nodes"]], self.c.node_ids)
        self.assertTrue(all(n["up"] and n["stats_age_ms"] >= 0 for n in d["nodes"]), d)
        self.assertEqual(sum(n["series"] for n in d["nodes"]), want * 2)  # RF 2
        self.assertEqual(d["series_history"][-1][1], want, d["series_history"])
        self.assertEqual(d["replication_factor"], 2)

    def test_query_chart(self):
        out = self.step("query", "console_test", "1h")
        self.assertEqual(out["series"], N_HOSTS, out)
        self.assertEqual(out["legend"], N_HOSTS + 1, out)  # + the time column
        self.assertTrue(out["toggled"], "a click on a legend entry hides its series")
        self.assertIn("ms", out["status"])
        self.assertIsNotNone(out["pushdown"], "the X-Strata-Pushdown plan is shown")
        self.assertEqual(out["external_requests"], [])
        self.assertEqual(out["console_errors"], [])
        self.assertEqual(out["failed"], [], "no request but the /sql probe answers an error")

    def test_query_table_equals_api(self):
        out = self.step("table", "console_test")
        st, _, body = http_request(self.url + "/api/v1/query?query=console_test&time=%.3f"
                                   % out["time"])
        self.assertEqual(st, 200)
        api = {json.dumps(r["metric"], sort_keys=True): r["value"][1]
               for r in parse_json(body)["data"]["result"]}
        seen = {json.dumps(r["labels"], sort_keys=True): r["value"] for r in out["rows"]}
        self.assertEqual(len(api), N_HOSTS)
        self.assertEqual(seen, api)

    def test_query_json_view(self):
        out = self.step("json", "console_test", env={"CONSOLE_THEME": "dark"})
        self.assertEqual(out["json"]["status"], "success")
        self.assertEqual(len(out["json"]["data"]["result"]), N_HOSTS)

    def test_query_error_position(self):
        q = "sum(rate(console_test[5m])"
        out = self.step("error", q)
        st, _, body = http_request(self.url + "/api/v1/query?query=" + "sum(rate(console_test%5B5m%5D)")
        self.assertEqual(st, 400)
        msg = parse_json(body)["error"]
        self.assertEqual(out["text"], msg)
        m = re.search(r"(\d+):(\d+):", msg)
        self.assertIsNotNone(m, msg)
        self.assertEqual((out["line"], out["col"]), (m.group(1), m.group(2)))
        self.assertEqual(out["caret"].splitlines()[1], " " * (int(m.group(2)) - 1) + "^")

    def test_cardinality_top_metric(self):
        out = self.step("cardinality")
        self.assertEqual(out["top"][0], "console_big", out)
        self.assertIn("console_test", out["top"])
        self.assertGreater(out["pairs"], 0)
        self.assertIn("q=console_big", out["clicked"])

    def test_zz_cluster_node_down_and_up(self):
        out = self.step("cluster", "n2", "up")
        self.assertIn(self.c.node_ids[0], out["meta"] + "".join(c[0] for c in out["grid_cells"]))
        self.assertEqual(len(out["grid_cells"]), 6 * 2)  # shards x replicas
        self.c.kill9(1)
        t0 = time.monotonic()
        out = self.step("cluster", "n2", "down", env={"CONSOLE_SHOT": "cluster-down"})
        self.assertLess(time.monotonic() - t0, DOWN_WITHIN_S, out)
        self.assertIn(["n2", "down"], out["grid_cells"])
        self.c.restart(1)
        out = self.step("cluster", "n2", "up,catching_up", env={"CONSOLE_SHOT": "cluster"})
        self.assertNotIn(["n2", "down"], out["grid_cells"])


if __name__ == "__main__":
    unittest.main()
