"""`strata import` and `strata migrate` against a real cluster (issue 13).

  - import: a line-protocol file and a gzip one in one command, exact data;
    a malformed line is reported as FILE:LINE and the rest is stored; JSON
    lines, Prometheus text and CSV through the router's import endpoints
    (skipped, naming the endpoint, when this router has none).
  - resume: an import slowed down by a proxy is interrupted with SIGINT
    (exit 130, "stopped at byte B, line L", FILE.strata-import kept), resumed
    and killed with SIGKILL, then resumed to the end: every sample of the
    file is stored, the state file is gone.
  - migrate: from a real VictoriaMetrics (loaded through its /write) and a
    real Prometheus (blocks built by promtool from OpenMetrics text) into
    Strata with --verify; the data equals the model bit for bit.

Every wait is a bounded poll; ports are chosen at run time; only processes
started here are signalled (by PID).
"""

import gzip
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse

from harness import (ALL, ClusterTestCase, Model, Proc, assert_samples_equal, binary,
                     devops_lines, export_to_dict, free_port, http_request, recent_base_s,
                     series_key)
from proxy import Proxy

VM_BIN = "/usr/bin/victoria-metrics"
PROM_BIN = "/usr/bin/prometheus"
PROMTOOL_BIN = "/usr/bin/promtool"
STATE = ".strata-import"


def wait_for(cond, timeout, what, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))


def read_state(path):
    out = {}
    with open(path) as f:
        for line in f:
            if "=" in line:
                k, v = line.strip().split("=", 1)
                out[k] = v
    return out


class CliImportTest(ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        cls.cli = binary("cli")
        cls.c = cls.start_class_cluster(nodes=2, routers=1, shards=4, rf=1)
        cls.url = "http://127.0.0.1:%d" % cls.c.router_port[0]

    # ---- helpers ---------------------------------------------------------------------------

    def run_cli(self, args, timeout=120, url=None):
        argv = [self.cli] + args + ["--router", url or self.url]
        try:
            return subprocess.run(argv, capture_output=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL, cwd=self.c.dir)
        except subprocess.TimeoutExpired:
            self.fail("%s did not finish in %d s" % (" ".join(argv), timeout))

    def text(self, r):
        return "exit %d\nstdout: %s\nstderr: %s" % (
            r.returncode, r.stdout[-3000:].decode("utf-8", "replace"),
            r.stderr[-3000:].decode("utf-8", "replace"))

    def ok(self, r):
        self.assertEqual(r.returncode, 0, self.text(r))
        return r.stdout.decode("utf-8", "replace")

    def path(self, name):
        return os.path.join(self.c.dir, name)

    def write_lp(self, name, built, opener=open):
        p = self.path(name)
        with opener(p, "wt") as f:
            f.write("".join(l + "\n" for l, _ in built))
        return p

    def got(self, sel):
        return export_to_dict(self.c.export(sel))

    def endpoint_missing(self, path):
        """True when the router has no POST `path` (404), so a test can skip naming it."""
        st, _, _ = http_request(self.url + path, method="POST", body=b"")
        return st == 404

    def summary(self, out, key):
        m = re.search(r"strata import: files=\d+ .*\b%s=(\d+)" % key, out)
        self.assertIsNotNone(m, out)
        return int(m.group(1))

    # ---- import ----------------------------------------------------------------------------

    def test_import_lp_and_gzip(self):
        a = devops_lines(hosts=5, points=30, seed=3, measurement="impa")
        b = devops_lines(hosts=4, points=40, seed=4, measurement="impb")
        fa = self.write_lp("a.lp", a)
        fb = self.write_lp("b.lp.gz", b, opener=gzip.open)
        out = self.ok(self.run_cli(["import", fa, fb, "--batch", "37"]))
        model = Model()
        model.add_lines(a)
        model.add_lines(b)
        total = sum(len(s) for s in model.data.values())
        self.assertEqual(self.summary(out, "samples"), total, out)
        self.assertIn("%s: format=lp lines=%d" % (fb, len(b)), out)
        assert_samples_equal(model.data, self.got('{__name__=~"imp[ab]_.*"}'),
                             "data of `strata import a.lp b.lp.gz`")
        self.assertFalse(os.path.exists(fa + STATE))
        self.assertFalse(os.path.exists(fb + STATE))

    def test_import_reports_rejected_lines(self):
        good = devops_lines(hosts=2, points=5, seed=5, measurement="imprej")
        lines = [l for l, _ in good]
        lines.insert(2, "imprej_bad,host=x value=")  # file line 3
        p = self.path("rej.lp")
        with open(p, "w") as f:
            f.write("\n".join(lines) + "\n")
        r = self.run_cli(["import", p])
        self.assertEqual(r.returncode, 1, self.text(r))
        err = r.stderr.decode()
        self.assertIn("%s:3:" % p, err)
        self.assertIn("1 line rejected", err)
        model = Model()
        model.add_lines(good)
        assert_samples_equal(model.data, self.got('{__name__=~"imprej_.*"}'), "good lines")

    def test_import_usage_errors(self):
        r = self.run_cli(["import", self.path("x.unknown")])
        self.assertEqual(r.returncode, 2, self.text(r))
        self.assertIn("--format", r.stderr.decode())
        r = self.run_cli(["import", self.path("x.csv")])
        self.assertEqual(r.returncode, 2, self.text(r))
        self.assertIn("--csv-format", r.stderr.decode())
        r = self.run_cli(["import", "--help"])
        self.assertEqual(r.returncode, 0)
        self.assertIn("--resume", r.stdout.decode())

    def test_import_json_prom_csv(self):
        missing = [p for p in ("/api/v1/import", "/api/v1/import/prometheus",
                               "/api/v1/import/csv") if self.endpoint_missing(p)]
        if missing:
            self.skipTest("router has no POST %s (issue 13b)" % ", ".join(missing))
        base = recent_base_s() * 1000
        model = Model()
        # JSON lines, the export format
        rows = []
        for h in range(3):
            labels = {"__name__": "impjson", "host": "h%d" % h}
            ts = [base + i * 1000 for i in range(20)]
            vals = [h * 100 + i * 0.5 for i in range(20)]
            rows.append({"metric": labels, "values": vals, "timestamps": ts})
            model.add((labels, t, v) for t, v in zip(ts, vals))
        pj = self.path("x.jsonl")
        with open(pj, "w") as f:
            text = [json.dumps(r) + "\n" for r in rows]
            text.insert(1, '{"metric":{"__name__":"impjson"},"values":[1],"timestamps":["x"]}\n')
            f.write("".join(text))  # line 2 is bad: reported as x.jsonl:2, the rest stored
        # Prometheus text with timestamps
        pp = self.path("x.prom.gz")
        with gzip.open(pp, "wt") as f:
            f.write("# TYPE impprom gauge\n")
            for i in range(25):
                labels = {"__name__": "impprom", "job": "j%d" % (i % 2)}
                f.write('impprom{job="j%d"} %s %d\n' % (i % 2, i * 1.25, base + i * 1000))
                model.add([(labels, base + i * 1000, i * 1.25)])
        # CSV: host, unix ms, two metrics
        pc = self.path("x.csv")
        with open(pc, "w") as f:
            f.write("h0,%d,1,2\nh0,not-a-time,1,2\n" % base)  # line 2 is bad
            model.add([({"__name__": "impcsv_a", "host": "h0"}, base, 1.0),
                       ({"__name__": "impcsv_b", "host": "h0"}, base, 2.0)])
            for i in range(1, 30):
                t = base + i * 1000
                f.write("h%d,%d,%s,%s\n" % (i % 3, t, i, i * 2))
                model.add([({"__name__": "impcsv_a", "host": "h%d" % (i % 3)}, t, float(i)),
                           ({"__name__": "impcsv_b", "host": "h%d" % (i % 3)}, t, float(i * 2))])
        r = self.run_cli(["import", pj, pp, pc, "--csv-format",
                          "1:label:host,2:time:unix_ms,3:metric:impcsv_a,4:metric:impcsv_b"])
        self.assertEqual(r.returncode, 1, self.text(r))
        self.assertIn("%s:2: " % pj, r.stderr.decode())
        self.assertIn("%s:2: " % pc, r.stderr.decode())
        self.assertIn("2 lines rejected", r.stderr.decode())
        out = r.stdout.decode()
        self.assertEqual(self.summary(out, "samples"),
                         sum(len(s) for s in model.data.values()), out)
        assert_samples_equal(model.data, self.got('{__name__=~"imp(json|prom|csv_.)"}'),
                             "data of `strata import x.jsonl x.prom.gz x.csv`")

    def test_import_interrupt_and_resume(self):
        built = devops_lines(hosts=40, points=150, seed=9, measurement="impres")
        p = self.write_lp("big.lp", built)
        state = p + STATE
        model = Model()
        model.add_lines(built)
        proxy = Proxy(("127.0.0.1", self.c.router_port[0])).start()
        try:
            proxy.set_delay(0.05)
            purl = "http://127.0.0.1:%d" % proxy.port
            args = ["import", p, "--batch", "100", "--conns", "1", "--progress-interval", "0.1",
                    "--router", purl]

            def start(extra):
                log = open(self.path("import-%d.log" % len(os.listdir(self.c.dir))), "wb+")
                proc = subprocess.Popen([self.cli] + args + extra, stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        cwd=self.c.dir)
                return proc, log

            def log_text(log):
                log.flush()
                log.seek(0)
                return log.read().decode("utf-8", "replace")

            def stored_line():
                try:
                    return int(read_state(state).get("line", "0"))
                except (OSError, ValueError):
                    return 0

            def interrupt(extra, at_line, sig):
                """Start the import, send sig once the state passes at_line; (exit, output)."""
                proc, log = start(extra)
                try:
                    wait_for(lambda: stored_line() >= at_line or proc.poll() is not None, 60,
                             "the import to acknowledge %d lines" % at_line)
                    self.assertIsNone(proc.poll(), "the import ended before it could be "
                                      "interrupted:\n" + log_text(log))
                    proc.send_signal(sig)
                    rc = proc.wait(timeout=60)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait(timeout=10)
                    text = log_text(log)
                    log.close()
                return rc, text

            # 1. SIGINT once some batches are acknowledged
            rc, text = interrupt([], 300, signal.SIGINT)
            self.assertEqual(rc, 130, text)
            m = re.search(r"stopped at byte (\d+), line (\d+)", text)
            self.assertIsNotNone(m, text)
            self.assertIn("--resume", text)
            st = read_state(state)
            self.assertEqual(int(st["line"]), int(m.group(2)))
            self.assertEqual(int(st["offset"]), int(m.group(1)))
            first = int(st["line"])
            self.assertGreater(first, 0)
            self.assertLess(first, len(built))

            # 2. --resume, then SIGKILL further on (the state names an earlier point, never later)
            rc, text = interrupt(["--resume"], first + 300, signal.SIGKILL)
            self.assertEqual(rc, -signal.SIGKILL, text)
            self.assertIn("resuming at byte %d, line %d" % (int(st["offset"]), first + 1), text)
            second = stored_line()
            self.assertGreater(second, first)

            # 3. --resume to the end, at full speed
            proxy.set_delay(0)
            r = subprocess.run([self.cli] + args + ["--resume"], capture_output=True,
                               timeout=180, stdin=subprocess.DEVNULL, cwd=self.c.dir)
            self.assertEqual(r.returncode, 0, self.text(r))
            self.assertIn("resuming at byte", r.stdout.decode())
            if os.environ.get("STRATA_IT_SHOW"):
                print(text, r.stdout.decode(), r.stderr.decode()[-2000:])
        finally:
            proxy.stop()
        self.assertFalse(os.path.exists(state), "state file left after a complete import")
        got = self.got('{__name__=~"impres_.*"}')
        self.assertEqual(sum(len(s) for s in got.values()),
                         sum(len(s) for s in model.data.values()), "samples after resuming")
        assert_samples_equal(model.data, got, "data after interrupt + resume")

    def test_import_retries_503_with_retry_after(self):
        """A router answering 503 + Retry-After: the batch is sent again after the wait
        (bounded by --retries); one that never recovers stops the import with the state saved."""
        built = devops_lines(hosts=2, points=10, seed=13, measurement="impretry")
        p = self.write_lp("retry.lp", built)
        answers = []  # statuses still to give before forwarding to the real router
        errors = []
        real = self.url

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if answers and answers[0] == 503:
                    answers.pop(0)
                    self.send_response(503)
                    self.send_header("Retry-After", "1")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                try:
                    st, _, data = http_request(real + self.path, method="POST", body=body,
                                               headers={"Content-Type": "text/plain"})
                except Exception as e:  # shown in the failure message
                    errors.append(repr(e))
                    raise
                self.send_response(st)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                             daemon=True)
        t.start()
        furl = "http://127.0.0.1:%d" % srv.server_address[1]
        try:
            answers[:] = [503]
            r = self.run_cli(["import", p, "--conns", "1"], url=furl)
            self.assertEqual(r.returncode, 0, self.text(r) + "\nproxy errors: %r" % errors)
            out = r.stdout.decode()
            self.assertIn("in 1.0s (attempt 2/8): HTTP 503", r.stderr.decode())
            self.assertRegex(out, r"retries=1\b")
            answers[:] = [503] * 5
            r = self.run_cli(["import", p, "--conns", "1", "--retries", "2"], url=furl)
            self.assertEqual(r.returncode, 1, self.text(r))
            err = r.stderr.decode()
            self.assertIn("giving up after 2 attempts: HTTP 503", err)
            self.assertIn("stopped at byte 0, line 0", err)
            self.assertTrue(os.path.exists(p + STATE))
        finally:
            srv.shutdown()
            srv.server_close()
        model = Model()
        model.add_lines(built)
        assert_samples_equal(model.data, self.got('{__name__=~"impretry_.*"}'), "after a 503")

    # ---- migrate ---------------------------------------------------------------------------

    def need_import(self):
        if self.endpoint_missing("/api/v1/import"):
            self.skipTest("router has no POST /api/v1/import (issue 13b); migrate writes there")

    def test_migrate_from_victoriametrics(self):
        if not os.path.exists(VM_BIN):
            self.skipTest("%s is not installed (scripts/install-deps.sh)" % VM_BIN)
        self.need_import()
        built = devops_lines(hosts=6, points=120, seed=11, measurement="vmmig")
        model = Model()
        model.add_lines(built)
        d = tempfile.mkdtemp(prefix="strata-vm-", dir=self.c.dir)
        port = free_port()
        vm = Proc("victoria-metrics", [VM_BIN, "-httpListenAddr=127.0.0.1:%d" % port,
                                       "-storageDataPath=" + d, "-retentionPeriod=100y",
                                       "-search.disableCache"],
                  os.path.join(d, "vm.log"), d)
        vm.start()
        try:
            vurl = "http://127.0.0.1:%d" % port
            wait_for(lambda: self.http_ok(vurl + "/health"), 30, "victoria-metrics to start")
            body = "".join(l + "\n" for l, _ in built).encode()
            st, _, data = http_request(vurl + "/write", method="POST", body=body)
            self.assertIn(st, (200, 204), data)
            # infinities, which VictoriaMetrics exports as +Inf / -Inf
            t0 = (recent_base_s() + 30) * 1000
            inf = [({"__name__": "vmmig_inf", "sign": "p"}, t0, float("inf")),
                   ({"__name__": "vmmig_inf", "sign": "n"}, t0 + 1000, float("-inf"))]
            body = "".join('vmmig_inf{sign="%s"} %s %d\n' % (l["sign"], "+Inf" if v > 0 else "-Inf",
                                                             t) for l, t, v in inf).encode()
            st, _, data = http_request(vurl + "/api/v1/import/prometheus", method="POST",
                                       body=body)
            self.assertIn(st, (200, 204), data)
            model.add(inf)
            total = sum(len(s) for s in model.data.values())
            q = urllib.parse.urlencode({"match[]": '{__name__=~"vmmig_.*"}'})

            def vm_count():
                http_request(vurl + "/internal/force_flush")
                st, _, data = http_request(vurl + "/api/v1/export?" + q)
                # (its +Inf / -Inf are not JSON: read only the timestamps)
                ts = re.findall(r'"timestamps":(\[[^\]]*\])', data.decode())
                return sum(len(json.loads(t)) for t in ts) == total

            wait_for(vm_count, 60, "victoria-metrics to show the %d samples" % total, step=0.5)
            start = recent_base_s() - 60
            self.migrate_and_check(vurl, "victoriametrics", "vmmig_", start, start + 7200, "10m",
                                   3, model, total)
            # a series only Strata has: --verify must name it and fail
            self.c.write(["vmmig,hostname=ghost usage_user=1 %d" % ((start + 600) * 10**9)])
            r = self.run_cli(["migrate", "--from", vurl, "--match", '{__name__=~"vmmig_.*"}',
                              "--start", str(start), "--end", str(start + 7200), "--verify"])
            self.assertEqual(r.returncode, 1, self.text(r))
            out = r.stdout.decode()
            self.assertRegex(out, r'mismatch .*"ghost".*: source=0 strata=1', self.text(r))
            self.assertIn("mismatches=1\n", out)
            self.assertIn("verify: 1 series differ", r.stderr.decode())
        finally:
            vm.terminate()

    def migrate_and_check(self, src, kind, prefix, start, end, slice_, parallel, model, total):
        """`strata migrate` (kind detected) of {__name__=~"PREFIX.*"} with --verify: exit 0,
        the verify summary clean and the data in Strata equal to the model."""
        sel = '{__name__=~"%s.*"}' % prefix
        out = self.ok(self.run_cli(["migrate", "--from", src, "--match", sel,
                                    "--start", str(start), "--end", str(end), "--slice", slice_,
                                    "--parallel", str(parallel), "--verify"], timeout=300))
        self.assertIn("kind=%s" % kind, out)
        self.assertIn("mismatches=0 (ok)", out)
        self.assertIn("source_samples=%d strata_samples=%d" % (total, total), out)
        assert_samples_equal(model.data, self.got(sel), "data migrated from " + kind)

    def http_ok(self, url):
        try:
            st, _, _ = http_request(url, timeout=2)
            return st == 200
        except OSError:
            return False

    def test_migrate_from_prometheus(self):
        for b in (PROM_BIN, PROMTOOL_BIN):
            if not os.path.exists(b):
                self.skipTest("%s is not installed" % b)
        self.need_import()
        base = recent_base_s()
        model = Model()
        lines = []
        for name, typ in (("pmig_temp", "gauge"), ("pmig_reqs", "counter")):
            lines.append("# TYPE %s %s" % (name, typ))
            for i in range(240):
                t = base + i * 15
                for h in range(3):
                    v = (i * 7 + h) * 0.25 if typ == "gauge" else float(i * 10 + h)
                    labels = {"__name__": name + ("_total" if typ == "counter" else ""),
                              "instance": "h%d" % h}
                    lines.append('%s{instance="h%d"} %s %d' % (labels["__name__"], h, repr(v), t))
                    model.add([(labels, t * 1000, v)])
        lines.append("# EOF")
        d = tempfile.mkdtemp(prefix="strata-prom-", dir=self.c.dir)
        om = os.path.join(d, "data.om")
        with open(om, "w") as f:
            f.write("\n".join(lines) + "\n")
        tsdb = os.path.join(d, "tsdb")
        os.makedirs(tsdb)
        r = subprocess.run([PROMTOOL_BIN, "tsdb", "create-blocks-from", "openmetrics", om, tsdb],
                           capture_output=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        cfg = os.path.join(d, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1h\n")
        port = free_port()
        prom = Proc("prometheus", [PROM_BIN, "--config.file=" + cfg,
                                   "--storage.tsdb.path=" + tsdb,
                                   "--storage.tsdb.retention.time=100y",
                                   "--web.listen-address=127.0.0.1:%d" % port],
                    os.path.join(d, "prometheus.log"), d)
        prom.start()
        try:
            purl = "http://127.0.0.1:%d" % port
            wait_for(lambda: self.http_ok(purl + "/-/ready"), 60, "prometheus to be ready")
            total = sum(len(s) for s in model.data.values())
            self.migrate_and_check(purl, "prometheus", "pmig_", base - 60, base + 3660, "20m", 2,
                                   model, total)
        finally:
            prom.terminate()

    def test_migrate_prometheus_staleness_markers(self):
        """Prometheus scrapes a target that then goes away: its series end with staleness
        markers, which migrate leaves out (counted), so no NaN sample arrives in Strata."""
        if not os.path.exists(PROM_BIN):
            self.skipTest("%s is not installed" % PROM_BIN)
        self.need_import()

        class Target(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = b'mig_scraped{kind="a"} 1\nmig_scraped{kind="b"} 2\n'
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        target = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Target)
        threading.Thread(target=target.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        d = tempfile.mkdtemp(prefix="strata-prom-", dir=self.c.dir)
        cfg = os.path.join(d, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\nscrape_configs:\n- job_name: mig\n"
                    "  static_configs:\n  - targets: ['127.0.0.1:%d']\n"
                    % target.server_address[1])
        port = free_port()
        prom = Proc("prometheus", [PROM_BIN, "--config.file=" + cfg,
                                   "--storage.tsdb.path=" + os.path.join(d, "tsdb"),
                                   "--web.listen-address=127.0.0.1:%d" % port],
                    os.path.join(d, "prometheus.log"), d)
        start = int(time.time()) - 60
        prom.start()
        stopped = False
        try:
            purl = "http://127.0.0.1:%d" % port

            def query(q):
                try:
                    st, _, data = http_request(purl + "/api/v1/query?" +
                                               urllib.parse.urlencode({"query": q}), timeout=5)
                except OSError:
                    return []
                return json.loads(data)["data"]["result"] if st == 200 else []

            wait_for(lambda: any(float(r["value"][1]) >= 3 for r in
                                 query('count_over_time(mig_scraped{kind="a"}[1m])')),
                     60, "three scrapes of the target", step=0.2)
            target.shutdown()
            target.server_close()
            stopped = True
            wait_for(lambda: any(r["value"][1] == "0" for r in query('up{job="mig"}')), 60,
                     "a failed scrape (staleness markers)", step=0.2)
            out = self.ok(self.run_cli(["migrate", "--from", purl, "--match",
                                        '{__name__="mig_scraped"}', "--start", str(start),
                                        "--end", str(int(time.time()) + 5), "--slice", "1m",
                                        "--verify"], timeout=300))
        finally:
            if not stopped:
                target.shutdown()
                target.server_close()
            prom.terminate()
        m = re.search(r"stale_markers_skipped=(\d+)", out)
        self.assertIsNotNone(m, out)
        self.assertGreaterEqual(int(m.group(1)), 2, out)  # one per series at least
        self.assertIn("mismatches=0 (ok)", out)
        got = self.got('{__name__="mig_scraped"}')
        self.assertEqual(len(got), 2, got)
        for key, samples in got.items():
            self.assertGreaterEqual(len(samples), 3, key)
            want = 1.0 if ("kind", "a") in key else 2.0
            self.assertEqual(set(samples.values()), {want}, key)

    def test_migrate_usage_and_unreachable(self):
        r = self.run_cli(["migrate", "--match", "up", "--start", "-1h"])
        self.assertEqual(r.returncode, 2, self.text(r))
        self.assertIn("--from", r.stderr.decode())
        r = self.run_cli(["migrate", "--from", "http://127.0.0.1:1", "--match", "up{",
                          "--start", "-1h"])
        self.assertEqual(r.returncode, 2, self.text(r))
        self.assertIn("bad --match", r.stderr.decode())
        port = free_port()
        r = self.run_cli(["migrate", "--from", "http://127.0.0.1:%d" % port, "--match", "up",
                          "--start", "-1h", "--kind", "prometheus", "--retries", "1"])
        self.assertEqual(r.returncode, 1, self.text(r))
        self.assertIn("not migrated: --start", r.stdout.decode())


if __name__ == "__main__":
    unittest.main()
