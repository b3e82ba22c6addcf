"""--check and bad configs: strata-node and strata-router validate
cluster.ini, print the topology (with the fingerprint) and exit 0, or exit
non-zero with one line 'FILE:LINE: reason' on stderr. A node started (without
--check) on a bad config refuses to start the same way. strata-router listens
on [router] listen when it has no --listen."""

import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.request

from harness import binary, free_port

# The example of docs/configuration.md; its fingerprint is pinned there.
DOC_EXAMPLE = """\
[cluster]
name               = demo
shards             = 12            ; fixed for the life of the cluster
replication_factor = 3
write_consistency  = quorum        ; sync | quorum | async
read_consistency   = one           ; one | quorum
sharding           = series        ; series | metric

[storage]
wal_durability       = periodic    ; every_write | periodic | os_default | none
wal_sync_interval_ms = 100
partition            = 1d          ; time partition length
retention            = 30d         ; 0 = forever
memtable_max_mb      = 64
memtable_max_age     = 60s

[router]
max_body_bytes   = 33554432
request_timeout  = 30s

[node "n1"]
rpc  = 127.0.0.1:7401             ; host may be a DNS name, re-resolved on reconnect
http = 127.0.0.1:7402

[node "n2"]
rpc  = 127.0.0.1:7411
http = 127.0.0.1:7412

[node "n3"]
rpc  = 127.0.0.1:7421
http = 127.0.0.1:7422
"""
DOC_FINGERPRINT = "1479e4c05e26311c"

# Free ports: a config the binary wrongly accepts (without --check) starts a
# real node, which must not collide with anything.
P = [free_port() for _ in range(4)]
BASE = """\
[cluster]
name = chk
shards = 4
replication_factor = 1
[node "n1"]
rpc = 127.0.0.1:%d
http = 127.0.0.1:%d
[node "n2"]
rpc = 127.0.0.1:%d
http = 127.0.0.1:%d
""" % tuple(P)

# (file name, text, line number expected in the message, regex on the reason)
BAD = [
    ("unknown_key.ini", BASE.replace("shards = 4\n", "shards = 4\nfoo = 1\n"), 4,
     r"unknown key 'foo'"),
    ("rf_gt_nodes.ini", BASE.replace("replication_factor = 1", "replication_factor = 3"), 4,
     r"replication_factor 3 is larger than the number of nodes \(2\)"),
    ("dup_addr.ini", BASE.replace("rpc = 127.0.0.1:%d" % P[2], "rpc = 127.0.0.1:%d" % P[0]), 9,
     r"duplicate address"),
    ("bad_value.ini", BASE.replace("name = chk\n", "name = chk\nwrite_consistency = all\n"), 3,
     r"write_consistency"),
]


class CheckTest(unittest.TestCase):

    def setUp(self):
        self.node = binary("node")
        self.router = binary("router")
        self.dir = tempfile.mkdtemp(prefix="strata-it-check-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def put(self, name, text):
        with open(os.path.join(self.dir, name), "w") as f:
            f.write(text)
        return name

    def run_bin(self, argv, timeout=20):
        """Run to completion (bounded: a process still running after
        `timeout` s is killed and the test fails)."""
        try:
            return subprocess.run(argv, cwd=self.dir, capture_output=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            self.fail("%s still running after %d s (expected it to exit); stderr: %r"
                      % (" ".join(argv), timeout, (e.stderr or b"")[-500:]))

    def node_argv(self, cfg, *extra):
        return [self.node, "--config", cfg, "--node-id", "n1", "--data-dir",
                os.path.join(self.dir, "data")] + list(extra)

    def router_argv(self, cfg, *extra):
        return [self.router, "--config", cfg, "--listen", "127.0.0.1:1"] + list(extra)

    def assert_doc_topology(self, argv):
        """argv (a --check of DOC_EXAMPLE) exits 0 printing its topology; returns the output."""
        r = self.run_bin(argv)
        out = (r.stdout + r.stderr).decode("utf-8", "replace")
        self.assertEqual(r.returncode, 0, out)
        self.assertIn(DOC_FINGERPRINT, out.lower(), "pinned fingerprint not printed")
        for nid in ("n1", "n2", "n3"):
            self.assertRegex(out, r"\b%s\b" % nid)
        self.assertIn("127.0.0.1:7421", out)
        return out

    def test_valid_config(self):
        cfg = self.put("cluster.ini", DOC_EXAMPLE)
        for argv in (self.node_argv(cfg, "--check"), self.router_argv(cfg, "--check")):
            with self.subTest(binary=os.path.basename(argv[0])):
                self.assert_doc_topology(argv)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "data", "wal")),
                         "--check must not create data")

    def test_check_without_node_id(self):
        """docs/operations.md: `strata-node --config cluster.ini --check` with no
        --node-id (and a hostname that is no [node]) checks the whole file and
        prints the topology, exit 0; a bad file still fails with FILE:LINE."""
        cfg = self.put("cluster.ini", DOC_EXAMPLE)
        out = self.assert_doc_topology([self.node, "--config", cfg, "--check"])
        self.assertNotIn("is not a [node]", out)
        for name, text, line, reason in BAD:
            bad = self.put(name, text)
            with self.subTest(config=name):
                r = self.run_bin([self.node, "--config", bad, "--check"])
                err = r.stderr.decode("utf-8", "replace")
                self.assertEqual(r.returncode, 1, err)
                self.assertRegex(err, r"(^|\n)[^\n]*%s:%d: [^\n]*%s" %
                                 (re.escape(name), line, reason))
        # with --node-id, as before: an id not in the file is refused
        r = self.run_bin([self.node, "--config", cfg, "--node-id", "n9", "--check"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("n9", r.stderr.decode("utf-8", "replace"))
        self.assertFalse(os.path.exists(os.path.join(self.dir, "strata-data")),
                         "--check must not create data")

    def test_bad_configs(self):
        for name, text, line, reason in BAD:
            cfg = self.put(name, text)
            for argv in (self.node_argv(cfg, "--check"), self.router_argv(cfg, "--check"),
                         self.node_argv(cfg)):
                with self.subTest(config=name, argv=" ".join(argv[-2:])):
                    r = self.run_bin(argv)
                    err = r.stderr.decode("utf-8", "replace")
                    self.assertNotEqual(r.returncode, 0, err)
                    self.assertGreater(r.returncode, 0, "killed by a signal? %d" % r.returncode)
                    self.assertRegex(err, r"(^|\n)[^\n]*%s:%d: [^\n]*%s" %
                                     (re.escape(name), line, reason))

    def test_router_listen_key(self):
        """[router] listen: where strata-router listens without --listen (the
        flag still wins), shown by --check, validated with FILE:LINE."""
        port = free_port()
        cfg = self.put("listen.ini", BASE + "[router]\nlisten = 127.0.0.1:%d\n" % port)
        r = self.run_bin([self.router, "--config", cfg, "--check"])
        out = r.stdout.decode("utf-8", "replace")
        self.assertEqual(r.returncode, 0, out + r.stderr.decode("utf-8", "replace"))
        self.assertIn("listen 127.0.0.1:%d\n" % port, out)
        self.assertIn("router listen: 127.0.0.1:%d\n" % port, out)
        r = self.run_bin(self.router_argv(cfg, "--check"))
        self.assertIn("router listen: 127.0.0.1:1\n", r.stdout.decode("utf-8", "replace"))
        # without the key: the documented default
        r = self.run_bin([self.router, "--config", self.put("base.ini", BASE), "--check"])
        self.assertIn("router listen: 127.0.0.1:8086\n", r.stdout.decode("utf-8", "replace"))
        # a bad value is a bad config, for the router and the node alike
        bad = self.put("bad_listen.ini", BASE + "[router]\nlisten = 127.0.0.1\n")
        for argv in ([self.router, "--config", bad, "--check"], self.node_argv(bad, "--check")):
            r = self.run_bin(argv)
            err = r.stderr.decode("utf-8", "replace")
            self.assertEqual(r.returncode, 1, err)
            self.assertRegex(err, r"bad_listen\.ini:12: bad value '127\.0\.0\.1' for listen")
        # a real start without --listen answers on the file's address
        log = open(os.path.join(self.dir, "router.log"), "w+b")
        self.addCleanup(log.close)
        p = subprocess.Popen([self.router, "--config", cfg], cwd=self.dir,
                             stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 20
            while True:
                self.assertIsNone(p.poll(), "strata-router exited")
                try:
                    with urllib.request.urlopen("http://127.0.0.1:%d/health" % port,
                                                timeout=2) as resp:
                        self.assertEqual(resp.status, 200)
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        self.fail("strata-router is not answering on [router] listen")
                    time.sleep(0.05)
        finally:
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def test_missing_and_unknown(self):
        r = self.run_bin(self.node_argv("does-not-exist.ini", "--check"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("does-not-exist.ini", r.stderr.decode("utf-8", "replace"))
        cfg = self.put("ok.ini", BASE)
        argv = [self.node, "--config", cfg, "--node-id", "n9", "--data-dir",
                os.path.join(self.dir, "d9")]
        r = self.run_bin(argv)
        self.assertNotEqual(r.returncode, 0, "a node id not in the config must be refused")
        self.assertIn("n9", r.stderr.decode("utf-8", "replace"))


if __name__ == "__main__":
    unittest.main()
