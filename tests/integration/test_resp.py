"""The router's RESP door (issue 15): valkey-timeseries TS.* commands from
redis-cli (RESP2 and RESP3 with -3) and Debian's python3-redis (RESP2)
against a real 3-node cluster, with expected values worked out from the
documented semantics:

- connection commands (PING, ECHO, HELLO 2/3, CLIENT, SELECT, COMMAND,
  INFO, QUIT) and pipelining (replies in order);
- TS.CREATE / TS.ALTER (labels change, the series does not), every
  duplicate policy, ON_DUPLICATE, IGNORE, retention trimming, TS.INFO;
- TS.RANGE / TS.REVRANGE: every aggregator, EMPTY, ALIGN, BUCKETTIMESTAMP,
  FILTER_BY_TS, FILTER_BY_VALUE, COUNT;
- TS.MRANGE / TS.MGET / TS.QUERYINDEX / TS.CARD / TS.LABELNAMES /
  TS.LABELVALUES with every FILTER form, WITHLABELS, SELECTED_LABELS,
  GROUPBY/REDUCE over keys stored on different nodes;
- TS.JOIN variants, TS.INCRBY / TS.DECRBY;
- one database, three doors: TS.ADD data through /api/v1/export and
  PromQL; line-protocol series through TS.RANGE (series key) and FILTER;
- settings survive a router restart (they live in the cluster);
- error replies for bad arguments, and the protocol limits.
"""

import math
import os
import socket
import subprocess
import sys
import time
import unittest
import urllib.parse

from harness import ClusterTestCase, free_port, http_request, parse_export, parse_metrics

try:
    import redis
except ImportError:  # Debian's python3-redis under another interpreter
    sys.path.append("/usr/lib/python3/dist-packages")
    import redis

REDIS_CLI = os.environ.get("STRATA_REDIS_CLI", "/usr/bin/redis-cli")
HOUR = 3600 * 1000


def base_ts():
    """A round timestamp an hour ago (inside the cluster's retention)."""
    t = int(time.time() * 1000) - HOUR
    return t - t % 100000


def read_replies(s, n):
    """n RESP2 replies read from socket s: ints, errors ("-..."), arrays."""
    buf = b""

    def fill():
        nonlocal buf
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError("connection closed after %r" % buf[:200])
        buf += chunk

    def line():
        nonlocal buf
        for _ in range(1000):
            i = buf.find(b"\r\n")
            if i >= 0:
                ln, buf = buf[:i], buf[i + 2:]
                return ln.decode()
            fill()
        raise AssertionError("no line")

    def one():
        ln = line()
        if ln[0] == ":":
            return int(ln[1:])
        if ln[0] == "*":
            return [one() for _ in range(int(ln[1:]))]
        return ln

    return [one() for _ in range(n)]


class RespTest(ClusterTestCase):
    @classmethod
    def setUpClass(cls):
        cls.port = free_port()
        cls.c = cls.class_cluster(nodes=3, routers=1, rf=1,
                                  router={"resp_listen": "127.0.0.1:%d" % cls.port})
        cls.c.start()
        cls.T = base_ts()
        # keys with RETENTION: the nodes drop their samples older than now -
        # retention, so those keys write from 10 minutes ahead (valkey's rule,
        # counted from the newest sample, is what the router's reads show)
        cls.TF = cls.T + HOUR + 10 * 60000

    @classmethod
    def tearDownClass(cls):
        cls.close_class_clusters()

    def r(self):
        c = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=60,
                        decode_responses=True)
        self.addCleanup(c.close)
        return c

    def cli(self, *args, resp3=False):
        argv = [REDIS_CLI, "--no-raw", "-p", str(self.port)] + (["-3"] if resp3 else []) + [str(a) for a in args]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        return out.stdout

    def ex(self, *args):
        return self.r().execute_command(*args)

    def err(self, *args):
        with self.assertRaises(redis.ResponseError) as cm:
            self.ex(*args)
        return str(cm.exception)

    @staticmethod
    def vals(rows):
        return [(int(t), float(v)) for t, v in rows]

    # ---- connection ---------------------------------------------------

    def test_connection_commands(self):
        r = self.r()
        self.assertTrue(r.ping())
        self.assertEqual(r.echo("hi there"), "hi there")
        self.assertEqual(r.execute_command("CLIENT", "SETNAME", "me"), "OK")
        self.assertEqual(r.execute_command("CLIENT", "GETNAME"), "me")
        self.assertIsInstance(r.execute_command("CLIENT", "ID"), int)
        self.assertTrue(r.execute_command("SELECT", 0))
        self.assertIn("out of range", self.err("SELECT", 1))
        n = r.command_count()
        self.assertGreaterEqual(n, 35)
        self.assertEqual(r.command()["ts.add"]["arity"], -4)
        docs = r.execute_command("COMMAND DOCS", "ts.add")
        self.assertIn("ts.add", str(docs))
        info = r.execute_command("INFO")
        self.assertIn("db0", info)
        self.assertEqual(info["tcp_port"], self.port)
        # RESP3: HELLO 3 answers a map (redis-cli -3 prints it as key value)
        out = self.cli("HELLO", "3", resp3=True)
        self.assertIn("proto", out)
        self.assertIn("3", out)
        self.assertIn("NOPROTO", self.cli("HELLO", "4"))
        # inline commands and QUIT
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
            s.sendall(b"PING\r\nECHO 'a b'\r\nQUIT\r\n")
            data = b""
            for _ in range(100):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            self.assertEqual(data, b"+PONG\r\n$3\r\na b\r\n+OK\r\n")

    def test_pipelining(self):
        r = self.r()
        T = self.T + 7 * HOUR // 10
        p = r.pipeline(transaction=False)
        for i in range(500):
            p.execute_command("TS.ADD", "pipe:1", T + i, i, "DUPLICATE_POLICY", "LAST")
        out = p.execute()
        self.assertEqual(out, [T + i for i in range(500)])
        rows = r.execute_command("TS.RANGE", "pipe:1", "-", "+")
        self.assertEqual(len(rows), 500)
        self.assertEqual(self.vals(rows[:2]), [(T, 0.0), (T + 1, 1.0)])

    def test_pipelined_write_batch(self):
        """One socket read of write commands becomes one write: replies in
        command order, a sample the pipeline refuses answers alone."""
        self.ex("TS.CREATE", "pb:1", "DUPLICATE_POLICY", "LAST")
        T = self.T + 8 * HOUR // 10
        far = int(time.time() * 1000) + 3 * 24 * HOUR  # past max_future (1d)
        cmds = [("TS.ADD", "pb:1", T, 1),
                ("TS.MADD", "pb:1", T + 1, 2, "pb:1", far, 3, "pb:1", T + 2, 4),
                ("TS.ADD", "pb:1", far + 1, 5),
                ("TS.ADD", "pb:1", T + 3, 6),
                ("TS.MADD", "pb:1", "bad", 1),
                ("TS.ADD", "pb:1", T + 4, 7)]
        data = b"".join(b"*%d\r\n" % len(c) + b"".join(
            b"$%d\r\n%s\r\n" % (len(str(a)), str(a).encode()) for a in c) for c in cmds)
        with socket.create_connection(("127.0.0.1", self.port), timeout=60) as s:
            s.sendall(data)
            got = read_replies(s, len(cmds))
        self.assertEqual(got[0], T)
        self.assertEqual(got[1][0], T + 1)
        self.assertRegex(got[1][1], r"^-ERR write failed: .*max_future")
        self.assertEqual(got[1][2], T + 2)
        self.assertRegex(got[2], r"^-ERR write failed: .*max_future")
        self.assertEqual(got[3], T + 3)
        self.assertEqual(got[4], ["-ERR TSDB: invalid sample"])
        self.assertEqual(got[5], T + 4)
        rows = self.ex("TS.RANGE", "pb:1", "-", "+")
        self.assertEqual(self.vals(rows), [(T, 1.0), (T + 1, 2.0), (T + 2, 4.0), (T + 3, 6.0),
                                           (T + 4, 7.0)])
        # many pipelined TS.MADDs over several keys: every reply, in order
        p = self.r().pipeline(transaction=False)
        for i in range(300):
            p.execute_command("TS.MADD", "pb:m%d" % (i % 7), T + i, i, "pb:n", T + i, -i)
        self.assertEqual(p.execute(), [[T + i, T + i] for i in range(300)])
        rows = self.ex("TS.RANGE", "pb:n", "-", "+")
        self.assertEqual(self.vals(rows), [(T + i, float(-i)) for i in range(300)])

    def resp_metric(self, name):
        st, _, body = http_request(self.c.router_url(0) + "/metrics")
        self.assertEqual(st, 200)
        return sum(v for (n, _), v in parse_metrics(body.decode()).items() if n == name)

    def test_pipelined_add_new_keys(self):
        """Pipelined TS.ADD to keys the router has not seen: their settings
        are read at once, new keys are created with the TS.ADD options, and
        a duplicate under BLOCK answers only its own command."""
        T = self.T + 9 * HOUR // 10
        self.ex("TS.CREATE", "pf:blk", "DUPLICATE_POLICY", "BLOCK")
        self.ex("TS.ADD", "pf:blk", T, 1)
        pre, bat = (self.resp_metric("strata_resp_meta_prefetches_total"),
                    self.resp_metric("strata_resp_write_batches_total"))
        p = self.r().pipeline(transaction=False)
        for i in range(200):
            p.execute_command("TS.ADD", "pf:%d" % (i % 40), T + i, i, "ON_DUPLICATE", "LAST",
                              "LABELS", "grp", "pf", "n", str(i % 40))
            if i == 100:
                p.execute_command("TS.ADD", "pf:blk", T, 2)
        out = p.execute(raise_on_error=False)
        self.assertEqual(len(out), 201)
        self.assertEqual(out[:101], [T + i for i in range(101)])
        self.assertIsInstance(out[101], redis.ResponseError)
        self.assertIn("DUPLICATE_POLICY is set to BLOCK", str(out[101]))
        self.assertEqual(out[102:], [T + i for i in range(101, 200)])
        self.assertGreater(self.resp_metric("strata_resp_meta_prefetches_total"), pre)
        self.assertGreater(self.resp_metric("strata_resp_write_batches_total"), bat)
        keys = self.ex("TS.QUERYINDEX", "grp=pf")
        self.assertEqual(sorted(keys), sorted("pf:%d" % i for i in range(40)))
        self.assertEqual(self.ex("TS.QUERYINDEX", "n=7"), ["pf:7"])
        rows = self.ex("TS.RANGE", "pf:7", "-", "+")
        self.assertEqual(self.vals(rows), [(T + i, float(i)) for i in range(7, 200, 40)])
        self.assertEqual(self.vals(self.ex("TS.RANGE", "pf:blk", "-", "+")), [(T, 1.0)])

    # ---- create / alter / add ---------------------------------------------

    def test_create_alter_info(self):
        r = self.r()
        self.assertEqual(r.execute_command("TS.CREATE", "ca:1", "RETENTION", 60000, "CHUNK_SIZE",
                                           128, "DUPLICATE_POLICY", "MAX", "LABELS", "a", "1",
                                           "b", "x"), "OK")
        self.assertIn("already exists", self.err("TS.CREATE", "ca:1"))
        r.execute_command("TS.ADD", "ca:1", self.TF, 5)
        info = r.execute_command("TS.INFO", "ca:1")
        d = dict(zip(info[::2], info[1::2]))
        self.assertEqual(d["retentionTime"], 60000)
        self.assertEqual(d["chunkSize"], 128)
        self.assertEqual(d["duplicatePolicy"], "max")
        self.assertEqual(d["labels"], [["a", "1"], ["b", "x"]])
        self.assertEqual(d["totalSamples"], 1)
        self.assertEqual(d["firstTimestamp"], self.TF)
        # ALTER: new labels, same series (its samples stay)
        self.assertEqual(r.execute_command("TS.ALTER", "ca:1", "LABELS", "a", "2"), "OK")
        self.assertEqual(r.execute_command("TS.QUERYINDEX", "a=1"), [])
        self.assertEqual(r.execute_command("TS.QUERYINDEX", "a=2"), ["ca:1"])
        self.assertEqual(self.vals(r.execute_command("TS.RANGE", "ca:1", "-", "+")),
                         [(self.TF, 5.0)])
        self.assertIn("does not exist", self.err("TS.ALTER", "nokey:1", "RETENTION", 5))
        # the settings live in the cluster: a restarted router knows them
        c = self.c
        c.routers[0].terminate()
        c.start_router(0)
        r2 = self.r()
        info = r2.execute_command("TS.INFO", "ca:1")
        d = dict(zip(info[::2], info[1::2]))
        self.assertEqual(d["labels"], [["a", "2"]])
        self.assertEqual(d["duplicatePolicy"], "max")
        self.assertEqual(d["retentionTime"], 60000)

    def test_duplicate_policies(self):
        r = self.r()
        T = self.T + 1000
        expect = {"block": None, "first": 1.0, "last": 4.0, "min": 1.0, "max": 4.0, "sum": 5.0}
        for pol, want in expect.items():
            key = "dup:%s" % pol
            r.execute_command("TS.CREATE", key, "DUPLICATE_POLICY", pol)
            self.assertEqual(r.execute_command("TS.ADD", key, T, 1), T)
            if want is None:
                self.assertIn("BLOCK", self.err("TS.ADD", key, T, 4))
                want = 1.0
            else:
                self.assertEqual(r.execute_command("TS.ADD", key, T, 4), T)
            self.assertEqual(self.vals(r.execute_command("TS.RANGE", key, "-", "+")),
                             [(T, want)], pol)
        # ON_DUPLICATE overrides the key's policy for one TS.ADD
        self.assertEqual(r.execute_command("TS.ADD", "dup:block", T, 7, "ON_DUPLICATE", "SUM"), T)
        self.assertEqual(self.vals(r.execute_command("TS.RANGE", "dup:block", "-", "+")),
                         [(T, 8.0)])
        # a key made by TS.ADD gets the options given with it
        r.execute_command("TS.ADD", "dup:auto", T, 1, "DUPLICATE_POLICY", "LAST", "LABELS",
                          "kind", "auto")
        r.execute_command("TS.ADD", "dup:auto", T, 2)
        self.assertEqual(self.vals(r.execute_command("TS.RANGE", "dup:auto", "-", "+")),
                         [(T, 2.0)])
        self.assertEqual(r.execute_command("TS.QUERYINDEX", "kind=auto"), ["dup:auto"])

    def test_ignore_and_retention(self):
        r = self.r()
        T = self.T + 2000
        r.execute_command("TS.CREATE", "ign:1", "DUPLICATE_POLICY", "LAST", "IGNORE", 1000, 0.5)
        self.assertEqual(r.execute_command("TS.ADD", "ign:1", T, 1.0), T)
        # within 1000 ms and 0.5 of the newest sample: ignored
        self.assertEqual(r.execute_command("TS.ADD", "ign:1", T + 500, 1.2), T)
        # too far in value / in time: written
        self.assertEqual(r.execute_command("TS.ADD", "ign:1", T + 600, 2.0), T + 600)
        self.assertEqual(r.execute_command("TS.ADD", "ign:1", T + 5000, 2.1), T + 5000)
        self.assertEqual(self.vals(r.execute_command("TS.RANGE", "ign:1", "-", "+")),
                         [(T, 1.0), (T + 600, 2.0), (T + 5000, 2.1)])
        # RETENTION 5000: samples older than the newest minus 5 s are gone
        r.execute_command("TS.CREATE", "ret:1", "RETENTION", 5000)
        T = self.TF
        for dt, v in ((0, 1), (3000, 2), (6000, 3), (10000, 4)):
            r.execute_command("TS.ADD", "ret:1", T + dt, v)
        self.assertEqual(self.vals(r.execute_command("TS.RANGE", "ret:1", "-", "+")),
                         [(T + 6000, 3.0), (T + 10000, 4.0)])
        self.assertEqual(self.vals(r.execute_command("TS.RANGE", "ret:1", T, T + 7000)),
                         [(T + 6000, 3.0)])

    # ---- ranges and aggregation --------------------------------------------

    def load_agg(self, key):
        r = self.r()
        T = self.T
        r.execute_command("TS.CREATE", key)
        pts = [(0, 1), (1000, 2), (2000, 3), (3000, 6), (25000, 10), (27000, 20), (41000, 5)]
        r.execute_command("TS.MADD", *[x for dt, v in pts for x in (key, T + dt, v)])
        return r, T

    def test_aggregations(self):
        r, T = self.load_agg("agg:1")
        b1 = [1, 2, 3, 6]
        b2 = [10, 20]
        b3 = [5]

        def var(xs, s):
            m = sum(xs) / len(xs)
            q = sum((x - m) ** 2 for x in xs)
            return q / (len(xs) - 1 if s else len(xs)) if not (s and len(xs) < 2) else 0.0

        expect = {
            "avg": [3.0, 15.0, 5.0], "sum": [12, 30, 5], "min": [1, 10, 5], "max": [6, 20, 5],
            "range": [5, 10, 0], "count": [4, 2, 1], "first": [1, 10, 5], "last": [6, 20, 5],
            "var.p": [var(b, 0) for b in (b1, b2, b3)],
            "var.s": [var(b, 1) for b in (b1, b2, b3)],
            "std.p": [math.sqrt(var(b, 0)) for b in (b1, b2, b3)],
            "std.s": [math.sqrt(var(b, 1)) for b in (b1, b2, b3)],
        }
        for agg, want in expect.items():
            rows = self.vals(r.execute_command("TS.RANGE", "agg:1", "-", "+", "AGGREGATION", agg,
                                               10000))
            self.assertEqual([t for t, _ in rows], [T, T + 20000, T + 40000], agg)
            for (t, got), w in zip(rows, want):
                self.assertAlmostEqual(got, float(w), places=9, msg=agg)
        # twa: each value holds until the next sample, over the bucket
        rows = self.vals(r.execute_command("TS.RANGE", "agg:1", T, T + 9999, "AGGREGATION", "twa",
                                           10000))
        self.assertAlmostEqual(rows[0][1], (1 * 1000 + 2 * 1000 + 3 * 1000 + 6 * 7000) / 10000)
        # EMPTY: the bucket between reports 0 for sum and count, NaN for max
        rows = r.execute_command("TS.RANGE", "agg:1", "-", "+", "AGGREGATION", "sum", 10000,
                                 "EMPTY")
        self.assertEqual(self.vals(rows), [(T, 12.0), (T + 10000, 0.0), (T + 20000, 30.0),
                                           (T + 30000, 0.0), (T + 40000, 5.0)])
        rows = r.execute_command("TS.RANGE", "agg:1", "-", "+", "AGGREGATION", "max", 10000,
                                 "EMPTY")
        self.assertTrue(math.isnan(float(rows[1][1])))
        # BUCKETTIMESTAMP end / mid
        rows = self.vals(r.execute_command("TS.RANGE", "agg:1", "-", "+", "AGGREGATION", "count",
                                           10000, "BUCKETTIMESTAMP", "end"))
        self.assertEqual(rows, [(T + 10000, 4.0), (T + 30000, 2.0), (T + 50000, 1.0)])
        rows = self.vals(r.execute_command("TS.RANGE", "agg:1", "-", "+", "AGGREGATION", "count",
                                           10000, "BUCKETTIMESTAMP", "mid"))
        self.assertEqual([t for t, _ in rows], [T + 5000, T + 25000, T + 45000])
        # ALIGN start: buckets start at the range's start
        rows = self.vals(r.execute_command("TS.RANGE", "agg:1", T + 1000, "+", "ALIGN", "start",
                                           "AGGREGATION", "max", 10000))
        self.assertEqual(rows, [(T + 1000, 6.0), (T + 21000, 20.0), (T + 41000, 5.0)])
        rows = self.vals(r.execute_command("TS.RANGE", "agg:1", "-", "+", "ALIGN", 5000,
                                           "AGGREGATION", "sum", 10000))
        self.assertEqual(rows, [(T - 5000, 12.0), (T + 25000, 30.0), (T + 35000, 5.0)])

    def test_range_filters(self):
        r, T = self.load_agg("rng:1")
        rows = self.vals(r.execute_command("TS.RANGE", "rng:1", "-", "+", "FILTER_BY_VALUE", 2,
                                           10, "FILTER_BY_TS", T + 1000, T + 3000, T + 25000,
                                           T + 41000))
        self.assertEqual(rows, [(T + 1000, 2.0), (T + 3000, 6.0), (T + 25000, 10.0),
                                (T + 41000, 5.0)])
        rows = self.vals(r.execute_command("TS.REVRANGE", "rng:1", "-", "+", "COUNT", 3))
        self.assertEqual(rows, [(T + 41000, 5.0), (T + 27000, 20.0), (T + 25000, 10.0)])
        rows = self.vals(r.execute_command("TS.RANGE", "rng:1", T + 1000, T + 3000))
        self.assertEqual(rows, [(T + 1000, 2.0), (T + 2000, 3.0), (T + 3000, 6.0)])
        rows = self.vals(r.execute_command("TS.REVRANGE", "rng:1", "-", "+", "AGGREGATION",
                                           "sum", 10000, "COUNT", 1))
        self.assertEqual(rows, [(T + 40000, 5.0)])
        self.assertEqual(self.vals([r.execute_command("TS.GET", "rng:1")]), [(T + 41000, 5.0)])
        # RESP3: values are doubles (redis-cli -3 prints them as (double))
        out = self.cli("TS.GET", "rng:1", resp3=True)
        self.assertIn("(double) 5", out)
        # RESP2 spells values as strings: shortest round trip
        r.execute_command("TS.ADD", "fmt:1", T, 0.1)
        r.execute_command("TS.ADD", "fmt:1", T + 1, 1e21)
        raw = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=60)
        self.addCleanup(raw.close)
        got = raw.execute_command("TS.RANGE", "fmt:1", "-", "+")
        self.assertEqual([v for _, v in got], [b"0.1", b"1000000000000000000000"])

    # ---- many keys ---------------------------------------------------------

    def test_mrange_groupby_across_nodes(self):
        r = self.r()
        T = self.T + 3000
        keys = []
        for i in range(8):
            k = "mr:%d" % i
            keys.append(k)
            r.execute_command("TS.CREATE", k, "LABELS", "app", "mr", "dc", "dc%d" % (i % 2),
                              "idx", str(i))
            r.execute_command("TS.MADD", k, T, i, k, T + 1000, 10 * i)
        # the keys live on more than one node (read each node directly)
        holders = set()
        for n in range(3):
            st, _, body = http_request(self.c.node_http_url(n) + "/api/v1/export?" +
                                       urllib.parse.urlencode({"match[]": '{__name__=~"mr:.*"}',
                                                               "start": 0}))
            if st == 200 and parse_export(body):
                holders.add(n)
        self.assertGreaterEqual(len(holders), 2)
        out = r.execute_command("TS.MRANGE", "-", "+", "WITHLABELS", "FILTER", "app=mr")
        self.assertEqual([row[0] for row in out], keys)
        self.assertIn(["dc", "dc1"], out[1][1])
        self.assertEqual(self.vals(out[3][2]), [(T, 3.0), (T + 1000, 30.0)])
        out = r.execute_command("TS.MRANGE", "-", "+", "FILTER", "app=mr", "GROUPBY", "dc",
                                "REDUCE", "sum")
        self.assertEqual([row[0] for row in out], ["dc=dc0", "dc=dc1"])
        self.assertIn(["__reducer__", "sum"], out[0][1])
        self.assertIn(["__source__", "mr:0,mr:2,mr:4,mr:6"], out[0][1])
        self.assertEqual(self.vals(out[0][2]), [(T, 12.0), (T + 1000, 120.0)])
        self.assertEqual(self.vals(out[1][2]), [(T, 16.0), (T + 1000, 160.0)])
        out = r.execute_command("TS.MRANGE", "-", "+", "FILTER", "app=mr", "GROUPBY", "dc",
                                "REDUCE", "max")
        self.assertEqual(self.vals(out[1][2]), [(T, 7.0), (T + 1000, 70.0)])
        out = r.execute_command("TS.MREVRANGE", "-", "+", "AGGREGATION", "sum", 10000,
                                "FILTER", "app=mr", "idx=(1,2)")
        self.assertEqual([row[0] for row in out], ["mr:1", "mr:2"])
        self.assertEqual(self.vals(out[1][2]), [(T - T % 10000, 22.0)])
        # every FILTER form
        q = lambda *f: r.execute_command("TS.QUERYINDEX", *f)
        self.assertEqual(q("app=mr", "idx!=3", "dc=dc1"), ["mr:1", "mr:5", "mr:7"])
        self.assertEqual(q("app=mr", "idx=(0,7)"), ["mr:0", "mr:7"])
        self.assertEqual(q("app=mr", "idx!=(0,1,2,3,4,5)"), ["mr:6", "mr:7"])
        self.assertEqual(q("app=mr", "nolabel="), keys)
        self.assertEqual(q("app=mr", "idx!="), keys)
        self.assertEqual(q("app=mr", "idx="), [])
        self.assertEqual(r.execute_command("TS.CARD", "FILTER", "app=mr"), 8)
        self.assertEqual(r.execute_command("TS.LABELVALUES", "dc", "FILTER", "app=mr"),
                         ["dc0", "dc1"])
        self.assertEqual(r.execute_command("TS.LABELNAMES", "FILTER", "app=mr"),
                         ["app", "dc", "idx"])
        # MGET: newest sample, labels as asked
        out = r.execute_command("TS.MGET", "SELECTED_LABELS", "dc", "nope", "FILTER",
                                "app=mr", "idx=(2,3)")
        self.assertEqual(out[0][0], "mr:2")
        self.assertEqual(out[0][1], [["dc", "dc0"], ["nope", None]])
        self.assertEqual(self.vals([out[1][2]]), [(T + 1000, 30.0)])
        out = r.execute_command("TS.MGET", "WITHLABELS", "FILTER", "idx=4")
        self.assertEqual(out[0][1], [["app", "mr"], ["dc", "dc0"], ["idx", "4"]])
        # RESP3: a map keyed by series
        out = self.cli("TS.MGET", "FILTER", "idx=4", resp3=True)
        self.assertIn('"mr:4" =>', out)

    def test_join_and_incr(self):
        r = self.r()
        T = self.T + 4000
        r.execute_command("TS.MADD", "jl", T, 1, "jl", T + 1000, 2, "jl", T + 2000, 3,
                          "jr", T + 1000, 20, "jr", T + 3000, 40)
        j = lambda *a: r.execute_command("TS.JOIN", "jl", "jr", "-", "+", *a)

        def rows(x):
            return [[int(a[0])] + [None if v is None else float(v) for v in a[1:]] for a in x]

        self.assertEqual(rows(j()), [[T + 1000, 2.0, 20.0]])
        self.assertEqual(rows(j("LEFT")), [[T, 1.0, None], [T + 1000, 2.0, 20.0],
                                           [T + 2000, 3.0, None]])
        self.assertEqual(rows(j("LEFT", "EXCLUSIVE")), [[T, 1.0, None], [T + 2000, 3.0, None]])
        self.assertEqual(rows(j("RIGHT")), [[T + 1000, 2.0, 20.0], [T + 3000, None, 40.0]])
        self.assertEqual(rows(j("FULL")), [[T, 1.0, None], [T + 1000, 2.0, 20.0],
                                           [T + 2000, 3.0, None], [T + 3000, None, 40.0]])
        self.assertEqual(rows(j("ANTI")), [[T, 1.0], [T + 2000, 3.0]])
        self.assertEqual(rows(j("SEMI")), [[T + 1000, 2.0]])
        self.assertEqual(rows(j("REDUCE", "add")), [[T + 1000, 22.0]])
        self.assertEqual(rows(j("ASOF", "PREVIOUS", 1500)),
                         [[T, 1.0, None, None], [T + 1000, 2.0, T + 1000, 20.0],
                          [T + 2000, 3.0, T + 1000, 20.0]])
        self.assertEqual(rows(j("ASOF", "NEXT", 1500, "ALLOW_EXACT_MATCH", "false")),
                         [[T, 1.0, T + 1000, 20.0], [T + 1000, 2.0, None, None],
                          [T + 2000, 3.0, T + 3000, 40.0]])
        self.assertEqual(rows(j("FULL", "COUNT", 2)), [[T, 1.0, None], [T + 1000, 2.0, 20.0]])
        # INCRBY / DECRBY: the newest value plus the addend
        t0 = int(time.time() * 1000) - 60000
        self.assertEqual(r.execute_command("TS.INCRBY", "inc:1", 5, "TIMESTAMP", t0), t0)
        self.assertEqual(r.execute_command("TS.INCRBY", "inc:1", 2.5, "TIMESTAMP", t0 + 1), t0 + 1)
        self.assertEqual(r.execute_command("TS.DECRBY", "inc:1", 1, "TIMESTAMP", t0 + 2), t0 + 2)
        self.assertEqual(self.vals([r.execute_command("TS.GET", "inc:1")]), [(t0 + 2, 6.5)])
        self.assertIn("maximum existing timestamp",
                      self.err("TS.INCRBY", "inc:1", 1, "TIMESTAMP", t0))
        # concurrent INCRBYs on one key never lose an increment
        ps = [self.r().pipeline(transaction=False) for _ in range(4)]
        for p in ps:
            for _ in range(25):
                p.execute_command("TS.INCRBY", "inc:2", 1)
        import threading
        th = [threading.Thread(target=p.execute) for p in ps]
        for t in th:
            t.start()
        for t in th:
            t.join(120)
        self.assertEqual(float(r.execute_command("TS.GET", "inc:2")[1]), 100.0)

    # ---- three doors -------------------------------------------------------------

    def test_three_doors(self):
        r = self.r()
        T = self.T + 5000
        r.execute_command("TS.ADD", "door_ts", T, 42, "LABELS", "door", "resp")
        st, _, body = http_request(self.c.router_url(0) + "/api/v1/export?" +
                                   urllib.parse.urlencode({"match[]": '{__name__="door_ts"}',
                                                           "start": 0}))
        self.assertEqual(st, 200)
        ex = parse_export(body)
        self.assertEqual(ex[0]["values"], [42])
        self.assertEqual(ex[0]["timestamps"], [T])
        st, _, body = http_request(self.c.router_url(0) + "/api/v1/query?" +
                                   urllib.parse.urlencode({"query": "door_ts", "time": T / 1000}))
        self.assertEqual(st, 200)
        self.assertIn(b'"42"', body)
        # line protocol: reachable by its series key and by FILTER
        st, _ = self.c.write(["lpm,host=h1 usage=1.5 %d" % (T * 1000000),
                              "lpm,host=h2 usage=2.5 %d" % (T * 1000000)])
        self.assertEqual(st, 204)
        rows = r.execute_command("TS.RANGE", 'lpm_usage{host="h1"}', "-", "+")
        self.assertEqual(self.vals(rows), [(T, 1.5)])
        out = r.execute_command("TS.MRANGE", "-", "+", "WITHLABELS", "FILTER",
                                "__name__=lpm_usage")
        self.assertEqual([row[0] for row in out],
                         ['lpm_usage{"host"="h1"}', 'lpm_usage{"host"="h2"}'])
        self.assertIn(["host", "h2"], out[1][1])
        self.assertEqual(r.execute_command("TS.QUERYINDEX", "host=h2"),
                         ['lpm_usage{"host"="h2"}'])
        # TS.ADD to a series key writes that exact series
        r.execute_command("TS.ADD", 'lpm_usage{host="h1"}', T + 1000, 3.5)
        st, _, body = http_request(self.c.router_url(0) + "/api/v1/export?" +
                                   urllib.parse.urlencode({"match[]": 'lpm_usage{host="h1"}',
                                                           "start": 0}))
        self.assertEqual(parse_export(body)[0]["values"], [1.5, 3.5])
        self.assertEqual(r.execute_command("EXISTS", "door_ts", "nokey:x",
                                           'lpm_usage{host="h2"}'), 2)
        self.assertEqual(r.execute_command("TYPE", "door_ts"), "TSDB-TYPE")
        self.assertEqual(r.execute_command("TYPE", "nokey:x"), "none")
        self.assertIn("door_ts", r.execute_command("KEYS", "door*"))
        cur, keys = r.execute_command("SCAN", 0, "MATCH", "door*")
        self.assertEqual((int(cur), keys), (0, ["door_ts"]))

    def test_many_keys(self):
        # more keys than one selector can carry: the reads are cut in several
        r = self.r()
        T = self.T + 6000
        pad = "x" * 40
        keys = ["mk:%s:%04d" % (pad, i) for i in range(1500)]
        p = r.pipeline(transaction=False)
        for k in keys:
            p.execute_command("TS.ADD", k, T, 1, "LABELS", "grp", "many")
        self.assertEqual(p.execute(), [T] * len(keys))
        self.assertEqual(r.execute_command("TS.QUERYINDEX", "grp=many"), keys)
        out = r.execute_command("TS.MRANGE", "-", "+", "FILTER", "grp=many", "GROUPBY", "grp",
                                "REDUCE", "count")
        self.assertEqual(self.vals(out[0][2]), [(T, 1500.0)])

    # ---- errors and limits ---------------------------------------------------------

    def test_del_and_ts_del(self):
        """TS.DEL removes a range (the count of samples it removed), a later
        write into that range is kept, DEL removes the key with its
        settings (TS.RANGE then says the key does not exist)."""
        T = self.T
        r = self.r()
        r.execute_command("TS.CREATE", "del:1", "LABELS", "kind", "del")
        for i in range(10):
            r.execute_command("TS.ADD", "del:1", T + i * 1000, i)
        self.assertEqual(r.execute_command("TS.DEL", "del:1", T + 2000, T + 5000), 4)
        got = self.vals(r.execute_command("TS.RANGE", "del:1", "-", "+"))
        self.assertEqual(got, [(T + i * 1000, float(i)) for i in (0, 1, 6, 7, 8, 9)])
        # a write after the delete, into the deleted range, is kept
        r.execute_command("TS.ADD", "del:1", T + 3000, 33, "ON_DUPLICATE", "LAST")
        got = self.vals(r.execute_command("TS.RANGE", "del:1", T + 2000, T + 5000))
        self.assertEqual(got, [(T + 3000, 33.0)])
        # the data series is gone from PromQL's view too
        q = urllib.parse.urlencode({"match[]": '{__name__="del:1"}', "start": str((T - 1000) / 1000),
                                    "end": str((T + 20000) / 1000)})
        st, _, body = http_request(self.c.router_url(0) + "/api/v1/export?" + q)
        self.assertEqual(st, 200)
        ts = sorted(t for s in parse_export(body) for t in s["timestamps"])
        self.assertEqual(ts, [T, T + 1000, T + 3000, T + 6000, T + 7000, T + 8000, T + 9000])
        # DEL: the key and its settings
        self.assertEqual(r.execute_command("DEL", "del:1", "del:none"), 1)
        self.assertIn("does not exist", self.err("TS.RANGE", "del:1", "-", "+"))
        self.assertEqual(r.execute_command("TS.QUERYINDEX", "kind=del"), [])

    def test_errors(self):
        e = self.err
        self.assertIn("wrong number of arguments for 'ts.add'", e("TS.ADD", "k"))
        self.assertIn("unknown command", e("NOPE"))
        self.assertIn("invalid timestamp", e("TS.ADD", "err:1", "abc", 1))
        self.assertIn("invalid value", e("TS.ADD", "err:1", 1, "abc"))
        self.assertIn("invalid duplicate policy", e("TS.CREATE", "err:1", "DUPLICATE_POLICY", "x"))
        self.assertIn("invalid retention", e("TS.CREATE", "err:1", "RETENTION", -1))
        self.assertIn("wrong number of LABELS", e("TS.CREATE", "err:1", "LABELS", "a"))
        self.assertIn("reserved", e("TS.CREATE", "err:1", "LABELS", "__ts_key__", "x"))
        self.assertIn("unknown aggregation", e("TS.RANGE", "err:1", "-", "+", "AGGREGATION",
                                               "median", 10))
        self.assertIn("bucketDuration", e("TS.RANGE", "err:1", "-", "+", "AGGREGATION", "sum", 0))
        self.assertIn("does not exist", e("TS.RANGE", "nokey:2", "-", "+"))
        self.assertIn("does not exist", e("TS.GET", "nokey:2"))
        self.assertIn("at least one matcher", e("TS.MRANGE", "-", "+", "FILTER", "a!=b"))
        self.assertIn("failed parsing labels", e("TS.MGET", "FILTER", "nonsense"))
        self.assertIn("missing FILTER", e("TS.MRANGE", "-", "+", "COUNT", 3))
        self.assertIn("WITHLABELS", e("TS.MGET", "WITHLABELS", "SELECTED_LABELS", "a",
                                      "FILTER", "a=b"))
        self.assertIn("invalid fromTimestamp", e("TS.DEL", "k", "x", "+"))
        self.assertIn("does not exist", e("TS.DEL", "nokey:3", "-", "+"))
        # compaction rules (test_rules.py covers them): keys that do not exist
        self.assertIn("the key does not exist",
                      e("TS.CREATERULE", "nokey:4", "nokey:5", "AGGREGATION", "avg", 1000))
        self.assertIn("compaction rule does not exist", e("TS.DELETERULE", "nokey:4", "nokey:5"))
        self.assertIn("FLUSHALL is disabled", e("FLUSHALL"))
        self.assertIn("called without any password configured", e("AUTH", "x"))
        # protocol limits: an error reply, then the connection closes
        for bad in (b"*200000\r\n", b"*1\r\n$2000000\r\n", b"*1\r\n$x\r\n"):
            with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
                s.sendall(bad)
                data = b""
                for _ in range(100):
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                self.assertTrue(data.startswith(b"-ERR Protocol error"), data)
        # the counters
        st, _, body = http_request(self.c.router_url(0) + "/metrics")
        m = parse_metrics(body.decode())
        self.assertGreater(m[("strata_resp_errors_total", frozenset())], 0)
        self.assertGreater(m[("strata_resp_protocol_errors_total", frozenset())], 0)
        self.assertGreater(m[("strata_resp_commands_total", frozenset({("command", "ts.add")}))],
                           0)


class RespDegradedTest(ClusterTestCase):
    vals = staticmethod(RespTest.vals)

    def test_unreachable_shards_named(self):
        port = free_port()
        c = self.cluster(nodes=3, routers=1, rf=1,
                         router={"resp_listen": "127.0.0.1:%d" % port})
        c.start()
        r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=120, decode_responses=True)
        self.addCleanup(r.close)
        T = base_ts()
        keys = ["deg:%d" % i for i in range(12)]
        for k in keys:
            r.execute_command("TS.ADD", k, T, 1, "LABELS", "g", "deg")
        c.kill9(2)
        # reads: the error names the shards no replica could answer
        with self.assertRaises(redis.ResponseError) as cm:
            r.execute_command("TS.MRANGE", "-", "+", "FILTER", "g=deg")
        self.assertIn("shard", str(cm.exception))
        # one key: it fails (naming the shards) when its series or its
        # settings are on the dead node, and works when both are elsewhere
        failed = ok = 0
        for k in keys:
            try:
                r.execute_command("TS.ADD", k, T + 1, 2)
                self.assertEqual(self.vals(r.execute_command("TS.RANGE", k, "-", "+")),
                                 [(T, 1.0), (T + 1, 2.0)])
                ok += 1
            except redis.ResponseError as e:
                self.assertRegex(str(e), r"(read|write) failed: .*shard")
                failed += 1
        self.assertGreater(failed, 0)
        self.assertGreater(ok, 0)
        # a write some shards could not take answers TRYAGAIN (retry unchanged)
        args = [x for k in keys for x in (k, T + 2, 3)]
        data = b"*%d\r\n" % (len(args) + 1) + b"".join(
            b"$%d\r\n%s\r\n" % (len(str(a)), str(a).encode()) for a in ["TS.MADD"] + args)
        with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
            s.sendall(data)
            got = read_replies(s, 1)[0]
        self.assertEqual(len(got), len(keys))
        for e in got:
            self.assertRegex(e, r"^-TRYAGAIN write failed: .*shard")


if __name__ == "__main__":
    unittest.main()
