#!/usr/bin/env python3
"""Web console benchmark (issue 20): the bundle's size and the time to the
first chart of 1000 series x 360 points, in Debian's headless chromium.

  tests/bench/console_bench.py [--series 1000] [--points 360] [--runs 3]
                               [--build build]

1. Bundle: GET / and the two /ui/ files it names from a router of --build,
   as is and with Accept-Encoding: gzip (the sizes on the wire).
2. A cluster from tests/integration/harness.py (3 nodes, 1 router, RF 1,
   real processes on 127.0.0.1) is loaded with --series series of
   --points points, one every 10 s, ending now.
3. --runs times: a fresh headless browser opens
   /#/query?q=console_bench&range=1h (a 10 s step: 361 points per series)
   and console.js reports, from the navigation's start, when the chart was
   drawn, with the query's request time and the chart's draw time.
   The browser's own start is not counted.

Prints figures (median and max of the runs); asserts nothing. Aim (issue
20): < 200 KB gzipped, first chart < 300 ms.
"""

import argparse
import os
import re
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--points", type=int, default=360)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    a = ap.parse_args()
    os.environ["STRATA_BIN_DIR"] = os.path.abspath(a.build)
    import harness
    from console_env import chromium_missing, npm_install, run_step

    why = chromium_missing()
    if why:
        sys.exit("console_bench: " + why)
    modules = npm_install(os.environ["STRATA_BIN_DIR"])
    shots = tempfile.mkdtemp(prefix="strata-console-bench-")
    with harness.Cluster(nodes=3, routers=1, shards=6, rf=1, tag="console-bench") as c:
        c.start()
        url = c.router_url(0)
        st, h, index = harness.http_request(url + "/", headers={"Accept-Encoding": "gzip"})
        import gzip as gz
        html = gz.decompress(index) if h.get("content-encoding") == "gzip" else index
        raw_total, gz_total = len(html), len(index)
        print("bundle:")
        print("  %-28s %8d B  %8d B gzip" % ("index.html", len(html), len(index)))
        for name in re.findall(r'(?:src|href)="ui/([^"]+)"', html.decode()):
            _, _, raw = harness.http_request(url + "/ui/" + name)
            _, _, z = harness.http_request(url + "/ui/" + name, headers={"Accept-Encoding": "gzip"})
            raw_total += len(raw)
            gz_total += len(z)
            print("  %-28s %8d B  %8d B gzip" % (name, len(raw), len(z)))
        print("  %-28s %8d B  %8d B gzip (%.1f KB)" % ("total", raw_total, gz_total,
                                                     gz_total / 1000))

        now = int(time.time())
        t0 = time.monotonic()
        batch = []
        for p in range(a.points):
            ts = (now - 10 * (a.points - p)) * 10**9
            for s in range(a.series):
                batch.append("console,host=h%04d bench=%d %d" % (s, (s * 7 + p) % 100, ts))
            if len(batch) >= 100000:
                st, body = c.write(batch, timeout=300)
                assert st == 204, (st, body)
                batch = []
        if batch:
            st, body = c.write(batch, timeout=300)
            assert st == 204, (st, body)
        print("loaded %d series x %d points in %.1f s" % (a.series, a.points,
                                                         time.monotonic() - t0))
        runs = []
        for i in range(a.runs):
            out = run_step(modules, shots, "bench", url, "console_bench", "1h",
                           env={"CONSOLE_SHOT": "bench-%d" % i})
            assert out["series"] == a.series, out
            runs.append(out)
            print("  run %d: first chart %.0f ms after navigation start: query sent at %.0f ms,"
                  " answer head %.0f ms later, whole request %.0f ms (%.1f MB, JSON.parse %.0f"
                  " ms), chart draw %.0f ms; %d series"
                  % (i + 1, out["first_chart_ms"], out["sent_at_ms"], out["ttfb_ms"],
                     out["request_ms"], out["bytes"] / 1e6, out["parse_ms"], out["draw_ms"],
                     out["series"]))
        for key, label in (("first_chart_ms", "first chart"), ("sent_at_ms", "query sent"),
                           ("ttfb_ms", "answer head"), ("request_ms", "query request"),
                           ("parse_ms", "JSON.parse"), ("draw_ms", "chart draw")):
            v = [r[key] for r in runs]
            print("%-14s median %6.0f ms  max %6.0f ms" % (label, statistics.median(v), max(v)))
        print("screenshots: %s" % shots)


if __name__ == "__main__":
    main()
