"""TLS on the HTTP listeners and mutual TLS on RPC ([security] tls_cert,
tls_key, rpc_tls, rpc_ca, rpc_cert, rpc_key), with real clients: curl
--cacert, openssl s_client, Python's ssl module, raw TCP.

Certificates are made per test class with the openssl command line: a
cluster CA, per-process RPC certificates (rpc_cert = .../{id}.crt, CN = the
node id or "router"), a
listener certificate (SAN 127.0.0.1, localhost), and a second CA whose
certificate a node is given to show that peers refuse it.

What it checks:
  - curl --cacert writes and reads through the router over HTTPS;
  - openssl s_client: TLS 1.2 and 1.3 complete, TLS 1.1 is refused
    (counted as reason="version"), a client trusting another CA fails
    verification;
  - plain HTTP to the TLS port gets a plaintext 400 naming https, the
    router keeps serving, strata_tls_handshake_failures_total{reason="not_tls"};
  - SIGHUP swaps the router's certificate for new connections while a
    connection opened before keeps working;
  - plaintext to a node's RPC port is refused and logged (no back door);
  - a node whose RPC certificate comes from another CA is refused by the
    router and its peers, and the refusal is logged on both sides;
  - a certificate is tied to a node id (CN or DNS subjectAltName; routers
    "router"): a node whose certificate names another node is refused by
    the peers it talks to, an expired node certificate (signed by the
    cluster CA with `openssl ca -startdate/-enddate`) is refused; both
    logged on both sides, counted as reason="identity" / "certificate";
  - [security] tls_client_ca: curl --cert, redis-cli --tls --cert and psql
    sslcert/sslkey get in with a certificate from that CA; without one, or
    with one from another CA, they are refused (psql in plaintext too);
  - a node with rpc_tls off among nodes with it on: refused both ways, and
    the logs say that rpc_tls must be the same everywhere;
  - replication and hinted handoff under mTLS: a node is kill -9'd during
    writes and restarted; every acknowledged sample is on every replica.
"""

import atexit
import http.client
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

import harness
from test_resp import REDIS_CLI
from harness import (ALL, AckLog, BackgroundWriter, BatchGen, ClusterTestCase, LOOPBACK,
                     export_to_dict, metric_sum, parse_export)

REPL = {"replica_timeout": "1s", "heartbeat_interval": "200ms",
        "hint_max_bytes": "256MiB", "hint_max_age": "1h"}
NOT_UP = ("down", "connecting")
UP = ("up", "catching_up")


def say(msg):
    sys.stderr.write("    %s\n" % msg)
    sys.stderr.flush()


def run(argv, stdin=None, timeout=30):
    return subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=timeout)


def openssl(*args):
    r = run(["openssl"] + list(args))
    if r.returncode != 0:
        raise AssertionError("openssl %s failed: %s" % (" ".join(args), r.stdout.decode()[-800:]))


class Pki:
    """A CA (and a foreign CA) and leaf certificates under dir."""

    def __init__(self, d):
        self.dir = d
        os.makedirs(d, exist_ok=True)
        self.ext = os.path.join(d, "leaf.ext")
        with open(self.ext, "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                    "extendedKeyUsage=serverAuth,clientAuth\n")
        self.ca = self.make_ca("ca", "Strata test CA")
        self.other_ca = self.make_ca("other-ca", "Some other CA")

    def path(self, name):
        return os.path.join(self.dir, name)

    def make_ca(self, name, cn):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", self.path(name + ".key"), "-out", self.path(name + ".crt"),
                "-days", "2", "-subj", "/CN=" + cn)
        return name

    def leaf(self, name, cn, ca=None, dns=(), expired=False):
        """name.crt / name.key signed by ca (default: the cluster CA); dns:
        more DNS subjectAltNames; expired: valid in 2020 only."""
        ca = ca or self.ca
        ext = self.ext
        if dns:
            ext = self.path(name + ".ext")
            with open(ext, "w") as f:
                f.write("subjectAltName=IP:127.0.0.1,DNS:localhost,%s\n"
                        "extendedKeyUsage=serverAuth,clientAuth\n"
                        % ",".join("DNS:" + d for d in dns))
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", self.path(name + ".key.new"), "-out", self.path(name + ".csr"),
                "-subj", "/CN=" + cn)
        if expired:
            self.sign_dated(name, ca, ext, "20200101000000Z", "20200102000000Z")
        else:
            openssl("x509", "-req", "-in", self.path(name + ".csr"),
                    "-CA", self.path(ca + ".crt"), "-CAkey", self.path(ca + ".key"),
                    "-CAcreateserial", "-days", "2", "-out", self.path(name + ".crt.new"),
                    "-extfile", ext)
        # swap in whole files (a process reloading on SIGHUP never sees half a file)
        os.replace(self.path(name + ".key.new"), self.path(name + ".key"))
        os.replace(self.path(name + ".crt.new"), self.path(name + ".crt"))

    def sign_dated(self, name, ca, ext, start, end):
        """Sign name.csr with explicit validity dates: OpenSSL 3.0's x509
        has no -not_before/-not_after, `openssl ca` has -startdate/-enddate
        (it needs a small database, made here)."""
        db = self.path("ca-db")
        os.makedirs(db, exist_ok=True)
        if not os.path.exists(os.path.join(db, "serial")):
            open(os.path.join(db, "index.txt"), "w").close()
            with open(os.path.join(db, "serial"), "w") as f:
                f.write("1000\n")
        cfg = os.path.join(db, "ca.cnf")
        with open(cfg, "w") as f:
            f.write("[ca]\ndefault_ca = dated\n[dated]\ndatabase = %s/index.txt\n"
                    "new_certs_dir = %s\nserial = %s/serial\ndefault_md = sha256\n"
                    "policy = anything\nunique_subject = no\n[anything]\n"
                    "commonName = supplied\n" % (db, db, db))
        openssl("ca", "-batch", "-notext", "-config", cfg, "-cert", self.path(ca + ".crt"),
                "-keyfile", self.path(ca + ".key"), "-in", self.path(name + ".csr"),
                "-out", self.path(name + ".crt.new"), "-startdate", start, "-enddate", end,
                "-extfile", ext)

    def security(self, listeners=True):
        kv = {"rpc_tls": "on", "rpc_ca": self.path("ca.crt"),
              "rpc_cert": self.path("rpc-{id}.crt"), "rpc_key": self.path("rpc-{id}.key")}
        if listeners:
            kv.update(tls_cert=self.path("tls.crt"), tls_key=self.path("tls.key"))
        return kv

    def client_context(self, ca="ca"):
        return ssl.create_default_context(cafile=self.path(ca + ".crt"))


def make_pki(tag, node_ids, foreign=()):
    d = tempfile.mkdtemp(prefix="strata-it-pki-%s-" % tag)
    atexit.register(shutil.rmtree, d, True)
    pki = Pki(d)
    pki.leaf("tls", "strata listener")
    for pid in list(node_ids) + ["router"]:
        pki.leaf("rpc-" + pid, pid, ca=pki.other_ca if pid in foreign else None)
    harness.TLS_CONTEXT = pki.client_context()
    return pki


def peer_cn(sock):
    cert = sock.getpeercert()
    for rdn in cert.get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return v
    return None


def tls_metric(metrics, listener, reason=None):
    if reason is None:
        return metric_sum(metrics, "strata_tls_handshakes_total", listener=listener)
    return metric_sum(metrics, "strata_tls_handshake_failures_total", listener=listener,
                      reason=reason)


class TlsListenerTest(ClusterTestCase):
    """One TLS + mTLS cluster (3 nodes, RF 3, 1 router) for the client-side checks."""

    @classmethod
    def setUpClass(cls):
        cls.pki = make_pki("listener", ["n1", "n2", "n3"])
        cls.c = cls.class_cluster(nodes=3, routers=1, shards=6, rf=3, replication=REPL,
                                  security=cls.pki.security()).start()
        cls.c.wait_peers_up()
        cls.port = cls.c.router_port[0]

    @classmethod
    def tearDownClass(cls):
        cls.close_class_clusters()

    def router_metrics(self):
        return self.c.metrics(self.c.router_url(0))

    def s_client(self, *args, ca="ca"):
        return run(["openssl", "s_client", "-connect", "%s:%d" % (LOOPBACK, self.port),
                    "-servername", "localhost", "-CAfile", self.pki.path(ca + ".crt"),
                    "-verify_return_error", "-brief"] + list(args), stdin=b"", timeout=30)

    def test_curl_cacert_write_and_read(self):
        url = self.c.router_url(0)
        r = run(["curl", "-sS", "--cacert", self.pki.path("ca.crt"), "-o", "/dev/null",
                 "-w", "%{http_code}", "--data-binary", "tls_curl,host=a v=42 1700000000000",
                 url + "/write?precision=ms"])
        self.assertEqual(r.stdout.decode(), "204", r.stdout)
        r = run(["curl", "-sS", "--cacert", self.pki.path("ca.crt"), "-G", url + "/api/v1/export",
                 "--data-urlencode", 'match[]={__name__=~"tls_curl.*"}'])
        self.assertEqual(r.returncode, 0, r.stdout)
        rows = parse_export(r.stdout)
        self.assertEqual([row["values"] for row in rows], [[42]], rows)
        # without --cacert curl does not trust the certificate
        r = run(["curl", "-sS", "-o", "/dev/null", url + "/health"])
        self.assertNotEqual(r.returncode, 0)
        # node HTTP speaks TLS too, and RPC carried the write (mTLS handshakes done)
        m = self.c.node_metrics(0)
        self.assertGreater(tls_metric(m, "rpc_server"), 0)
        self.assertGreater(tls_metric(m, "node_http"), 0)

    def test_cli_https_with_cacert(self):
        cli = harness.binary("cli")
        url = self.c.router_url(0)
        ca = self.pki.path("ca.crt")
        r = run([cli, "write", "--router", url, "--cacert", ca, "--precision", "ms", "-"],
                stdin=b"tls_cli,host=b v=7 1700000000000\n")
        self.assertEqual(r.returncode, 0, r.stdout)
        r = run([cli, "export", "--router", url, "--cacert", ca, "tls_cli_v"])
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn(b"tls_cli_v", r.stdout)
        env = dict(os.environ, STRATA_CACERT=ca)
        r = subprocess.run([cli, "status", "--router", url], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout)
        # a CA that did not sign the router's certificate: a clear error, exit != 0
        r = run([cli, "status", "--router", url, "--cacert", self.pki.path("other-ca.crt")])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"certificate verify failed", r.stdout)

    def test_openssl_versions_and_wrong_ca(self):
        before = tls_metric(self.router_metrics(), "router", "version")
        for v, want in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
            r = self.s_client(v)
            out = r.stdout.decode(errors="replace")
            self.assertEqual(r.returncode, 0, out)
            self.assertIn("Protocol version: " + want, out)
        r = self.s_client("-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.c.wait_until(lambda: tls_metric(self.router_metrics(), "router", "version") > before,
                          10, "the TLS 1.1 attempt counted as reason=version")
        r = self.s_client("-tls1_3", ca="other-ca")
        out = r.stdout.decode(errors="replace")
        self.assertNotEqual(r.returncode, 0, out)
        self.assertRegex(out, r"(?i)verif")

    def test_plain_http_to_tls_port(self):
        before = tls_metric(self.router_metrics(), "router", "not_tls")
        with socket.create_connection((LOOPBACK, self.port), timeout=10) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            for _ in range(100):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        self.assertTrue(data.startswith(b"HTTP/1.1 400"), data[:200])
        self.assertIn(b"https://", data)
        self.assertEqual(harness.http_status(self.c.router_url(0) + "/health"), 200)
        self.assertGreater(tls_metric(self.router_metrics(), "router", "not_tls"), before)

    def test_plaintext_rpc_refused_and_logged(self):
        # a raw TCP client that knows the protocol (but has no certificate)
        # gets nothing from a node's RPC port
        host, port = self.c.node_rpc_addr(1).rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(b"\x00\x00\x00\x10" + b"\x01" * 16)
            got = b""
            for _ in range(100):
                try:
                    chunk = s.recv(4096)
                except OSError:
                    break
                if not chunk:
                    break
                got += chunk
        self.assertNotIn(b"HELLO", got)
        self.c.wait_until(lambda: "rpc tls refused" in self.c.nodes[1].log_text()
                          and "not_tls" in self.c.nodes[1].log_text(), 10,
                          "n2 logs the plaintext RPC client")

    def test_sighup_rotates_the_certificate(self):
        ctx = self.pki.client_context()
        old = http.client.HTTPSConnection(LOOPBACK, self.port, timeout=10, context=ctx)
        try:
            old.request("GET", "/health")
            r = old.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            cn_before = peer_cn(old.sock)
            self.pki.leaf("tls", "rotated listener")
            self.c.routers[0].signal(1)  # SIGHUP

            def new_cn():
                with ctx.wrap_socket(socket.create_connection((LOOPBACK, self.port), timeout=10),
                                     server_hostname="127.0.0.1") as s:
                    return peer_cn(s) == "rotated listener"
            self.c.wait_until(new_cn, 20, "new connections to see the rotated certificate")
            # the connection opened before keeps working, with its certificate
            sock_before = old.sock
            old.request("GET", "/health")
            r = old.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            self.assertIs(old.sock, sock_before, "the connection was not kept alive")
            self.assertEqual(peer_cn(old.sock), cn_before)
            self.assertIn("tls certificates reloaded", self.c.routers[0].log_text())
        finally:
            old.close()


class TlsClientCaTest(ClusterTestCase):
    """[security] tls_client_ca: the router's HTTP, RESP and PostgreSQL doors
    (and node HTTP) take a client certificate signed by that CA and refuse a
    client without one or with one from another CA. No users file: the
    certificate is the only key."""

    @classmethod
    def setUpClass(cls):
        cls.pki = make_pki("clientca", [])
        pki = cls.pki
        pki.make_ca("client-ca", "Strata clients CA")
        pki.leaf("client", "some app", ca="client-ca")
        pki.leaf("intruder", "intruder", ca="other-ca")
        for k in ("client.key", "intruder.key"):
            os.chmod(pki.path(k), 0o600)  # libpq refuses a key others can read
        ctx = pki.client_context()
        ctx.load_cert_chain(pki.path("client.crt"), pki.path("client.key"))
        harness.TLS_CONTEXT = ctx  # the harness's own requests present the client certificate
        cls.resp_port, cls.pg_port = harness.free_port(), harness.free_port()
        sec = {"tls_cert": pki.path("tls.crt"), "tls_key": pki.path("tls.key"),
               "tls_client_ca": pki.path("client-ca.crt")}
        cls.c = cls.class_cluster(nodes=1, routers=1, shards=2, rf=1, security=sec,
                                  router={"resp_listen": "127.0.0.1:%d" % cls.resp_port,
                                          "pg_listen": "127.0.0.1:%d" % cls.pg_port}).start()

    @classmethod
    def tearDownClass(cls):
        cls.close_class_clusters()
        harness.TLS_CONTEXT = None

    def refused(self):
        return tls_metric(self.c.metrics(self.c.router_url(0)), "router", "certificate")

    def cert_args(self, who):
        return {"client": (self.pki.path("client.crt"), self.pki.path("client.key")),
                "intruder": (self.pki.path("intruder.crt"), self.pki.path("intruder.key")),
                None: None}[who]

    def test_http_curl_client_certificate(self):
        url = self.c.router_url(0) + "/api/v1/labels"
        for who, ok in (("client", True), (None, False), ("intruder", False)):
            before = self.refused()
            argv = ["curl", "-sS", "--cacert", self.pki.path("ca.crt"), "-o", "/dev/null",
                    "-w", "%{http_code}", url]
            if who:
                crt, key = self.cert_args(who)
                argv += ["--cert", crt, "--key", key]
            r = run(argv)
            if ok:
                self.assertEqual(r.stdout.decode(), "200", r.stdout)
            else:
                self.assertNotEqual(r.stdout.decode()[-3:], "200", (who, r.stdout))
                self.c.wait_until(lambda: self.refused() > before, 10,
                                  "the router counts the refused certificate (%s)" % who)
        # node HTTP asks for one too
        r = run(["curl", "-sS", "--cacert", self.pki.path("ca.crt"), "-o", "/dev/null",
                 "-w", "%{http_code}", self.c.node_http_url(0) + "/health"])
        self.assertNotEqual(r.stdout.decode()[-3:], "200", r.stdout)

    def test_resp_redis_cli_client_certificate(self):
        for who, ok in (("client", True), (None, False), ("intruder", False)):
            before = self.refused()
            argv = [REDIS_CLI, "--tls", "--cacert", self.pki.path("ca.crt"),
                    "-h", "127.0.0.1", "-p", str(self.resp_port)]
            if who:
                crt, key = self.cert_args(who)
                argv += ["--cert", crt, "--key", key]
            r = run(argv + ["PING"])
            out = r.stdout.decode(errors="replace")
            if ok:
                self.assertEqual(out.strip(), "PONG", out)
            else:
                self.assertNotIn("PONG", out, who)
                self.c.wait_until(lambda: self.refused() > before, 10,
                                  "the router counts the refused certificate (%s)" % who)

    def test_postgres_psql_client_certificate(self):
        exe = shutil.which("psql")
        self.assertIsNotNone(exe, "psql not installed (Debian postgresql-client)")
        env = dict(os.environ, PGCONNECT_TIMEOUT="10", PGOPTIONS="")
        for k in ("PGSSLMODE", "PGSSLCERT", "PGSSLKEY", "PGPASSWORD"):
            env.pop(k, None)
        base = ("host=localhost hostaddr=127.0.0.1 port=%d user=admin dbname=strata "
                "sslrootcert=%s " % (self.pg_port, self.pki.path("ca.crt")))
        nocert = os.path.join(self.pki.dir, "no-such.crt")  # not ~/.postgresql's default

        def psql(conninfo):
            return subprocess.run([exe, base + conninfo, "-X", "-At", "-c", "SELECT 1"],
                                  capture_output=True, text=True, timeout=60, env=env)
        crt, key = self.cert_args("client")
        p = psql("sslmode=verify-full sslcert=%s sslkey=%s" % (crt, key))
        self.assertEqual((p.returncode, p.stdout.strip()), (0, "1"), p.stderr)
        crt, key = self.cert_args("intruder")
        for conninfo in ("sslmode=verify-full sslcert=%s sslkey=%s" % (nocert, nocert),
                         "sslmode=verify-full sslcert=%s sslkey=%s" % (crt, key)):
            before = self.refused()
            p = psql(conninfo)
            self.assertNotEqual(p.returncode, 0, conninfo)
            self.c.wait_until(lambda: self.refused() > before, 10,
                              "the router counts the refused certificate (%s)" % conninfo)
        # plaintext would go around the certificate: refused with a clear error
        p = psql("sslmode=disable")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("requires SSL with a client certificate", p.stderr)


class TlsForeignCaTest(ClusterTestCase):
    """n3's RPC certificate comes from another CA: nobody lets it in."""

    def test_foreign_node_refused_on_both_sides(self):
        pki = make_pki("foreign", ["n1", "n2", "n3"], foreign={"n3"})
        c = self.cluster(nodes=3, routers=1, shards=6, rf=1, replication=REPL,
                         security=pki.security()).start(wait_routers_ready=False)
        n1, n3, router = c.nodes[0], c.nodes[2], c.routers[0]

        def logged():
            return ("rpc tls refused" in n1.log_text() and "rpc tls refused" in n3.log_text()
                    and "rpc tls refused" in router.log_text())
        c.wait_until(logged, 30, "the refusals logged by n1, n3 and the router")
        # n1 (server) refused n3's certificate; the router (client) refused n3's
        self.assertRegex(n1.log_text(), r"rpc tls refused.*reason=certificate")
        self.assertRegex(router.log_text(), r"rpc tls refused.*reason=certificate")
        # n3 stays out: the router never sees it up
        st = c.wait_node_state("n3", NOT_UP, 10)
        self.assertTrue(st)
        self.assertGreater(tls_metric(c.node_metrics(0), "rpc_server", "certificate"), 0)
        c.stop()


class TlsNodeCertificateTest(ClusterTestCase):
    """A certificate is tied to a node id (CN or DNS subjectAltName), and
    an expired one is refused. n1's certificate names its id in a DNS
    subjectAltName only (its CN is free text): accepted. n2's certificate
    is valid but names n1: whoever n2 talks to refuses it. n3's has
    expired: refused by the TLS handshake. Every refusal is logged on
    both sides and counted."""

    def test_expired_and_wrong_node_id_refused_and_logged(self):
        pki = make_pki("nodecert", ["n1", "n2", "n3"])
        pki.leaf("rpc-n1", "strata node one", dns=("n1",))
        pki.leaf("rpc-n2", "n1")
        pki.leaf("rpc-n3", "n3", expired=True)
        c = self.cluster(nodes=3, routers=1, shards=6, rf=1, replication=REPL,
                         security=pki.security()).start(wait_routers_ready=False)
        n1, n2, n3, router = c.nodes[0], c.nodes[1], c.nodes[2], c.routers[0]
        wrong_id = 'the peer claims \\"n2\\", its RPC certificate (CN \\"n1\\") does not name'

        def logged():
            return (re.search(r"rpc tls refused.*reason=certificate.*expired", n1.log_text())
                    and re.search(r"rpc tls refused.*reason=certificate.*expired",
                                  router.log_text())
                    and "rpc tls refused" in n3.log_text()
                    and wrong_id in n1.log_text() and wrong_id in n2.log_text()
                    and wrong_id in router.log_text())
        try:
            c.wait_until(logged, 30, "expired and wrong-id refusals logged on both sides")
        except AssertionError:
            for p in (n1, n2, n3, router):
                say("---- %s\n%s" % (p.name, p.log_text()[-3000:]))
            raise
        # the server side refused the HELLO (n1 <- n2), the client side the
        # HELLO_ACK (router -> n2, n1 -> n2), both as an identity failure
        self.assertRegex(n1.log_text(), r'level=error msg="rpc handshake refused".*peer_node=n2')
        self.assertRegex(n2.log_text(), r'level=error msg="rpc handshake refused"')
        self.assertRegex(router.log_text(), r'msg="rpc handshake refused".*does not name')
        m1, mr = c.node_metrics(0), c.metrics(c.router_url(0))
        self.assertGreater(tls_metric(m1, "rpc_server", "identity"), 0)
        self.assertGreater(tls_metric(m1, "rpc_server", "certificate"), 0)
        self.assertGreater(tls_metric(m1, "rpc_client", "identity"), 0)
        self.assertGreater(tls_metric(mr, "rpc_client", "identity"), 0)
        self.assertGreater(tls_metric(mr, "rpc_client", "certificate"), 0)
        # n1 (named by a DNS subjectAltName) is in; n2 and n3 stay out
        c.wait_node_state("n1", UP, 30)
        for nid in ("n2", "n3"):
            c.wait_node_state(nid, NOT_UP, 10)
        c.stop()


class TlsHalfConfiguredTest(ClusterTestCase):
    """n3 runs with rpc_tls off while the others have it on: the cluster
    refuses to form, and every side says why."""

    def test_rpc_tls_mismatch_refused_loudly(self):
        pki = make_pki("half", ["n1", "n2", "n3"])
        listeners_only = {"tls_cert": pki.path("tls.crt"), "tls_key": pki.path("tls.key")}
        c = self.cluster(nodes=3, routers=1, shards=6, rf=1, replication=REPL,
                         security=pki.security(),
                         node_overrides={2: {"security": listeners_only}})
        c.start(wait_routers_ready=False)
        n1, n3 = c.nodes[0], c.nodes[2]

        def logged():
            return ("requires mutual TLS on RPC" in n1.log_text()
                    and "rpc_tls off" in n3.log_text()
                    and "requires mutual TLS on RPC" in n3.log_text())
        c.wait_until(logged, 30, "n1 and n3 to log why they refuse each other")
        self.assertRegex(n3.log_text(), r'level=error msg="rpc handshake refused"')
        c.wait_node_state("n3", NOT_UP, 10)
        c.stop()


class TlsReplicationTest(ClusterTestCase):
    """Replication and hinted handoff under mTLS, with a kill -9."""

    def test_kill9_during_writes_no_acked_sample_lost(self):
        pki = make_pki("repl", ["n1", "n2", "n3"])
        c = self.cluster(nodes=3, routers=1, shards=6, rf=3, replication=REPL,
                         router={"request_timeout": "3s"}, security=pki.security()).start()
        c.wait_peers_up()
        log = AckLog()
        w = BackgroundWriter(c, BatchGen("tlsload", hosts=40, seed=7), log, tries=30,
                             backoff=0.2)
        w.start()
        try:
            c.wait_until(lambda: log.n_acked >= 20 or not w.is_alive(), 60,
                         "20 acknowledged writes before the kill")
            c.kill9(2)
            c.wait_node_state("n3", NOT_UP, 30)
            n1 = log.n_acked
            c.wait_until(lambda: log.n_acked >= n1 + 20 or not w.is_alive(), 60,
                         "20 acknowledged writes while n3 is dead")
            c.start_node(2)
            c.wait_node_state("n3", UP, 30)
            n2 = log.n_acked
            c.wait_until(lambda: log.n_acked >= n2 + 5 or not w.is_alive(), 60,
                         "5 acknowledged writes after the restart")
        finally:
            w.stop()
        say("writer: %s" % w.summary())
        self.assertEqual(w.unacked[:3], [], "bodies never acknowledged (one node down, quorum)")
        c.wait_hints_drained(120, what="hints for n3 replayed over mTLS")
        _, union = c.wait_replicas_identical(60)
        log.check(union, "union of the replicas after the kill -9 under mTLS")
        st, _, data = c.get("/api/v1/export", 0, [("match[]", ALL[0])])
        self.assertEqual(st, 200)
        log.check(export_to_dict(parse_export(data), "router export"), "router export")
        replayed = sum(metric_sum(c.node_metrics(i), "strata_hints_replayed_total", peer="n3")
                       for i in (0, 1))
        say("hints replayed to n3 over mTLS: %d" % replayed)
        self.assertGreater(replayed, 0)
        c.stop()


if __name__ == "__main__":
    unittest.main()
