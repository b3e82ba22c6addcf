"""Deletion (POST /api/v1/admin/tsdb/delete_series, strata delete) with real
processes: deleted samples disappear from every read path (export, series,
labels, label values, /api/v1/status/tsdb, query_range with and without
pushdown), later writes are kept, dry runs only count, deletes survive
restarts and kill -9 (also during the purge compaction), a replica that was
down at delete time gets the delete through hinted handoff and does not
bring the data back, and deletes run while data is being ingested.
"""

import subprocess
import threading
import time
import unittest
import urllib.parse

from harness import ClusterTestCase, binary, http_request, metric_sum, parse_json

STEP = 60000
N = 120  # samples per series: two hours at one a minute
HOSTS = 10
FAST = {"memtable_max_age": "1s"}
REPL = {"replica_timeout": "1s", "heartbeat_interval": "200ms",
        "hint_max_bytes": "256MiB", "hint_max_age": "1h"}


def lines_for(t0, hosts, n, value=1.0, metric="cpu"):
    out = []
    for h in hosts:
        for i in range(n):
            out.append("%s,host=h%d v=%r %d" % (metric, h, value, t0 + i * STEP))
    return out


class DeleteCase(ClusterTestCase):

    def setUp(self):
        self.t0 = (int(time.time() * 1000) // STEP) * STEP - N * STEP

    def load(self, c, hosts=range(HOSTS), value=1.0, metric="cpu"):
        st, body = c.write(lines_for(self.t0, hosts, N, value, metric), precision="ms")
        self.assertEqual(st, 204, body)

    def delete(self, c, match, start=None, end=None, router=0, **extra):
        params = [("match[]", m) for m in ([match] if isinstance(match, str) else match)]
        if start is not None:
            params.append(("start", "%.3f" % (start / 1000.0)))
        if end is not None:
            params.append(("end", "%.3f" % (end / 1000.0)))
        params += list(extra.items())
        url = c.router_url(router) + "/api/v1/admin/tsdb/delete_series?" + \
            urllib.parse.urlencode(params)
        st, _, data = http_request(url, "POST", b"")
        return st, data

    def wait_flushed(self, c, nodes):
        c.wait_until(lambda: sum(metric_sum(c.node_metrics(i), "strata_node_head_samples")
                                 + (metric_sum(c.node_metrics(i), "strata_node_segments") == 0)
                                 for i in range(nodes)) == 0, 60, "heads flushed")

    def samples(self, c, match, **kw):
        return {tuple(sorted(s["metric"].items())): list(s["timestamps"])
                for s in c.export(match, **kw)}

    def host_ts(self, c, host, **kw):
        got = self.samples(c, 'cpu_v{host="h%d"}' % host, **kw)
        return next(iter(got.values()), [])

    def query_count(self, c, pushdown):
        st, _, data = c.get("/api/v1/query_range", params={
            "query": "count_over_time(cpu_v[1m])", "start": "%.3f" % (self.t0 / 1000.0),
            "end": "%.3f" % ((self.t0 + (N - 1) * STEP) / 1000.0), "step": "60",
            "pushdown": pushdown})
        self.assertEqual(st, 200, data[:300])
        res = parse_json(data)["data"]["result"]
        return {r["metric"]["host"]: sum(float(v[1]) for v in r["values"]) for r in res}

    def test_read_paths_dry_run_write_after_and_purge(self):
        c = self.cluster(nodes=2, routers=1, shards=4, rf=1, storage=FAST).start()
        self.load(c)
        self.wait_flushed(c, 2)  # the deleted samples are on disk: masked, then purged
        lo, hi = self.t0 + 30 * STEP, self.t0 + 59 * STEP  # 30 samples
        # 400: no match[]
        st, data = self.delete(c, [])
        self.assertEqual(st, 400, data)
        self.assertIn(b"match[]", data)
        # dry run: counts, nothing changes
        st, data = self.delete(c, 'cpu_v{host=~"h[0-4]"}', lo, hi, dry_run="1")
        self.assertEqual(st, 200, data)
        self.assertEqual(parse_json(data)["data"], {"series": 5, "samples": 150})
        self.assertEqual(len(self.host_ts(c, 0)), N)
        # the CLI's dry run says the same
        r = subprocess.run([binary("cli"), "delete", 'cpu_v{host=~"h[0-4]"}', "--dry-run",
                            "--start", "%.3f" % (lo / 1000.0), "--end", "%.3f" % (hi / 1000.0),
                            "--router", c.router_url(0)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"5 series, 150 samples", r.stdout)
        # partial range on five hosts, all time on h9
        st, data = self.delete(c, 'cpu_v{host=~"h[0-4]"}', lo, hi)
        self.assertEqual(st, 204, data)
        st, data = self.delete(c, 'cpu_v{host="h9"}')
        self.assertEqual(st, 204, data)
        expect = [self.t0 + i * STEP for i in range(N) if not lo <= self.t0 + i * STEP <= hi]
        for h in range(5):
            self.assertEqual(self.host_ts(c, h), expect, "h%d after the delete" % h)
        self.assertEqual(len(self.host_ts(c, 5)), N)
        self.assertEqual(self.host_ts(c, 9), [])
        # series / labels / values / tsdb status: h9 is gone
        st, body = c.series("cpu_v")
        self.assertEqual(st, 200)
        self.assertEqual(sorted(s["host"] for s in body["data"]),
                         sorted("h%d" % h for h in range(9)))
        st, body = c.label_values("host")
        self.assertEqual(body["data"], sorted("h%d" % h for h in range(9)))
        st, _, data = c.get("/api/v1/status/tsdb")
        self.assertEqual(st, 200)
        self.assertEqual(parse_json(data)["data"]["headStats"]["numSeries"], 9)
        # query_range with and without pushdown agree with the deletion
        for pd in ("1", "0"):
            counts = self.query_count(c, pd)
            self.assertNotIn("h9", counts, "pushdown=%s" % pd)
            self.assertEqual(counts["h5"], N, "pushdown=%s" % pd)
            self.assertEqual(counts["h0"], N - 30, "pushdown=%s" % pd)
        # a write after the delete, inside the deleted range, is kept
        st, body = c.write(["cpu,host=h0 v=7 %d" % (lo + STEP), "cpu,host=h9 v=7 %d" % lo],
                           precision="ms")
        self.assertEqual(st, 204, body)
        self.assertIn(lo + STEP, self.host_ts(c, 0))
        self.assertEqual(self.host_ts(c, 9), [lo])
        st, body = c.label_values("host")
        self.assertIn("h9", body["data"])
        # purge: the bytes go, nothing comes back, nothing else is lost
        self.wait_flushed(c, 2)
        before = [metric_sum(c.node_metrics(i), "strata_node_disk_bytes") for i in range(2)]
        st, _, data = http_request(c.router_url(0) + "/api/v1/admin/tsdb/clean_tombstones",
                                   "POST", b"")
        self.assertEqual(st, 204, data)
        freed = sum(metric_sum(c.node_metrics(i), "strata_node_purge_bytes_reclaimed_total")
                    for i in range(2))
        pending = sum(metric_sum(c.node_metrics(i), "strata_node_tombstones_pending")
                      for i in range(2))
        after = [metric_sum(c.node_metrics(i), "strata_node_disk_bytes") for i in range(2)]
        print("\n    purge: disk bytes %s -> %s, reclaimed %d" % (before, after, freed))
        self.assertGreater(freed, 0)
        self.assertEqual(pending, 0)
        self.assertEqual(self.host_ts(c, 0), sorted(expect + [lo + STEP]))
        self.assertEqual(len(self.host_ts(c, 5)), N)
        # restart: still deleted
        c.sigterm(0)
        c.sigterm(1)
        c.restart(0, wait_routers=False)
        c.restart(1)
        self.assertEqual(self.host_ts(c, 0), sorted(expect + [lo + STEP]))
        self.assertEqual(self.host_ts(c, 9), [lo])
        m = c.metrics(c.router_url(0))
        self.assertGreaterEqual(metric_sum(m, "strata_router_deletes_total", result="ok"), 2)

    def test_replica_down_then_back_no_resurrection(self):
        c = self.cluster(nodes=3, routers=1, shards=3, rf=3, replication=REPL,
                         router={"request_timeout": "3s"}).start()
        c.wait_peers_up()
        self.load(c, hosts=range(4))
        c.kill9(2)
        c.wait_node_state("n3", ("down", "connecting"), 30)
        st, data = self.delete(c, 'cpu_v{host="h1"}', consistency="quorum")
        self.assertEqual(st, 204, data)
        # a write after the delete, in the deleted range: must stay everywhere
        st, body = c.write(["cpu,host=h1 v=5 %d" % (self.t0 + 3 * STEP)], precision="ms",
                           consistency="quorum")
        self.assertEqual(st, 204, body)
        c.restart(2)
        c.wait_node_state("n3", ("up",), 60)
        c.wait_hints_drained(120)
        # read from the returning replica alone
        got = c.node_export(2, match='cpu_v{host="h1"}')
        self.assertEqual([s["timestamps"] for s in got], [[self.t0 + 3 * STEP]])
        self.assertEqual(len(c.node_export(2, match='cpu_v{host="h2"}')[0]["timestamps"]), N)
        for i in range(3):
            got = c.node_export(i, match='cpu_v{host="h1"}')
            self.assertEqual([s["timestamps"] for s in got], [[self.t0 + 3 * STEP]],
                             "node %d" % i)

    def test_delete_during_ingest(self):
        c = self.cluster(nodes=2, routers=1, shards=4, rf=1, storage=FAST).start()
        self.load(c, hosts=range(3))
        stop = threading.Event()
        sent = []
        errors = []

        def writer():
            k = 0
            while not stop.is_set() and k < 5000:
                ts = self.t0 + N * STEP + k
                st, body = c.write(["cpu,host=h7 v=1 %d" % ts], precision="ms")
                if st == 204:
                    sent.append(ts)
                else:
                    errors.append((st, body))
                k += 1

        th = threading.Thread(target=writer)
        th.start()
        try:
            for h in range(3):
                st, data = self.delete(c, 'cpu_v{host="h%d"}' % h)
                self.assertEqual(st, 204, data)
        finally:
            stop.set()
            th.join(60)
        self.assertEqual(errors, [])
        for h in range(3):
            self.assertEqual(self.host_ts(c, h), [])
        self.assertEqual(self.host_ts(c, 7), sent)

    def test_kill9_during_purge(self):
        c = self.cluster(nodes=1, routers=1, shards=2, rf=1, storage=FAST).start()
        self.load(c)
        self.wait_flushed(c, 1)
        lo, hi = self.t0 + 10 * STEP, self.t0 + 99 * STEP
        st, data = self.delete(c, 'cpu_v{host=~"h[0-4]"}', lo, hi)
        self.assertEqual(st, 204, data)
        done = threading.Event()

        def purge():
            try:
                http_request(c.router_url(0) + "/api/v1/admin/tsdb/clean_tombstones", "POST",
                             b"", timeout=30)
            except OSError:
                pass
            done.set()

        th = threading.Thread(target=purge)
        th.start()
        c.kill9(0)
        th.join(60)
        c.restart(0)
        expect = [self.t0 + i * STEP for i in range(N) if not lo <= self.t0 + i * STEP <= hi]
        for h in range(HOSTS):
            self.assertEqual(self.host_ts(c, h), expect if h < 5 else
                             [self.t0 + i * STEP for i in range(N)], "h%d" % h)
        # and the purge finishes after the crash
        st, _, data = http_request(c.router_url(0) + "/api/v1/admin/tsdb/clean_tombstones",
                                   "POST", b"")
        self.assertEqual(st, 204, data)
        self.assertEqual(metric_sum(c.node_metrics(0), "strata_node_tombstones_pending"), 0)
        for h in range(HOSTS):
            self.assertEqual(len(self.host_ts(c, h)), len(expect) if h < 5 else N)


if __name__ == "__main__":
    unittest.main()
