"""The newcomer path, run as a user runs it: deploy/local/start.sh, the
README tour's basics, deploy/local/restart-node.sh, a second start on the
kept data, deploy/local/stop.sh; and the benchmark scripts of tests/bench
using only what the repository holds.

The scripts run for real, from a temp working directory, with
STRATA_LOCAL_DIR pointing at a temp dir (a user's ./strata-local demo is
never touched), STRATA_BUILD_DIR at the binaries ctest points at
(STRATA_BIN_DIR; nothing is installed or built) and ROUTER_PORT /
NODE_PORT_BASE on ports free right now. Processes the scripts started are
known by the PIDs they record; at the end every one of them still running
this cluster's binary with this cluster's config (checked on
/proc/PID/cmdline) gets SIGKILL, and the `sleep` the test starts itself is
killed by PID. The temp dir is removed on success and kept (path printed)
on failure.
"""

import json
import os
import random
import re
import shutil
import signal
import ssl
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

import harness
from harness import REPO, http_request, parse_export

LOCAL = os.path.join(REPO, "deploy", "local")
BENCH = os.path.join(REPO, "tests", "bench")
SCRIPT_TIMEOUT = 300
NAMES = ["n1", "n2", "n3", "router"]
SAMPLE_POINTS_PER_SERIES = 360  # 1 h at one point per 10 s


def read_text(path):
    with open(path) as f:
        return f.read()


def port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((harness.LOOPBACK, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def pick_ports():
    """(NODE_PORT_BASE, ROUTER_PORT) with every port start.sh uses free right
    now; below the usual ephemeral range, so outgoing connections do not
    take them meanwhile; blocks tried in random order, so runs started at
    the same time rarely try the same one."""
    blocks = list(range(20000, 32000, 100))
    random.shuffle(blocks)
    for base in blocks:
        if all(port_free(base + o) for o in (1, 2, 11, 12, 21, 22, 31, 32, 33)):
            return base, base + 31
    raise AssertionError("no free block of ports in 20000..32000")


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0")[:-1]]


def runs_as(pid, name, config):
    """True while pid is this cluster's `name` (n1..n3: strata-node with that
    --node-id; router: strata-router) started with --config config."""
    args = cmdline(pid)
    if not args:
        return False
    exe = "strata-router" if name == "router" else "strata-node"
    if os.path.basename(args[0]) != exe:
        return False
    pairs = list(zip(args[1:], args[2:]))
    return ("--config", config) in pairs and (name == "router" or ("--node-id", name) in pairs)


def wait_until(cond, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(harness.POLL_INTERVAL)


class LocalDemo:
    """One local cluster made by the deploy/local scripts in a temp dir."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.dir = os.path.join(tmp, "strata-local")
        self.config = os.path.join(self.dir, "cluster.ini")
        self.pids_path = os.path.join(self.dir, "pids")
        self.env = dict(os.environ, STRATA_LOCAL_DIR=self.dir,
                        STRATA_BUILD_DIR=os.path.abspath(harness.bin_dir()))
        self.new_ports()
        self.seen = set()  # (pid, name) of every process the scripts recorded
        self.outputs = []

    def new_ports(self):
        self.base, self.router_port = pick_ports()
        # RESP_PORT, PG_PORT: the RESP (6379) and PostgreSQL (5432) doors on free ports of the block
        self.env.update(ROUTER_PORT=str(self.router_port), NODE_PORT_BASE=str(self.base),
                        RESP_PORT=str(self.base + 32), PG_PORT=str(self.base + 33))

    def start(self):
        """start.sh; when a port was taken between the choice and the start
        (start.sh's check or a process's bind), again on other ports."""
        for attempt in range(3):
            out = self.run("start.sh", expect_ok=attempt == 2)
            if "Strata is running" in out:
                return out
            if not re.search(r"is in use|address already in use", out + self.logs(), re.I):
                raise AssertionError("start.sh failed:\n%s\n%s" % (out, self.logs()))
            sys.stderr.write("test_local: a port was taken, start.sh again on other ports\n")
            self.new_ports()
        return out

    def run(self, script, *args, expect_ok=True):
        """Run deploy/local/<script> from the temp dir; returns its output."""
        r = subprocess.run([os.path.join(LOCAL, script)] + list(args), cwd=self.tmp,
                           env=self.env, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=SCRIPT_TIMEOUT)
        out = r.stdout + r.stderr
        self.outputs.append("$ %s %s (exit %d)\n%s" % (script, " ".join(args), r.returncode, out))
        self.pids()  # remember whatever it recorded, for cleanup
        if expect_ok and r.returncode != 0:
            raise AssertionError("%s %s exited %d:\n%s\n%s" % (script, " ".join(args),
                                                               r.returncode, out, self.logs()))
        return out

    def pids(self):
        """The pids file as ints ([] when it is absent)."""
        try:
            with open(self.pids_path) as f:
                pids = [int(x) for x in f.read().split()]
        except FileNotFoundError:
            return []
        for pid, name in zip(pids, NAMES):
            self.seen.add((pid, name))
        return pids

    def ours(self, pid, name):
        return runs_as(pid, name, self.config)

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.router_port, path)

    def export(self, selector):
        st, _, body = http_request(self.url("/api/v1/export?" +
                                            urllib.parse.urlencode({"match[]": selector})))
        assert st == 200, "export %s: HTTP %d %r" % (selector, st, body[:300])
        return parse_export(body)

    def logs(self, n=20):
        out = []
        logs = os.path.join(self.dir, "logs")
        for name in sorted(os.listdir(logs)) if os.path.isdir(logs) else []:
            with open(os.path.join(logs, name), "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            out.append("--- %s (last %d lines)\n%s" % (name, n, "\n".join(lines[-n:])))
        return "\n".join(out)

    def kill_leftovers(self):
        """SIGKILL every recorded process still running as this cluster's."""
        self.pids()
        left = [(pid, name) for pid, name in self.seen if self.ours(pid, name)]
        for pid, _ in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_until(lambda: not any(self.ours(p, n) for p, n in left), "leftovers to exit",
                   timeout=harness.STOP_TIMEOUT)
        return left


class LocalScriptsTest(unittest.TestCase):

    def setUp(self):
        harness.binary("node"), harness.binary("router"), harness.binary("cli")
        # the scripts must take the cluster dir from the environment, or they
        # would start in (and stop) <repo>/strata-local, a user's demo
        text = "".join(read_text(os.path.join(LOCAL, f)) for f in os.listdir(LOCAL))
        self.assertIn("STRATA_LOCAL_DIR", text,
                      "deploy/local does not honour STRATA_LOCAL_DIR; not running it")
        self.assertIn("STRATA_BUILD_DIR", text,
                      "deploy/local does not honour STRATA_BUILD_DIR; not running it")
        self.repo_demo_before = os.path.exists(os.path.join(REPO, "strata-local"))
        self.tmp = tempfile.mkdtemp(prefix="strata-it-local-")
        self.demo = LocalDemo(self.tmp)
        self.sleeper = None
        self.passed = False

    def tearDown(self):
        left = []
        try:
            left = self.demo.kill_leftovers()
        finally:
            if self.sleeper is not None:
                self.sleeper.kill()
                self.sleeper.wait()
        if not self.passed:
            sys.stderr.write("\n".join(self.demo.outputs) + "\n" + self.demo.logs() + "\n")
            sys.stderr.write("kept %s\n" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        if self.passed:
            self.assertEqual(left, [], "processes still running after the test's stop.sh")
        if not self.repo_demo_before:
            self.assertFalse(os.path.exists(os.path.join(REPO, "strata-local")),
                             "the test created <repo>/strata-local")

    def check_running(self, pids):
        self.assertEqual(len(pids), 4, "pids file: %r" % pids)
        for pid, name in zip(pids, NAMES):
            self.assertTrue(self.demo.ours(pid, name), "PID %d is not the running %s: %r"
                            % (pid, name, cmdline(pid)))

    def sample_points(self, host="host_1"):
        got = self.demo.export('cpu_usage_user{hostname="%s"}' % host)
        self.assertEqual(len(got), 1, "sample series of %s: %r" % (host, got))
        return len(got[0]["timestamps"])

    def test_tour_restart_node_and_stop(self):
        d = self.demo
        out = d.start()
        self.assertIn("Strata is running", out)
        self.assertIn("Loaded 36000 lines of sample data", out)
        self.assertIn("deploy/local/restart-node.sh n3", out, "the printed recipe")
        pids = d.pids()
        self.check_running(pids)

        # `strata status --config strata-local/cluster.ini`: the router from [router] listen
        env = {k: v for k, v in os.environ.items() if k != "STRATA_ROUTER"}
        r = subprocess.run([harness.binary("cli"), "status", "--config", d.config],
                           capture_output=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
        text = (r.stdout + r.stderr).decode("utf-8", "replace")
        self.assertEqual(r.returncode, 0, text)
        for nid in ("n1", "n2", "n3"):
            self.assertRegex(text, r"\b%s\b" % nid)

        # the tour's basics: write, read back; the sample data is there
        st, _, body = http_request(d.url("/write"), "POST", b"weather,city=paris temp=21.5\n")
        self.assertIn(st, (200, 204), body)
        got = d.export("weather_temp")
        self.assertEqual([(g["metric"].get("city"), g["values"]) for g in got],
                         [("paris", [21.5])])
        self.assertEqual(self.sample_points(), SAMPLE_POINTS_PER_SERIES)

        # the recipe: stop n3 by its PID, then restart-node.sh n3
        os.kill(pids[2], signal.SIGTERM)
        wait_until(lambda: not d.ours(pids[2], "n3"), "n3 to exit")
        out = d.run("restart-node.sh", "n3")
        after = d.pids()
        self.assertEqual(after[:2] + after[3:], pids[:2] + pids[3:], out)
        self.assertNotEqual(after[2], pids[2], "restart-node.sh kept the stale PID: " + out)
        self.check_running(after)

        # restarting a running node stops it first and records the new PID
        out = d.run("restart-node.sh", "3")
        again = d.pids()
        self.assertNotEqual(again[2], after[2], out)
        self.assertFalse(d.ours(after[2], "n3"), "the old n3 still runs: " + out)
        self.check_running(again)
        st, _, body = http_request(d.url("/write"), "POST", b"weather,city=oslo temp=3.5\n")
        self.assertIn(st, (200, 204), body)

        # stop.sh skips a listed PID that is not one of ours
        self.sleeper = subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL)
        with open(d.pids_path, "a") as f:
            f.write("%d\n" % self.sleeper.pid)
        out = d.run("stop.sh")
        self.assertIsNone(self.sleeper.poll(), "stop.sh signalled a process not its own: " + out)
        self.assertIn("skipping PID %d" % self.sleeper.pid, out)
        for pid, name in zip(again, NAMES):
            self.assertFalse(d.ours(pid, name), "%s (PID %d) survived stop.sh: %s"
                             % (name, pid, out))
        self.assertFalse(os.path.exists(d.pids_path))
        self.passed = True

    def test_secure_tour(self):
        """start.sh --secure: HTTPS with the CA it made, an admin token it
        printed where to find, 401 without it; the RESP and PostgreSQL doors
        speak TLS and take the token; stop.sh stops it all."""
        d = self.demo
        out = d.run("start.sh", "--secure")
        self.assertIn("Strata is running", out)
        self.assertIn("Authentication is on", out)
        self.check_running(d.pids())
        ca = os.path.join(d.dir, "tls", "ca.crt")
        token = read_text(os.path.join(d.dir, "tls", "admin.token")).strip()
        self.assertTrue(token.startswith("st_"), token[:8])
        ctx = ssl.create_default_context(cafile=ca)
        url = "https://127.0.0.1:%d" % d.router_port

        def get(path, tok=None):
            req = urllib.request.Request(url + path)
            if tok:
                req.add_header("Authorization", "Bearer " + tok)
            try:
                with urllib.request.urlopen(req, context=ctx, timeout=60) as r:
                    return r.status, r.read()
            except urllib.error.HTTPError as e:
                return e.code, e.read()

        self.assertEqual(get("/ready")[0], 200)
        self.assertEqual(get("/api/v1/labels")[0], 401)
        st, body = get('/api/v1/series?match[]=cpu_usage_user{hostname="host_1"}', token)
        self.assertEqual(st, 200, body)
        self.assertIn(b'"host_1"', body)
        # the printed redis-cli line: TLS + the token
        r = subprocess.run(["redis-cli", "-p", d.env["RESP_PORT"], "--tls", "--cacert", ca,
                            "--no-auth-warning", "-a", token, "TS.MRANGE", "-", "+", "COUNT", "1",
                            "FILTER", "hostname=host_1", "__name__=cpu_usage_user"],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        self.assertIn('"hostname"="host_1"', r.stdout, r.stdout + r.stderr)
        # the printed psql line: verify-full, the token as the password
        r = subprocess.run(["psql", "host=localhost port=%s user=admin sslmode=verify-full "
                            "sslrootcert=%s" % (d.env["PG_PORT"], ca), "-At", "-c", "SHOW TABLES"],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                           env=dict(os.environ, PGPASSWORD=token))
        self.assertIn("cpu", r.stdout.split(), r.stdout + r.stderr)
        d.run("stop.sh")
        wait_until(lambda: not any(d.ours(p, n) for p, n in d.seen), "the cluster to stop",
                   timeout=harness.STOP_TIMEOUT)
        self.passed = True

    def test_second_start_does_not_load_sample_again(self):
        d = self.demo
        out = d.start()
        self.assertIn("Loaded 36000 lines of sample data", out)
        first = int(time.time())
        self.assertEqual(self.sample_points(), SAMPLE_POINTS_PER_SERIES)
        st, _, body = http_request(d.url("/write"), "POST", b"weather,city=paris temp=21.5\n")
        self.assertIn(st, (200, 204), body)

        # a node killed by hand leaves a stale entry: reported, not signalled
        pids = d.pids()
        os.kill(pids[1], signal.SIGKILL)
        wait_until(lambda: not d.ours(pids[1], "n2"), "n2 to exit")
        out = d.run("stop.sh")
        self.assertIn("skipping PID %d (n2)" % pids[1], out)
        for pid, name in zip(pids, NAMES):
            self.assertFalse(d.ours(pid, name), "%s survived stop.sh: %s" % (name, out))

        # a later second, so a sample made again would have other timestamps
        wait_until(lambda: int(time.time()) > first, "the clock to move on")
        out = d.start()
        self.assertIn("Sample data: NOT loaded again", out)
        self.assertNotIn("Loaded 36000 lines", out)
        self.check_running(d.pids())
        self.assertEqual(self.sample_points(), SAMPLE_POINTS_PER_SERIES,
                         "the second start wrote the sample data again")
        self.assertEqual(self.sample_points("host_99"), SAMPLE_POINTS_PER_SERIES)
        self.assertEqual([g["values"] for g in d.export("weather_temp")], [[21.5]],
                         "data written before stop.sh")
        d.run("stop.sh")
        self.assertEqual(d.pids(), [])

        # data loaded by a start.sh from before the marker: found through the router
        marker = os.path.join(d.dir, "data", "sample-loaded")
        os.unlink(marker)
        out = d.start()
        self.assertIn("Sample data: NOT loaded again", out)
        self.assertIn("found through the router", out)
        self.assertTrue(os.path.exists(marker))
        self.assertEqual(self.sample_points(), SAMPLE_POINTS_PER_SERIES,
                         "a start without the marker wrote the sample data again")
        d.run("stop.sh")
        self.passed = True


class BenchToolsTest(unittest.TestCase):
    """What docs/testing.md tells a contributor to run exists in the repo."""

    def test_scripts_name_only_repo_files(self):
        bad = []
        for folder in (LOCAL, BENCH):
            for name in sorted(os.listdir(folder)):
                if not name.endswith((".sh", ".py")):
                    continue
                text = read_text(os.path.join(folder, name))
                # spelled in pieces so this file does not match itself in a repo-wide grep
                for needle in ("../" + "shared", "shared" + "/bench", "DESIGN" + ".md"):
                    if needle in text:
                        bad.append("%s mentions %s" % (os.path.relpath(os.path.join(folder, name),
                                                                       REPO), needle))
        self.assertEqual(bad, [])

    def test_cluster_bench_with_strata_generated_workload(self):
        tmp = tempfile.mkdtemp(prefix="strata-it-bench-")
        ok = False
        try:
            lp = os.path.join(tmp, "devops.lp")
            with open(lp, "wb") as f:
                subprocess.run([harness.binary("cli"), "bench", "--print", "--hosts", "20",
                                "--points", "30"], stdout=f, check=True, timeout=60)
            # the loader alone is checked by cluster_bench's figures: every
            # sample sent ok, no errors
            r = subprocess.run([sys.executable, os.path.join(BENCH, "cluster_bench.py"),
                                "--build", harness.bin_dir(), "--file", lp, "--nodes", "2",
                                "--shards", "4", "--batch", "100", "--conns", "2", "--no-vm"],
                               cwd=tmp, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT)
            out = r.stdout + r.stderr
            self.assertEqual(r.returncode, 0, out)
            self.assertRegex(out, r"strata \(2 nodes\) +[0-9.]+ M samples/s .* errors 0", out)
            self.assertRegex(out, r"disk [0-9.]+ MB = [0-9.]+ bytes/sample", out)
            ok = True
        finally:
            if ok:
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                print("kept %s" % tmp)

    def test_load_lp_counts(self):
        c = harness.Cluster(nodes=1, routers=1, shards=2, rf=1, tag="local-load-lp")
        ok = False
        try:
            c.start()
            lp = os.path.join(c.dir, "devops.lp")
            with open(lp, "wb") as f:
                subprocess.run([harness.binary("cli"), "bench", "--print", "--hosts", "7",
                                "--points", "13", "--start", str(int(time.time()) - 3600)],
                               stdout=f, check=True, timeout=60)
            r = subprocess.run([sys.executable, os.path.join(BENCH, "load_lp.py"), "--url",
                                c.router_url() + "/write?precision=ns", "--file", lp,
                                "--batch", "10", "--conns", "3"],
                               capture_output=True, text=True, timeout=SCRIPT_TIMEOUT)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            res = json.loads(r.stdout.strip().splitlines()[-1])
            self.assertEqual((res["requests_total"], res["requests_ok"], res["requests_err"]),
                             (10, 10, 0), res)
            self.assertEqual(res["samples_sent_ok"], 7 * 13 * 10, res)
            got = c.export('cpu_usage_idle{hostname=~"host_.*"}')
            self.assertEqual(sorted(len(g["timestamps"]) for g in got), [13] * 7)
            c.stop()
            ok = True
        finally:
            c.close(failed=not ok)


if __name__ == "__main__":
    unittest.main()
