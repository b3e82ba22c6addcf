"""PromQL answers compared with real Prometheus (Debian's 2.42, `prometheus`
and `promtool`; a missing binary FAILS the test, it never skips).

The same deterministic data set (counters with resets, gauges with
decimals, a classic histogram, integer gauges with negatives and zeros, an
info metric, a `:` metric, a series with a gap, series that start late or
stop early, a series without a label the others have) is written to a
3-node Strata cluster through the router as line protocol and, as an
OpenMetrics file, turned into TSDB blocks with `promtool tsdb
create-blocks-from openmetrics` for a Prometheus started on loopback.

Every query of promql_compare_queries.txt (file format described there) runs
on both as range queries (step 60 s and 37 s) and as an instant query, and
the answers must agree: status and errorType; resultType; the set of series
(label sets as dicts); per series the timestamps and values (relative
tolerance 1e-9, absolute 1e-12 near 0, NaN == NaN, infinities exact); the
order only where the query defines one (sort, sort_desc, topk, bottomk in
instant queries; equal values may come in any order). All mismatches are
collected and printed; the test fails at the end listing them.

Window boundaries: Prometheus 2.42 selects closed windows [t - range, t]
(and a lookback of [t - 5m, t]); Strata, like Prometheus 3, left-open ones
(t - range, t]. The data keeps them from ever mattering: every sample sits
at an odd eighth of a second (x.125, x.25, x.375, x.625, x.75, x.875) and
every evaluation time at x.5 s, so no sample, subquery step (whole seconds)
or window edge ever falls on another.

STRATA_TEST_SCALE (ASan runs use 0.25) scales the number of series.
"""

import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

from harness import (ClusterTestCase, HarnessError, Proc, free_port, http_request)

HERE = os.path.dirname(os.path.abspath(__file__))
QUERIES_FILE = os.path.join(HERE, "promql_compare_queries.txt")
SCALE = float(os.environ.get("STRATA_TEST_SCALE", "1") or "1")
PROMETHEUS = os.environ.get("STRATA_PROMETHEUS", "/usr/bin/prometheus")
PROMTOOL = os.environ.get("STRATA_PROMTOOL", "/usr/bin/promtool")

SEED = 20240601
INTERVAL_S = 10
HOURS = 2.5
FRACS = (0.125, 0.25, 0.375, 0.625, 0.75, 0.875)  # never .0 or .5 (see above)
REL_TOL = 1e-9
ABS_TOL = 1e-12
HTTP_TIMEOUT = 60.0
READY_TIMEOUT = 60.0


def scaled(n, lo=1):
    return max(lo, int(round(n * SCALE)))


# ------------------------------------------------------------------ data --

class Dataset:
    """series: {(name, ((label, value), ...) sorted): [(ts_ms, value), ...]}"""

    def __init__(self, end_s):
        self.end_s = end_s  # whole 10 minutes, >= 1 h in the past
        self.start_s = end_s - int(HOURS * 3600)
        self.rng = random.Random(SEED)
        self.series = {}
        self.npoints = (self.end_s - self.start_s) // INTERVAL_S

    def times(self, first=0, last=None, skip=None):
        """ms timestamps of points first..last-1 (indices), skipping the
        index range skip=(a, b); each at an odd eighth of a second."""
        last = self.npoints if last is None else last
        out = []
        for i in range(first, last):
            if skip and skip[0] <= i < skip[1]:
                continue
            frac = self.rng.choice(FRACS)
            out.append(int(round((self.start_s + i * INTERVAL_S + frac) * 1000)))
        return out

    def add(self, name, labels, points):
        key = (name, tuple(sorted(labels.items())))
        assert key not in self.series, key
        self.series[key] = points

    def build(self):
        rng = self.rng
        n = self.npoints
        jobs = ["api", "web", "db"]
        # app_info: one series per job (the "one" side of group_left joins)
        owners = {"api": "team-a", "web": "team-b", "db": "team-a"}
        for j in jobs:
            self.add("app_info", {"job": j, "owner": owners[j], "version": "1.%d.0" % len(j)},
                     [(t, 1.0) for t in self.times()])
        # http_requests_total: counters, integer increments, rare resets
        n_inst = scaled(3)
        for j in jobs:
            for i in range(n_inst):
                for method in ("GET", "POST"):
                    for code in ("200", "500"):
                        v = float(rng.randrange(0, 1000))
                        rate = rng.uniform(0.2, 5.0) * (1 if code == "200" else 0.1)
                        pts = []
                        # one series has a 15 minute gap
                        skip = (n // 3, n // 3 + 90) if (j, i, method, code) == (
                            "web", 0, "GET", "200") else None
                        for t in self.times(skip=skip):
                            if rng.random() < 0.004:
                                v = float(rng.randrange(0, 5))  # reset
                            else:
                                v += float(rng.randrange(0, int(rate * 20) + 1))
                            pts.append((t, v))
                        self.add("http_requests_total",
                                 {"job": j, "instance": "host-%d" % i, "method": method,
                                  "code": code}, pts)
        # node_temp_celsius: gauges, 6 decimals; zones incl. a space and UTF-8
        zones = ["us east", "eu-west", "eu-central", "zürich", "ap-south"]
        n_temp = scaled(20, 8)
        for i in range(n_temp):
            labels = {"instance": "host-%d" % i, "zone": zones[i % len(zones)]}
            if i % 3:
                labels["env"] = "prod" if i % 3 == 1 else "dev"
            first, last, skip = 0, n, None
            if i == 0:
                skip = (n // 2, n // 2 + 120)  # a 20 minute gap
            elif i == 1:
                first = n // 5  # starts late
            elif i == 2:
                last = n - n // 6  # stops early
            v = rng.uniform(10, 30)
            pts = []
            for t in self.times(first, last, skip):
                v = min(45.0, max(-5.0, v + rng.gauss(0, 0.3)))
                pts.append((t, round(v, 6)))  # 6 decimals: no ties for topk/sort
            self.add("node_temp_celsius", labels, pts)
        # queue_depth: integer gauges with negatives and zeros
        for i in range(scaled(12, 4)):
            v = rng.randrange(-3, 8)
            pts = []
            for t in self.times():
                v = min(20, max(-5, v + rng.choice((-1, 0, 0, 1))))
                pts.append((t, float(v)))
            self.add("queue_depth", {"instance": "host-%d" % i}, pts)
        # a metric name with colons
        for j in jobs:
            pts = [(t, round(rng.uniform(0, 50), 2)) for t in self.times()]
            self.add("job:requests_rate5m", {"job": j}, pts)
        # classic histogram: cumulative buckets + _sum + _count
        les = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"]
        bounds = [0.05, 0.1, 0.25, 0.5, 1, 2.5, math.inf]
        for j in ("api", "web"):
            for i in range(scaled(2)):
                counts = [0.0] * len(les)
                total = 0.0
                bucket_pts = [[] for _ in les]
                sum_pts, count_pts = [], []
                for t in self.times():
                    for _ in range(rng.randrange(0, 12)):
                        obs = rng.lognormvariate(-1.5, 1.0)
                        total += obs
                        for b, ub in enumerate(bounds):
                            if obs <= ub:
                                counts[b] += 1
                    for b in range(len(les)):
                        bucket_pts[b].append((t, counts[b]))
                    sum_pts.append((t, round(total, 6)))
                    count_pts.append((t, counts[-1]))
                base = {"job": j, "instance": "host-%d" % i}
                for b, le in enumerate(les):
                    self.add("http_request_duration_seconds_bucket", dict(base, le=le),
                             bucket_pts[b])
                self.add("http_request_duration_seconds_sum", base, sum_pts)
                self.add("http_request_duration_seconds_count", base, count_pts)
        return self

    def n_samples(self):
        return sum(len(p) for p in self.series.values())

    # -- encodings --

    def line_protocol(self):
        """Lines (precision ms): metric m_f is measurement m, field f."""
        out = []
        for (name, labels), pts in self.series.items():
            meas, field = name.rsplit("_", 1)
            head = meas.replace(",", "\\,").replace(" ", "\\ ")
            for k, v in labels:
                head += ",%s=%s" % (_lp_tag(k), _lp_tag(v))
            for t, v in pts:
                out.append("%s %s=%r %d" % (head, field, float(v), t))
        return out

    def openmetrics(self, path):
        by_name = {}
        for (name, labels), pts in self.series.items():
            by_name.setdefault(name, []).append((labels, pts))
        with open(path, "w", encoding="utf-8") as f:
            for name in sorted(by_name):
                f.write("# TYPE %s gauge\n" % name)
                for labels, pts in by_name[name]:
                    ls = ",".join('%s="%s"' % (k, _om_escape(v)) for k, v in labels)
                    head = "%s{%s}" % (name, ls) if ls else name
                    for t, v in pts:
                        f.write("%s %r %s\n" % (head, float(v), _om_ts(t)))
            f.write("# EOF\n")


def _lp_tag(s):
    return s.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _om_escape(s):
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _om_ts(ms):
    # seconds with the exact fraction (eighths are exact in binary)
    return "%d.%03d" % (ms // 1000, ms % 1000)


# ------------------------------------------------------------ prometheus --

class Prometheus:
    """A Prometheus server on 127.0.0.1 over blocks made by promtool."""

    def __init__(self, workdir):
        for b in (PROMETHEUS, PROMTOOL):
            if not (os.path.isfile(b) and os.access(b, os.X_OK)):
                raise HarnessError(
                    "MISSING BINARY: %s not found or not executable. The PromQL comparison "
                    "needs Debian's Prometheus (2.42): run scripts/install-deps.sh or "
                    "`apt-get install -y prometheus`. This test fails, it does not skip." % b)
        self.dir = workdir
        self.data = os.path.join(workdir, "tsdb")
        self.proc = None
        self.port = None

    def create_blocks(self, om_path, timeout=600):
        os.makedirs(self.data, exist_ok=True)
        argv = [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", "--quiet", om_path,
                self.data]
        try:
            r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("promtool did not finish within %d s" % timeout)
        if r.returncode != 0:
            raise AssertionError("promtool create-blocks-from openmetrics failed (%d):\n%s"
                                 % (r.returncode, r.stdout.decode("utf-8", "replace")[-3000:]))

    def start(self):
        cfg = os.path.join(self.dir, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1m\n  evaluation_interval: 1m\n"
                    "scrape_configs: []\n")
        last = None
        for attempt in range(3):
            self.port = free_port()
            argv = [PROMETHEUS, "--config.file=" + cfg, "--storage.tsdb.path=" + self.data,
                    "--storage.tsdb.retention.time=10y",
                    "--web.listen-address=127.0.0.1:%d" % self.port,
                    "--log.level=warn"]
            self.proc = Proc("prometheus", argv, os.path.join(self.dir, "prometheus.log"),
                             self.dir)
            self.proc.start()
            deadline = time.monotonic() + READY_TIMEOUT
            for _ in range(int(READY_TIMEOUT / 0.05) + 10):
                rc = self.proc.poll()
                if rc is not None:
                    last = "prometheus exited %s:\n%s" % (rc, self.proc.log_tail())
                    break
                try:
                    if http_request(self.url() + "/-/ready", timeout=2.0)[0] == 200:
                        return
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    last = "prometheus not ready within %.0f s:\n%s" % (READY_TIMEOUT,
                                                                      self.proc.log_tail())
                    break
                time.sleep(0.05)
            self.proc.kill()
            if "address already in use" not in (last or ""):
                break
        raise AssertionError(last)

    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def stop(self):
        if self.proc:
            self.proc.terminate(15.0)


# --------------------------------------------------------------- queries --

class QCase:
    def __init__(self, lineno, strata, prom, modes, xfail):
        self.lineno, self.strata, self.prom, self.modes = lineno, strata, prom, modes
        self.xfail = xfail


def load_queries(path=QUERIES_FILE):
    """See the header of promql_compare_queries.txt."""
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            modes = {"range", "instant"}
            xfail = False
            m = re.match(r"^\s*\[([a-z, ]+)\]\s*(.*)$", line)
            if m:
                flags = {x.strip() for x in m.group(1).split(",") if x.strip()}
                bad = flags - {"range", "instant", "xfail"}
                if bad:
                    raise AssertionError("%s:%d: unknown flag %s" % (path, n, sorted(bad)))
                xfail = "xfail" in flags
                modes = (flags - {"xfail"}) or modes
                line = m.group(2)
            if " ==> " in line:
                s, p = line.split(" ==> ", 1)
            else:
                s, p = line, None
            out.append(QCase(n, s.strip(), p.strip() if p else None, modes, xfail))
    return out


def ordered_call(q):
    """True when the whole query is sort(...), sort_desc(...), topk/bottomk
    (with by/without before or after): the only results whose order is
    defined."""
    m = re.match(r"^\s*(sort_desc|sort|topk|bottomk)\s*(?:(?:by|without)\s*\([^)]*\)\s*)?\(", q)
    if not m:
        return False
    depth, i, quote = 0, m.end() - 1, None
    while i < len(q):
        ch = q[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "\"'`":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                rest = q[i + 1:].strip()
                return rest == "" or re.match(r"^(by|without)\s*\([^)]*\)$", rest) is not None
        i += 1
    return False


def num(s):
    return float(s)  # "NaN", "+Inf", "-Inf" included


def close(a, b):
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    d = abs(a - b)
    return d <= ABS_TOL or d <= REL_TOL * max(abs(a), abs(b))


def lkey(metric):
    return tuple(sorted(metric.items()))


def short(obj, n=1500):
    s = json.dumps(obj, ensure_ascii=False, sort_keys=True)
    return s if len(s) <= n else s[:n] + "...(%d chars)" % len(s)


def compare(want, got, ordered):
    """want: Prometheus' JSON, got: Strata's. Returns a list of differences."""
    d = []
    ws, gs = want.get("status"), got.get("status")
    if ws != gs:
        return ["status: prometheus %r, strata %r (%s)" % (ws, gs, got.get("error") or "")]
    if ws != "success":
        if want.get("errorType") != got.get("errorType"):
            d.append("errorType: prometheus %r (%s), strata %r (%s)" % (
                want.get("errorType"), want.get("error"), got.get("errorType"), got.get("error")))
        return d
    wd, gd = want["data"], got["data"]
    if wd["resultType"] != gd["resultType"]:
        return ["resultType: prometheus %r, strata %r" % (wd["resultType"], gd["resultType"])]
    rt = wd["resultType"]
    if rt in ("scalar", "string"):
        (wt, wv), (gt, gv) = wd["result"], gd["result"]
        if not close(float(wt), float(gt)):
            d.append("time: prometheus %r, strata %r" % (wt, gt))
        if rt == "scalar" and not close(num(wv), num(gv)):
            d.append("value: prometheus %r, strata %r" % (wv, gv))
        if rt == "string" and wv != gv:
            d.append("value: prometheus %r, strata %r" % (wv, gv))
        return d

    def index(res, who):
        m = {}
        for r in res:
            k = lkey(r["metric"])
            if k in m:
                d.append("%s returned the series %s twice" % (who, dict(k)))
            pts = r["values"] if rt == "matrix" else [r["value"]]
            m[k] = [(float(t), v) for t, v in pts]
        return m

    wm, gm = index(wd["result"], "prometheus"), index(gd["result"], "strata")
    for k in sorted(set(wm) - set(gm)):
        d.append("missing series %s (%d points)" % (dict(k), len(wm[k])))
    for k in sorted(set(gm) - set(wm)):
        d.append("unexpected series %s (%d points)" % (dict(k), len(gm[k])))
    for k in sorted(set(wm) & set(gm)):
        w, g = dict(wm[k]), dict(gm[k])
        bad = 0
        for t in sorted(set(w) | set(g)):
            if t not in g:
                msg = "missing point t=%r v=%s" % (t, w[t])
            elif t not in w:
                msg = "unexpected point t=%r v=%s" % (t, g[t])
            elif not close(num(w[t]), num(g[t])):
                msg = "t=%r prometheus %s strata %s" % (t, w[t], g[t])
            else:
                continue
            bad += 1
            if bad <= 3:
                d.append("%s: %s" % (dict(k), msg))
        if bad > 3:
            d.append("%s: %d differing points in all" % (dict(k), bad))
    if ordered and rt == "vector" and not d:
        # values must come in the same order; equal values in any order
        wv = [num(r["value"][1]) for r in wd["result"]]
        gv = [num(r["value"][1]) for r in gd["result"]]
        wk = [lkey(r["metric"]) for r in wd["result"]]
        gk = [lkey(r["metric"]) for r in gd["result"]]
        if not all(close(a, b) for a, b in zip(wv, gv)):
            d.append("order of values: prometheus %s, strata %s" % (wv, gv))
        else:
            i = 0
            while i < len(wv):
                j = i
                while j + 1 < len(wv) and close(wv[j + 1], wv[i]):
                    j += 1
                if sorted(wk[i:j + 1]) != sorted(gk[i:j + 1]):
                    d.append("order of series: prometheus %s, strata %s" % (
                        [dict(k) for k in wk], [dict(k) for k in gk]))
                    break
                i = j + 1
    return d


# ------------------------------------------------------------------ test --

def fmt_time(ms):
    return "%d.%03d" % (ms // 1000, ms % 1000)


class PromQLCompareTest(ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="strata-it-promcmp-")
        cls.keep_tmp = False
        cls.prom = None
        try:
            cls.prom = Prometheus(cls.tmp)  # fails first if prometheus is missing
            now = int(time.time())
            end_s = now - now % 600 - 3600
            t0 = time.monotonic()
            cls.ds = Dataset(end_s).build()
            om = os.path.join(cls.tmp, "data.om")
            cls.ds.openmetrics(om)
            cls.prom.create_blocks(om)
            os.unlink(om)
            cls.prom.start()
            cls.c = cls.start_class_cluster(nodes=3, routers=1, shards=12, rf=1)
            lines = cls.ds.line_protocol()
            for i in range(0, len(lines), 20000):
                st, body = cls.c.write(lines[i:i + 20000], precision="ms", timeout=120)
                if st != 204:
                    raise AssertionError("write: HTTP %d: %r" % (st, body))
            sys.stderr.write("promql_compare: %d series, %d samples loaded into both in "
                             "%.1f s (scale %g)\n" % (len(cls.ds.series), cls.ds.n_samples(),
                                                      time.monotonic() - t0, SCALE))
        except BaseException:
            cls.keep_tmp = True
            if cls.prom:
                cls.prom.stop()
            sys.stderr.write("promql_compare: setup failed, keeping %s\n" % cls.tmp)
            cls.close_class_clusters(failed=True)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.prom:
                cls.prom.stop()
            super().tearDownClass()
        finally:
            if cls._class_failed or cls.keep_tmp:
                sys.stderr.write("promql_compare: keeping %s (prometheus.log, tsdb/)\n" % cls.tmp)
            else:
                shutil.rmtree(cls.tmp, ignore_errors=True)

    # -- HTTP --

    def query(self, base, path, params):
        url = base + path + "?" + urllib.parse.urlencode(params)
        st, _, body = http_request(url, timeout=HTTP_TIMEOUT)
        try:
            j = json.loads(body)
        except ValueError:
            j = {"status": "error", "errorType": "<not json>",
                 "error": "HTTP %d: %r" % (st, body[:300])}
        j["_http"] = st
        return j

    def both(self, strata_q, prom_q, path, params):
        g = self.query(self.c.router_url(), path, dict(params, query=strata_q))
        w = self.query(self.prom.url(), path, dict(params, query=prom_q))
        return w, g

    # -- time grid --

    def times(self):
        """Evaluation times, all at x.5 s (see the module doc)."""
        s, e = self.ds.start_s * 1000, self.ds.end_s * 1000
        return {
            "range_start": s - 10 * 60000 + 500,
            "range_end": e + 10 * 60000 + 500,
            "instant": [e - 20 * 60000 + 500, s + (e - s) // 2 + 7 * 60000 + 500],
            "at": s + 45 * 60000 + 500,
        }

    def subst(self, q, step_s=None):
        q = q.replace("$AT", fmt_time(self.times()["at"]))
        if step_s is not None:
            q = q.replace("$STEP", "%ds" % step_s)
        return q

    # -- tests --

    def test_1_loaded(self):
        """Both hold exactly the data set: per metric, series and samples."""
        e = fmt_time(self.ds.end_s * 1000 + 500)
        per_name = {}
        for (name, _), pts in self.ds.series.items():
            n_series, n_samples = per_name.get(name, (0, 0))
            per_name[name] = (n_series + 1, n_samples + len(pts))
        for name, (n_series, n_samples) in sorted(per_name.items()):
            for q, want in (("count(last_over_time(%s[4h]))" % name, n_series),
                            ("sum(count_over_time(%s[4h]))" % name, n_samples)):
                w, g = self.both(q, q, "/api/v1/query", {"time": e})
                for who, r in (("prometheus", w), ("strata", g)):
                    self.assertEqual(r.get("status"), "success",
                                     "%s: %s: %s" % (who, q, short(r)))
                    res = r["data"]["result"]
                    self.assertEqual(len(res), 1, "%s: %s: %s" % (who, q, short(r)))
                    self.assertEqual(float(res[0]["value"][1]), want,
                                     "%s: %s: %s" % (who, q, short(r)))

    def test_2_compare(self):
        cases = load_queries()
        self.assertGreaterEqual(len(cases), 120)
        tm = self.times()
        runs = []
        for c in cases:
            if "range" in c.modes:
                for step in (60, 37):
                    runs.append((c, "/api/v1/query_range",
                                 {"start": fmt_time(tm["range_start"]),
                                  "end": fmt_time(tm["range_end"]), "step": str(step)}, step))
            if "instant" in c.modes:
                for t in tm["instant"]:
                    runs.append((c, "/api/v1/query", {"time": fmt_time(t)}, None))
        mismatches, known = [], []
        nonempty = set()  # cases with data in at least one run on Prometheus
        failed_cases, known_cases = set(), set()
        t0 = time.monotonic()
        for c, path, params, step in runs:
            sq = self.subst(c.strata, step)
            pq = self.subst(c.prom or c.strata, step)
            w, g = self.both(sq, pq, path, params)
            ordered = path == "/api/v1/query" and ordered_call(pq) and ordered_call(sq)
            diffs = compare(w, g, ordered)
            if w.get("status") == "success":
                res = w["data"]["result"]
                if w["data"]["resultType"] in ("scalar", "string") or res:
                    nonempty.add(c.lineno)
            if diffs:
                (known_cases if c.xfail else failed_cases).add(c.lineno)
                where = "%s %s" % (path.rsplit("/", 1)[1],
                                   " ".join("%s=%s" % kv for kv in sorted(params.items())))
                msg = ["line %d: %s  [%s]" % (c.lineno, sq, where)]
                if pq != sq:
                    msg.append("  prometheus query: %s" % pq)
                msg += ["  - " + x for x in diffs[:12]]
                w.pop("_http", None)
                g.pop("_http", None)
                msg.append("  prometheus: " + short(w))
                msg.append("  strata:     " + short(g))
                (known if c.xfail else mismatches).append("\n".join(msg))
        ok = len(cases) - len(failed_cases) - len(known_cases)
        sys.stderr.write("promql_compare: %d queries (%d runs) in %.1f s: %d match, %d differ, "
                         "%d known differences ([xfail])\n"
                         % (len(cases), len(runs), time.monotonic() - t0, ok, len(failed_cases),
                            len(known_cases)))
        empty = [c for c in cases if c.lineno not in nonempty]
        sys.stderr.write("promql_compare: %d queries had a non-empty answer, %d only empty "
                         "results or errors (lines %s)\n"
                         % (len(nonempty), len(empty), ", ".join(str(c.lineno) for c in empty)))
        if known:
            sys.stderr.write("known differences ([xfail] lines; the cause is outside the "
                             "evaluator):\n" + "\n".join(m.split("\n", 2)[0] + "\n" +
                                                         m.split("\n")[1] for m in known) + "\n")
        for c in cases:
            if c.xfail and c.lineno not in known_cases:
                sys.stderr.write("XPASS: line %d now matches Prometheus: remove its [xfail]\n"
                                 % c.lineno)
        if mismatches:
            sys.stderr.write("\n\n".join(mismatches) + "\n")
            self.fail("%d of %d queries differ from Prometheus (lines %s of %s)" % (
                len(failed_cases), len(cases), ", ".join(map(str, sorted(failed_cases))),
                os.path.basename(QUERIES_FILE)))


if __name__ == "__main__":
    unittest.main()
