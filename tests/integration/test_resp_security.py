"""The RESP door with [security] users_file, tls_cert and tls_key (issues
15 + 16): AUTH, HELLO ... AUTH, roles and confinement, and TLS, with real
clients (redis-cli --tls --cacert, Debian's python3-redis with ssl=True and
a password, a raw TLS socket for the exact replies).

One cluster (2 nodes, 1 router, RF 1) whose users are made by
`strata user add` and whose certificates by the openssl command line
(test_tls.Pki). What it checks:
  - before AUTH every command but AUTH/HELLO AUTH/QUIT/RESET answers
    -NOAUTH; HELLO 3 without AUTH is refused the same way;
  - a wrong password or token: -WRONGPASS, counted in
    strata_resp_auth_failures_total; the connection may AUTH again;
  - failed logins at HTTP and RESP count together per client address:
    past 3, RESP answers late (strata_resp_auth_delayed_total) and so does
    HTTP (strata_auth_delayed_total); another address is not slowed;
  - a read token reads but cannot TS.ADD (the 403 text of HTTP as -ERR);
  - a write user (password: PBKDF2 on the thread pool) writes through
    python3-redis; it cannot TS.DEL (admin only), the admin token can;
  - a user confined to {team="a"} sees only team a series in TS.MRANGE
    FILTER;
  - RESET forgets the credential;
  - SIGHUP with clients connected: a new user can AUTH on a connection
    that failed before, a rotated token stops working (DEL too);
  - redis-cli --tls --cacert with --user/--pass; plaintext to the TLS RESP
    port gets one plaintext error line and is closed, counted as
    strata_tls_handshake_failures_total{reason="not_tls"};
  - a client that never starts its handshake is closed after 10 s
    (reason="timeout").
"""

import http.client
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import unittest

import harness
import test_auth
from harness import ClusterTestCase, free_port, http_request, metric_sum, parse_metrics
from test_resp import REDIS_CLI, base_ts, redis
from test_tls import Pki


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Raw:
    """A RESP connection over TLS that returns the raw first reply line of
    simple replies (+OK, -ERR ..., :1)."""

    def __init__(self, port, ctx, src=None):
        s = socket.create_connection(("127.0.0.1", port), timeout=60,
                                     source_address=(src, 0) if src else None)
        self.s = ctx.wrap_socket(s, server_hostname="localhost")
        self.buf = b""

    def line(self):
        for _ in range(100000):
            i = self.buf.find(b"\r\n")
            if i >= 0:
                ln, self.buf = self.buf[:i], self.buf[i + 2:]
                return ln.decode()
            d = self.s.recv(65536)
            if not d:
                raise AssertionError("connection closed; got %r" % self.buf)
            self.buf += d
        raise AssertionError("no reply line")

    def cmd(self, *args):
        self.s.sendall(encode(*args))
        return self.line()

    def close(self):
        self.s.close()


class RespSecurityTest(ClusterTestCase):
    @classmethod
    def setUpClass(cls):
        cls.cli = harness.binary("cli")
        cls.dir = tempfile.mkdtemp(prefix="strata-it-resp-sec-")
        cls.pki = Pki(cls.dir)
        cls.pki.leaf("tls", "strata listener")
        harness.TLS_CONTEXT = cls.pki.client_context()
        cls.ctx = cls.pki.client_context()
        cls.users = os.path.join(cls.dir, "users")
        cls.tok = {}
        cls.tok["admin"] = cls.user_add("admin", "admin")
        cls.tok["reader"] = cls.user_add("reader", "read")
        cls.tok["writer"] = cls.user_add("writer", "write", password="writer-pw")
        cls.tok["conf"] = cls.user_add("conf", "read", selector='{team="a"}')
        cls.port = free_port()
        cls.c = cls.class_cluster(
            nodes=2, routers=1, shards=4, rf=1,
            router={"resp_listen": "127.0.0.1:%d" % cls.port},
            security={"users_file": cls.users, "tls_cert": cls.pki.path("tls.crt"),
                      "tls_key": cls.pki.path("tls.key")})
        cls.c.start()
        cls.T = base_ts()

    @classmethod
    def tearDownClass(cls):
        cls.close_class_clusters()
        harness.TLS_CONTEXT = None
        shutil.rmtree(cls.dir, True)

    # `strata user add` into cls.users, as test_auth does; returns the token
    user_add = classmethod(test_auth.AuthTest.user_add.__func__)

    def raw(self, src=None):
        r = Raw(self.port, self.ctx, src)
        self.addCleanup(r.close)
        return r

    def metrics(self):
        st, _, data = http_request(self.c.router_url(0) + "/metrics",
                                   headers={"Authorization": "Bearer " + self.tok["admin"]})
        self.assertEqual(st, 200)
        return parse_metrics(data)

    def redis(self, **kw):
        c = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=60,
                        decode_responses=True, ssl=True, ssl_ca_certs=self.pki.path("ca.crt"),
                        **kw)
        self.addCleanup(c.close)
        return c

    def test_noauth_before_auth(self):
        r = self.raw()
        for cmd in (("PING",), ("TS.ADD", "sec:k", self.T, 1), ("TS.GET", "sec:k"),
                    ("KEYS", "*"), ("DEL", "sec:k"), ("CLIENT", "ID")):
            self.assertEqual(r.cmd(*cmd), "-NOAUTH Authentication required.", cmd)
        self.assertTrue(r.cmd("HELLO", 3).startswith("-NOAUTH HELLO must be called"))
        # pipelined writes are not batched past the check
        r.s.sendall(encode("TS.ADD", "sec:p", self.T, 1) * 3)
        for _ in range(3):
            self.assertEqual(r.line(), "-NOAUTH Authentication required.")
        self.assertEqual(r.cmd("AUTH", self.tok["reader"]), "+OK")
        self.assertEqual(r.cmd("PING"), "+PONG")
        # RESET forgets the credential
        self.assertEqual(r.cmd("RESET"), "+RESET")
        self.assertEqual(r.cmd("PING"), "-NOAUTH Authentication required.")
        self.assertEqual(r.cmd("QUIT"), "+OK")

    def test_wrongpass_counted(self):
        before = metric_sum(self.metrics(), "strata_resp_auth_failures_total")
        r = self.raw()
        wp = "-WRONGPASS invalid username-password pair or user is disabled."
        self.assertEqual(r.cmd("AUTH", "writer", "nope"), wp)  # slow path (PBKDF2)
        self.assertEqual(r.cmd("AUTH", "nosuchuser", "nope"), wp)
        self.assertEqual(r.cmd("AUTH", "st_" + "0" * 64), wp)
        self.assertEqual(r.cmd("AUTH", "default", "x"), wp)
        self.assertTrue(r.cmd("HELLO", 3, "AUTH", "writer", "bad").startswith("-WRONGPASS"))
        self.assertEqual(r.cmd("PING"), "-NOAUTH Authentication required.")
        self.assertEqual(r.cmd("AUTH", "writer", "writer-pw"), "+OK")
        self.assertEqual(r.cmd("PING"), "+PONG")
        after = metric_sum(self.metrics(), "strata_resp_auth_failures_total")
        self.assertEqual(after - before, 5)

    def http_401(self, src):
        """A request with a bad token from source address src: 401."""
        conn = http.client.HTTPSConnection("127.0.0.1", self.c.router_port[0], timeout=60,
                                           context=self.ctx, source_address=(src, 0))
        try:
            conn.request("GET", "/api/v1/labels", headers={"Authorization": "Bearer st_bad"})
            r = conn.getresponse()
            r.read()
            return r.status
        finally:
            conn.close()

    def test_failures_slowed_per_address_with_http(self):
        """Failed logins at HTTP and RESP count together per client address
        (the auth gate's table): after 3 failed HTTP requests from an address,
        its next RESP AUTH failure is answered late, and after that its next
        HTTP failure too; another address is not slowed."""
        src, other = "127.0.0.23", "127.0.0.24"
        wp = "-WRONGPASS invalid username-password pair or user is disabled."

        def delayed():
            m = self.metrics()
            return (metric_sum(m, "strata_resp_auth_delayed_total"),
                    metric_sum(m, "strata_auth_delayed_total"))
        resp0, http0 = delayed()
        for _ in range(3):  # the free failures of this address, at the HTTP door
            self.assertEqual(self.http_401(src), 401)
        self.assertEqual(delayed(), (resp0, http0))
        r = self.raw(src)
        self.assertEqual(r.cmd("AUTH", "st_bad"), wp)
        self.assertEqual(delayed(), (resp0 + 1, http0))
        self.assertEqual(r.cmd("AUTH", "writer", "nope"), wp)  # the slow (PBKDF2) path too
        self.assertEqual(delayed(), (resp0 + 2, http0))
        # the connection lives on and may still log in
        self.assertEqual(r.cmd("AUTH", self.tok["reader"]), "+OK")
        self.assertEqual(r.cmd("PING"), "+PONG")
        # RESP failures count at the HTTP door
        self.assertEqual(self.http_401(src), 401)
        self.assertEqual(delayed(), (resp0 + 2, http0 + 1))
        # another address is answered at once
        self.assertEqual(self.raw(other).cmd("AUTH", "st_bad"), wp)
        self.assertEqual(delayed(), (resp0 + 2, http0 + 1))
        log = self.c.routers[0].log_text()
        self.assertRegex(log, r"RESP authentication failed.*remote=127\.0\.0\.23:\d+ "
                              r"user=\S+ delay_ms=[1-9]")
        self.assertNotIn("writer-pw", log)

    def test_read_token_cannot_write(self):
        a = self.raw()
        self.assertEqual(a.cmd("AUTH", "admin", self.tok["admin"]), "+OK")
        self.assertTrue(a.cmd("TS.ADD", "sec:ro", self.T, 5).startswith(":"))
        r = self.raw()
        self.assertEqual(r.cmd("AUTH", self.tok["reader"]), "+OK")
        e = r.cmd("TS.ADD", "sec:ro", self.T + 1000, 6)
        self.assertTrue(e.startswith("-ERR"), e)
        self.assertIn("user 'reader' has role read; /api/v1/import needs the write role", e)
        e = r.cmd("TS.CREATE", "sec:ro2")
        self.assertIn("needs the write role", e)
        # reads work
        py = self.redis(password=self.tok["reader"])
        self.assertEqual(py.execute_command("TS.RANGE", "sec:ro", "-", "+"), [[self.T, "5"]])

    def test_write_user_and_admin_delete(self):
        py = self.redis(username="writer", password="writer-pw")
        self.assertEqual(py.execute_command("TS.ADD", "sec:w", self.T, 1.5), self.T)
        self.assertEqual(py.execute_command("TS.MADD", "sec:w", self.T + 1000, 2.5), [self.T + 1000])
        self.assertEqual(py.execute_command("TS.RANGE", "sec:w", "-", "+"),
                         [[self.T, "1.5"], [self.T + 1000, "2.5"]])
        with self.assertRaises(redis.ResponseError) as cm:
            py.execute_command("TS.DEL", "sec:w", "-", "+")
        self.assertIn("user 'writer' has role write; TS.DEL needs the admin role",
                      str(cm.exception))
        with self.assertRaises(redis.ResponseError) as cm:
            py.execute_command("DEL", "sec:w")
        self.assertIn("needs the admin role", str(cm.exception))
        adm = self.redis(password=self.tok["admin"])
        self.assertEqual(adm.execute_command("TS.DEL", "sec:w", self.T, self.T), 1)
        self.assertEqual(py.execute_command("TS.RANGE", "sec:w", "-", "+"),
                         [[self.T + 1000, "2.5"]])

    def test_confined_user_sees_its_series(self):
        st, _ = self.c.write(["secconf,team=a v=1 %d" % (self.T * 1000000),
                              "secconf,team=b v=2 %d" % (self.T * 1000000)],
                             headers={"Authorization": "Bearer " + self.tok["admin"]})
        self.assertEqual(st, 204)
        adm = self.redis(password=self.tok["admin"])
        out = adm.execute_command("TS.MRANGE", "-", "+", "FILTER", "__name__=secconf_v")
        self.assertEqual([row[0] for row in out],
                         ['secconf_v{"team"="a"}', 'secconf_v{"team"="b"}'])
        conf = self.redis(password=self.tok["conf"])
        out = conf.execute_command("TS.MRANGE", "-", "+", "FILTER", "__name__=secconf_v")
        self.assertEqual([row[0] for row in out], ['secconf_v{"team"="a"}'])
        self.assertEqual(out[0][2], [[self.T, "1"]])

    def test_redis_cli_tls(self):
        base = [REDIS_CLI, "--tls", "--cacert", self.pki.path("ca.crt"), "-h", "127.0.0.1",
                "-p", str(self.port)]
        out = subprocess.run(base + ["--user", "writer", "--pass", "writer-pw", "--no-auth-warning",
                                     "TS.ADD", "sec:cli", str(self.T), "7"],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.strip(), str(self.T))
        out = subprocess.run(base + ["-a", self.tok["reader"], "--no-auth-warning",
                                     "TS.GET", "sec:cli"],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.stdout.split(), [str(self.T), "7"], out.stderr)
        out = subprocess.run(base + ["PING"], capture_output=True, text=True, timeout=60)
        self.assertIn("NOAUTH", out.stdout + out.stderr)
        # a CA that did not sign the certificate: the handshake fails
        out = subprocess.run([REDIS_CLI, "--tls", "--cacert", self.pki.path("other-ca.crt"),
                              "-h", "127.0.0.1", "-p", str(self.port), "PING"],
                             capture_output=True, text=True, timeout=60)
        self.assertNotIn("PONG", out.stdout)

    def test_plaintext_refused(self):
        before = metric_sum(self.metrics(), "strata_tls_handshake_failures_total",
                            reason="not_tls")
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
            s.sendall(encode("PING"))
            got = b""
            for _ in range(1000):
                d = s.recv(4096)
                if not d:
                    break
                got += d
        self.assertEqual(got, b"-ERR Protocol error: this port speaks TLS only\r\n")
        after = metric_sum(self.metrics(), "strata_tls_handshake_failures_total",
                           reason="not_tls")
        self.assertEqual(after - before, 1)
        # the door still serves TLS clients
        self.assertEqual(self.raw().cmd("AUTH", self.tok["reader"]), "+OK")

    def test_sighup_rotation_with_clients_connected(self):
        """A user added later works after SIGHUP on the same connection that
        failed before; a rotated admin token stops working at the reload,
        DEL included (it is not an HTTP request), and the connection lives."""
        def reload():
            def ok():
                return metric_sum(self.metrics(), "strata_auth_reloads_total", result="ok")
            n = ok()
            self.c.routers[0].signal(signal.SIGHUP)
            self.c.wait_until(lambda: ok() > n, timeout=30, what="users reloaded")

        old = self.user_add("rot", "admin")
        reload()
        a = self.raw()
        self.assertEqual(a.cmd("AUTH", old), "+OK")
        self.assertTrue(a.cmd("TS.ADD", "sec:rot", self.T, 1).startswith(":"))
        late = self.raw()
        wp = "-WRONGPASS invalid username-password pair or user is disabled."
        tok = self.user_add("late", "read")
        self.assertEqual(late.cmd("AUTH", tok), wp)
        out = subprocess.run([self.cli, "user", "rotate", "rot", "--file", self.users],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        reload()
        self.assertEqual(late.cmd("AUTH", tok), "+OK")
        self.assertEqual(late.cmd("PING"), "+PONG")
        self.assertEqual(a.cmd("DEL", "sec:rot"), "-NOAUTH Authentication required.")
        self.assertEqual(a.cmd("AUTH", out.stdout.strip()), "+OK")
        self.assertEqual(a.cmd("DEL", "sec:rot"), ":1")

    def test_silent_client_closed_after_handshake_deadline(self):
        before = metric_sum(self.metrics(), "strata_tls_handshake_failures_total",
                            reason="timeout")
        with socket.create_connection(("127.0.0.1", self.port), timeout=60) as s:
            self.assertEqual(s.recv(4096), b"")  # closed by the router (10 s), nothing sent
        after = metric_sum(self.metrics(), "strata_tls_handshake_failures_total",
                           reason="timeout")
        self.assertEqual(after - before, 1)


if __name__ == "__main__":
    unittest.main()
