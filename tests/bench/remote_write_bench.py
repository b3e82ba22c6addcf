#!/usr/bin/env python3
"""Remote-write benchmark: the devops workload posted as Prometheus remote
write bodies and as line protocol, the same samples in the same requests,
to Strata (RF=1 and RF=3, a fresh local cluster per run) and to
VictoriaMetrics single node, in one run. Prints samples/s per target, the
router's CPU seconds (samples per router CPU-second: the per-core figure)
and request latency.

  tests/bench/remote_write_bench.py --build build [--hosts 1000] [--hours 1]
      [--batch 1000] [--conns 4] [--nodes 3] [--no-vm]

The line protocol comes from `build/cli/strata bench --print` (docs/cli.md);
it is cut into bodies of --batch lines, and each body is also turned into
one WriteRequest holding the same samples (series = measurement_field plus
the tags, like the line-protocol mapping), encoded by hand and
snappy-compressed with libsnappy (tests/integration/prompb.py), all before
the clock starts. The sender is tests/bench/load_lp.py's (one keep-alive
connection per thread, no retries). Everything runs on 127.0.0.1 with ports
picked at run time; every process started is stopped by PID.
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)

import prompb  # noqa: E402
from cluster_bench import free_port, rss_kb, wait_http  # noqa: E402
from load_lp import Sender, nearest_rank  # noqa: E402

RW_HEADERS = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
              "X-Prometheus-Remote-Write-Version": "0.1.0"}
LP_HEADERS = {"Content-Type": "text/plain; charset=utf-8"}


def generate(args):
    r = subprocess.run([os.path.join(args.build, "cli", "strata"), "bench", "--print",
                        "--hosts", str(args.hosts), "--hours", str(args.hours),
                        "--start", "2016-01-01T00:00:00Z"], stdout=subprocess.PIPE, check=True)
    return r.stdout.split(b"\n")


def lp_to_write_request(lines, cache):
    """Lines of the devops workload (no escapes, numeric fields, ns
    timestamps) -> (WriteRequest bytes, samples). Series keep the order of
    their first sample; labels are sorted like Prometheus sends them."""
    series = {}
    for line in lines:
        head, fields, ts = line.split(b" ")
        ms = int(ts) // 1_000_000
        parts = head.split(b",")
        meas, tags = parts[0], parts[1:]
        for f in fields.split(b","):
            k, v = f.split(b"=")
            key = (head, k)
            enc = cache.get(key)
            if enc is None:
                labels = [(b"__name__", meas + b"_" + k)] + [tuple(t.split(b"=", 1)) for t in tags]
                labels.sort()
                enc = b"".join(prompb.label(n, val) for n, val in labels)
                cache[key] = enc
            series.setdefault(enc, []).append(prompb.sample(float(v.rstrip(b"iu")), ms))
    body = b"".join(prompb.field_len(1, enc + b"".join(s)) for enc, s in series.items())
    return body, sum(len(s) for s in series.values())


def build_bodies(args):
    t0 = time.monotonic()
    lines = [l for l in generate(args) if l]
    lp, rw = [], []
    cache = {}
    raw_bytes = 0
    for i in range(0, len(lines), args.batch):
        chunk = lines[i:i + args.batch]
        body, n = lp_to_write_request(chunk, cache)
        raw_bytes += len(body)
        rw.append((prompb.snappy_compress(body), n))
        lp.append((b"\n".join(chunk) + b"\n", n))
    print("built %d requests, %d samples (%.1f MB line protocol, %.1f MB protobuf, %.1f MB "
          "snappy) in %.1f s" % (len(lp), sum(n for _, n in lp), sum(len(b) for b, _ in lp) / 1e6,
                                 raw_bytes / 1e6, sum(len(b) for b, _ in rw) / 1e6,
                                 time.monotonic() - t0))
    return lp, rw


def cpu_seconds(pid):
    try:
        f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def send(url, bodies, headers, conns):
    t0 = time.monotonic()
    s = Sender(url, bodies, t0 + 3600, headers)
    threads = [threading.Thread(target=s.run_one_connection, daemon=True) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.monotonic() - t0
    lat = sorted(x * 1000.0 for x in s.latencies)
    return {"samples": s.lines_ok, "seconds": secs, "sps": s.lines_ok / secs, "err": s.err,
            "err_codes": s.err_codes, "first_err": s.first_err,
            "p50": nearest_rank(lat, 0.5) or 0, "p99": nearest_rank(lat, 0.99) or 0}


class Procs:
    def __init__(self):
        self.procs = []

    def start(self, name, argv, log):
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
        self.procs.append((name, p))
        return p

    def stop(self):
        for _, p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for _, p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []


def strata_run(args, tmp, rf, path, bodies, headers):
    """A fresh cluster, one load; returns (result, router CPU seconds, RSS)."""
    d = tempfile.mkdtemp(prefix="rf%d-" % rf, dir=tmp)
    ini = ["[cluster]", "name = bench", "shards = %d" % args.shards,
           "replication_factor = %d" % rf, "write_consistency = quorum", "",
           "[storage]", "wal_durability = %s" % args.wal, "retention = 0", "",
           "[router]", "max_body_bytes = 64MiB", ""]
    nodes = []
    for i in range(args.nodes):
        rpc, http = free_port(), free_port()
        nodes.append(http)
        ini += ['[node "n%d"]' % i, "rpc = 127.0.0.1:%d" % rpc, "http = 127.0.0.1:%d" % http, ""]
    cfg = os.path.join(d, "cluster.ini")
    open(cfg, "w").write("\n".join(ini))
    ps = Procs()
    try:
        for i, http in enumerate(nodes):
            ps.start("n%d" % i, [os.path.join(args.build, "node", "strata-node"), "--config", cfg,
                                 "--node-id", "n%d" % i, "--data-dir",
                                 os.path.join(d, "d%d" % i)], os.path.join(d, "n%d.log" % i))
        for http in nodes:
            wait_http("http://127.0.0.1:%d/ready" % http)
        port = free_port()
        router = ps.start("router", [os.path.join(args.build, "router", "strata-router"),
                                     "--config", cfg, "--listen", "127.0.0.1:%d" % port],
                          os.path.join(d, "router.log"))
        wait_http("http://127.0.0.1:%d/ready" % port)
        cpu0 = cpu_seconds(router.pid)
        res = send("http://127.0.0.1:%d%s" % (port, path), bodies, headers, args.conns)
        res["router_cpu"] = cpu_seconds(router.pid) - cpu0
        res["rss"] = rss_kb(router.pid)
        return res
    finally:
        ps.stop()
        shutil.rmtree(d, ignore_errors=True)


def vm_run(args, tmp, path, bodies, headers):
    exe = shutil.which("victoria-metrics")
    if not exe:
        return None
    d = tempfile.mkdtemp(prefix="vm-", dir=tmp)
    port = free_port()
    ps = Procs()
    try:
        p = ps.start("vm", [exe, "-httpListenAddr=127.0.0.1:%d" % port, "-storageDataPath=" + d,
                            "-retentionPeriod=100y", "-maxInsertRequestSize=64MB"],
                     os.path.join(tmp, "vm.log"))
        wait_http("http://127.0.0.1:%d/health" % port)
        cpu0 = cpu_seconds(p.pid)
        res = send("http://127.0.0.1:%d%s" % (port, path), bodies, headers, args.conns)
        urllib.request.urlopen("http://127.0.0.1:%d/internal/force_flush" % port).read()
        res["router_cpu"] = cpu_seconds(p.pid) - cpu0
        res["rss"] = rss_kb(p.pid)
        return res
    finally:
        ps.stop()
        shutil.rmtree(d, ignore_errors=True)


def show(name, r):
    if r is None:
        print("%-34s not installed (apt-get install victoria-metrics)" % name)
        return
    per_cpu = r["samples"] / r["router_cpu"] if r["router_cpu"] > 0 else 0
    print("%-34s %6.3f M samples/s  %6.3f M samples/CPU-s  p50 %6.1f ms  p99 %6.1f ms  "
          "errors %d%s" % (name, r["sps"] / 1e6, per_cpu / 1e6, r["p50"], r["p99"], r["err"],
                           (" " + str(r["err_codes"]) + " " + r["first_err"][:200])
                           if r["err"] else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--hours", type=float, default=1)
    ap.add_argument("--batch", type=int, default=1000, help="lines per request (x10 samples)")
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--shards", type=int, default=12)
    ap.add_argument("--wal", default="periodic")
    ap.add_argument("--no-vm", action="store_true")
    ap.add_argument("--only", default="", help="comma list of runs to do (rw1,lp1,rw3,lp3,vmrw,vmlp)")
    args = ap.parse_args()
    lp, rw = build_bodies(args)
    tmp = tempfile.mkdtemp(prefix="strata-rw-bench-")
    runs = [
        ("rw1", "strata RF=1 /api/v1/write (remote)", lambda: strata_run(
            args, tmp, 1, "/api/v1/write", rw, RW_HEADERS)),
        ("lp1", "strata RF=1 /write (line protocol)", lambda: strata_run(
            args, tmp, 1, "/write?precision=ns", lp, LP_HEADERS)),
        ("rw3", "strata RF=3 /api/v1/write (remote)", lambda: strata_run(
            args, tmp, 3, "/api/v1/write", rw, RW_HEADERS)),
        ("lp3", "strata RF=3 /write (line protocol)", lambda: strata_run(
            args, tmp, 3, "/write?precision=ns", lp, LP_HEADERS)),
    ]
    if not args.no_vm:
        runs += [("vmrw", "victoria-metrics /api/v1/write", lambda: vm_run(
            args, tmp, "/api/v1/write", rw, RW_HEADERS)),
                 ("vmlp", "victoria-metrics /write (line prot.)", lambda: vm_run(
                     args, tmp, "/write", lp, LP_HEADERS))]
    only = set(x for x in args.only.split(",") if x)
    try:
        print("(samples/CPU-s: samples over the CPU seconds of the router, or of "
              "victoria-metrics, during the load)")
        for key, name, fn in runs:
            if only and key not in only:
                continue
            show(name, fn())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
