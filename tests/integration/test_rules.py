"""Compaction rules (TS.CREATERULE-style) on a real 3-node cluster, RF=2, one
router with the RESP door: rules created over HTTP (/api/v1/admin/rules, an
exact series and a selector rule) and over redis-cli (TS.CREATERULE), samples
written across several buckets, the destination series read back and
compared with values computed here; kill -9 of the evaluating node (the next
replica coordinates and the buckets keep coming, rebuilt from stored data),
its restart, deleting rules (no more buckets), and a node that was down while
a rule was created gets the rule when it returns; TS.CREATE ... RETENTION
makes the engines hide a key's samples older than now - retention. One
cluster for the file.
"""

import json
import os
import subprocess
import sys
import time
import urllib.parse

from harness import ClusterTestCase, binary, free_port, http_request, metric_sum

try:
    import redis
except ImportError:  # Debian's python3-redis under another interpreter
    sys.path.append("/usr/lib/python3/dist-packages")
    import redis

REDIS_CLI = os.environ.get("STRATA_REDIS_CLI", "/usr/bin/redis-cli")
B = 10000  # bucket: 10 s
PER = 10   # samples per bucket, one a second


class RulesTest(ClusterTestCase):
    @classmethod
    def setUpClass(cls):
        cls.port = free_port()
        cls.c = cls.class_cluster(
            nodes=3, routers=1, rf=2, shards=6,
            cluster={"write_consistency": "async"},
            replication={"replica_timeout": "1s", "heartbeat_interval": "200ms"},
            router={"resp_listen": "127.0.0.1:%d" % cls.port})
        cls.c.start()
        t = int(time.time() * 1000) - 3600 * 1000
        cls.T = t - t % 100000

    @classmethod
    def tearDownClass(cls):
        cls.close_class_clusters(failed=cls._class_failed)

    # -- helpers ----------------------------------------------------------

    def rules_api(self, method, params=None, body=None, ctype=None):
        url = self.c.router_url(0) + "/api/v1/admin/rules"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        hdrs = {"Content-Type": ctype} if ctype else {}
        st, _, data = http_request(url, method, body, hdrs)
        return st, json.loads(data) if data else None

    def create(self, **form):
        return self.rules_api("POST", body=urllib.parse.urlencode(form).encode(),
                              ctype="application/x-www-form-urlencoded")

    def write(self, lines):
        st, body = self.c.write(lines, precision="ms")
        self.assertEqual(st, 204, body)

    def dest(self, match):
        """{labels tuple: {ts: value}} of the destination series."""
        return {tuple(sorted(s["metric"].items())): dict(zip(s["timestamps"], s["values"]))
                for s in self.c.export(match)}

    def wait_buckets(self, match, want, what):
        """Poll until every series in want ({labels: {ts: v}}) holds those points."""
        def ok():
            got = self.dest(match)
            return all(all(got.get(k, {}).get(ts) == v for ts, v in pts.items())
                       for k, pts in want.items())
        try:
            self.c.wait_until(ok, 60, what)
        except AssertionError:
            raise AssertionError("%s: want %r got %r" % (what, want, self.dest(match)))

    def node_sum(self, name, nodes=range(3)):
        return sum(metric_sum(self.c.node_metrics(i), name) for i in nodes
                   if self.c.nodes[i].running())

    def temp_lines(self, k0, k1):
        """temp,room=r1 value=i at T + i s for the samples of buckets k0..k1-1."""
        return ["temp,room=r1 value=%d %d" % (i, self.T + i * 1000)
                for i in range(k0 * PER, k1 * PER)]

    def r(self):
        c = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=60,
                        decode_responses=True)
        self.addCleanup(c.close)
        return c

    def cli(self, *args):
        argv = [REDIS_CLI, "-p", str(self.port)] + [str(a) for a in args]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        return out.stdout.strip()

    # -- tests (one cluster; named to run in order) ------------------------

    def test_1_http_rules_failover_delete(self):
        c = self.c
        st, js = self.create(source='temp_value{room="r1"}', aggregation="avg", bucket="10s",
                             dest="temp_avg", labels="tier=10s", exact="1")
        self.assertEqual(st, 200, js)
        rid = js["data"]["id"]
        self.assertEqual(js["data"]["nodes_acked"], 3)
        st, js = self.rules_api("POST", body=json.dumps({
            "source": '{__name__="load_v",host=~"h.*"}', "aggregation": "max",
            "bucket": "10s", "dest": "load_max"}).encode(), ctype="application/json")
        self.assertEqual(st, 200, js)
        sel_id = js["data"]["id"]
        # refused: unknown aggregator, chain onto a dest, same dest twice
        st, js = self.create(source="x", aggregation="median", bucket="1m", dest="y")
        self.assertEqual(st, 400)
        self.assertIn("unknown aggregation", js["error"])
        st, js = self.create(source="load_max", aggregation="sum", bucket="1m", dest="z")
        self.assertEqual(st, 400)
        self.assertIn("no chains", js["error"])
        st, js = self.create(source="other", aggregation="sum", bucket="1m",
                             dest='temp_avg{tier="10s"}')
        self.assertEqual(st, 409)
        st, js = self.rules_api("GET")
        self.assertEqual(st, 200)
        got = {r["id"]: r for r in js["data"]["rules"]}
        self.assertEqual(got[rid]["aggregation"], "avg")
        self.assertEqual(got[rid]["bucket_ms"], B)
        self.assertTrue(got[rid]["exact"])
        self.assertEqual(got[rid]["dest"], 'temp_avg{tier="10s"}')
        self.assertEqual(got[sel_id]["source"], '{__name__="load_v",host=~"h.*"}')

        # four buckets, one write each: three close
        for k in range(4):
            self.write(self.temp_lines(k, k + 1) +
                       ["load,host=h%d v=%d %d" % (h, h * 100 + i, self.T + i * 1000)
                        for h in range(3) for i in range(k * PER, (k + 1) * PER)])
        key = (("__name__", "temp_avg"), ("tier", "10s"))  # exact: dest labels as given
        want = {key: {self.T + k * B: k * PER + (PER - 1) / 2.0 for k in range(3)}}
        self.wait_buckets("temp_avg", want, "avg buckets 0..2")
        want_load = {(("__name__", "load_max"), ("host", "h%d" % h)):
                     {self.T + k * B: float(h * 100 + k * PER + PER - 1) for k in range(3)}
                     for h in range(3)}
        self.wait_buckets("load_max", want_load, "max buckets per host")
        self.assertNotIn(self.T + 3 * B, self.dest("temp_avg")[key])  # bucket 3 is open
        # a late sample into closed bucket 1: the bucket is recomputed from storage
        self.write(["temp,room=r1 value=100 %d" % (self.T + B + 500)])
        want = {key: {self.T + B: (sum(range(PER, 2 * PER)) + 100) / (PER + 1.0)}}
        self.wait_buckets("temp_avg", want, "bucket 1 recomputed for a late sample")
        # the line-protocol series that no rule matches stay untouched
        self.assertEqual(self.dest('{__name__=~"temp_avg|load_max",host="h9"}'), {})

        # kill -9 the node that evaluated (it closed buckets): the next replica
        # coordinates, rebuilds the open bucket from its stored copy
        closed = [metric_sum(c.node_metrics(i), "strata_node_rule_buckets_closed_total")
                  for i in range(3)]
        ev = max(range(3), key=lambda i: closed[i])
        self.assertGreater(closed[ev], 0)
        c.kill9(ev)
        for k in (4, 5):
            self.write(self.temp_lines(k, k + 1))
        want = {key: {self.T + k * B: k * PER + (PER - 1) / 2.0 for k in range(2, 5)}}
        self.wait_buckets("temp_avg", want, "buckets 3 and 4 after kill -9")
        c.restart(ev)
        c.wait_hints_drained(60)
        for k in (6, 7):
            self.write(self.temp_lines(k, k + 1))
        want = {key: {self.T + k * B: k * PER + (PER - 1) / 2.0 for k in range(2, 7)}}
        self.wait_buckets("temp_avg", want, "buckets 5 and 6 after the restart")
        self.assertGreater(self.node_sum("strata_node_rule_buckets_written_total"), 0)

        # delete both rules: later buckets are no longer closed
        st, js = self.rules_api("DELETE", {"id": rid})
        self.assertEqual(st, 200, js)
        st, js = self.rules_api("DELETE", {"id": sel_id})
        self.assertEqual(st, 200, js)
        st, js = self.rules_api("DELETE", {"id": rid})
        self.assertEqual(st, 404, js)
        before = self.node_sum("strata_node_rule_buckets_closed_total")
        for k in (8, 9):
            self.write(self.temp_lines(k, k + 1))
        self.assertEqual(self.node_sum("strata_node_rule_buckets_closed_total"), before)
        self.assertNotIn(self.T + 7 * B, self.dest("temp_avg")[key])

    def test_2_resp_rules(self):
        r = self.r()
        r.execute_command("TS.CREATE", "rsrc")
        r.execute_command("TS.CREATE", "rdst")
        self.assertEqual(self.cli("TS.CREATERULE", "rsrc", "rdst", "AGGREGATION", "sum", 10000),
                         "OK")
        for args, want in [
                (("rsrc", "rdst", "AGGREGATION", "sum", 10000),
                 "the destination key already has a src rule"),
                (("rsrc", "nokey", "AGGREGATION", "sum", 10000), "the key does not exist"),
                (("rsrc", "rsrc", "AGGREGATION", "sum", 10000), "should be different"),
                (("rsrc", "rdst", "AGGREGATION", "median", 10000), "wrong aggregation type")]:
            with self.assertRaises(redis.ResponseError) as cm:
                r.execute_command("TS.CREATERULE", *args)
            self.assertIn(want, str(cm.exception))
        info = r.execute_command("TS.INFO", "rsrc")
        info = dict(zip(info[::2], info[1::2]))
        self.assertEqual(info["rules"], [["rdst", 10000, "SUM", 0]])
        info = r.execute_command("TS.INFO", "rdst")
        info = dict(zip(info[::2], info[1::2]))
        self.assertEqual(info["sourceKey"], "rsrc")
        for i in range(25):  # buckets 0 and 1 close, 2 stays open
            r.execute_command("TS.ADD", "rsrc", self.T + i * 1000, i % 4)
        want = [[self.T + k * B, str(float(sum(i % 4 for i in range(k * 10, k * 10 + 10))))]
                for k in range(2)]
        want = [[t, v.rstrip("0").rstrip(".") if "." in v else v] for t, v in want]

        def got():
            return r.execute_command("TS.RANGE", "rdst", "-", "+")
        try:
            self.c.wait_until(lambda: [[t, v] for t, v in got()] == want, 60, "rdst buckets")
        except AssertionError:
            raise AssertionError("rdst: want %r got %r" % (want, got()))
        self.assertEqual(self.cli("TS.DELETERULE", "rsrc", "rdst"), "OK")
        with self.assertRaises(redis.ResponseError) as cm:
            r.execute_command("TS.DELETERULE", "rsrc", "rdst")
        self.assertIn("compaction rule does not exist", str(cm.exception))
        info = r.execute_command("TS.INFO", "rsrc")
        self.assertEqual(dict(zip(info[::2], info[1::2]))["rules"], [])

    def strata(self, *args):
        out = subprocess.run([binary("cli"), "rule", "--router", self.c.router_url(0)] +
                             list(args), capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        return out.stdout

    def test_3_node_down_during_create(self):
        c = self.c
        c.kill9(2)
        out = self.strata("add", "mem_v", "mem_min", "--aggregation", "min", "--bucket", "1m")
        self.assertRegex(out, r"rule \d+ added")
        self.assertIn("mem_v -> mem_min", self.strata("list"))
        st, js = self.rules_api("GET")
        version = js["data"]["version"]
        c.restart(2)
        c.wait_until(lambda: metric_sum(c.node_metrics(2), "strata_node_rules") >= 1, 60,
                     "the returning node gets the rule set")
        st, js = self.rules_api("GET")
        self.assertEqual(js["data"]["version"], version)
        self.assertTrue(os.path.exists(os.path.join(c.data_dir(2), "rules")))
        rid = [r["id"] for r in js["data"]["rules"] if r["dest"] == "mem_min"][0]
        self.assertIn("removed", self.strata("remove", str(rid)))
        self.assertNotIn("mem_min", self.strata("list"))

    def test_4_key_retention(self):
        """TS.CREATE ... RETENTION puts a retention entry in the rule set; the
        nodes' engines hide (and later drop) the key's samples older than
        now - retention on every read path; another key keeps its samples."""
        c, r = self.c, self.r()
        self.assertEqual(r.execute_command("TS.CREATE", "kret", "RETENTION", 20000), "OK")
        st, js = self.rules_api("GET")
        self.assertEqual(st, 200, js)
        ent = [x for x in js["data"]["rules"] if x["source"] == "kret"]
        self.assertEqual([x.get("retention_ms") for x in ent], [20000])
        self.assertIn("retain", self.strata("list"))
        c.wait_until(lambda: self.node_sum("strata_node_rule_retentions") == 3, 60,
                     "every node holds the key's retention")
        now = int(time.time() * 1000)
        old = [now - 120000, now - 90000]
        new = [now - 1000, now]
        self.assertEqual(r.execute_command("TS.CREATE", "kkeep"), "OK")
        for part in (old, new):  # the old ones first: valkey refuses what is past the newest
            args = [x for k in ("kret", "kkeep") for ts in part for x in (k, ts, 1)]
            self.assertEqual(r.execute_command("TS.MADD", *args), [ts for _ in "ab" for ts in part])

        def ts_of(key):
            rows = c.export('{__name__="%s"}' % key)
            return sorted(t for row in rows for t in row["timestamps"])
        try:
            c.wait_until(lambda: ts_of("kret") == new, 60, "kret keeps only its recent samples")
        except AssertionError:
            raise AssertionError("kret: want %r got %r" % (new, ts_of("kret")))
        self.assertEqual(ts_of("kkeep"), old + new)
        info = r.execute_command("TS.INFO", "kret")
        self.assertEqual(dict(zip(info[::2], info[1::2]))["retentionTime"], 20000)
        # TS.ALTER ... RETENTION 0 removes the entry; an unchanged one is no change
        self.assertEqual(r.execute_command("TS.ALTER", "kret", "RETENTION", 0), "OK")
        st, js = self.rules_api("GET")
        self.assertFalse([x for x in js["data"]["rules"] if x["source"] == "kret"])
        c.wait_until(lambda: self.node_sum("strata_node_rule_retentions") == 0, 60,
                     "the key's retention leaves every node")
        st, js = self.create(source="kret", retention="-5")
        self.assertEqual(st, 400, js)
        self.assertIn("invalid retention", js["error"])


if __name__ == "__main__":
    import unittest
    unittest.main()
