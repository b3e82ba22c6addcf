#!/usr/bin/env python3
"""Ingest benchmark: a local Strata cluster (N nodes + 1 router) and, in the
same run, VictoriaMetrics (if installed), fed the same line-protocol file by
tests/bench/load_lp.py. Prints samples/s, request latency p50/p99, peak
RSS of every process and bytes on disk per sample.

  build/cli/strata bench --print --hosts 1000 --hours 3 --start 2016-01-01T00:00:00Z > /tmp/h1000_3h.lp
  tests/bench/cluster_bench.py --build build --file /tmp/h1000_3h.lp \
      [--nodes 3] [--conns 4] [--batch 10000] [--wal periodic] [--no-vm]

Everything runs on 127.0.0.1 with ports picked at run time; every process
it starts is stopped by PID at the end.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
LOADER = os.path.join(HERE, "load_lp.py")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_http(url, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status in (200, 204):
                    return True
        except Exception:
            pass
        time.sleep(0.05)
    raise RuntimeError("not ready: " + url)


def rss_kb(pid):
    try:
        for line in open("/proc/%d/status" % pid):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def du(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def load(url, args):
    out = subprocess.run([sys.executable, args.loader, "--url", url, "--file", args.file,
                          "--batch", str(args.batch), "--conns", str(args.conns)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def strata(args, tmp):
    nodes = []
    ini = ["[cluster]", "name = bench", "shards = %d" % args.shards, "replication_factor = 1", "",
           "[storage]", "wal_durability = %s" % args.wal, "retention = 0", ""]
    for i in range(args.nodes):
        rpc, http = free_port(), free_port()
        nodes.append((i, rpc, http))
        ini += ['[node "n%d"]' % i, "rpc = 127.0.0.1:%d" % rpc, "http = 127.0.0.1:%d" % http, ""]
    cfg = os.path.join(tmp, "cluster.ini")
    open(cfg, "w").write("\n".join(ini))
    procs = []
    try:
        for i, _, http in nodes:
            log = open(os.path.join(tmp, "n%d.log" % i), "w")
            p = subprocess.Popen([os.path.join(args.build, "node", "strata-node"), "--config", cfg,
                                  "--node-id", "n%d" % i, "--data-dir", os.path.join(tmp, "d%d" % i)],
                                 stderr=log)
            procs.append(("node n%d" % i, p))
            wait_http("http://127.0.0.1:%d/ready" % http)
        rport = free_port()
        log = open(os.path.join(tmp, "router.log"), "w")
        p = subprocess.Popen([os.path.join(args.build, "router", "strata-router"), "--config", cfg,
                              "--listen", "127.0.0.1:%d" % rport], stderr=log)
        procs.append(("router", p))
        wait_http("http://127.0.0.1:%d/ready" % rport)
        res = load("http://127.0.0.1:%d/write" % rport, args)
        rss = {name: rss_kb(p.pid) for name, p in procs}
        for name, p in procs:
            p.send_signal(signal.SIGTERM)
        for name, p in procs:
            p.wait(timeout=30)
        disk = sum(du(os.path.join(tmp, "d%d" % i)) for i in range(args.nodes))
        return res, rss, disk
    finally:
        for _, p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def victoria(args, tmp):
    exe = shutil.which("victoria-metrics")
    if not exe:
        return None
    port = free_port()
    data = os.path.join(tmp, "vm")
    p = subprocess.Popen([exe, "-httpListenAddr=127.0.0.1:%d" % port, "-storageDataPath=" + data,
                          "-retentionPeriod=100y"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        wait_http("http://127.0.0.1:%d/health" % port)
        res = load("http://127.0.0.1:%d/write" % port, args)
        rss = rss_kb(p.pid)
        urllib.request.urlopen("http://127.0.0.1:%d/internal/force_flush" % port).read()
        return res, {"victoria-metrics": rss}, None
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def show(name, res, rss, disk, samples):
    print("%-18s %6.2f M samples/s  p50 %7.1f ms  p99 %7.1f ms  errors %d" % (
        name, res["samples_per_s"] / 1e6, res["req_latency_ms_p50"], res["req_latency_ms_p99"],
        res["requests_err"]))
    for k, v in rss.items():
        print("%-18s   peak RSS %-18s %7.1f MiB" % ("", k, v / 1024.0))
    if disk is not None:
        print("%-18s   disk %.1f MB = %.3f bytes/sample (after SIGTERM flush, before full compaction)"
              % ("", disk / 1e6, disk / samples))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--file", required=True)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--shards", type=int, default=12)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--batch", type=int, default=10000)
    ap.add_argument("--wal", default="periodic")
    ap.add_argument("--loader", default=LOADER)
    ap.add_argument("--no-vm", action="store_true")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="strata-cluster-bench-")
    try:
        res, rss, disk = strata(args, tmp)
        samples = res["samples_sent_ok"]
        show("strata (%d nodes)" % args.nodes, res, rss, disk, samples)
        if not args.no_vm:
            vm = victoria(args, tmp)
            if vm:
                show("victoria-metrics", vm[0], vm[1], None, samples)
            else:
                print("victoria-metrics not installed (apt-get install victoria-metrics)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
