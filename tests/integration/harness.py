"""Integration-test harness: real strata-node / strata-router processes on loopback.

Standard library only. What it gives a test:

  Cluster(nodes=3, routers=2, shards=12, rf=1, cluster={}, storage={}, router={},
          replication=None, node_extra_args=None, proxied=None)
      .start()            write cluster.ini into a temp dir, start the nodes, wait
                          for each node's /ready, start the routers, wait for theirs
      .stop()             SIGTERM everything, wait (bounded), SIGKILL leftovers,
                          assert the exit codes (0 by default)
      .kill9(i) .sigterm(i) .start_node(i) .restart(i) .sigstop(i) .sigcont(i)
      .router_url(i) .node_http_url(i) .node_ids .placement()
      .write() .export() .node_export() .series() .labels() .label_values()
      .cluster_info() .metrics()
      .documented_shards(label sets)   topo_shard_of_labels() of each set under
                          this cluster.ini (the strata-shard-of helper)
      .close(failed)      kill what is left, print log tails and keep the temp dir
                          on failure, remove it on success

  Replication helpers     replication={...} adds a [replication] section;
                          node_extra_args={i: [...]} extra flags for node i;
                          proxied=[i, ...] puts a proxy.Proxy in front of node
                          i's RPC port (config rpc = proxy, node started with
                          --rpc-listen on the real port; c.proxies[i]);
                          node_metrics / hints_pending / wait_hints_drained /
                          wait_peers_up /
                          node_states / wait_node_state / cluster_placement /
                          node_shard_data / replica_diffs /
                          wait_replicas_identical; write_with_retries,
                          AckLog (acked vs maybe-written samples),
                          shards_named (shard numbers in an error text)

  ClusterTestCase         a unittest.TestCase that tracks failures so clusters
                          keep their temp dir (path printed) when a test failed

  LP / Model helpers      build line protocol with the exact samples it must
                          produce (lp_line), a last-write-wins model, a
                          deterministic devops generator, export comparison
                          that is bit-exact on float64.

Rules kept here: 127.0.0.1 only; ports chosen free at run time (bind 0, read,
close) and re-chosen when a process reports "address in use"; every wait is a
bounded poll of a condition; only PIDs started here are ever signalled.

Binaries come from $STRATA_BIN_DIR (ctest sets it to the build dir; by hand it
defaults to <repo>/build). A missing binary is an error, never a skip.
"""

import atexit
import gzip as gzip_mod
import http.client
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

from proxy import Proxy

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
LOOPBACK = "127.0.0.1"

START_TIMEOUT = float(os.environ.get("STRATA_IT_START_TIMEOUT", "30"))
STOP_TIMEOUT = 15.0
HTTP_TIMEOUT = 30.0  # above [router] request_timeout (10s by default here)
POLL_INTERVAL = 0.05


class HarnessError(AssertionError):
    """A cluster could not be started/stopped as asked. Subclass of
    AssertionError so unittest reports it as a failure with the message."""


# ---------------------------------------------------------------- binaries --

def bin_dir():
    return os.environ.get("STRATA_BIN_DIR") or os.path.join(REPO, "build")


def binary(kind):
    """Path of strata-node / strata-router / strata / strata-shard-of (the
    test helper printing topo_shard_of_labels); raises if missing."""
    rel = {"node": ("node", "strata-node"),
           "router": ("router", "strata-router"),
           "cli": ("cli", "strata"),
           "shard_of": ("tests", "integration", "strata-shard-of")}[kind]
    path = os.path.join(bin_dir(), *rel)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise HarnessError(
            "MISSING BINARY: %s not found or not executable (STRATA_BIN_DIR=%s). "
            "Build it first (cmake --build build) or point STRATA_BIN_DIR at the "
            "build directory. Integration tests fail, they do not skip." %
            (path, os.environ.get("STRATA_BIN_DIR", "<unset>")))
    return path


def user_add(users, name, role, selector=None, password=None):
    """`strata user add NAME --role ROLE --file USERS` (with --selector,
    --password-stdin): returns the token it prints once."""
    argv = [binary("cli"), "user", "add", name, "--role", role, "--file", users]
    if selector:
        argv += ["--selector", selector]
    if password:
        argv.append("--password-stdin")
    out = subprocess.run(argv, input=(password + "\n" if password else ""),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    tok = out.stdout.strip()
    assert tok.startswith("st_") and len(tok) == 67, out.stdout
    return tok


# ------------------------------------------------------------------- ports --

_ports_lock = threading.Lock()
_ports_given = set()


def free_port():
    """A TCP port free on 127.0.0.1 right now, never handed out twice by this
    process (the kernel could otherwise return the same one again)."""
    with _ports_lock:
        for _ in range(200):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((LOOPBACK, 0))
                port = s.getsockname()[1]
            finally:
                s.close()
            if port not in _ports_given:
                _ports_given.add(port)
                return port
    raise HarnessError("could not find a free port in 200 tries")


# -------------------------------------------------------------------- HTTP --

# ssl.SSLContext for https:// URLs (trusting the test CA); set by test_tls.py.
TLS_CONTEXT = None


def http_request(url, method="GET", body=None, headers=None, timeout=HTTP_TIMEOUT):
    """One request on a fresh connection. Returns (status, headers dict with
    lower-case names, body bytes). Network errors propagate."""
    u = urllib.parse.urlsplit(url)
    if u.scheme == "https":  # a cluster with [security] tls_cert (test_tls.py)
        conn = http.client.HTTPSConnection(u.hostname, u.port, timeout=timeout,
                                           context=TLS_CONTEXT)
    else:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        path = u.path or "/"
        if u.query:
            path += "?" + u.query
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def http_status(url, timeout=2.0):
    """Status code of GET url, or None when the connection fails."""
    try:
        return http_request(url, timeout=timeout)[0]
    except (OSError, http.client.HTTPException):
        return None


def parse_json(body):
    try:
        return json.loads(body)
    except ValueError as e:
        raise AssertionError("response is not JSON (%s): %r" % (e, body[:500]))


def _json_int(s):
    # "-0" must stay the float -0.0 so bit-exact comparison works.
    return -0.0 if s == "-0" else int(s)


def parse_export(body):
    """Export format: one JSON object per line. Returns a list of dicts."""
    out = []
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line, parse_int=_json_int))
        except ValueError as e:
            raise AssertionError("export line %d is not JSON (%s): %r" % (n, e, line[:300]))
    return out


def parse_metrics(text):
    """Prometheus text format -> {(name, frozenset(labels.items())): float}.
    Raises AssertionError on a line that is not valid exposition format."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    out = {}
    sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?\s*$')
    label = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = sample.match(line)
        if not m:
            raise AssertionError("metrics line %d malformed: %r" % (n, line))
        labels = {}
        rest = m.group(3) or ""
        pos = 0
        while pos < len(rest):
            lm = label.match(rest, pos)
            if not lm:
                raise AssertionError("metrics line %d: bad labels: %r" % (n, line))
            labels[lm.group(1)] = (lm.group(2).replace('\\"', '"').replace("\\n", "\n")
                                   .replace("\\\\", "\\"))
            pos = lm.end()
        v = m.group(4)
        try:
            val = float(v)  # accepts NaN, +Inf, -Inf
        except ValueError:
            raise AssertionError("metrics line %d: bad value: %r" % (n, line))
        out[(m.group(1), frozenset(labels.items()))] = val
    return out


# --------------------------------------------------------------- processes --

def _pdeathsig():
    """preexec_fn: SIGKILL the child if the test runner dies (Linux)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


_live = set()  # every Proc with a running child, for the atexit safety net


@atexit.register
def _kill_leftovers():
    for p in list(_live):
        p.kill()


class Proc:
    """One child process whose stdout+stderr go to a log file (appended on
    every start, with a marker line)."""

    def __init__(self, name, argv, log_path, cwd, env=None):
        self.name, self.argv, self.log_path, self.cwd = name, argv, log_path, cwd
        self.env = dict(os.environ, **env) if env else None  # None: the harness's own
        self.popen = None
        self.starts = 0
        self.returncode = None

    def start(self):
        assert not self.running(), "%s already running" % self.name
        self.starts += 1
        with open(self.log_path, "ab") as f:
            f.write(("=== harness: start #%d: %s\n" % (self.starts, " ".join(self.argv)))
                    .encode())
        log = open(self.log_path, "ab")
        try:
            self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=log, cwd=self.cwd, env=self.env,
                                          preexec_fn=_pdeathsig)
        finally:
            log.close()
        self.returncode = None
        _live.add(self)

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    def running(self):
        return self.popen is not None and self.popen.poll() is None

    def poll(self):
        if self.popen is None:
            return self.returncode
        rc = self.popen.poll()
        if rc is not None:
            self.returncode = rc
            _live.discard(self)
        return rc

    def signal(self, sig):
        if self.running():
            self.popen.send_signal(sig)

    def wait(self, timeout):
        """Exit code, or None if still running after timeout seconds."""
        if self.popen is None:
            return self.returncode
        try:
            rc = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self.returncode = rc
        _live.discard(self)
        return rc

    def kill(self):
        if self.running():
            try:
                self.popen.send_signal(signal.SIGCONT)
                self.popen.kill()
            except ProcessLookupError:
                pass
            self.wait(STOP_TIMEOUT)
        self.poll()

    def terminate(self, timeout=STOP_TIMEOUT):
        """SIGTERM, wait up to timeout, then SIGKILL. Returns (exit code,
        killed) where killed says SIGKILL was needed."""
        if not self.running():
            return self.poll(), False
        self.popen.send_signal(signal.SIGCONT)  # a stopped process can't exit
        self.popen.send_signal(signal.SIGTERM)
        rc = self.wait(timeout)
        if rc is None:
            self.kill()
            return self.returncode, True
        return rc, False

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, n=40):
        lines = self.log_text().splitlines()
        return "\n".join(lines[-n:])


# ------------------------------------------------------------------ config --

def render_ini(sections):
    """sections: list of (header, {key: value}) -> cluster.ini text. Values of
    None are left out."""
    out = []
    for header, kv in sections:
        out.append("[%s]" % header)
        for k, v in kv.items():
            if v is not None:
                out.append("%s = %s" % (k, v))
        out.append("")
    return "\n".join(out)


DEFAULT_STORAGE = {
    "wal_durability": "periodic",
    "wal_sync_interval_ms": "50ms",
    "retention": "0",
    "memtable_max_mb": "1MiB",
}
DEFAULT_ROUTER = {
    "max_body_bytes": "32MiB",
    "request_timeout": "10s",
}


class Cluster:
    """A cluster of real processes in a temp dir. See the module docstring."""

    def __init__(self, nodes=3, routers=2, shards=12, rf=1, cluster=None, storage=None,
                 router=None, name="itest", tag="cluster", node_overrides=None,
                 replication=None, node_extra_args=None, proxied=None, security=None,
                 node_env=None):
        self.n_nodes, self.n_routers = nodes, routers
        self.cluster_kv = {"name": name, "shards": shards, "replication_factor": rf,
                           "write_consistency": "quorum", "read_consistency": "one",
                           "sharding": "series"}
        self.cluster_kv.update(cluster or {})
        self.storage_kv = dict(DEFAULT_STORAGE)
        self.storage_kv.update(storage or {})
        self.router_kv = dict(DEFAULT_ROUTER)
        self.router_kv.update(router or {})
        self.node_bin = binary("node")
        self.router_bin = binary("router") if routers else None
        self.dir = tempfile.mkdtemp(prefix="strata-it-%s-" % tag)
        self.config_path = os.path.join(self.dir, "cluster.ini")
        self.node_ids = ["n%d" % (i + 1) for i in range(nodes)]
        self.node_rpc, self.node_http, self.router_port = [], [], []
        self.nodes, self.routers = [], []
        self.node_configs = {}  # node index -> config path override
        # node index -> ini_text() overrides: that node gets its own,
        # deliberately different cluster.ini (e.g. another shard count)
        self.node_overrides = dict(node_overrides or {})
        # [replication] section (None: no section at all)
        self.replication_kv = dict(replication) if replication is not None else None
        # node index -> extra command-line arguments
        self.node_extra_args = {i: list(a) for i, a in (node_extra_args or {}).items()}
        # environment variables added for every node (e.g. UV_THREADPOOL_SIZE)
        self.node_env = dict(node_env or {})
        # node indexes whose RPC port sits behind a proxy.Proxy: cluster.ini
        # names the proxy's port, the node binds --rpc-listen on the real one
        self.proxied = sorted(set(proxied or ()))
        self.proxies = {}          # node index -> Proxy
        self.node_rpc_listen = {}  # node index -> real RPC port (proxied nodes)
        # [security] section (None: none); with tls_cert the URLs are https
        self.security_kv = dict(security) if security else None
        self.scheme = "https" if (security or {}).get("tls_cert") else "http"
        self.failed = False
        self.closed = False

    # -- config -------------------------------------------------------------

    def _assign_ports(self):
        self.node_rpc = [free_port() for _ in range(self.n_nodes)]
        self.node_http = [free_port() for _ in range(self.n_nodes)]
        self.router_port = [free_port() for _ in range(self.n_routers)]
        self._start_proxies()

    def _start_proxies(self):
        """(Re)create the proxies of self.proxied: each listens on a port of
        its own and forwards to a fresh real RPC port of its node."""
        self._stop_proxies()
        self.node_rpc_listen = {}
        for i in self.proxied:
            real = free_port()
            p = Proxy((LOOPBACK, real)).start()
            with _ports_lock:
                _ports_given.add(p.port)
            self.proxies[i] = p
            self.node_rpc[i] = p.port
            self.node_rpc_listen[i] = real

    def _stop_proxies(self):
        for p in self.proxies.values():
            p.stop()
        self.proxies = {}

    def ini_text(self, cluster=None, storage=None, router=None, nodes=None, replication=None,
                 security=None):
        """cluster.ini for this cluster, with optional overrides (used to make
        a deliberately different config)."""
        ckv = dict(self.cluster_kv)
        ckv.update(cluster or {})
        skv = dict(self.storage_kv)
        skv.update(storage or {})
        rkv = dict(self.router_kv)
        rkv.update(router or {})
        secs = [("cluster", ckv), ("storage", skv), ("router", rkv)]
        if self.replication_kv is not None or replication:
            repkv = dict(self.replication_kv or {})
            repkv.update(replication or {})
            secs.append(("replication", repkv))
        for i, nid in enumerate(self.node_ids):
            kv = {"rpc": "%s:%d" % (LOOPBACK, self.node_rpc[i]),
                  "http": "%s:%d" % (LOOPBACK, self.node_http[i])}
            kv.update((nodes or {}).get(nid, {}))
            secs.append(('node "%s"' % nid, kv))
        seckv = self.security_kv if security is None else security  # {}: no section
        if seckv:
            secs.append(("security", seckv))
        return render_ini(secs)

    def write_config(self, path=None, **overrides):
        path = path or self.config_path
        with open(path, "w") as f:
            f.write(self.ini_text(**overrides))
        return path

    def data_dir(self, i):
        return os.path.join(self.dir, "data-%s" % self.node_ids[i])

    # -- urls ---------------------------------------------------------------

    def router_url(self, i=0):
        return "%s://%s:%d" % (self.scheme, LOOPBACK, self.router_port[i])

    def node_http_url(self, i):
        return "%s://%s:%d" % (self.scheme, LOOPBACK, self.node_http[i])

    def node_rpc_addr(self, i):
        return "%s:%d" % (LOOPBACK, self.node_rpc[i])

    # -- lifecycle ----------------------------------------------------------

    def _make_procs(self):
        self.nodes, self.routers = [], []
        for i, nid in enumerate(self.node_ids):
            os.makedirs(self.data_dir(i), exist_ok=True)
            self.nodes.append(Proc(nid, self._node_argv(i),
                                   os.path.join(self.dir, "%s.log" % nid), self.dir,
                                   env=self.node_env))
        for i in range(self.n_routers):
            argv = [self.router_bin, "--config", self.config_path, "--listen",
                    "%s:%d" % (LOOPBACK, self.router_port[i])]
            self.routers.append(Proc("router%d" % i, argv,
                                     os.path.join(self.dir, "router%d.log" % i), self.dir))

    def _node_argv(self, i):
        argv = [self.node_bin, "--config", self.node_configs.get(i, self.config_path),
                "--node-id", self.node_ids[i], "--data-dir", self.data_dir(i)]
        if i in self.node_rpc_listen:
            argv += ["--rpc-listen", "%s:%d" % (LOOPBACK, self.node_rpc_listen[i])]
        return argv + self.node_extra_args.get(i, [])

    def start(self, wait_routers_ready=True):
        """Start every node, wait for each /ready, then every router and wait
        for their /ready. Ports are re-chosen (up to 3 attempts) when a
        process dies reporting an address already in use."""
        last = None
        for attempt in range(3):
            self._assign_ports()
            self.write_config()
            self.node_configs = {}
            for i, ov in self.node_overrides.items():
                self.node_configs[i] = self.write_config(
                    os.path.join(self.dir, "cluster-%s.ini" % self.node_ids[i]), **ov)
            self._make_procs()
            try:
                for i in range(self.n_nodes):
                    self.start_node(i)
                for i in range(self.n_routers):
                    self.start_router(i, wait_ready=wait_routers_ready)
                return self
            except _PortInUse as e:
                last = e
                for p in self.nodes + self.routers:
                    p.kill()
                sys.stderr.write("harness: port in use (%s), retrying with new ports\n" % e)
        raise HarnessError("could not start the cluster after 3 port choices: %s" % last)

    def start_node(self, i, wait_ready=True):
        p = self.nodes[i]
        p.argv = self._node_argv(i)
        p.start()
        if wait_ready:
            self.wait_ready(p, self.node_http_url(i) + "/ready")

    def start_router(self, i, wait_ready=True):
        self.routers[i].start()
        if wait_ready:
            self.wait_ready(self.routers[i], self.router_url(i) + "/ready")

    def wait_ready(self, proc, url, timeout=START_TIMEOUT, status=200):
        """Poll url until it answers `status`; fail if proc exits first."""
        deadline = time.monotonic() + timeout
        last = None
        for _ in range(int(timeout / POLL_INTERVAL) + 10):
            rc = proc.poll()
            if rc is not None:
                log = proc.log_text()
                if re.search(r"(address already in use|EADDRINUSE|in use)", log[-4000:], re.I):
                    raise _PortInUse("%s exited %s" % (proc.name, rc))
                self.failed = True
                raise HarnessError("%s exited with %s before %s returned %d\n--- %s log tail:\n%s"
                                   % (proc.name, rc, url, status, proc.name, proc.log_tail()))
            last = http_status(url, timeout=2.0)
            if last == status:
                return
            if time.monotonic() > deadline:
                break
            time.sleep(POLL_INTERVAL)
        self.failed = True
        raise HarnessError("%s: %s did not return %d within %.0f s (last: %s)\n--- log tail:\n%s"
                           % (proc.name, url, status, timeout, last, proc.log_tail()))

    def wait_routers_ready(self, status=200, timeout=START_TIMEOUT):
        for i, r in enumerate(self.routers):
            self.wait_ready(r, self.router_url(i) + "/ready", timeout=timeout, status=status)

    def wait_until(self, cond, timeout=START_TIMEOUT, what="condition"):
        """Poll cond() (bounded in time and count); return its truthy value."""
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / POLL_INTERVAL) + 10):
            v = cond()
            if v:
                return v
            if time.monotonic() > deadline:
                break
            time.sleep(POLL_INTERVAL)
        raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))

    def start_all(self):
        """Start again every process that is not running, on the same ports
        and data dirs (after stop()): nodes first, then routers."""
        for i, p in enumerate(self.nodes):
            if not p.running():
                self.start_node(i)
        for i, p in enumerate(self.routers):
            if not p.running():
                self.start_router(i)

    def kill9(self, i):
        p = self.nodes[i]
        assert p.running(), "%s is not running" % p.name
        p.signal(signal.SIGKILL)
        rc = p.wait(STOP_TIMEOUT)
        assert rc == -signal.SIGKILL, "%s: expected death by SIGKILL, got %s" % (p.name, rc)

    def sigterm(self, i, timeout=STOP_TIMEOUT):
        """SIGTERM node i; returns its exit code (SIGKILLed after timeout:
        then the code is -9, which a test asserting 0 will catch)."""
        rc, killed = self.nodes[i].terminate(timeout)
        return rc

    def sigstop(self, i):
        self.nodes[i].signal(signal.SIGSTOP)

    def sigcont(self, i):
        self.nodes[i].signal(signal.SIGCONT)

    def restart(self, i, wait_routers=True):
        """Start node i again on the same data dir (it must be stopped)."""
        assert not self.nodes[i].running(), "%s still running" % self.nodes[i].name
        self.start_node(i)
        if wait_routers:
            self.wait_routers_ready()

    def stop(self, expect=0):
        """SIGTERM routers, then nodes; wait up to 15 s each; SIGKILL what is
        left. Asserts every process that was running exited with `expect`
        (None: don't check)."""
        bad = []
        for p in self.routers + self.nodes:
            if not p.running():
                continue
            rc, killed = p.terminate(STOP_TIMEOUT)
            if expect is not None and (killed or rc != expect):
                bad.append("%s: exit %s%s" % (p.name, rc, " (SIGKILLed after %.0f s)" %
                                                 STOP_TIMEOUT if killed else ""))
        if bad:
            self.failed = True
            raise AssertionError("unclean shutdown: %s\n%s" % ("; ".join(bad), self.logs_tail()))

    def close(self, failed=False):
        """Kill whatever still runs; on failure print log tails and keep the
        temp dir, else remove it."""
        if self.closed:
            return
        self.closed = True
        for p in self.routers + self.nodes:
            p.kill()
        self._stop_proxies()
        if failed or self.failed:
            sys.stderr.write("\n%s\nharness: test failed, keeping %s\n" % (self.logs_tail(),
                                                                       self.dir))
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def logs_tail(self, n=30):
        parts = []
        for p in self.nodes + self.routers:
            parts.append("--- %s (%s) log tail:\n%s" % (p.name, p.log_path, p.log_tail(n)))
        return "\n".join(parts)

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        self.close(failed=et is not None)
        return False

    # -- topology -----------------------------------------------------------

    def default_placement(self, shards=None, rf=None):
        shards = shards or int(self.cluster_kv["shards"])
        rf = rf or int(self.cluster_kv["replication_factor"])
        return {s: [self.node_ids[(s + k) % self.n_nodes] for k in range(rf)]
                for s in range(shards)}

    def shards_of(self, node_index, placement=None):
        placement = placement or self.default_placement()
        nid = self.node_ids[node_index]
        return sorted(s for s, reps in placement.items() if nid in reps)

    # -- client helpers -----------------------------------------------------

    def write(self, lines, router=0, path="/write", gzip=False, headers=None, timeout=60,
              **params):
        """POST line protocol. lines: str, bytes or list of str/bytes (joined
        by newlines). Returns (status, parsed JSON body or None/raw bytes)."""
        body = lines_to_body(lines)
        hdrs = {"Content-Type": "text/plain; charset=utf-8"}
        if gzip:
            body = gzip_mod.compress(body)
            hdrs["Content-Encoding"] = "gzip"
        hdrs.update(headers or {})
        url = self.router_url(router) + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        st, _, data = http_request(url, "POST", body, hdrs, timeout=timeout)
        return st, decode_body(data)

    def get(self, path, router=0, params=None, timeout=HTTP_TIMEOUT):
        url = self.router_url(router) + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            return http_request(url, timeout=timeout)
        except (socket.timeout, TimeoutError):
            raise AssertionError("GET %s: no complete response within %.0f s (the response "
                                 "started but its stream never ended, or never started)"
                                 % (url, timeout))

    def export_raw(self, selectors, router=0, start=None, end=None):
        params = [("match[]", s) for s in _as_list(selectors)]
        if start is not None:
            params.append(("start", str(start)))
        if end is not None:
            params.append(("end", str(end)))
        st, _, data = self.get("/api/v1/export", router, params)
        return st, data

    def export(self, selectors, router=0, start=None, end=None):
        """Router export; asserts 200; returns a list of {metric, values,
        timestamps} dicts."""
        st, data = self.export_raw(selectors, router, start, end)
        if st != 200:
            raise AssertionError("export %r: HTTP %d: %r" % (selectors, st, data[:500]))
        return parse_export(data)

    def node_export(self, node, shard=None, match=None, start=None, end=None):
        params = []
        if shard is not None:
            params.append(("shard", str(shard)))
        for s in _as_list(match):
            params.append(("match[]", s))
        if start is not None:
            params.append(("start", str(start)))
        if end is not None:
            params.append(("end", str(end)))
        url = self.node_http_url(node) + "/api/v1/export"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        st, _, data = http_request(url)
        if st != 200:
            raise AssertionError("node %s export: HTTP %d: %r" % (self.node_ids[node], st,
                                                                  data[:500]))
        return parse_export(data)

    def api(self, path, router=0, params=None):
        """GET a Prometheus-style endpoint: (status, parsed JSON)."""
        st, _, data = self.get(path, router, params)
        return st, parse_json(data)

    def series(self, selectors, router=0):
        return self.api("/api/v1/series", router, [("match[]", s) for s in _as_list(selectors)])

    def labels(self, router=0, match=None):
        return self.api("/api/v1/labels", router, [("match[]", s) for s in _as_list(match)])

    def label_values(self, name, router=0, match=None):
        return self.api("/api/v1/label/%s/values" % urllib.parse.quote(name, safe=""), router,
                        [("match[]", s) for s in _as_list(match)])

    def documented_shards(self, label_sets):
        """The shard topo_shard_of_labels() (common/cluster/topo.h) gives each
        label set under this cluster's cluster.ini, computed by the
        strata-shard-of helper (XXH3 is not in Python's standard library)."""
        lines = []
        for labels in label_sets:
            lines.append(" ".join(x.encode("utf-8").hex() for kv in sorted(labels.items())
                                  for x in kv) + "\n")
        r = subprocess.run([binary("shard_of"), self.config_path], input="".join(lines).encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        if r.returncode != 0:
            raise HarnessError("strata-shard-of failed (%d): %s" % (r.returncode,
                                                                    r.stderr.decode()[:500]))
        out = [int(x) for x in r.stdout.split()]
        if len(out) != len(lines):
            raise HarnessError("strata-shard-of: %d answers for %d label sets"
                               % (len(out), len(lines)))
        return out

    def cluster_info(self, router=0):
        st, _, data = self.get("/cluster", router)
        if st != 200:
            raise AssertionError("/cluster: HTTP %d: %r" % (st, data[:300]))
        return parse_json(data)

    def metrics(self, url):
        st, _, data = http_request(url + "/metrics")
        if st != 200:
            raise AssertionError("%s/metrics: HTTP %d" % (url, st))
        return parse_metrics(data)

    # -- replication helpers -------------------------------------------------

    def node_metrics(self, i, timeout=10.0):
        """Node i's /metrics parsed (see parse_metrics)."""
        st, _, data = http_request(self.node_http_url(i) + "/metrics", timeout=timeout)
        if st != 200:
            raise AssertionError("%s /metrics: HTTP %d" % (self.node_ids[i], st))
        return parse_metrics(data)

    def peer_metric(self, i, name, **match):
        """{peer id: value} of metric `name` on node i (series filtered by the
        other labels in `match`, summed over the rest). {} when node i does
        not answer."""
        try:
            m = self.node_metrics(i, timeout=5.0)
        except (OSError, http.client.HTTPException):
            return {}
        return metric_by(m, name, "peer", **match)

    def hints_pending(self, i):
        """{peer: strata_hints_pending} on node i ({} if it does not answer)."""
        return self.peer_metric(i, "strata_hints_pending")

    def hints_pending_all(self, nodes=None):
        """{node id: {peer: pending}} for the running nodes (or `nodes`)."""
        idx = range(self.n_nodes) if nodes is None else nodes
        return {self.node_ids[i]: self.hints_pending(i) for i in idx
                if self.nodes[i].running()}

    def hints_drained(self, nodes=None):
        """True when every running node (or each of `nodes`) exports
        strata_hints_pending for every other node and all are 0."""
        idx = [i for i in (range(self.n_nodes) if nodes is None else nodes)
               if self.nodes[i].running()]
        for i in idx:
            hp = self.hints_pending(i)
            peers = [p for p in self.node_ids if p != self.node_ids[i]]
            if any(p not in hp for p in peers) or any(v != 0 for v in hp.values()):
                return False
        return True

    def wait_hints_drained(self, timeout=120.0, nodes=None, what="hint queues to drain"):
        """Poll until hints_drained(); returns the seconds it took. On timeout
        the assertion shows every node's strata_hints_pending."""
        t0 = time.monotonic()
        try:
            self.wait_until(lambda: self.hints_drained(nodes), timeout, what)
        except AssertionError as e:
            raise AssertionError("%s\nstrata_hints_pending per node: %r\n/cluster nodes: %s"
                                 % (e, self.hints_pending_all(nodes),
                                    self._cluster_nodes_brief()))
        return time.monotonic() - t0

    def _cluster_nodes_brief(self):
        try:
            return json.dumps(self.cluster_info().get("nodes"))
        except (AssertionError, OSError, http.client.HTTPException) as e:
            return "(unavailable: %s)" % e

    def peers_up(self, nodes=None):
        """True when each running node of `nodes` (default all) reports
        strata_peer_up = 1 for every other running node of `nodes`."""
        idx = [i for i in (range(self.n_nodes) if nodes is None else nodes)
               if self.nodes[i].running()]
        for i in idx:
            up = self.peer_metric(i, "strata_peer_up")
            if any(up.get(self.node_ids[j]) != 1 for j in idx if j != i):
                return False
        return True

    def wait_peers_up(self, timeout=30.0, nodes=None):
        """Poll until peers_up(nodes): the nodes' replication links are up."""
        try:
            self.wait_until(lambda: self.peers_up(nodes), timeout,
                            "every node to see its peers up (strata_peer_up)")
        except AssertionError as e:
            idx = range(self.n_nodes) if nodes is None else nodes
            raise AssertionError("%s: %r" % (e, {self.node_ids[i]: self.peer_metric(
                i, "strata_peer_up") for i in idx}))

    def node_states(self, router=0):
        """{node id: state} from the router's /cluster."""
        return {n["id"]: n.get("state") for n in self.cluster_info(router)["nodes"]}

    def wait_node_state(self, node_id, states, timeout=30.0, router=0):
        """Poll /cluster until node_id's state is one of `states` (a str or a
        collection); returns that state."""
        if isinstance(states, str):
            states = (states,)
        last = {}

        def cond():
            try:
                last["s"] = self.node_states(router).get(node_id)
            except (AssertionError, OSError, http.client.HTTPException) as e:
                last["s"] = "(error: %s)" % e
                return None
            return last["s"] if last["s"] in states else None

        try:
            return self.wait_until(cond, timeout, "/cluster: %s in state %s"
                                   % (node_id, "|".join(states)))
        except AssertionError as e:
            raise AssertionError("%s (last state: %s)" % (e, last.get("s")))

    def cluster_placement(self, router=0):
        """{shard: [replica ids in order]} from the router's /cluster."""
        return {int(p["shard"]): list(p["replicas"])
                for p in self.cluster_info(router)["placement"]}

    def node_index(self, node_id):
        return self.node_ids.index(node_id)

    def node_shard_data(self, i, shard):
        """Node i's local data of one shard: {series key: {ts: value}}."""
        return export_to_dict(self.node_export(i, shard=shard, match=ALL[0]),
                              "%s shard %d export" % (self.node_ids[i], shard))

    def replica_diffs(self, placement=None, limit=8):
        """Compare, shard by shard, the node-local exports of every replica
        (all of them must be running). Returns a list of differences (empty:
        identical) and the union of all shards' data."""
        placement = placement or self.cluster_placement()
        diffs, union = [], {}
        for s in sorted(placement):
            reps = placement[s]
            datas = [(r, self.node_shard_data(self.node_index(r), s)) for r in reps]
            base_id, base = datas[0]
            for k, v in base.items():
                union.setdefault(k, {}).update(v)
            for r, d in datas[1:]:
                for k, v in d.items():
                    union.setdefault(k, {}).update(v)
                dd = diff_samples(base, d, limit=4)
                if dd:
                    diffs.append("shard %d: %s (%d series, %d samples) vs %s (%d series, "
                                 "%d samples): %s" % (
                                     s, base_id, len(base), sum(map(len, base.values())), r,
                                     len(d), sum(map(len, d.values())),
                                     "; ".join(dd)))
                if len(diffs) >= limit:
                    return diffs, union
        return diffs, union

    def wait_replicas_identical(self, timeout=60.0, placement=None):
        """Poll until replica_diffs() is empty; returns (seconds, union)."""
        t0 = time.monotonic()
        last = {"polls": 0}

        def cond():
            d, u = self.replica_diffs(placement)
            last["d"], last["u"] = d, u
            last["polls"] += 1
            if d and last["polls"] == 1:
                self.first_replica_diffs = d
            return not d

        self.first_replica_diffs = []

        try:
            self.wait_until(cond, timeout, "every shard's replicas to hold identical data")
        except AssertionError as e:
            raise AssertionError("%s; differences (replica A vs B: 'missing' = on A only, "
                                 "'unexpected' = on B only):\n  %s" %
                                 (e, "\n  ".join(last.get("d", []))))
        self.replica_polls = last["polls"]
        return time.monotonic() - t0, last["u"]

    def log_lines(self, proc, pattern, flags=re.I):
        """Lines of proc's log (a Proc) matching the regex."""
        rx = re.compile(pattern, flags)
        return [l for l in proc.log_text().splitlines() if rx.search(l)]


def metric_by(metrics, name, label, **match):
    """From parse_metrics output: {value of `label`: sum of the samples of
    `name` whose other labels include `match`}."""
    out = {}
    for (n, labels), v in metrics.items():
        if n != name:
            continue
        d = dict(labels)
        if label not in d or any(d.get(k) != str(x) for k, x in match.items()):
            continue
        out[d[label]] = out.get(d[label], 0.0) + v
    return out


def metric_sum(metrics, name, **match):
    """Sum of the samples of `name` whose labels include `match`."""
    tot = 0.0
    for (n, labels), v in metrics.items():
        d = dict(labels)
        if n == name and all(d.get(k) == str(x) for k, x in match.items()):
            tot += v
    return tot


def wait_stable(cluster, fn, quiet=1.0, timeout=30.0, what="a value to settle"):
    """Poll fn() until it returned the same value for `quiet` seconds
    (quiescence, e.g. a counter fed by asynchronous work); returns it."""
    last = {"v": object(), "since": time.monotonic()}

    def cond():
        v = fn()
        now = time.monotonic()
        if v != last["v"]:
            last["v"], last["since"] = v, now
            return None
        return (v,) if now - last["since"] >= quiet else None

    return cluster.wait_until(cond, timeout, what)[0]


class WriteResult:
    """What write_with_retries saw: final status and body, attempts, and
    one short string per failed attempt."""

    def __init__(self):
        self.status, self.body, self.attempts, self.errors = None, None, 0, []

    @property
    def ok(self):
        return self.status == 204

    def __repr__(self):
        return "WriteResult(status=%s, attempts=%d, errors=%r, body=%r)" % (
            self.status, self.attempts, self.errors[-3:], self.body)


def write_with_retries(cluster, lines, tries=20, backoff=0.2, router=0, timeout=30, **params):
    """POST a body; on 503 or a connection error retry the same body (safe:
    idempotent) up to `tries` attempts, waiting `backoff` seconds between
    them. Any other status ends it. Returns a WriteResult."""
    r = WriteResult()
    for attempt in range(tries):
        r.attempts = attempt + 1
        try:
            st, body = cluster.write(lines, router=router, timeout=timeout, **params)
        except (OSError, http.client.HTTPException) as e:
            r.status, r.body = None, None
            r.errors.append("%s: %s" % (type(e).__name__, e))
        else:
            r.status, r.body = st, body
            if st != 503:
                return r
            r.errors.append("503 %s" % (json.dumps(body)[:300] if isinstance(body, dict)
                                        else body))
        if attempt + 1 < tries:
            time.sleep(backoff)
    return r


_SHARD_LIST = re.compile(r"shards?(?:\(s\))?\s*[:=]?\s*((?:\d+\s*,\s*)*\d+)", re.I)


def shards_named(texts):
    """Shard numbers named in error/warning texts like "... shard(s) 3,7
    (node n3: ...)" or "shard 4": the number list right after the word."""
    out = set()
    for t in _as_list(texts):
        for m in _SHARD_LIST.finditer(t or ""):
            out.update(int(x) for x in re.findall(r"\d+", m.group(1)))
    return out


class AckLog:
    """Which samples were acknowledged (204) and which were sent without an
    acknowledgement (503 / error after every retry: they may or may not be
    stored). Thread-safe."""

    def __init__(self):
        self.acked = Model()
        self.maybe = Model()
        self.n_acked = 0
        self.n_unacked = 0
        self.acked_batches = []  # in acknowledgement order (append-only)
        self._lock = threading.Lock()

    def record(self, built, ok):
        with self._lock:
            if ok:
                self.acked.add_lines(built)
                self.acked_batches.append(built)
                self.n_acked += 1
            else:
                self.maybe.add_lines(built)
                self.n_unacked += 1

    def check(self, got, what="export"):
        """got: {series key: {ts: value}}. Every acked sample must be there
        with its value; nothing may be there that was never sent (samples
        are unique per (series, ts) across bodies, so values must match
        whichever body sent them)."""
        with self._lock:
            acked = self.acked.copy().data
            maybe = self.maybe.copy().data
        missing, wrong, phantom = [], [], []
        for k, samples in acked.items():
            g = got.get(k, {})
            for t, v in samples.items():
                if t not in g:
                    missing.append((dict(k), t))
                elif f64(g[t]) != f64(v):
                    wrong.append((dict(k), t, v, g[t]))
        for k, samples in got.items():
            for t, v in samples.items():
                exp = acked.get(k, {}).get(t, maybe.get(k, {}).get(t))
                if exp is None:
                    phantom.append((dict(k), t, v))
                elif f64(exp) != f64(v):
                    wrong.append((dict(k), t, exp, v))
        problems = []
        if missing:
            problems.append("%d acknowledged samples missing, e.g. %r" % (len(missing),
                                                                        missing[:3]))
        if wrong:
            problems.append("%d samples with a wrong value, e.g. %r" % (len(wrong), wrong[:3]))
        if phantom:
            problems.append("%d samples that were never sent, e.g. %r" % (len(phantom),
                                                                         phantom[:3]))
        if problems:
            raise AssertionError("%s: %s (acked samples %d, unacked-maybe samples %d)" % (
                what, "; ".join(problems), sum(map(len, acked.values())),
                sum(map(len, maybe.values()))))


def scale_factor():
    """$STRATA_TEST_SCALE (ASan runs set 0.25): multiply data volumes by it."""
    try:
        v = float(os.environ.get("STRATA_TEST_SCALE", "1") or 1)
    except ValueError:
        v = 1.0
    return v if v > 0 else 1.0


def scaled(n, minimum=1):
    return max(minimum, int(round(n * scale_factor())))


class BatchGen:
    """Deterministic write batches in which every (series, timestamp) is
    unique across batches: batch b has one line per host at timestamp
    base_ms + b * step_ms (precision=ms), fields a (float) and b (int), so
    2 * hosts series. batch(b) -> [(line, samples)] (see lp_line)."""

    def __init__(self, measurement="repl", hosts=30, seed=1, base_ms=None, step_ms=1000):
        self.measurement, self.hosts, self.seed, self.step_ms = measurement, hosts, seed, step_ms
        self.base_ms = base_ms if base_ms is not None else recent_base_s() * 1000

    def ts(self, b):
        return self.base_ms + b * self.step_ms

    def batch(self, b):
        rng = random.Random(self.seed * 1000003 + b)
        ts = self.ts(b)
        return [lp_line(self.measurement, {"host": "h%03d" % h},
                        [("a", round(rng.uniform(-1000, 1000), 3)), ("b", rng.randrange(10**9))],
                        ts, "ms")
                for h in range(self.hosts)]

    def n_series(self):
        return 2 * self.hosts


def body_of(built):
    return [l for l, _ in built]


class BackgroundWriter(threading.Thread):
    """Writes gen.batch(first), gen.batch(first+1), ... one after another
    through write_with_retries until stop() (or max_batches), recording
    each batch in an AckLog as acknowledged or not."""

    def __init__(self, cluster, gen, log, first=0, max_batches=100000, tries=30,
                 backoff=0.2, **params):
        super().__init__(name="writer", daemon=True)
        self.c, self.gen, self.log = cluster, gen, log
        self.first, self.max_batches, self.tries, self.backoff = first, max_batches, tries, backoff
        self.params = dict(params)
        self.params.setdefault("precision", "ms")
        self.next = first
        self.unacked = []      # batch numbers that never got a 204
        self.retries = 0       # attempts beyond the first, over all batches
        self.errors = []       # a sample of failed attempts (status / exception)
        self.exc = None
        self._stop_ev = threading.Event()

    def run(self):
        try:
            while not self._stop_ev.is_set() and self.next < self.first + self.max_batches:
                built = self.gen.batch(self.next)
                r = write_with_retries(self.c, body_of(built), tries=self.tries,
                                       backoff=self.backoff, **self.params)
                self.log.record(built, r.ok)
                self.retries += r.attempts - 1
                if len(self.errors) < 20:
                    self.errors.extend(r.errors[:20 - len(self.errors)])
                if not r.ok:
                    self.unacked.append((self.next, repr(r)))
                self.next += 1
        except BaseException as e:  # reported by stop()
            self.exc = e

    def stop(self, timeout=180.0):
        self._stop_ev.set()
        self.join(timeout)
        if self.is_alive():
            raise AssertionError("writer thread did not stop within %.0f s" % timeout)
        if self.exc is not None:
            raise AssertionError("writer thread failed: %r" % (self.exc,))

    def summary(self):
        return ("%d batches sent (%d acknowledged, %d not), %d retried attempts"
                % (self.next - self.first, self.next - self.first - len(self.unacked),
                   len(self.unacked), self.retries))


class _PortInUse(Exception):
    pass


def _as_list(x):
    if x is None:
        return []
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


def shard_ids(shards):
    """The shard numbers of a 503 body's "shards" list, whose entries may be
    plain numbers or objects with a "shard" key."""
    out = set()
    for e in shards:
        out.add(e["shard"] if isinstance(e, dict) else e)
    return out


def lines_to_body(lines):
    if isinstance(lines, bytes):
        return lines
    if isinstance(lines, str):
        return lines.encode("utf-8")
    return b"\n".join(l if isinstance(l, bytes) else l.encode("utf-8") for l in lines)


def decode_body(data):
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return data


# --------------------------------------------------- test-case base class --

class ClusterTestCase(unittest.TestCase):
    """Tracks failures: clusters made with self.cluster(...) are closed after
    the test with failed=True (logs printed, temp dir kept) when it failed.
    Class-level clusters (setUpClass) use cls.class_cluster(...); they are
    closed in tearDownClass with failed=True if any test of the class failed."""

    _class_failed = False
    _class_clusters = ()

    def run(self, result=None):
        self._clusters = []
        if result is None:
            return super().run(result)
        before = len(result.failures) + len(result.errors)
        try:
            return super().run(result)
        finally:
            failed = len(result.failures) + len(result.errors) > before
            if failed:
                type(self)._class_failed = True
            for c in self._clusters:
                c.close(failed=failed)

    def cluster(self, **kw):
        """A cluster for this test only (not started)."""
        kw.setdefault("tag", self._testMethodName)
        c = Cluster(**kw)
        self._clusters.append(c)
        return c

    @classmethod
    def class_cluster(cls, **kw):
        kw.setdefault("tag", cls.__name__)
        c = Cluster(**kw)
        cls._class_clusters = list(cls._class_clusters) + [c]
        return c

    @classmethod
    def close_class_clusters(cls, failed=False):
        for c in cls._class_clusters:
            c.close(failed=failed or cls._class_failed)
        cls._class_clusters = []

    @classmethod
    def tearDownClass(cls):
        try:
            for c in cls._class_clusters:
                try:
                    c.stop()
                except AssertionError:
                    cls._class_failed = True
                    raise
        finally:
            cls.close_class_clusters()

    @classmethod
    def start_class_cluster(cls, **kw):
        """For setUpClass: create and start; on failure close (keeping logs)
        and re-raise, since tearDownClass does not run after a failed
        setUpClass."""
        c = cls.class_cluster(**kw)
        try:
            c.start()
        except BaseException:
            cls._class_failed = True
            cls.close_class_clusters(failed=True)
            raise
        return c


# ---------------------------------------------------------- line protocol --

class U(int):
    """An unsigned integer field value (written with the 'u' suffix)."""


class I(int):
    """Force the 'i' suffix (plain Python ints get it too)."""


class Bool:
    """A boolean field written with a given spelling, e.g. Bool('True')."""

    def __init__(self, spelling):
        self.spelling = spelling
        self.value = spelling in ("t", "T", "true", "True", "TRUE")


class Str(str):
    """A string field (written quoted, not stored)."""


class RawFloat:
    """A float field written with an exact spelling, e.g. RawFloat('1.e3')."""

    def __init__(self, text):
        self.text = text
        self.value = float(text)


def esc_measurement(s):
    return s.replace(",", "\\,").replace(" ", "\\ ")


def esc_key(s):
    return s.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def esc_str(s):
    return s.replace("\\", "\\\\").replace('"', '\\"')


PREC_DIV = {"ns": 1000000, "us": 1000, "ms": 1, "s": None}


def to_ms(ts, precision):
    if precision == "s":
        return ts * 1000
    return ts // PREC_DIV[precision]  # floor division, as the contract says


def field_value(v):
    """(LP text, stored float or None for strings)."""
    if isinstance(v, Str):
        return '"%s"' % esc_str(v), None
    if isinstance(v, Bool):
        return v.spelling, 1.0 if v.value else 0.0
    if isinstance(v, bool):
        return ("true" if v else "false"), 1.0 if v else 0.0
    if isinstance(v, U):
        return "%du" % v, float(int(v))
    if isinstance(v, int):
        return "%di" % v, float(int(v))
    if isinstance(v, RawFloat):
        return v.text, v.value
    if isinstance(v, float):
        assert math.isfinite(v)
        return repr(v), v
    raise TypeError("field value %r" % (v,))


def lp_line(measurement, tags, fields, ts=None, precision="ns"):
    """Build one LP line. fields: list of (name, value) or dict. Returns
    (line, samples) where samples = [(labels dict, ts_ms or None, float)].
    Backslashes in names are kept literal (they are only escapes before
    , = space), so names here must not end in a backslash followed by one
    of those characters."""
    parts = [esc_measurement(measurement)]
    for k in sorted(tags):
        parts.append("%s=%s" % (esc_key(k), esc_key(tags[k])))
    fitems = list(fields.items()) if isinstance(fields, dict) else list(fields)
    ftxt, samples = [], []
    last = {}
    for name, v in fitems:
        txt, val = field_value(v)
        ftxt.append("%s=%s" % (esc_key(name), txt))
        last[name] = val  # duplicate field keys: last value wins
    ts_ms = to_ms(ts, precision) if ts is not None else None
    for name, val in last.items():
        if val is None:
            continue
        labels = dict(tags)
        labels["__name__"] = "%s_%s" % (measurement, name)
        samples.append((labels, ts_ms, val))
    line = ",".join(parts) + " " + ",".join(ftxt)
    if ts is not None:
        line += " %d" % ts
    return line, samples


def series_key(labels):
    return tuple(sorted(labels.items()))


class Model:
    """Expected contents: {series key: {ts_ms: value}}, last write wins."""

    def __init__(self):
        self.data = {}

    def add(self, samples):
        for labels, ts, val in samples:
            assert ts is not None, "model needs explicit timestamps"
            self.data.setdefault(series_key(labels), {})[ts] = val

    def add_lines(self, built):
        """built: list of (line, samples) from lp_line."""
        for _, s in built:
            self.add(s)

    def copy(self):
        m = Model()
        m.data = {k: dict(v) for k, v in self.data.items()}
        return m

    def select(self, pred, start_ms=None, end_ms=None):
        out = {}
        for k, samples in self.data.items():
            if not pred(dict(k)):
                continue
            s = {t: v for t, v in samples.items()
                 if (start_ms is None or t >= start_ms) and (end_ms is None or t <= end_ms)}
            if s:
                out[k] = s
        return out

    def label_names(self, pred=lambda l: True):
        return sorted({n for k in self.data for n, _ in k if pred(dict(k))})

    def label_values(self, name, pred=lambda l: True):
        return sorted({v for k in self.data for n, v in k if n == name and pred(dict(k))})

    def n_samples(self):
        return sum(len(v) for v in self.data.values())


def f64(v):
    return struct.pack("<d", float(v))


def export_to_dict(rows, where="export"):
    """Export rows -> {series key: {ts: value}}; asserts the per-row
    invariants (sorted timestamps, no duplicates, lengths, series once)."""
    out = {}
    for r in rows:
        if set(r) != {"metric", "values", "timestamps"}:
            raise AssertionError("%s: unexpected keys in row %r" % (where, sorted(r)))
        key = series_key(r["metric"])
        if key in out:
            raise AssertionError("%s: series %r returned twice" % (where, r["metric"]))
        ts, vals = r["timestamps"], r["values"]
        if len(ts) != len(vals):
            raise AssertionError("%s: %r: %d timestamps, %d values" % (where, r["metric"],
                                                                       len(ts), len(vals)))
        for a, b in zip(ts, ts[1:]):
            if not a < b:
                raise AssertionError("%s: %r: timestamps not strictly increasing: %d then %d"
                                     % (where, r["metric"], a, b))
        for t in ts:
            if not isinstance(t, int):
                raise AssertionError("%s: %r: timestamp %r is not an integer (ms)"
                                     % (where, r["metric"], t))
        out[key] = dict(zip(ts, vals))
    return out


def diff_samples(expected, got, limit=8):
    """Bit-exact comparison of two {key: {ts: value}} maps. Returns a list of
    human-readable differences (empty when equal)."""
    diffs = []
    for k in sorted(set(expected) | set(got)):
        if len(diffs) >= limit:
            diffs.append("...")
            break
        e, g = expected.get(k), got.get(k)
        if g is None:
            diffs.append("missing series %s (%d samples)" % (dict(k), len(e)))
            continue
        if e is None:
            diffs.append("unexpected series %s (%d samples)" % (dict(k), len(g)))
            continue
        for t in sorted(set(e) | set(g)):
            if t not in g:
                diffs.append("%s: missing sample ts=%d value=%r" % (dict(k), t, e[t]))
            elif t not in e:
                diffs.append("%s: unexpected sample ts=%d value=%r" % (dict(k), t, g[t]))
            elif not isinstance(g[t], (int, float)) or f64(e[t]) != f64(g[t]):
                diffs.append("%s: ts=%d expected %r got %r" % (dict(k), t, e[t], g[t]))
            else:
                continue
            if len(diffs) >= limit:
                break
    return diffs


def assert_samples_equal(expected, got, what="export"):
    d = diff_samples(expected, got)
    if d:
        raise AssertionError("%s differs from the model (%d expected series, %d returned):\n  %s"
                             % (what, len(expected), len(got), "\n  ".join(d)))


# -------------------------------------------------------------- selectors --

def _q(s):
    return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def selector(metric=None, *matchers):
    """Build a selector string and a Python predicate on a labels dict.
    matchers: (label, op, value) with op in = != =~ !~. Regexes fully
    anchored; a missing label counts as the empty string (Prometheus)."""
    parts = ["%s%s%s" % (n, op, _q(v)) for n, op, v in matchers]
    text = (metric or "") + ("{%s}" % ",".join(parts) if parts or not metric else "")
    ms = list(matchers)
    if metric:
        ms.append(("__name__", "=", metric))

    def pred(labels):
        for n, op, v in ms:
            have = labels.get(n, "")
            if op == "=" and have != v:
                return False
            if op == "!=" and have == v:
                return False
            if op == "=~" and not re.fullmatch(v, have):
                return False
            if op == "!~" and re.fullmatch(v, have):
                return False
        return True

    return text, pred


ALL = selector(None, ("__name__", "=~", ".+"))


# ----------------------------------------------------------- data helpers --

DEVOPS_FIELDS = ["usage_user", "usage_system", "usage_idle", "usage_nice", "usage_iowait",
                 "usage_irq", "usage_softirq", "usage_steal", "usage_guest", "usage_guest_nice"]
REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-1"]


def devops_lines(hosts=10, points=10, start_s=None, step_s=10, seed=1, decimals=2,
                 measurement="cpu", precision="ns", host_prefix="host_"):
    """Deterministic TSBS-like cpu data. Returns a list of (line, samples)
    in time-major order (all hosts at t, then t+step...)."""
    rng = random.Random(seed)
    if start_s is None:
        start_s = recent_base_s()
    host_tags = []
    for h in range(hosts):
        host_tags.append({"hostname": "%s%d" % (host_prefix, h),
                          "region": REGIONS[h % len(REGIONS)],
                          "rack": str(rng.randrange(100)),
                          "os": rng.choice(["Ubuntu16.10", "Ubuntu16.04LTS"]),
                          "team": rng.choice(["SF", "NYC", "LON", "CHI"])})
    state = [[rng.uniform(0, 100) for _ in DEVOPS_FIELDS] for _ in range(hosts)]
    out = []
    for p in range(points):
        t_s = start_s + p * step_s
        ts = {"ns": t_s * 10**9, "us": t_s * 10**6, "ms": t_s * 1000, "s": t_s}[precision]
        for h in range(hosts):
            fields = []
            for j, name in enumerate(DEVOPS_FIELDS):
                state[h][j] = min(100.0, max(0.0, state[h][j] + rng.gauss(0, 1)))
                if decimals is None:
                    fields.append((name, int(state[h][j])))
                else:
                    fields.append((name, round(state[h][j], decimals)))
            out.append(lp_line(measurement, host_tags[h], fields, ts, precision))
    return out


def api_time(ms):
    """A time parameter for the HTTP API: unix seconds with exactly three
    decimals, so a millisecond survives the trip exactly."""
    sign = "-" if ms < 0 else ""
    ms = abs(ms)
    return "%s%d.%03d" % (sign, ms // 1000, ms % 1000)


def rfc3339_ms(ms):
    """The same instant as RFC 3339 with milliseconds, in UTC."""
    t = time.gmtime(ms // 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + ".%03dZ" % (ms % 1000)


def recent_base_s():
    """A whole-hour unix time about three hours ago: data near 'now' so no
    retention or time-window rule can touch it."""
    return (int(time.time()) // 3600 - 3) * 3600


def chunks(seq, n):
    return [seq[i:i + n] for i in range(0, len(seq), n)]


# ---------------------------------------------------------- raw sockets --

def raw_request(port, data, read_timeout=10.0, shut_wr=False):
    """Send raw bytes to 127.0.0.1:port (EPIPE/ECONNRESET while sending are
    tolerated: a server may answer and close early) and read until EOF or
    read_timeout. Returns the bytes received (b'' when closed without
    answer, None when nothing happened before the timeout)."""
    s = socket.create_connection((LOOPBACK, port), timeout=read_timeout)
    got = b""
    try:
        try:
            s.sendall(data)
            if shut_wr:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        deadline = time.monotonic() + read_timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return got if got else None
            except ConnectionResetError:
                return got
            if not chunk:
                return got
            got += chunk
        return got if got else None
    finally:
        s.close()


def http_status_of(raw):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", raw or b"")
    return int(m.group(1)) if m else None
