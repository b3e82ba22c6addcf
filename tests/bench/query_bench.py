#!/usr/bin/env python3
"""Query latency benchmark: Strata (3 nodes + 1 router, rf=1) against
Prometheus (Debian's 2.42) on the same devops workload.

  tests/bench/query_bench.py [--hosts 100] [--hours 12] [--reps 20] [--keep]
                             [--build build]

Strata runs every query twice: with pushdown (the default) and with
pushdown=0 ("strata-raw": raw samples to the router, evaluated there).
When Debian's victoria-metrics is installed, a single VictoriaMetrics loaded
with the same line protocol is timed too (nocache=1; its MetricsQL answers
differ from PromQL's in details, so they are not compared).

1. `strata bench --print` (the CLI of --build) makes the TSBS-like devops cpu
   data (--decimals 2, seed 1), ending about an hour ago.
2. Strata: a cluster from tests/integration/harness.py (real processes on
   127.0.0.1, free ports), loaded through the router with
   tests/bench/load_lp.py (4 connections, 10k lines per request).
3. Prometheus: the same line protocol converted to OpenMetrics exactly as
   Strata maps it (measurement_field, tags as labels, ns -> ms), turned into
   blocks by `promtool tsdb create-blocks-from openmetrics`, then served by
   `prometheus` on 127.0.0.1.
4. Each query runs over the whole data range at step 60 s, one warm-up run
   and then --reps timed runs per engine (alternating engines); prints p50 /
   p99 latency in ms and the number of series returned, and whether the two
   answers agree (compare() of test_promql_compare: same series, values
   within 1e-9 relative).

Evaluation times sit at x.5 s so no sample falls on a window boundary
(Prometheus 2.42's windows are closed, Strata's left-open like Prometheus 3).
A benchmark, not a test: it prints figures. Every process it starts is
stopped by PID at the end; --keep keeps the temp dir (data, logs).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
LOADER = os.path.join(HERE, "load_lp.py")
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

QUERIES = [
    ("selector", 'cpu_usage_user{hostname="host_1"}'),
    ("rate", "rate(cpu_usage_user[5m])"),
    ("sum by rate", "sum by (region) (rate(cpu_usage_user[5m]))"),
    ("topk", "topk(5, cpu_usage_user)"),
    ("max by host", "max by (hostname) (cpu_usage_user)"),
    ("avg by", "avg by (region) (cpu_usage_user)"),
]


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def lp_to_openmetrics(lp_path, om_path):
    """Line protocol (as `strata bench --print` writes it: no escapes, numeric fields,
    ns timestamps) -> OpenMetrics, one family per measurement_field, each
    series' samples together and in time order. Returns the sample count."""
    series = {}  # (measurement, tags) -> ([ts_ms], {field: [value text]})
    with open(lp_path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            head, fields, ts = line.split(" ")
            parts = head.split(",")
            key = (parts[0], tuple(sorted(tuple(p.split("=", 1)) for p in parts[1:])))
            ent = series.get(key)
            if ent is None:
                ent = series[key] = ([], {})
            ent[0].append(int(ts) // 1000000)
            for fv in fields.split(","):
                name, val = fv.split("=", 1)
                if val.endswith("i") or val.endswith("u"):
                    val = val[:-1]
                ent[1].setdefault(name, []).append(val)
    families = {}
    for (meas, tags), (ts, fields) in series.items():
        for name, vals in fields.items():
            families.setdefault("%s_%s" % (meas, name), []).append((tags, ts, vals))
    n = 0
    with open(om_path, "w") as out:
        for fam in sorted(families):
            out.write("# TYPE %s gauge\n" % fam)
            for tags, ts, vals in families[fam]:
                head = "%s{%s}" % (fam, ",".join('%s="%s"' % (k, v.replace("\\", "\\\\")
                                                                .replace('"', '\\"'))
                                                 for k, v in tags))
                order = sorted(range(len(ts)), key=ts.__getitem__)
                for i in order:
                    out.write("%s %s %d.%03d\n" % (head, vals[i], ts[i] // 1000, ts[i] % 1000))
                    n += 1
        out.write("# EOF\n")
    return n


def same_values_per_step(a, b):
    """True when both matrices hold the same multiset of values at every
    step (topk/bottomk answers that differ only in how ties were broken)."""
    from test_promql_compare import close, num

    def per_step(j):
        out = {}
        for r in j["data"]["result"]:
            for t, v in r["values"]:
                out.setdefault(t, []).append(num(v))
        return {t: sorted(v) for t, v in out.items()}
    pa, pb = per_step(a), per_step(b)
    return set(pa) == set(pb) and all(
        len(pa[t]) == len(pb[t]) and all(close(x, y) for x, y in zip(pa[t], pb[t])) for t in pa)


def run_query(base, q, start, end, step, extra=None):
    from harness import http_request
    params = {"query": q, "start": start, "end": end, "step": step}
    params.update(extra or {})
    url = base + "/api/v1/query_range?" + urllib.parse.urlencode(params)
    t0 = time.perf_counter()
    st, _, body = http_request(url, timeout=300)
    dt = (time.perf_counter() - t0) * 1000.0
    j = json.loads(body)
    if j.get("status") != "success":
        raise RuntimeError("%s: %s: HTTP %d %s" % (base, q, st, body[:300]))
    return dt, j


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--hours", type=float, default=12)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--step", type=int, default=60)
    ap.add_argument("--only", default=None,
                    help="run only the queries whose text contains this string")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--no-vm", action="store_true",
                    help="skip VictoriaMetrics even when victoria-metrics is installed")
    ap.add_argument("--build", default=None,
                    help="build dir with node/, router/ and cli/ (default $STRATA_BIN_DIR or build)")
    args = ap.parse_args()
    if args.build:
        os.environ["STRATA_BIN_DIR"] = os.path.abspath(args.build)
    import harness
    from test_promql_compare import Prometheus, compare

    tmp = tempfile.mkdtemp(prefix="strata-query-bench-")
    cluster = prom = vm = None
    vm_url = None
    ok = False
    try:
        prom = Prometheus(tmp)  # fails early when prometheus/promtool are missing
        now = int(time.time())
        end_s = now - now % 3600 - 3600
        start_s = end_s - int(args.hours * 3600)
        lp = os.path.join(tmp, "devops.lp")
        with open(lp, "wb") as out:
            subprocess.run([harness.binary("cli"), "bench", "--print", "--hosts", str(args.hosts),
                            "--hours", str(args.hours), "--start", str(start_s), "--seed", "1",
                            "--decimals", "2"], stdout=out, check=True)
        with open(lp) as f:
            lines = sum(1 for _ in f)
        samples = lines * 10
        print("data: %d hosts x %g h = %d lines, %d samples (%.0f MiB of line protocol)"
              % (args.hosts, args.hours, lines, samples, os.path.getsize(lp) / 2**20))

        # -- Strata
        cluster = harness.Cluster(nodes=3, routers=1, shards=12, rf=1, tag="query-bench",
                                  storage={"memtable_max_mb": "64MiB"},
                                  router={"request_timeout": "120s"})
        cluster.start()
        t0 = time.monotonic()
        out = subprocess.run([sys.executable, LOADER, "--url",
                              cluster.router_url() + "/write?precision=ns", "--file", lp,
                              "--batch", "10000", "--conns", "4"],
                             capture_output=True, text=True, check=True)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        wall = time.monotonic() - t0
        print("strata load: %s" % json.dumps(res))
        print("strata load: %d samples in %.1f s wall incl. reading the file (%.2fM samples/s)"
              % (samples, wall, samples / wall / 1e6))

        # -- Prometheus
        om = os.path.join(tmp, "devops.om")
        t0 = time.monotonic()
        n_om = lp_to_openmetrics(lp, om)
        t1 = time.monotonic()
        prom.create_blocks(om, timeout=3600)
        t2 = time.monotonic()
        os.unlink(om)
        prom.start()
        print("prometheus load: LP -> OpenMetrics %.1f s (%d samples), promtool "
              "create-blocks %.1f s (%.2fM samples/s; offline block creation, not HTTP "
              "ingestion)" % (t1 - t0, n_om, t2 - t1, n_om / (t2 - t1) / 1e6))
        if n_om != samples:
            raise RuntimeError("OpenMetrics has %d samples, expected %d" % (n_om, samples))

        # -- VictoriaMetrics (single node), when installed
        if shutil.which("victoria-metrics") and not args.no_vm:
            port = harness.free_port()
            vm_url = "http://127.0.0.1:%d" % port
            vm = subprocess.Popen(["victoria-metrics", "-httpListenAddr=127.0.0.1:%d" % port,
                                   "-storageDataPath=" + os.path.join(tmp, "vm"),
                                   "-retentionPeriod=100y", "-search.latencyOffset=0s"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if harness.http_request(vm_url + "/health", timeout=2)[0] == 200:
                        break
                except OSError:
                    time.sleep(0.1)
            subprocess.run([sys.executable, LOADER, "--url",
                            vm_url + "/write?precision=ns", "--file", lp, "--batch", "10000",
                            "--conns", "4"], capture_output=True, text=True, check=True)
            harness.http_request(vm_url + "/internal/force_flush", timeout=60)
            print("victoria-metrics: loaded, flushed")

        # -- queries
        qs, qe = "%d.5" % start_s, "%d.5" % end_s
        # strata: with pushdown (the default); strata-raw: pushdown=0, the
        # router fetches raw samples and evaluates everything itself
        engines = [("strata", cluster.router_url(), None),
                   ("strata-raw", cluster.router_url(), {"pushdown": "0"}),
                   ("prometheus", prom.url(), None)]
        if vm:
            # nocache: VictoriaMetrics would otherwise answer repeats from
            # its rollup result cache
            engines.append(("victoria", vm_url, {"nocache": "1"}))
        rows = []
        for name, q in QUERIES:
            if args.only and args.only not in q:
                continue
            lat = {e: [] for e, _, _ in engines}
            answers = {}
            for e, base, extra in engines:  # warm-up
                _, answers[e] = run_query(base, q, qs, qe, args.step, extra)
            for _ in range(args.reps):
                for e, base, extra in engines:
                    dt, _ = run_query(base, q, qs, qe, args.step, extra)
                    lat[e].append(dt)
            for e, _, _ in engines:
                verdict = ""
                if e == "victoria":
                    verdict = "(MetricsQL semantics, not compared)"
                elif e != "prometheus":
                    diffs = compare(answers["prometheus"], answers[e], False)
                    if not diffs:
                        verdict = "same"
                    elif same_values_per_step(answers["prometheus"], answers[e]):
                        verdict = "same values (ties picked differently)"
                    else:
                        verdict = "DIFFERS: " + diffs[0][:80]
                res_ = answers[e]["data"]["result"]
                rows.append((name, q, e, pct(lat[e], 50), pct(lat[e], 99), len(res_),
                             sum(len(r["values"]) for r in res_), verdict))
        print()
        print("queries: %s .. %s, step %ds, %d reps each (after 1 warm-up), alternating engines"
              % (qs, qe, args.step, args.reps))
        print("%-44s %-11s %9s %9s %7s %8s  %s" % ("query", "engine", "p50 ms", "p99 ms",
                                                   "series", "points", "answer"))
        for name, q, e, p50, p99, ns, npts, same in rows:
            print("%-44s %-11s %9.1f %9.1f %7d %8d  %s" % (q[:44], e, p50, p99, ns, npts, same))
        ok = True
    finally:
        if prom:
            prom.stop()
        if vm:
            vm.terminate()
            try:
                vm.wait(timeout=30)
            except subprocess.TimeoutExpired:
                vm.kill()
                vm.wait()
        if cluster:
            try:
                cluster.stop()
            except AssertionError as e:
                print("warning: %s" % e)
            if args.keep:
                print("kept %s (cluster: data, logs)" % cluster.dir)
            else:
                cluster.close(failed=not ok)
        if args.keep or not ok:
            print("kept %s (line protocol, prometheus tsdb, log)" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
