"""Users, tokens, roles and confinement on the router and node HTTP doors
(issue 16).

One cluster (2 nodes, 1 router) with [security] users_file, its users made
by `strata user add`:
- every role (none, a bad token, read, write, admin, a confined writer)
  against every endpoint family (write, read, query, cluster, admin, open
  probes, /metrics, node export): 401 / 403 / allowed, table-driven;
- 401 bodies and both WWW-Authenticate headers; 403 naming the role;
- Basic with a password, InfluxDB Token and u=/p=, a token as a Basic
  password;
- a confined user reads only its series (export, series, label values,
  query with and without pushdown, federate) and cannot write others
  (403 when every line is outside, 400 partial write when some are);
- SIGHUP reloads the users with a keep-alive client connected (same
  connection before and after, a new user's token accepted, a removed one
  refused);
- failures counted in strata_auth_failures_total{reason} and slowed per
  client address (strata_auth_delayed_total); each test sends from its own
  127.0.0.x address so one test's failures never slow another;
- the CLI with --token, STRATA_TOKEN and --user/STRATA_PASSWORD.
"""

import base64
import http.client
import json
import os
import signal
import subprocess
import time
import unittest
import urllib.parse

from harness import LOOPBACK, ClusterTestCase, binary, parse_json, parse_metrics, user_add

T0 = int(time.time() * 1000) - 60_000
POLL_S = 30.0


class Client:
    """A keep-alive HTTP client bound to its own loopback source address."""

    def __init__(self, port, source):
        self.port, self.source = port, source
        self.conn = None

    def request(self, method, path, body=None, headers=None, params=None):
        if params:
            path += "?" + urllib.parse.urlencode(params)
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=60,
                                                       source_address=(self.source, 0))
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                return resp.status, resp.getheaders(), data
            except (ConnectionError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def bearer(tok):
    return {"Authorization": "Bearer " + tok}


def basic(user, pw):
    return {"Authorization": "Basic " + base64.b64encode(
        ("%s:%s" % (user, pw)).encode()).decode()}


class AuthTest(ClusterTestCase):
    @classmethod
    def setUpClass(cls):
        cls.cli = binary("cli")
        c = cls.class_cluster(nodes=2, routers=1, shards=4, rf=1)
        cls.users = os.path.join(c.dir, "users")
        cls.tok = {}
        cls.tok["admin"] = cls.user_add("admin", "admin")
        cls.tok["writer"] = cls.user_add("writer", "write")
        cls.tok["reader"] = cls.user_add("reader", "read", password="reader-pw")
        cls.tok["conf"] = cls.user_add("conf", "write", selector='{team="a"}')
        c.security_kv = {"users_file": cls.users}
        cls.c = c.start()
        cls.src = 10
        lines = []
        for team in ("a", "b"):
            for i in range(3):
                lines.append("cpu,team=%s,host=h%d usage=%d %d" % (team, i, i + 1,
                                                                    (T0 + i) * 1_000_000))
        st, body = c.write(lines, headers=bearer(cls.tok["admin"]))
        assert st == 204, (st, body)

    @classmethod
    def tearDownClass(cls):
        cls.close_class_clusters()

    @classmethod
    def user_add(cls, name, role, selector=None, password=None):
        return user_add(cls.users, name, role, selector, password)

    def client(self, port=None):
        type(self).src += 1
        cl = Client(port or self.c.router_port[0], "127.0.0.%d" % type(self).src)
        self.addCleanup(cl.close)
        return cl

    def metrics(self, cl):
        st, _, data = cl.request("GET", "/metrics", headers=bearer(self.tok["admin"]))
        self.assertEqual(st, 200)
        return parse_metrics(data)

    def export(self, cl, tok, match, port=None):
        st, _, data = cl.request("GET", "/api/v1/export", headers=bearer(tok),
                                 params={"match[]": match})
        self.assertEqual(st, 200, data)
        return [json.loads(l) for l in data.decode().splitlines() if l.strip()]

    # ------------------------------------------------------------------ table

    def test_roles_table(self):
        """Every role against every endpoint family."""
        w = ("POST", "/write", "cpu,team=a,host=t usage=1 %d" % (T0 * 1_000_000))
        fam = {
            "write": w,
            "remote_write": ("POST", "/api/v1/write", b""),
            "import": ("POST", "/api/v1/import", b""),
            "export": ("GET", "/api/v1/export?match[]=cpu", None),
            "query": ("GET", "/api/v1/query?query=cpu&time=%d" % (T0 // 1000), None),
            "series": ("GET", "/api/v1/series?match[]=cpu", None),
            "labels": ("GET", "/api/v1/labels", None),
            "federate": ("GET", "/federate?match[]=cpu", None),
            "cluster": ("GET", "/cluster", None),
            "metrics": ("GET", "/metrics", None),
            "admin": ("GET", "/api/v1/admin/users", None),
            "health": ("GET", "/health", None),
            "ready": ("GET", "/ready", None),
            "ping": ("GET", "/ping", None),
        }
        need = {"write": "write", "remote_write": "write", "import": "write",
                "export": "read", "query": "read", "series": "read", "labels": "read",
                "federate": "read", "cluster": "read", "metrics": "read", "admin": "admin",
                "health": None, "ready": None, "ping": None}
        rank = {None: 0, "read": 1, "write": 2, "admin": 3}
        roles = {"none": (None, None), "bad": ("st_" + "0" * 64, None),
                 "reader": (self.tok["reader"], "read"), "writer": (self.tok["writer"], "write"),
                 "admin": (self.tok["admin"], "admin")}
        cl = self.client()
        for rname, (tok, role) in roles.items():
            for f, (method, path, body) in fam.items():
                with self.subTest(role=rname, endpoint=f):
                    st, hdrs, data = cl.request(method, path, body=body,
                                                headers=bearer(tok) if tok else {})
                    if need[f] is None:
                        self.assertLess(st, 400, data)
                    elif tok is None or role is None:
                        self.assertEqual(st, 401, data)
                    elif rank[role] < rank[need[f]]:
                        self.assertEqual(st, 403, data)
                        self.assertIn("needs the %s role" % need[f], parse_json(data)["error"])
                    else:
                        self.assertNotIn(st, (401, 403), data)
        # the confined writer: its own series yes, unconfinable endpoints no
        for f, want in (("write", 204), ("export", 200), ("query", 200), ("series", 200),
                        ("labels", 200), ("federate", 200), ("cluster", 403), ("admin", 403),
                        ("metrics", 403), ("health", 200)):
            method, path, body = fam[f]
            with self.subTest(role="conf", endpoint=f):
                st, _, data = cl.request(method, path, body=body,
                                         headers=bearer(self.tok["conf"]))
                self.assertEqual(st, want, data)

    def test_401_and_403_answers(self):
        cl = self.client()
        st, hdrs, data = cl.request("GET", "/api/v1/export?match[]=cpu")
        self.assertEqual(st, 401)
        www = [v for k, v in hdrs if k.lower() == "www-authenticate"]
        self.assertIn('Basic realm="strata"', www)
        self.assertIn('Bearer realm="strata"', www)
        doc = parse_json(data)
        self.assertEqual(doc["status"], "error")
        self.assertEqual(doc["errorType"], "unauthorized")
        self.assertIn("authentication required", doc["error"])
        st, _, data = cl.request("GET", "/cluster", headers={"Authorization": "Digest x"})
        self.assertEqual(st, 401)
        self.assertIn("unsupported Authorization scheme", parse_json(data)["error"])
        st, _, data = cl.request("GET", "/cluster", headers=bearer("st_nope"))
        self.assertEqual((st, parse_json(data)["error"]), (401, "invalid token"))
        st, _, data = cl.request("POST", "/write", body=b"x v=1",
                                 headers=bearer(self.tok["reader"]))
        self.assertEqual(st, 403)
        doc = parse_json(data)
        self.assertEqual(doc["errorType"], "forbidden")
        self.assertEqual(doc["error"], "user 'reader' has role read; /write needs the write role")
        # the fingerprint is not on any unauthenticated endpoint
        for path in ("/health", "/ready", "/ping"):
            st, _, data = cl.request("GET", path)
            self.assertNotIn(b"fingerprint", data)
        st, _, data = cl.request("GET", "/cluster", headers=bearer(self.tok["reader"]))
        self.assertEqual(st, 200)
        self.assertIn("fingerprint", parse_json(data))
        # admin: the users, never a hash
        st, _, data = cl.request("GET", "/api/v1/admin/users", headers=bearer(self.tok["admin"]))
        self.assertEqual(st, 200)
        users = {u["name"]: u for u in parse_json(data)["data"]}
        self.assertEqual(users["conf"]["selector"], '{team="a"}')
        self.assertEqual(users["reader"]["password"], True)
        self.assertNotIn(b"sha256", data)

    def test_credential_forms(self):
        cl = self.client()
        q = "/api/v1/labels"
        self.assertEqual(cl.request("GET", q, headers=basic("reader", "reader-pw"))[0], 200)
        # cached after the first check; a wrong password is still refused
        self.assertEqual(cl.request("GET", q, headers=basic("reader", "reader-pw"))[0], 200)
        st, _, data = cl.request("GET", q, headers=basic("reader", "wrong"))
        self.assertEqual((st, parse_json(data)["error"]), (401, "invalid user name or password"))
        self.assertEqual(cl.request("GET", q, headers=basic("nobody", "reader-pw"))[0], 401)
        self.assertEqual(cl.request("GET", q, headers={
            "Authorization": "Token " + self.tok["reader"]})[0], 200)
        self.assertEqual(cl.request("GET", q, headers={
            "Authorization": "bearer " + self.tok["reader"]})[0], 200)
        self.assertEqual(cl.request("GET", q, headers=basic("any", self.tok["reader"]))[0], 200)
        self.assertEqual(cl.request("GET", q, params={"u": "reader", "p": "reader-pw"})[0], 200)
        self.assertEqual(cl.request("GET", q, params={"p": self.tok["reader"]})[0], 200)
        self.assertEqual(cl.request("GET", q, params={"u": "reader", "p": "no"})[0], 401)
        # InfluxDB write with u=/p= (the writer's token as p)
        st, _, _ = cl.request("POST", "/write", body=b"influx,team=a v=1",
                              params={"u": "x", "p": self.tok["writer"]})
        self.assertEqual(st, 204)

    # ------------------------------------------------------------ confinement

    def test_confined_reads(self):
        cl = self.client()
        conf, admin = self.tok["conf"], self.tok["admin"]
        got = self.export(cl, conf, "cpu_usage")
        self.assertEqual({s["metric"]["team"] for s in got}, {"a"})
        self.assertEqual(len(got), 3)
        self.assertEqual(len(self.export(cl, admin, "cpu_usage")), 6)
        self.assertEqual(self.export(cl, conf, '{team="b"}'), [])
        st, _, data = cl.request("GET", "/api/v1/series", headers=bearer(conf),
                                 params={"match[]": "cpu_usage"})
        self.assertEqual({s["team"] for s in parse_json(data)["data"]}, {"a"})
        st, _, data = cl.request("GET", "/api/v1/label/team/values", headers=bearer(conf))
        self.assertEqual(parse_json(data)["data"], ["a"])
        for pushdown in ("1", "0"):
            st, _, data = cl.request("GET", "/api/v1/query", headers=bearer(conf), params={
                "query": "sum(cpu_usage) + count(cpu_usage{team=~\".+\"})",
                "time": str(T0 // 1000 + 10), "pushdown": pushdown})
            self.assertEqual(st, 200, data)
            res = parse_json(data)["data"]["result"]
            self.assertEqual(float(res[0]["value"][1]), 1 + 2 + 3 + 3, pushdown)
            st, _, data = cl.request("GET", "/api/v1/query", headers=bearer(admin), params={
                "query": "sum(cpu_usage)", "time": str(T0 // 1000 + 10),
                "pushdown": pushdown})
            self.assertEqual(float(parse_json(data)["data"]["result"][0]["value"][1]), 12)
        st, _, data = cl.request("GET", "/federate", headers=bearer(conf),
                                 params={"match[]": "cpu_usage"})
        self.assertEqual(st, 200)
        self.assertIn(b'team="a"', data)
        self.assertNotIn(b'team="b"', data)

    def test_confined_writes(self):
        cl = self.client()
        conf = self.tok["conf"]
        ts = (T0 + 100) * 1_000_000
        st, _, data = cl.request("POST", "/write", headers=bearer(conf),
                                 body=("mem,team=b v=1 %d" % ts).encode())
        self.assertEqual(st, 403, data)
        self.assertIn("outside the series user 'conf' may write", parse_json(data)["error"])
        st, _, data = cl.request("POST", "/write", headers=bearer(conf),
                                 body=("mem,team=a v=1 %d\nmem,team=b v=2 %d" % (ts, ts)).encode())
        self.assertEqual(st, 400, data)
        doc = parse_json(data)
        self.assertIn("partial write: 1 of 2", doc["error"])
        self.assertIn("outside the user's selector", json.dumps(doc))
        got = self.export(cl, self.tok["admin"], "mem_v")
        self.assertEqual([s["metric"]["team"] for s in got], ["a"])

    def test_node_export_needs_credentials(self):
        cl = self.client(self.c.node_http[0])
        st, _, _ = cl.request("GET", "/api/v1/export")
        self.assertEqual(st, 401)
        st, _, _ = cl.request("GET", "/api/v1/export", headers=bearer(self.tok["reader"]))
        self.assertEqual(st, 200)
        st, _, _ = cl.request("GET", "/api/v1/export", headers=bearer(self.tok["conf"]))
        self.assertEqual(st, 403)
        self.assertEqual(cl.request("GET", "/health")[0], 200)
        self.assertEqual(cl.request("GET", "/metrics")[0], 401)

    # ----------------------------------------------------------------- reload

    def test_sighup_reload_keeps_connections(self):
        cl = self.client()
        self.assertEqual(cl.request("GET", "/api/v1/labels",
                                    headers=bearer(self.tok["reader"]))[0], 200)
        sock = cl.conn.sock
        new = self.user_add("late", "read")
        self.assertEqual(cl.request("GET", "/api/v1/labels", headers=bearer(new))[0], 401)
        sock = cl.conn.sock if cl.conn else None
        reloads = self.metrics(cl)[("strata_auth_reloads_total",
                                    frozenset({("result", "ok")}))]
        self.c.routers[0].signal(signal.SIGHUP)
        self.c.wait_until(lambda: self.metrics(cl)[(
            "strata_auth_reloads_total", frozenset({("result", "ok")}))] > reloads,
            timeout=POLL_S, what="users reloaded")
        self.assertEqual(cl.request("GET", "/api/v1/labels", headers=bearer(new))[0], 200)
        self.assertIs(cl.conn.sock, sock, "the keep-alive connection was kept")
        # the node reads the same file on its SIGHUP
        node = self.client(self.c.node_http[0])
        self.assertEqual(node.request("GET", "/api/v1/export", headers=bearer(new))[0], 401)
        self.c.nodes[0].signal(signal.SIGHUP)
        self.c.wait_until(lambda: node.request("GET", "/api/v1/export",
                                               headers=bearer(new))[0] == 200,
                          timeout=POLL_S, what="node reloaded its users")
        # a file that does not parse keeps the old users
        with open(self.users, "a") as f:
            f.write("broken line\n")
        self.c.routers[0].signal(signal.SIGHUP)
        self.c.wait_until(lambda: self.metrics(cl).get((
            "strata_auth_reloads_total", frozenset({("result", "error")})), 0) > 0,
            timeout=POLL_S, what="bad reload counted")
        self.assertEqual(cl.request("GET", "/api/v1/labels", headers=bearer(new))[0], 200)
        with open(self.users) as f:
            text = f.read().replace("broken line\n", "")
        with open(self.users, "w") as f:
            f.write(text)
        out = subprocess.run([self.cli, "user", "remove", "late", "--file", self.users],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        n = self.metrics(cl)[("strata_auth_reloads_total", frozenset({("result", "ok")}))]
        self.c.routers[0].signal(signal.SIGHUP)
        self.c.wait_until(lambda: self.metrics(cl)[(
            "strata_auth_reloads_total", frozenset({("result", "ok")}))] > n,
            timeout=POLL_S, what="users reloaded")
        self.assertEqual(cl.request("GET", "/api/v1/labels", headers=bearer(new))[0], 401)
        self.assertEqual(cl.request("GET", "/api/v1/labels",
                                    headers=bearer(self.tok["reader"]))[0], 200)

    # ------------------------------------------------------------- failures

    def test_failures_counted_and_slowed(self):
        cl = self.client()
        before = self.metrics(cl)
        key = ("strata_auth_failures_total", frozenset({("reason", "bad_token")}))
        delayed = ("strata_auth_delayed_total", frozenset())
        for _ in range(6):
            self.assertEqual(cl.request("GET", "/cluster", headers=bearer("st_x"))[0], 401)
        after = self.metrics(cl)
        self.assertEqual(after[key] - before[key], 6)
        # the first 3 failures of this address are answered at once, the rest later
        self.assertEqual(after[delayed] - before[delayed], 3)
        # another address is not slowed by this one's failures
        other = self.client()
        before = self.metrics(other)[delayed]
        self.assertEqual(other.request("GET", "/cluster", headers=bearer("st_x"))[0], 401)
        self.assertEqual(self.metrics(other)[delayed], before)
        log = self.c.routers[0].log_text()
        self.assertIn("authentication failed", log)
        for tok in self.tok.values():
            self.assertNotIn(tok, log)
        self.assertNotIn("reader-pw", log)

    def test_open_without_users_file(self):
        c = self.cluster(nodes=1, routers=1, shards=2, rf=1).start()
        st, _, _ = Client(c.router_port[0], "127.0.0.1").request("GET", "/api/v1/labels")
        self.assertEqual(st, 200)
        for p in (c.routers[0], c.nodes[0]):
            self.assertIn("no [security] users_file: every request is accepted", p.log_text())

    def test_bad_users_file_refused_at_start(self):
        bad = os.path.join(self.c.dir, "bad-users")
        with open(bad, "w") as f:
            f.write("ok:read:::\nnope:superuser:::\n")
        ini = os.path.join(self.c.dir, "bad.ini")
        with open(ini, "w") as f:
            f.write(self.c.ini_text().replace("users_file = " + self.users,
                                              "users_file = " + bad))
        for argv in ([binary("router"), "--config", ini, "--listen", "127.0.0.1:1"],
                     [binary("node"), "--config", ini, "--node-id", "n1", "--data-dir",
                      os.path.join(self.c.dir, "bad-data")]):
            out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            self.assertNotEqual(out.returncode, 0)
            self.assertIn("%s:2: bad role for user 'nope'" % bad, out.stderr + out.stdout)

    # -------------------------------------------------------------------- CLI

    def test_cli_token(self):
        url = self.c.router_url(0)
        env = dict(os.environ)
        env.pop("STRATA_TOKEN", None)
        env.pop("STRATA_PASSWORD", None)

        def run(*args, **extra):
            e = dict(env)
            e.update(extra)
            return subprocess.run([self.cli] + list(args), capture_output=True, text=True,
                                  env=e, timeout=60, stdin=subprocess.DEVNULL)

        q = ["query", "sum(cpu_usage)", "--router", url, "--time", str(T0 // 1000 + 10)]
        out = run(*q)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("authentication required", out.stderr)
        out = run(*q, "--token", self.tok["reader"])
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("12", out.stdout)
        out = run(*q, STRATA_TOKEN=self.tok["conf"])
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("6", out.stdout)
        out = run(*q, "--user", "reader", STRATA_PASSWORD="reader-pw")
        self.assertEqual(out.returncode, 0, out.stderr)
        out = run("status", "--router", url, "--token", self.tok["reader"])
        self.assertEqual(out.returncode, 0, out.stderr)
        lp = os.path.join(self.c.dir, "cli.lp")
        with open(lp, "w") as f:
            f.write("cli,team=a v=1\n")
        out = run("write", lp, "--router", url, "--token", self.tok["reader"])
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("needs the write role", out.stderr)
        out = run("write", lp, "--router", url, "--token", self.tok["writer"])
        self.assertEqual(out.returncode, 0, out.stderr)


if __name__ == "__main__":
    unittest.main()
