#!/usr/bin/env python3
"""Ingest A/B benchmark: Strata builds side by side with VictoriaMetrics, on
the devops workload of query_bench.py, interleaved in one run.

  tests/bench/ingest_ab.py [--sizes 1000x3,4000x1] [--builds build-a,build[@VAR=VALUE]]
                           [--rf 1,3] [--rounds 1] [--perf DIR] [--no-vm]

For each size: `strata bench --print` (the first build's CLI; seed 1,
--decimals 2, ending about an hour ago) makes the line protocol; then, for
each round, VictoriaMetrics (one copy, a fresh data dir) and each build at
each replication factor (3 nodes + 1 router, 12 shards, write quorum, a
fresh cluster every time, as query_bench.py starts it) are fed the file by
load_lp.py (4 connections x 10k lines). Prints per run samples/s (the
loader's), the ratio to VictoriaMetrics of the same round, peak RSS (VmHWM)
of router and each node and VM, the CPU seconds each Strata process used
from its start to the end of the load (steadier than samples/s on a busy
box), their threads' context switches, and the load average before the run.
--perf DIR records router + nodes together (perf record -g) during each
Strata load into DIR/perf-<build>-rf<N>-<size>.data. Every process it
starts is stopped by PID at the end.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
sys.path.insert(0, HERE)

from query_bench import VM, cpu_s, load, mib, strata_cluster, strata_pids, vm_hwm_kib  # noqa: E402


def ctx_switches(pid):
    """Context switches of every thread of pid so far (voluntary + not)."""
    n = 0
    try:
        for t in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/status" % (pid, t)) as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                        n += int(line.split()[-1])
    except OSError:
        return None
    return n


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def run_strata(harness, build, rf, lp, perf_path):
    build, _, env = build.partition("@")  # DIR@NAME=VALUE: an environment variable for the run
    os.environ["STRATA_BIN_DIR"] = os.path.abspath(build)
    old = None
    if env:
        k, _, v = env.partition("=")
        old = (k, os.environ.get(k))
        os.environ[k] = v
    c = strata_cluster(harness, rf, "iab-rf%d" % rf)
    perf = None
    try:
        c.start()
        pids = strata_pids(c)
        if perf_path:
            perf = subprocess.Popen(["perf", "record", "-g", "-F", "499", "-o", perf_path, "-p",
                                     ",".join(str(p) for _, p in pids)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rate = load(c.router_url(), lp)["samples_per_s"]
        if perf:
            perf.send_signal(2)
            perf.wait(timeout=120)
            perf = None
        rss = [(who, vm_hwm_kib(pid)) for who, pid in pids]
        cpu = [(who, cpu_s(pid)) for who, pid in pids]
        cs = sum(ctx_switches(pid) or 0 for _, pid in pids)
        return rate, rss, cpu, cs
    finally:
        if perf:  # stopped like above, so that the profile of a failed load is readable
            perf.send_signal(2)
            perf.wait(timeout=120)
        c.stop()
        c.close()
        if old:
            if old[1] is None:
                del os.environ[old[0]]
            else:
                os.environ[old[0]] = old[1]


def run_size(args, harness, hosts, hours):
    import time
    tmp = tempfile.mkdtemp(prefix="strata-ingest-ab-")
    try:
        now = int(time.time())
        end_s = now - now % 3600 - 3600
        start_s = end_s - int(hours * 3600)
        lp = os.path.join(tmp, "devops.lp")
        os.environ["STRATA_BIN_DIR"] = os.path.abspath(args.builds[0])
        with open(lp, "wb") as out:
            subprocess.run([harness.binary("cli"), "bench", "--print", "--hosts", str(hosts),
                            "--hours", str(hours), "--start", str(start_s), "--seed", "1",
                            "--decimals", "2"], stdout=out, check=True)
        tag = "%dx%g" % (hosts, hours)
        print("== %s" % tag, flush=True)
        for rnd in range(args.rounds):
            v = None
            if not args.no_vm:
                la = loadavg()
                vdir = os.path.join(tmp, "vm%d" % rnd)
                os.makedirs(vdir)
                vm = VM(harness, vdir)
                try:
                    v = load(vm.url, lp)["samples_per_s"]
                    vr = vm_hwm_kib(vm.proc.pid)
                finally:
                    vm.stop()
                shutil.rmtree(vdir, ignore_errors=True)
                print("%s round %d victoria: %d samples/s, peak RSS %s MiB (load %s)" %
                      (tag, rnd, v, mib(vr), la), flush=True)
            for rf in args.rf:
                for b in args.builds:
                    la = loadavg()
                    pp = None
                    if args.perf:
                        os.makedirs(args.perf, exist_ok=True)
                        pp = os.path.join(args.perf, "perf-%s-rf%d-%s.data" %
                                          (os.path.basename(os.path.normpath(b.split("@")[0])),
                                           rf, tag))
                    try:
                        rate, rss, cpu, cs = run_strata(harness, b, rf, lp, pp)
                    except RuntimeError as e:  # a failed load is reported, the run goes on
                        print("%s round %d %s rf%d: FAILED %s (load %s)" %
                              (tag, rnd, b, rf, str(e)[-300:], la), flush=True)
                        continue
                    tot = sum(k or 0 for _, k in rss)
                    print("%s round %d %s rf%d: %d samples/s%s; peak RSS MiB %s; all %s "
                          "(%s per copy); CPU s %s; %dk context switches (load %s)" %
                          (tag, rnd, b, rf, rate, " (%.2fx victoria)" % (rate / v) if v else "",
                           ", ".join("%s %s" % (w, mib(k)) for w, k in rss), mib(tot),
                           mib(tot / rf),
                           ", ".join("%s %.1f" % (w, c) for w, c in cpu if c is not None),
                           cs // 1000, la), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000x3,4000x1")
    ap.add_argument("--builds", default="build", help="comma-separated build dirs (A/B)")
    ap.add_argument("--rf", default="1,3")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--perf", default=None, metavar="DIR")
    ap.add_argument("--no-vm", action="store_true")
    args = ap.parse_args()
    args.builds = args.builds.split(",")
    args.rf = [int(x) for x in args.rf.split(",")]
    import harness
    for size in args.sizes.split(","):
        h, hr = size.lower().split("x")
        run_size(args, harness, int(h), float(hr))


if __name__ == "__main__":
    main()
