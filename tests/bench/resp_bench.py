#!/usr/bin/env python3
"""RESP door throughput and latency, next to line protocol on the same box.

  tests/bench/resp_bench.py [--build build] [--seconds 20] [--clients 8]

Starts a 3-node cluster like the local one (12 shards, RF 3, write
consistency quorum, wal periodic) with one router and its RESP door, then
runs, one after the other:

  1. redis-benchmark, pipelined (-P 100) TS.ADD with `*` timestamps over
     1000 keys (ON_DUPLICATE LAST, so a sample landing on the same
     millisecond as another replaces it instead of being refused);
  2. redis-benchmark, pipelined (-P 16) TS.MADD of 100 samples per command
     (100 keys, `*` timestamps);
  3. redis-benchmark, one client, no pipelining: single TS.ADD latency
     (p50 / p99 from redis-benchmark's --precision 3 CSV percentiles);
  4. line protocol on the same cluster: tests/bench/load_lp.py over a
     devops file made by `strata bench --print` (10 fields a line).

Prints one JSON object: samples/s of each, the TS.ADD latency percentiles.
Not run in CI (it prints figures and asserts nothing).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import harness  # noqa: E402

RB = "/usr/bin/redis-benchmark"


def bench(port, args, n):
    argv = [RB, "-p", str(port), "-n", str(n), "-q", "--csv"] + args
    t0 = time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    dt = time.monotonic() - t0
    if out.returncode != 0:
        raise SystemExit("redis-benchmark failed: %s %s" % (out.stdout, out.stderr))
    # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms",
    # "p99_latency_ms","max_latency_ms"
    rows = [r for r in out.stdout.splitlines() if r.startswith('"') and not r.startswith('"test"')]
    f = [x.strip('"') for x in rows[-1].split('","')]
    return {"rps": float(f[1]), "p50_ms": float(f[4]), "p99_ms": float(f[6]), "seconds": dt}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--adds", type=int, default=300000)
    ap.add_argument("--madds", type=int, default=20000)
    ap.add_argument("--single", type=int, default=20000)
    ap.add_argument("--lp-hosts", type=int, default=200)
    args = ap.parse_args()
    os.environ.setdefault("STRATA_BIN_DIR", os.path.abspath(args.build))
    port = harness.free_port()
    res = {}
    with harness.Cluster(nodes=3, routers=1, rf=3, shards=12, tag="respbench",
                         storage={"wal_durability": "periodic"},
                         router={"resp_listen": "127.0.0.1:%d" % port}) as c:
        c.start()
        # 1. pipelined TS.ADD
        r = bench(port, ["-c", str(args.clients), "-P", "100", "-r", "1000",
                         "TS.ADD", "bench:add:__rand_int__", "*", "__rand_int__",
                         "ON_DUPLICATE", "LAST"], args.adds)
        res["ts_add_pipelined_samples_per_s"] = r["rps"]
        # 2. pipelined TS.MADD, 100 samples per command
        madd = ["TS.MADD"]
        for i in range(100):
            madd += ["bench:madd:%d" % i, "*", "__rand_int__"]
        r = bench(port, ["-c", str(args.clients), "-P", "16", "-r", "1000000"] + madd, args.madds)
        res["ts_madd_commands_per_s"] = r["rps"]
        res["ts_madd_samples_per_s"] = r["rps"] * 100
        # 3. single TS.ADD latency
        r = bench(port, ["-c", "1", "-P", "1", "--precision", "3", "-r", "1000",
                         "TS.ADD", "bench:one:__rand_int__", "*", "1", "ON_DUPLICATE", "LAST"],
                  args.single)
        res["ts_add_single_p50_ms"] = r["p50_ms"]
        res["ts_add_single_p99_ms"] = r["p99_ms"]
        res["ts_add_single_per_s"] = r["rps"]
        # 4. line protocol, same cluster
        lp = os.path.join(c.dir, "bench.lp")
        start = int(time.time()) - 3 * 3600
        with open(lp, "w") as f:
            subprocess.run([os.path.join(args.build, "cli", "strata"), "bench", "--print",
                            "--hosts", str(args.lp_hosts), "--hours", "1", "--start",
                            str(start)], stdout=f, check=True, timeout=600)
        out = subprocess.run([sys.executable, os.path.join(HERE, "load_lp.py"), "--url",
                              c.router_url(0) + "/write?precision=ns", "--file", lp,
                              "--conns", str(args.clients)],
                             capture_output=True, text=True, timeout=1800)
        j = json.loads(out.stdout)
        res["line_protocol_samples_per_s"] = j["samples_per_s"]
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
