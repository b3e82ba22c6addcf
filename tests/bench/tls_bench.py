#!/usr/bin/env python3
"""Ingest throughput with TLS off and on, in the same run.

  tests/bench/tls_bench.py --build build [--hosts 200] [--hours 3] [--rounds 2]
      [--nodes 3] [--rf 2] [--conns 4]

Two clusters of real processes (N nodes, RF replicas, 1 router) made by
tests/integration/harness.py: "plain" (no [security]) and "tls" (HTTPS on
the router and node listeners + rpc_tls = on: every router->node and
node->node link is mutual TLS). Certificates come from the openssl command
line (EC P-256). Each round loads the same devops workload into a fresh
cluster of each kind with `strata bench` (the CLI, --cacert for https),
alternating plain/tls so a busy machine hurts both alike; the best round of
each kind is compared. Prints one JSON object: samples/s per kind and the
TLS/plain ratio (the aim is >= 0.85). Every process it starts is stopped by
PID at the end.
"""
import argparse
import atexit
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def make_certs(d, ids):
    ext = os.path.join(d, "leaf.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                "extendedKeyUsage=serverAuth,clientAuth\n")
    p = lambda n: os.path.join(d, n)  # noqa: E731
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", p("ca.key"), "-out", p("ca.crt"), "-days", "2", "-subj", "/CN=bench CA")
    for name in ["tls"] + ["rpc-" + i for i in ids]:
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", p(name + ".key"), "-out", p(name + ".csr"),
                # an RPC certificate names its process: CN = node id, or "router"
                "-subj", "/CN=" + (name[4:] if name.startswith("rpc-") else name))
        openssl("x509", "-req", "-in", p(name + ".csr"), "-CA", p("ca.crt"), "-CAkey",
                p("ca.key"), "-CAcreateserial", "-days", "2", "-out", p(name + ".crt"),
                "-extfile", ext)
    return {"tls_cert": p("tls.crt"), "tls_key": p("tls.key"), "rpc_tls": "on",
            "rpc_ca": p("ca.crt"), "rpc_cert": p("rpc-{id}.crt"), "rpc_key": p("rpc-{id}.key")}


def one_round(harness, args, security, ca):
    c = harness.Cluster(nodes=args.nodes, routers=1, shards=12, rf=args.rf, tag="tlsbench",
                        security=security)
    try:
        c.start()
        c.wait_peers_up()
        argv = [harness.binary("cli"), "bench", "--router", c.router_url(0), "--hosts",
                str(args.hosts), "--hours", str(args.hours), "--start", "2016-01-01T00:00:00Z",
                "--conns", str(args.conns)]
        if ca:
            argv += ["--cacert", ca]
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900)
        out = r.stdout.decode(errors="replace")
        if r.returncode != 0:
            raise SystemExit("strata bench failed:\n" + out)
        m = re.search(r"samples_per_s=([0-9.]+)", out)
        if not m:
            raise SystemExit("no samples/s in:\n" + out)
        c.stop()
        return float(m.group(1)), out
    finally:
        c.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(HERE, "..", "..", "build"))
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--hours", type=float, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--rf", type=int, default=2)
    ap.add_argument("--conns", type=int, default=4)
    args = ap.parse_args()
    os.environ["STRATA_BIN_DIR"] = os.path.abspath(args.build)
    import harness
    import ssl
    d = tempfile.mkdtemp(prefix="strata-tlsbench-")
    atexit.register(shutil.rmtree, d, True)
    security = make_certs(d, ["n%d" % (i + 1) for i in range(args.nodes)] + ["router"])
    ca = os.path.join(d, "ca.crt")
    harness.TLS_CONTEXT = ssl.create_default_context(cafile=ca)
    res = {"plain": [], "tls": []}
    for k in range(args.rounds):
        for kind in ("plain", "tls"):
            v, _ = one_round(harness, args, security if kind == "tls" else None,
                             ca if kind == "tls" else None)
            res[kind].append(v)
            sys.stderr.write("round %d %s: %.0f samples/s\n" % (k + 1, kind, v))
    best = {k: max(v) for k, v in res.items()}
    print(json.dumps({"samples_per_s": res, "best": best,
                      "tls_over_plain": round(best["tls"] / best["plain"], 3),
                      "hosts": args.hosts, "hours": args.hours, "nodes": args.nodes,
                      "rf": args.rf, "conns": args.conns}, indent=1))


if __name__ == "__main__":
    main()
