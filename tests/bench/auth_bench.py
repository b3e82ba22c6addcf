#!/usr/bin/env python3
"""Authentication benchmark: ingest and query throughput of one cluster
with [security] users_file against the same cluster without it, in one
run. Prints lines/s of ingest and queries/s, each with auth off, with a
token (Bearer), with a password (Basic) and with a token over TLS
("tls+token": HTTPS on the router and node listeners and rpc_tls = on, so
router->node RPC is mutual TLS too; certificates as tests/bench/tls_bench.py
makes them), and the ratio to auth off.

  tests/bench/auth_bench.py --build build [--hosts 200] [--hours 1]
      [--batch 1000] [--conns 4] [--queries 400] [--nodes 2]

The devops workload comes from `build/cli/strata bench --print` (cut into
bodies of --batch lines before the clock starts) and is sent by
tests/bench/load_lp.py's Sender (one keep-alive connection per thread).
Each mode writes the same bodies into a fresh cluster (so no mode finds its
series already made); the modes run in turn --rounds times and the median
of each is printed (a shared machine's load swings more than auth costs). Queries are instant sum(rate(...)) over what was
written, sent over keep-alive connections. Everything runs on 127.0.0.1
with ports picked at run time (the integration harness); every process
started is stopped by PID.
"""
import argparse
import base64
import http.client
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)

import harness  # noqa: E402
from harness import Cluster  # noqa: E402
from load_lp import Sender  # noqa: E402
from tls_bench import make_certs  # noqa: E402

SSL_CTX = None  # the "tls+token" mode's client context (trusts the bench CA)


def connection(port, timeout=120):
    if SSL_CTX:
        return http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=SSL_CTX)
    return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)


class TlsSender(Sender):
    def connect(self):
        return http.client.HTTPSConnection(self.host, self.port, timeout=300, context=SSL_CTX)


def generate(args):
    r = subprocess.run([os.path.join(args.build, "cli", "strata"), "bench", "--print",
                        "--hosts", str(args.hosts), "--hours", str(args.hours),
                        "--start", "2016-01-01T00:00:00Z"], stdout=subprocess.PIPE, check=True)
    lines = [l for l in r.stdout.split(b"\n") if l]
    return [(b"\n".join(lines[i:i + args.batch]), len(lines[i:i + args.batch]))
            for i in range(0, len(lines), args.batch)]


def query_rate(port, headers, n, conns):
    """n instant queries over `conns` keep-alive connections: queries/s."""
    todo = list(range(n))
    lock = threading.Lock()
    errors = []

    def worker():
        c = connection(port)
        while True:
            with lock:
                if not todo:
                    break
                todo.pop()
            c.request("GET", "/api/v1/query?query=sum(rate(cpu_usage_user%5B5m%5D))"
                      "&time=2016-01-01T00:30:00Z", headers=headers)
            r = c.getresponse()
            r.read()
            if r.status != 200:
                errors.append(r.status)
        c.close()

    t0 = time.monotonic()
    ts = [threading.Thread(target=worker) for _ in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise SystemExit("queries failed: %s" % errors[:5])
    return n / (time.monotonic() - t0)


def one_mode(args, bodies, mode, tls_security):
    global SSL_CTX
    os.environ["STRATA_BIN_DIR"] = os.path.abspath(args.build)
    c = Cluster(nodes=args.nodes, routers=1, shards=8, rf=1,
                tag="authbench-" + mode.replace("+", "-"), storage={"retention": "0"})
    SSL_CTX = harness.TLS_CONTEXT = tls_security[1] if mode == "tls+token" else None
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    try:
        if mode != "off":
            users = os.path.join(c.dir, "users")
            cli = os.path.join(args.build, "cli", "strata")
            out = subprocess.run([cli, "user", "add", "bench", "--role", "write",
                                  "--password-stdin", "--file", users], input=b"bench-pw\n",
                                 stdout=subprocess.PIPE, check=True)
            token = out.stdout.decode().strip()
            c.security_kv = {"users_file": users}
            if mode == "tls+token":
                c.security_kv.update(tls_security[0])
                c.scheme = "https"
            headers["Authorization"] = ("Basic " + base64.b64encode(b"bench:bench-pw").decode()
                                        if mode == "password" else "Bearer " + token)
        c.start()
        url = c.router_url(0) + "/write"
        # one request before the clock: a password's slow hash is paid once
        # per process (then cached), which is not what a steady stream costs
        warm = connection(c.router_port[0])
        warm.request("GET", "/api/v1/labels", headers={k: v for k, v in headers.items()
                                                       if k == "Authorization"})
        if warm.getresponse().status != 200:
            raise SystemExit("%s: the warm-up request failed" % mode)
        warm.close()
        t0 = time.monotonic()
        s = (TlsSender if SSL_CTX else Sender)(url, bodies, t0 + 600, headers)
        ts = [threading.Thread(target=s.run_one_connection) for _ in range(args.conns)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        secs = time.monotonic() - t0
        if s.err:
            raise SystemExit("%s: %d writes failed: %s %s" % (mode, s.err, s.err_codes,
                                                              s.first_err))
        lps = s.lines_ok / secs
        qps = query_rate(c.router_port[0], {k: v for k, v in headers.items()
                                            if k == "Authorization"}, args.queries, args.conns)
        return lps, qps
    finally:
        c.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--hours", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--queries", type=int, default=400)
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3,
                    help="modes run in turn this many times; the median is shown (default 3)")
    args = ap.parse_args()
    bodies = generate(args)
    print("%d bodies of up to %d lines, %d connections" % (len(bodies), args.batch, args.conns))
    import ssl
    import shutil
    import tempfile
    d = tempfile.mkdtemp(prefix="strata-authbench-pki-")
    try:
        sec = make_certs(d, ["n%d" % (i + 1) for i in range(args.nodes)] + ["router"])
        tls_security = (sec, ssl.create_default_context(cafile=os.path.join(d, "ca.crt")))
        runs = {"off": [], "token": [], "password": [], "tls+token": []}
        for _ in range(max(1, args.rounds)):  # in turn: a busy spell hits every mode alike
            for mode in runs:
                runs[mode].append(one_mode(args, bodies, mode, tls_security))
    finally:
        shutil.rmtree(d, True)
    res = {m: (sorted(r[0] for r in v)[len(v) // 2], sorted(r[1] for r in v)[len(v) // 2])
           for m, v in runs.items()}
    print("%-10s %14s %8s %12s %8s" % ("auth", "ingest lines/s", "ratio", "queries/s", "ratio"))
    for mode, (lps, qps) in res.items():
        print("%-10s %14.0f %7.1f%% %12.1f %7.1f%%" % (mode, lps, 100 * lps / res["off"][0], qps,
                                                       100 * qps / res["off"][1]))


if __name__ == "__main__":
    main()
