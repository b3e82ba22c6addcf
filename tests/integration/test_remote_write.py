"""Prometheus remote write, remote read and /federate on the router, with
the real clients (issue 13):

- a real Prometheus (Debian's 2.42) scrapes the cluster's own router and
  node /metrics every second and remote-writes into the router; once a
  fixed past window has arrived, query_range over that window answers the
  same from Prometheus' own TSDB and from Strata;
- a second Prometheus configured only with remote_read (read_recent: true)
  pointed at the router answers a query_range exactly as Strata's own API;
- vmagent scraping the router with -remoteWrite.url at the router sends
  with zero failed or dropped requests (vmagent's own counters);
- stale markers round-trip bit-exact (remote read) and PromQL honours them:
  an instant query after the marker finds no series, /federate omits it;
- bad bodies: not snappy, not a WriteRequest, too large, a wrong
  Content-Encoding, bad series next to good ones: the right status and a
  message naming the problem; the good series are written.
"""

import json
import os
import shutil
import struct
import tempfile
import time
import unittest
import urllib.parse

import prompb
from harness import (ClusterTestCase, HarnessError, Proc, free_port, http_request,
                     parse_metrics)

PROMETHEUS = os.environ.get("STRATA_PROMETHEUS", "/usr/bin/prometheus")
VMAGENT = os.environ.get("STRATA_VMAGENT", "/usr/bin/vmagent")
READY_TIMEOUT = 60.0
ARRIVE_TIMEOUT = 120.0
# vmagent counts successful requests as status_code="2XX" (1.79) or the code
OK_CODES = {("status_code", "2XX"), ("status_code", "204")}
RW_HEADERS = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
              "X-Prometheus-Remote-Write-Version": "0.1.0"}


def need_binary(path, what):
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise HarnessError("MISSING BINARY: %s (%s): run scripts/install-deps.sh. This test "
                           "fails, it does not skip." % (path, what))


class External:
    """A third-party server (prometheus, vmagent) on a free loopback port,
    ready when `ready_path` answers 200; retried on another port when the
    port was taken meanwhile."""

    def __init__(self, name, workdir, argv_for_port, ready_path):
        self.name, self.dir = name, workdir
        self.argv_for_port, self.ready_path = argv_for_port, ready_path
        self.proc, self.port = None, None

    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        last = None
        for _ in range(3):
            self.port = free_port()
            self.proc = Proc(self.name, self.argv_for_port(self.port),
                             os.path.join(self.dir, self.name + ".log"), self.dir)
            self.proc.start()
            deadline = time.monotonic() + READY_TIMEOUT
            while True:
                rc = self.proc.poll()
                if rc is not None:
                    last = "%s exited %s:\n%s" % (self.name, rc, self.proc.log_tail())
                    break
                try:
                    if http_request(self.url() + self.ready_path, timeout=2.0)[0] == 200:
                        return
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    last = "%s not ready within %.0f s:\n%s" % (self.name, READY_TIMEOUT,
                                                               self.proc.log_tail())
                    break
                time.sleep(0.1)
            self.proc.kill()
            if "address already in use" not in (last or ""):
                break
        raise AssertionError(last)

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc = None

    def get_json(self, path, params):
        st, _, data = http_request(self.url() + path + "?" + urllib.parse.urlencode(params))
        if st != 200:
            raise AssertionError("%s %s: HTTP %d: %r" % (self.name, path, st, data[:300]))
        return json.loads(data)


def wait_for(cond, timeout, what, interval=0.25):
    deadline = time.monotonic() + timeout
    last = None
    for _ in range(int(timeout / interval) + 10):
        ok, last = cond()
        if ok:
            return last
        if time.monotonic() > deadline:
            break
        time.sleep(interval)
    raise AssertionError("timed out after %.0f s waiting for %s; last: %s" % (timeout, what,
                                                                          str(last)[:2000]))


def matrix(answer):
    """A query_range answer -> {labels tuple: [(t, value string)]}."""
    assert answer["status"] == "success", answer
    return {tuple(sorted(r["metric"].items())): [tuple(v) for v in r["values"]]
            for r in answer["data"]["result"]}


def diff(want, got):
    out = []
    for k in sorted(set(want) | set(got)):
        if want.get(k) != got.get(k):
            out.append("%s: prometheus %s / strata %s" % (dict(k), str(want.get(k))[:300],
                                                         str(got.get(k))[:300]))
    return out


class RemoteWrite(ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        need_binary(PROMETHEUS, "Debian package prometheus")
        need_binary(VMAGENT, "Debian package victoria-metrics")
        cls.tmp = tempfile.mkdtemp(prefix="strata-it-remote-write-")
        cls.ext = []
        cls.c = cls.start_class_cluster(nodes=3, routers=1, shards=12, rf=2,
                                        router={"max_body_bytes": "1MiB"})

    @classmethod
    def tearDownClass(cls):
        for e in cls.ext:
            e.stop()
        try:
            super().tearDownClass()
        finally:
            if not cls._class_failed:
                shutil.rmtree(cls.tmp, ignore_errors=True)
            else:
                print("remote_write: keeping %s (prometheus/vmagent logs)" % cls.tmp)

    # -- helpers ---------------------------------------------------------------

    def post_rw(self, body, headers=None, path="/api/v1/write"):
        st, _, data = http_request(self.c.router_url() + path, "POST", body,
                                   headers or RW_HEADERS)
        return st, data

    def strata_range(self, q, start, end, step="1s"):
        st, _, data = self.c.get("/api/v1/query_range", params={
            "query": q, "start": "%.3f" % start, "end": "%.3f" % end, "step": step})
        self.assertEqual(st, 200, data[:500])
        return json.loads(data)

    def start_prometheus(self, name, config):
        d = os.path.join(self.tmp, name)
        os.makedirs(d, exist_ok=True)
        cfg = os.path.join(d, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write(config)

        def argv(port):
            return [PROMETHEUS, "--config.file=" + cfg,
                    "--storage.tsdb.path=" + os.path.join(d, "tsdb"),
                    "--web.listen-address=127.0.0.1:%d" % port, "--log.level=info"]
        p = External(name, d, argv, "/-/ready")
        type(self).ext.append(p)
        p.start()
        return p

    # -- tests -------------------------------------------------------------------

    def test_1_prometheus_remote_write_then_remote_read(self):
        c = self.c
        targets = [c.router_url().split("//")[1]] + \
            [c.node_http_url(i).split("//")[1] for i in range(c.n_nodes)]
        prom = self.start_prometheus("prom-writer", (
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: strata\n    static_configs:\n"
            "      - targets: [%s]\n"
            "remote_write:\n  - url: %s/api/v1/write\n"
            "    queue_config:\n      batch_send_deadline: 1s\n      max_shards: 2\n"
            "    metadata_config:\n      send_interval: 2s\n"
        ) % (", ".join("'%s'" % t for t in targets), c.router_url()))
        # series arrive in Strata
        def arrived():
            st, _, data = c.get("/api/v1/series", params={"match[]": "up"})
            got = json.loads(data)["data"] if st == 200 else []
            return len(got) == len(targets), got
        wait_for(arrived, ARRIVE_TIMEOUT, "`up` of every target in Strata")
        # a fixed window from now on, compared once Prometheus has scraped
        # past its end and remote write has delivered that far
        t_start = time.time()
        t_end = t_start + 8

        def scraped_past_end():
            a = prom.get_json("/api/v1/query", {"query": "timestamp(up)"})
            ts = [float(r["value"][1]) for r in a["data"]["result"]]
            return len(ts) == len(targets) and min(ts) > t_end + 1, ts
        wait_for(scraped_past_end, ARRIVE_TIMEOUT, "Prometheus scraping past the window")
        queries = ["up", "scrape_duration_seconds", "scrape_samples_scraped",
                   'strata_router_lines_written_total']
        want = {}
        for q in queries:
            want[q] = matrix(prom.get_json("/api/v1/query_range", {
                "query": q, "start": "%.3f" % t_start, "end": "%.3f" % t_end, "step": "1s"}))
            self.assertTrue(want[q], "prometheus has no %s in the window" % q)

        def same():
            d = []
            for q in queries:
                got = matrix(self.strata_range(q, t_start, t_end))
                d += ["%s: %s" % (q, x) for x in diff(want[q], got)]
            return not d, d
        wait_for(same, ARRIVE_TIMEOUT, "Strata's query_range equal to Prometheus' own TSDB")
        # raw samples too: Prometheus' range vector vs Strata's export
        ans = prom.get_json("/api/v1/query", {"query": "scrape_duration_seconds[8s]",
                                               "time": "%.3f" % t_end})
        raw_want = {tuple(sorted(r["metric"].items())): [(round(float(t) * 1000), float(v))
                                                        for t, v in r["values"]]
                    for r in ans["data"]["result"]}
        # (Prometheus 2.42's range is closed at its start; export's is too)
        exp = c.export("scrape_duration_seconds", start="%.3f" % (t_end - 8),
                       end="%.3f" % t_end)
        raw_got = {tuple(sorted(e["metric"].items())):
                   [(t, float(v)) for t, v in zip(e["timestamps"], e["values"])]
                   for e in exp}
        self.assertEqual(diff(raw_want, raw_got), [])
        # metadata was sent and counted, never stored
        m = c.metrics(c.router_url())
        self.assertGreater(m.get(("strata_router_remote_write_metadata_ignored_total",
                                  frozenset()), 0), 0)
        self.assertEqual(m.get(("strata_router_remote_write_series_rejected_total",
                                frozenset())), 0)
        # Prometheus saw no failures
        pm = parse_metrics(http_request(prom.url() + "/metrics")[2])
        failed = sum(v for (n, _), v in pm.items()
                     if n in ("prometheus_remote_storage_samples_failed_total",
                              "prometheus_remote_storage_samples_dropped_total"))
        self.assertEqual(failed, 0)

        # remote read: a Prometheus with no data of its own reads Strata
        reader = self.start_prometheus("prom-reader", (
            "global:\n  scrape_interval: 1m\n"
            "remote_read:\n  - url: %s/api/v1/read\n    read_recent: true\n"
        ) % c.router_url())
        for q in ["up", "scrape_duration_seconds", "sum by (instance) (scrape_samples_scraped)"]:
            params = {"query": q, "start": "%.3f" % t_start, "end": "%.3f" % t_end,
                      "step": "1s"}
            via_read = matrix(reader.get_json("/api/v1/query_range", params))
            own = matrix(self.strata_range(q, t_start, t_end))
            self.assertTrue(own, q)
            self.assertEqual(diff(own, via_read), [], q)
        prom.stop()
        reader.stop()

    def test_2_vmagent_zero_failed_samples(self):
        c = self.c
        d = os.path.join(self.tmp, "vmagent")
        os.makedirs(d, exist_ok=True)
        cfg = os.path.join(d, "scrape.yml")
        with open(cfg, "w") as f:
            f.write("scrape_configs:\n  - job_name: vm\n    scrape_interval: 1s\n"
                    "    static_configs:\n      - targets: ['%s']\n"
                    % c.router_url().split("//")[1])

        def argv(port):
            return [VMAGENT, "-httpListenAddr=127.0.0.1:%d" % port, "-promscrape.config=" + cfg,
                    "-remoteWrite.url=%s/api/v1/write" % c.router_url(),
                    "-remoteWrite.tmpDataPath=" + os.path.join(d, "q"),
                    "-remoteWrite.flushInterval=200ms", "-loggerLevel=INFO"]
        vm = External("vmagent", d, argv, "/health")
        type(self).ext.append(vm)
        vm.start()

        def arrived():
            st, _, data = c.get("/api/v1/series", params={"match[]": 'up{job="vm"}'})
            got = json.loads(data)["data"] if st == 200 else []
            return bool(got), got
        wait_for(arrived, ARRIVE_TIMEOUT, "vmagent's series in Strata")

        def sent_enough():
            m = parse_metrics(http_request(vm.url() + "/metrics")[2])
            ok = sum(v for (n, l), v in m.items()
                     if n == "vmagent_remotewrite_requests_total" and OK_CODES & set(l))
            return ok >= 5, m
        m = wait_for(sent_enough, ARRIVE_TIMEOUT, "5 requests answered 204")
        # every request answered 204: nothing refused, retried or dropped
        bad = {(n, l): v for (n, l), v in m.items() if v and (
            (n == "vmagent_remotewrite_requests_total" and not OK_CODES & set(l)) or
            n in ("vmagent_remotewrite_packets_dropped_total",
                  "vmagent_remotewrite_retries_count_total"))}
        self.assertEqual(bad, {})
        # the values vmagent scraped are the ones stored: one scrape's `up`
        st, _, data = c.get("/api/v1/query", params={"query": 'up{job="vm"}'})
        self.assertEqual(json.loads(data)["data"]["result"][0]["value"][1], "1")
        vm.stop()

    def test_3_stale_marker_round_trip_and_staleness(self):
        c = self.c
        now = int(time.time() * 1000) - 60_000
        samples = [(now + i * 1000, float(i)) for i in range(5)]
        samples.append((now + 5000, None, prompb.STALE_NAN_BITS))
        other = [(now + i * 1000, 7.0) for i in range(10)]
        st, data = self.post_rw(prompb.write_body([
            ({"__name__": "rw_stale", "job": "t"}, samples),
            ({"__name__": "rw_stale", "job": "keep"}, other)]))
        self.assertEqual(st, 204, data)
        # bit-exact through remote read
        st, _, body = http_request(self.c.router_url() + "/api/v1/read", "POST",
                                   prompb.read_request([(now, now + 10_000,
                                                         [(0, "__name__", "rw_stale")])]),
                                   {"Content-Encoding": "snappy"})
        self.assertEqual(st, 200, body[:300])
        res = prompb.parse_read_response(body)
        got = {s[0]["job"]: s[1] for s in res[0]}
        self.assertEqual(got["t"][-1], (now + 5000, prompb.STALE_NAN_BITS))
        self.assertEqual([x[1] for x in got["t"][:5]],
                         [struct.unpack("<Q", struct.pack("<d", float(i)))[0]
                          for i in range(5)])
        # PromQL: before the marker the series is there, after it it is gone
        def instant(t):
            st, _, data = c.get("/api/v1/query", params={"query": "rw_stale",
                                                         "time": "%.3f" % (t / 1000)})
            self.assertEqual(st, 200, data)
            return {r["metric"]["job"]: r["value"][1] for r in json.loads(data)["data"]["result"]}
        self.assertEqual(instant(now + 4500), {"t": "4", "keep": "7"})
        self.assertEqual(instant(now + 5500), {"keep": "7"})
        self.assertEqual(instant(now + 60_000), {"keep": "7"})
        # range functions skip the marker
        st, _, data = c.get("/api/v1/query", params={
            "query": 'count_over_time(rw_stale{job="t"}[10s])', "time": "%.3f" % ((now + 6000) / 1000)})
        self.assertEqual(json.loads(data)["data"]["result"][0]["value"][1], "5")

    def test_4_federate(self):
        c = self.c
        now = int(time.time() * 1000)
        st, data = self.post_rw(prompb.write_body([
            ({"__name__": "fed_a", "job": "x", "quote": 'say "hi"\n'}, [(now - 2000, 1.0),
                                                                     (now - 1000, 2.5)]),
            ({"__name__": "fed_b", "job": "x"}, [(now - 1000, 3.0)]),
            ({"__name__": "fed_b", "job": "gone"}, [(now - 2000, 1.0),
                                                     (now - 1000, None, prompb.STALE_NAN_BITS)]),
            ({"__name__": "fed_b", "job": "old"}, [(now - 600_000, 1.0)])]))
        self.assertEqual(st, 204, data)
        st, h, body = self.c.get("/federate", params=[("match[]", "fed_a"),
                                                      ("match[]", '{__name__=~"fed_.*"}')])
        self.assertEqual(st, 200, body)
        self.assertTrue(h["content-type"].startswith("text/plain"))
        self.assertEqual(body.decode(), (
            '# TYPE fed_a untyped\n'
            'fed_a{job="x",quote="say \\"hi\\"\\n"} 2.5 %d\n'
            '# TYPE fed_b untyped\n'
            'fed_b{job="x"} 3 %d\n') % (now - 1000, now - 1000))
        st, _, body = self.c.get("/federate")
        self.assertEqual(st, 400)
        self.assertIn(b"no match[] parameter", body)

    def test_5_bad_bodies(self):
        c = self.c
        # not snappy
        st, data = self.post_rw(b"cpu value=1\n")
        self.assertEqual(st, 400)
        self.assertIn(b"not snappy-compressed", data)
        # snappy, but not a WriteRequest
        st, data = self.post_rw(prompb.snappy_compress(b"\x0a\xff\xff\x01garbage"))
        self.assertEqual(st, 400)
        self.assertIn(b"malformed protobuf WriteRequest", data)
        # inflates past max_body_bytes (1 MiB): refused from snappy's preamble
        st, data = self.post_rw(prompb.snappy_compress(b"\x00" * (2 << 20)))
        self.assertEqual(st, 413)
        self.assertIn(b"max_body_bytes", data)
        # compressed body over the limit
        st, data = self.post_rw(os.urandom((1 << 20) + 10))
        self.assertEqual(st, 413)
        # another encoding
        h = dict(RW_HEADERS, **{"Content-Encoding": "zstd"})
        st, data = self.post_rw(prompb.write_body([({"__name__": "z"}, [(1, 1.0)])]), h)
        self.assertEqual(st, 415)
        # bad series are named, the good ones written
        now = int(time.time() * 1000)
        st, data = self.post_rw(prompb.write_body([
            ({"__name__": "rw_good", "i": "1"}, [(now, 1.0)]),
            ([("__name__", "rw_dup"), ("a", "1"), ("a", "2")], [(now, 1.0)]),
            ({"__name__": "rw_badutf", "a": b"\xff\xfe"}, [(now, 1.0)]),
            ({"job": "noname"}, [(now, 1.0)]),
            ({"__name__": "rw_good", "i": "2"}, [(now, 2.0)])]))
        self.assertEqual(st, 400, data)
        err = json.loads(data)
        self.assertIn("3 of 5 series rejected", err["error"])
        reasons = {r["series"]: r["reason"] for r in err["rejected"]}
        self.assertIn("duplicate label name", reasons[1])
        self.assertIn("not valid UTF-8", reasons[2])
        self.assertIn("no __name__ label", reasons[3])
        got = c.export("rw_good")
        self.assertEqual(sorted(e["metric"]["i"] for e in got), ["1", "2"])
        m = c.metrics(c.router_url())
        self.assertGreaterEqual(m[("strata_router_remote_write_series_rejected_total",
                                   frozenset())], 3)
        self.assertGreaterEqual(m[("strata_router_remote_bad_requests_total", frozenset())], 4)
        # an empty request is fine
        st, data = self.post_rw(prompb.write_body([]))
        self.assertEqual(st, 204, data)
        # remote read: bad bodies
        st, _, data = http_request(c.router_url() + "/api/v1/read", "POST", b"junk")
        self.assertEqual(st, 400)
        self.assertIn(b"snappy", data)


if __name__ == "__main__":
    unittest.main()
