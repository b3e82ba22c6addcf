"""The SQL doors with a users file (issues 16 and 18): PostgreSQL logins by
SCRAM-SHA-256 (psql with PGPASSWORD, python3-psycopg2), wrong passwords and
unknown users refused with 28P01 and counted, the role a statement needs
(SELECT read, DELETE admin) over PostgreSQL and POST /sql, and a user
confined to a selector reading only its series over PostgreSQL.

One cluster (2 nodes, 1 router, the PostgreSQL listener on) whose users are
made by `strata user add`; a second cluster with [security] tls_cert/tls_key
where SSLRequest is answered 'S': psql sslmode=verify-full against the test
CA, a cleartext password or a token over TLS, a wrong CA refused."""

import base64
import json
import os
import shutil
import subprocess
import time
import unittest
import urllib.parse

from harness import ClusterTestCase, free_port, http_request, parse_metrics, user_add
from test_tls import make_pki

T0 = int(time.time()) - 600  # s
HOSTS = ["a", "b", "c"]
N = 10


class SqlSecurityTest(ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        cls.pg_port = free_port()
        c = cls.class_cluster(nodes=2, routers=1, shards=4, rf=1,
                              router={"pg_listen": "127.0.0.1:%d" % cls.pg_port})
        cls.users = os.path.join(c.dir, "users")
        cls.tok = {}
        cls.tok["admin"] = cls.user_add("admin", "admin", password="admin-pw")
        cls.tok["reader"] = cls.user_add("reader", "read", password="reader-pw")
        cls.tok["conf"] = cls.user_add("conf", "read", selector='{host="a"}', password="conf-pw")
        cls.tok["cw"] = cls.user_add("cw", "write", selector='{host="a"}', password="cw-pw")
        c.security_kv = {"users_file": cls.users}
        cls.c = c.start()
        lines = []
        for h in HOSTS:
            for i in range(N):
                lines.append("disk,host=%s used=%d %d" % (h, i, T0 + 10 * i))
        st, body = c.write(lines, precision="s",
                           headers={"Authorization": "Bearer " + cls.tok["admin"]})
        assert st == 204, (st, body)

    @classmethod
    def tearDownClass(cls):
        cls.close_class_clusters()

    @classmethod
    def user_add(cls, name, role, selector=None, password=None):
        return user_add(cls.users, name, role, selector, password)

    def psql(self, user, password, *args, ok=True):
        exe = shutil.which("psql")
        self.assertIsNotNone(exe, "psql not installed (Debian postgresql-client)")
        env = dict(os.environ, PGCONNECT_TIMEOUT="10", PGPASSWORD=password, PGOPTIONS="",
                   PGSSLMODE="disable")
        p = subprocess.run([exe, "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", user,
                            "-d", "strata", "-X", "-At", "-v", "ON_ERROR_STOP=1"] + list(args),
                           capture_output=True, text=True, timeout=60, env=env)
        if ok:
            self.assertEqual(p.returncode, 0, p.stderr)
        return p

    def sql_http(self, q, user, pw):
        hdrs = {"Authorization": "Basic " + base64.b64encode(
            ("%s:%s" % (user, pw)).encode()).decode()}
        status, _, body = http_request(self.c.router_url(0) + "/sql", "POST", q.encode(), hdrs)
        return status, body

    def count(self, host=None):
        q = "SELECT count(*) FROM disk" + (" WHERE host = '%s'" % host if host else "")
        p = self.psql("admin", "admin-pw", "-c", q)
        return int(p.stdout.strip())

    def pg_auth(self, result):
        status, _, body = http_request(
            self.c.router_url(0) + "/metrics",
            headers={"Authorization": "Bearer " + self.tok["admin"]})
        self.assertEqual(status, 200)
        return parse_metrics(body).get(
            ("strata_router_pg_auth_total", frozenset({("result", result)})), 0)

    # ---- logins -------------------------------------------------------------

    def test_scram_login(self):
        p = self.psql("reader", "reader-pw", "-c", "SELECT count(*) FROM disk WHERE host = 'a'")
        self.assertEqual(p.stdout.strip(), str(N))

    def test_wrong_password_and_unknown_user(self):
        before = self.pg_auth("failed")
        p = self.psql("reader", "nope", "-c", "SELECT 1", ok=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn('password authentication failed for user "reader"', p.stderr)
        p = self.psql("ghost", "reader-pw", "-c", "SELECT 1", ok=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn('password authentication failed for user "ghost"', p.stderr)
        # a token is no SCRAM password
        p = self.psql("reader", self.tok["reader"], "-c", "SELECT 1", ok=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertGreaterEqual(self.pg_auth("failed"), before + 3)
        self.assertGreaterEqual(self.pg_auth("ok"), 1 if before else 0)

    def test_failures_slowed(self):
        # past the free failures an address gets its 28P01 late (counted)
        for _ in range(5):
            p = self.psql("reader", "wrong", "-c", "SELECT 1", ok=False)
            self.assertIn('password authentication failed for user "reader"', p.stderr)
        status, _, body = http_request(
            self.c.router_url(0) + "/metrics",
            headers={"Authorization": "Bearer " + self.tok["admin"]})
        self.assertGreaterEqual(parse_metrics(body).get(
            ("strata_router_pg_auth_delayed_total", frozenset()), 0), 1)
        # a right password is not held back
        p = self.psql("reader", "reader-pw", "-c", "SELECT 1")
        self.assertEqual(p.stdout.strip(), "1")

    def test_no_password_refused(self):
        p = self.psql("reader", "", "-w", "-c", "SELECT 1", ok=False)
        self.assertNotEqual(p.returncode, 0)

    def test_psycopg2(self):
        try:
            import psycopg2
        except ImportError:
            self.skipTest("python3-psycopg2 not installed")
        conn = psycopg2.connect(host="127.0.0.1", port=self.pg_port, user="reader",
                                password="reader-pw", dbname="strata", sslmode="disable",
                                connect_timeout=10)
        try:
            cur = conn.cursor()
            cur.execute("SELECT count(*) FROM disk WHERE host = %s", ("b",))
            self.assertEqual(cur.fetchone()[0], N)
            conn.rollback()
        finally:
            conn.close()
        with self.assertRaises(psycopg2.OperationalError) as cm:
            psycopg2.connect(host="127.0.0.1", port=self.pg_port, user="reader",
                             password="bad", dbname="strata", sslmode="disable",
                             connect_timeout=10)
        self.assertIn("password authentication failed", str(cm.exception))

    # ---- roles ----------------------------------------------------------------

    def test_delete_needs_admin(self):
        q = "DELETE FROM disk WHERE host = 'c' AND time < '%s'" % time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(T0 + 30))
        p = self.psql("reader", "reader-pw", "-c", q, ok=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("user 'reader' has role read; DELETE needs the admin role", p.stderr)
        status, body = self.sql_http(q, "reader", "reader-pw")
        self.assertEqual(status, 403, body)
        self.assertEqual(json.loads(body)["sqlstate"], "42501")
        self.assertEqual(self.count("c"), N)
        # admin over PostgreSQL: the first 3 points of host c
        p = self.psql("admin", "admin-pw", "-c", q)
        self.assertEqual(p.stdout.strip(), "DELETE 3")
        self.assertEqual(self.count("c"), N - 3)
        # admin over /sql: the rest of host c
        status, body = self.sql_http("DELETE FROM disk WHERE host = 'c'", "admin", "admin-pw")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["deleted"], N - 3)
        self.assertEqual(self.count("c"), 0)
        self.assertEqual(self.count("a"), N)

    def test_confined_user(self):
        p = self.psql("conf", "conf-pw", "-c", "SELECT count(*) FROM disk")
        self.assertEqual(p.stdout.strip(), str(N))
        p = self.psql("conf", "conf-pw", "-c", "SELECT host FROM disk GROUP BY host")
        self.assertEqual(p.stdout.split(), ["a"])
        p = self.psql("conf", "conf-pw", "-c", "SELECT max(used) FROM disk WHERE host = 'b'")
        self.assertEqual(p.stdout.strip(), "")
        p = self.psql("conf", "conf-pw", "-c", "SHOW TABLES", ok=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("confined to a selector", p.stderr)
        p = self.psql("conf", "conf-pw", "-c", "SELECT 1 + 1")
        self.assertEqual(p.stdout.strip(), "2")


    def test_insert_roles(self):
        """INSERT over PostgreSQL needs the write role; a confined writer
        writes only inside its selector (the /write pipeline's filter)."""
        t = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T0))
        q = "INSERT INTO ins (time, host, used) VALUES ('%s', '%s', 5)"
        p = self.psql("reader", "reader-pw", "-c", q % (t, "a"), ok=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("user 'reader' has role read; INSERT needs the write role", p.stderr)
        p = self.psql("cw", "cw-pw", "-c", q % (t, "a"))
        self.assertEqual(p.stdout.strip(), "INSERT 0 1")
        p = self.psql("cw", "cw-pw", "-c", q % (t, "b"), ok=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("outside the series user 'cw' may write", p.stderr)
        p = self.psql("admin", "admin-pw", "-c", q % (t, "c"))
        self.assertEqual(p.stdout.strip(), "INSERT 0 1")
        p = self.psql("admin", "admin-pw", "-c", "SELECT host FROM ins GROUP BY host ORDER BY 1")
        self.assertEqual(p.stdout.split(), ["a", "c"])


class SqlTlsTest(ClusterTestCase):
    """[security] tls_cert + users_file: the PostgreSQL door over TLS."""

    @classmethod
    def setUpClass(cls):
        cls.pki = make_pki("sql", [])
        cls.pg_port = free_port()
        c = cls.class_cluster(nodes=1, routers=1, shards=2, rf=1,
                              router={"pg_listen": "127.0.0.1:%d" % cls.pg_port})
        cls.users = os.path.join(c.dir, "users")
        cls.tok = user_add(cls.users, "admin", "admin", password="admin-pw")
        c.security_kv = {"users_file": cls.users, "tls_cert": cls.pki.path("tls.crt"),
                         "tls_key": cls.pki.path("tls.key")}
        c.scheme = "https"
        cls.c = c.start()
        st, body = c.write(["disk,host=a used=1 %d" % T0, "disk,host=a used=2 %d" % (T0 + 10)],
                           precision="s", headers={"Authorization": "Bearer " + cls.tok})
        assert st == 204, (st, body)

    @classmethod
    def tearDownClass(cls):
        cls.close_class_clusters()

    def psql(self, conninfo, password, *args):
        exe = shutil.which("psql")
        self.assertIsNotNone(exe, "psql not installed (Debian postgresql-client)")
        env = dict(os.environ, PGCONNECT_TIMEOUT="10", PGPASSWORD=password, PGOPTIONS="")
        env.pop("PGSSLMODE", None)
        return subprocess.run([exe, conninfo + " port=%d user=admin dbname=strata" % self.pg_port,
                               "-X", "-At", "-v", "ON_ERROR_STOP=1"] + list(args),
                              capture_output=True, text=True, timeout=60, env=env)

    def test_verify_full(self):
        ca = self.pki.path("ca.crt")
        for pw in ("admin-pw", self.tok):  # a password, then a token
            p = self.psql("sslmode=verify-full sslrootcert=%s host=localhost" % ca, pw,
                          "-c", "SELECT count(*) FROM disk")
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(p.stdout.strip(), "2")
        p = self.psql("sslmode=verify-full sslrootcert=%s host=localhost" % ca, "nope",
                      "-c", "SELECT 1")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn('password authentication failed for user "admin"', p.stderr)

    def test_wrong_ca_refused(self):
        p = self.psql("sslmode=verify-full sslrootcert=%s host=localhost"
                      % self.pki.path("other-ca.crt"), "admin-pw", "-c", "SELECT 1")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("certificate verify failed", p.stderr)

    def test_plaintext_still_scram(self):
        p = self.psql("sslmode=disable host=127.0.0.1", "admin-pw", "-c", "SELECT 1")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.strip(), "1")


if __name__ == "__main__":
    unittest.main()
