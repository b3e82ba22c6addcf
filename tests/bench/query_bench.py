#!/usr/bin/env python3
"""Query and ingest benchmark at scale: Strata (3 nodes RF=3, write quorum,
read `one`, 1 router) against VictoriaMetrics (single node, one copy) and
Prometheus (Debian's 2.42), all on the same devops workload, in one run.

  tests/bench/query_bench.py [--sizes 1000x3,4000x1] [--reps 7] [--quick]
                             [--only TEXT] [--no-rf1] [--ingest-rounds 3] [--raw]
                             [--perf DIR] [--keep]
                             [--build build] [--ab BASE_BUILD] [--no-prom]

--quick: one small size (200 hosts x 1 h), 3 reps, no RF=1 ingest run (for
development). --ab BASE_BUILD: a second RF=3 cluster from the binaries of
another build dir (node/, router/; e.g. the commit before a change) gets the
same data and runs every query interleaved with the others: an A/B on the
same data in the same run ("base" column, "new/base" ratio). --no-prom skips
Prometheus (no answer check; saves the block creation). --sizes takes HOSTSxHOURS pairs; the default is the two shapes
of the issue: 1000 hosts x 3 h (1080 samples a series) and 4000 hosts x 1 h.

For each size:
1. `strata bench --print` (the CLI of --build) makes the TSBS-like devops cpu
   data (--decimals 2, seed 1), ending about an hour ago.
2. Ingest, each with tests/bench/load_lp.py (4 connections x 10k lines),
   --ingest-rounds rounds (default 3; median samples/s and peak RSS), each
   round in this order and each engine fresh:
   VictoriaMetrics (-retentionPeriod=100y), Strata RF=1 (3 nodes, a cluster
   started only for that and stopped afterwards; --no-rf1 skips it), Strata
   RF=3 quorum (the last round's is the cluster the queries then run on; the
   hint queues are drained before the queries). samples/s is the loader's
   (first request to last answer). The last round's VictoriaMetrics stays up
   for the queries; after its load the
   run waits until it is idle (under 5% of a core for a second, at most
   2 min: its merges would otherwise run during Strata's loads). Peak RSS (VmHWM) of each process is read after its ingest,
   then reset (/proc/PID/clear_refs) and read again after the query set.
3. Prometheus: the same line protocol converted to OpenMetrics exactly as
   Strata maps it (measurement_field, tags as labels, ns -> ms), turned into
   blocks by `promtool tsdb create-blocks-from openmetrics`.
4. Queries (QUERIES: range queries over the whole data at step 60 s, and
   instant queries at the end whose windows span the whole data): one
   warm-up per engine, then --reps rounds; each round runs every query on
   every engine (queries and engines interleaved; the engine that goes first
   on each query changes from round to round). Latency = median of the
   rounds. VictoriaMetrics gets nocache=1 (no rollup result cache). Strata's
   answer is compared with Prometheus' (compare() of test_promql_compare:
   same series, values within 1e-9 relative); VictoriaMetrics' MetricsQL
   answers differ in details and are not compared.
5. Prints a table per size: per query the medians, Strata/VM and
   Strata/Prometheus ratios, the answer check; then the geometric means and
   the best / worst ratio; ingest samples/s and ratios; peak RSS.

Evaluation times sit at x.5 s so no sample falls on a window boundary
(Prometheus 2.42's windows are closed, Strata's left-open like Prometheus 3).
A benchmark, not a test: it prints figures. Every process it starts is
stopped by PID at the end; --keep keeps the temp dirs (data, logs).
"""

import argparse
import json
import math
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

# (name, kind, query). kind "range": [start, end] at --step; "instant": at
# end, {R} is replaced by the whole data range ("10800s").
QUERIES = [
    ("avg of avg_over_time 1m", "range", "avg(avg_over_time(cpu_usage_user[1m]))"),
    ("sum by region rate", "range", "sum by (region) (rate(cpu_usage_user[5m]))"),
    ("avg by dc avg_over_time", "range",
     "avg by (datacenter) (avg_over_time(cpu_usage_system[5m]))"),
    ("max by host max_over_time", "range",
     "max by (hostname) (max_over_time(cpu_usage_user[5m]))"),
    ("min by rack min_over_time", "range", "min by (rack) (min_over_time(cpu_usage_iowait[10m]))"),
    ("sum of sum_over_time", "range", "sum(sum_over_time(cpu_usage_nice[5m]))"),
    ("quantile", "range", "quantile(0.9, cpu_usage_user)"),
    ("quantile by region of avg_o_t", "range",
     "quantile by (region) (0.99, avg_over_time(cpu_usage_user[5m]))"),
    ("topk of avg_over_time", "range", "topk(5, avg_over_time(cpu_usage_user[5m]))"),
    ("topk raw", "range", "topk(5, cpu_usage_user)"),
    ("count of comparison", "range", "count(cpu_usage_user > 90)"),
    ("sum by region of comparison", "range", "sum by (region) (cpu_usage_user > 50)"),
    ("ratio of two sums", "range", "sum(cpu_usage_system) / sum(cpu_usage_idle)"),
    ("ratio by region", "range",
     "sum by (region) (rate(cpu_usage_system[5m])) / sum by (region) (rate(cpu_usage_user[5m]))"),
    ("regex host selector avg", "range", 'avg by (service) (cpu_usage_user{hostname=~"host_1.*"})'),
    ("regex region max", "range", 'max(max_over_time(cpu_usage_user{region=~"us-.*"}[5m]))'),
    ("one series", "range", 'cpu_usage_user{hostname="host_1"}'),
    ("stddev by region", "range", "stddev by (region) (cpu_usage_user)"),
    ("count by os", "range", "count by (os) (cpu_usage_user)"),
    ("avg by region", "range", "avg by (region) (cpu_usage_user)"),
    ("max_over_time whole range", "instant", "max_over_time(cpu_usage_user[{R}])"),
    ("avg of avg_over_time whole", "instant", "avg(avg_over_time(cpu_usage_user[{R}]))"),
    ("topk of max_over_time whole", "instant", "topk(10, max_over_time(cpu_usage_system[{R}]))"),
    ("quantile of q_over_time whole", "instant",
     "quantile(0.5, quantile_over_time(0.9, cpu_usage_user[{R}]))"),
    ("sum by region count_o_t whole", "instant",
     "sum by (region) (count_over_time(cpu_usage_user[{R}]))"),
    ("count of last_o_t > 50 whole", "instant", "count(last_over_time(cpu_usage_user[{R}]) > 50)"),
]


def median(xs):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2.0


def geomean(xs):
    xs = [x for x in xs if x > 0 and not math.isnan(x)]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def vm_hwm_kib(pid):
    """Peak resident set (VmHWM, KiB) of a process, None when it is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_hwm(pid):
    """Resets the peak RSS of a process of ours (clear_refs 5)."""
    try:
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
    except OSError:
        pass


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


def run_query(base, kind, q, start, end, step, extra=None):
    from harness import http_request
    if kind == "range":
        params = {"query": q, "start": start, "end": end, "step": step}
        path = "/api/v1/query_range?"
    else:
        params = {"query": q, "time": end}
        path = "/api/v1/query?"
    params.update(extra or {})
    url = base + path + urllib.parse.urlencode(params)
    t0 = time.perf_counter()
    st, _, body = http_request(url, timeout=300)
    dt = (time.perf_counter() - t0) * 1000.0
    j = json.loads(body)
    if j.get("status") != "success":
        raise RuntimeError("%s: %s: HTTP %d %s" % (base, q, st, body[:300]))
    return dt, j


def load(url, lp):
    out = subprocess.run([sys.executable, LOADER, "--url", url + "/write?precision=ns",
                          "--file", lp, "--batch", "10000", "--conns", "4",
                          "--max-seconds", "3600"],
                         capture_output=True, text=True)
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        raise RuntimeError("load into %s failed: %s %s" % (url, out.stdout[-500:],
                                                           out.stderr[-500:]))
    return json.loads(lines[-1])


def strata_cluster(harness, rf, tag):
    return harness.Cluster(nodes=3, routers=1, shards=12, rf=rf, tag=tag,
                           cluster={"write_consistency": "quorum", "read_consistency": "one"},
                           storage={"memtable_max_mb": "64MiB"},
                           router={"request_timeout": "120s"})


def strata_pids(cluster):
    return ([("router", cluster.routers[0].pid)] +
            [("node%d" % (i + 1), p.pid) for i, p in enumerate(cluster.nodes)])


class VM:
    def __init__(self, harness, tmp):
        self.port = harness.free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.proc = subprocess.Popen(["victoria-metrics", "-httpListenAddr=127.0.0.1:%d" % self.port,
                                      "-storageDataPath=" + os.path.join(tmp, "vm"),
                                      "-retentionPeriod=100y", "-search.latencyOffset=0s",
                                      "-search.maxPointsPerTimeseries=1000000"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if harness.http_request(self.url + "/health", timeout=2)[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("victoria-metrics not ready within 30 s")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def cpu_s(pid):
    """CPU seconds (user + system) a process used so far, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def wait_idle(pid, limit_s=120.0):
    """Poll until process pid uses less than 5% of a core over a second (its
    background work after a load, e.g. VictoriaMetrics merging parts, would
    otherwise run during the next engine's load), at most limit_s. Returns
    the seconds waited."""
    t0 = time.monotonic()
    last = cpu_s(pid)
    while last is not None and time.monotonic() - t0 < limit_s:
        time.sleep(1.0)
        now = cpu_s(pid)
        if now is None or now - last < 0.05:
            break
        last = now
    return time.monotonic() - t0


def mib(kib):
    return "%.0f" % (kib / 1024.0) if kib else "-"


def run_size(args, harness, hosts, hours):
    from test_promql_compare import Prometheus, compare
    tmp = tempfile.mkdtemp(prefix="strata-query-bench-")
    cluster = prom = vm = base_cluster = None
    ok = False
    report = []

    def say(s=""):
        print(s, flush=True)
        report.append(s)
    try:
        if not args.no_prom:
            prom = Prometheus(tmp)  # fails early when prometheus/promtool are missing
        now = int(time.time())
        end_s = now - now % 3600 - 3600
        start_s = end_s - int(hours * 3600)
        lp = os.path.join(tmp, "devops.lp")
        with open(lp, "wb") as out:
            subprocess.run([harness.binary("cli"), "bench", "--print", "--hosts", str(hosts),
                            "--hours", str(hours), "--start", str(start_s), "--seed", "1",
                            "--decimals", "2"], stdout=out, check=True)
        with open(lp) as f:
            lines = sum(1 for _ in f)
        samples = lines * 10
        say("== %d hosts x %g h: %d lines, %d samples (%d per series), %.0f MiB of line protocol"
            % (hosts, hours, lines, samples, samples // (hosts * 10), os.path.getsize(lp) / 2**20))

        # -- ingest, --ingest-rounds times, interleaved (VictoriaMetrics, Strata RF=1,
        # Strata RF=3, each fresh); the last round's VictoriaMetrics and RF=3
        # cluster stay up for the queries. Rates and peak RSS: medians.
        rates, rsss = {}, {}

        def note(who, rate, hwm):
            rates.setdefault(who, []).append(rate)
            for w, k in hwm:
                if k is not None:
                    rsss.setdefault((w, "ingest"), []).append(k)
        for rnd in range(args.ingest_rounds):
            last = rnd == args.ingest_rounds - 1
            vdir = os.path.join(tmp, "vm%d" % rnd)
            os.makedirs(vdir)
            v = VM(harness, vdir)
            try:
                note("victoria", load(v.url, lp)["samples_per_s"],
                     [("victoria", vm_hwm_kib(v.proc.pid))])
                if last:
                    vm, v = v, None
                    harness.http_request(vm.url + "/internal/force_flush", timeout=60)
                    say("victoria idle %.0f s after its load (its merges do not overlap the "
                        "next load)" % wait_idle(vm.proc.pid))
                    reset_hwm(vm.proc.pid)
            finally:
                if v:
                    v.stop()
                    shutil.rmtree(vdir, ignore_errors=True)
            if not args.no_rf1:
                c1 = strata_cluster(harness, 1, "qbench-rf1-%d" % rnd)
                try:
                    c1.start()
                    note("strata rf1", load(c1.router_url(), lp)["samples_per_s"],
                         [(who + " rf1", vm_hwm_kib(pid)) for who, pid in strata_pids(c1)])
                finally:
                    c1.stop()
                    c1.close()
            c3 = strata_cluster(harness, 3, "qbench-rf3-%d" % rnd)
            try:
                c3.start()
                note("strata rf3", load(c3.router_url(), lp)["samples_per_s"],
                     [(who, vm_hwm_kib(pid)) for who, pid in strata_pids(c3)])
                if last:
                    cluster, c3 = c3, None
            finally:
                if c3:
                    c3.stop()
                    c3.close()
        ingest = {k: median(r) for k, r in rates.items()}
        rss = {k: median(r) for k, r in rsss.items()}
        cluster.wait_hints_drained(timeout=600)
        if args.ab:  # the same data into a cluster of the base build's binaries
            saved = os.environ.get("STRATA_BIN_DIR")
            os.environ["STRATA_BIN_DIR"] = os.path.abspath(args.ab)
            try:
                base_cluster = strata_cluster(harness, 3, "qbench-base")
                base_cluster.start()
            finally:
                if saved is None:
                    del os.environ["STRATA_BIN_DIR"]
                else:
                    os.environ["STRATA_BIN_DIR"] = saved
            load(base_cluster.router_url(), lp)
            base_cluster.wait_hints_drained(timeout=600)
        # -- Prometheus
        if prom:
            om = os.path.join(tmp, "devops.om")
            n_om = lp_to_openmetrics(lp, om)
            if n_om != samples:
                raise RuntimeError("OpenMetrics has %d samples, expected %d" % (n_om, samples))
            prom.create_blocks(om, timeout=3600)
            os.unlink(om)
            prom.start()
        for _, pid in strata_pids(cluster):
            reset_hwm(pid)

        # -- queries
        qs, qe = "%d.5" % start_s, "%d.5" % end_s
        whole = "%ds" % int(hours * 3600)
        engines = [("strata", cluster.router_url(), None)]
        if args.raw:
            engines.append(("strata-raw", cluster.router_url(), {"pushdown": "0"}))
        if base_cluster:
            engines.append(("base", base_cluster.router_url(), None))
        engines.append(("victoria", vm.url, {"nocache": "1"}))
        if prom:
            engines.append(("prometheus", prom.url(), None))
        only = args.only.split("|") if args.only else None
        qlist = [(n, k, q.replace("{R}", whole)) for n, k, q in QUERIES
                 if not only or any(o in q or o in n for o in only)]
        lat = {(n, e): [] for n, _, _ in qlist for e, _, _ in engines}
        answers = {}
        for n, k, q in qlist:  # warm-up, and the answers compared
            for e, base, extra in engines:
                _, answers[(n, e)] = run_query(base, k, q, qs, qe, args.step, extra)
        perf = None
        if args.perf:  # router and nodes together, through the timed rounds
            os.makedirs(args.perf, exist_ok=True)
            perf = subprocess.Popen(["perf", "record", "-g", "-F", "499", "-o",
                                     os.path.join(args.perf, "perf-%dx%g.data" % (hosts, hours)),
                                     "-p", ",".join(str(p) for _, p in strata_pids(cluster))],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for rnd in range(args.reps):
            # the engines take turns going first: no one is always first
            # (or always right after another one) on a query
            turn = engines[rnd % len(engines):] + engines[:rnd % len(engines)]
            for n, k, q in qlist:
                for e, base, extra in turn:
                    dt, _ = run_query(base, k, q, qs, qe, args.step, extra)
                    lat[(n, e)].append(dt)
        if perf:
            perf.send_signal(2)
            perf.wait(timeout=120)
        for who, pid in strata_pids(cluster) + [("victoria", vm.proc.pid)]:
            rss[(who, "query")] = vm_hwm_kib(pid)

        say()
        say("queries: range %s .. %s step %ds, instants at %s; median of %d rounds "
            "(queries and engines interleaved, 1 warm-up)" % (qs, qe, args.step, qe, args.reps))
        say("%-32s %-7s %9s %9s %9s %9s %7s %7s %8s %7s  %s" % (
            "query", "kind", "strata", "base", "victoria", "prom", "s/vm", "s/prom", "new/base",
            "series", "answer"))
        r_vm, r_prom, r_base, r_bvm = [], [], [], []
        nan = float("nan")
        for n, k, q in qlist:
            m = {e: median(lat[(n, e)]) for e, _, _ in engines}
            a_s = answers[(n, "strata")]
            if prom:
                a_p = answers[(n, "prometheus")]
                diffs = compare(a_p, a_s, False)
                if not diffs:
                    verdict = "same"
                elif k == "range" and same_values_per_step(a_p, a_s):
                    verdict = "same values (ties picked differently)"
                else:
                    verdict = "DIFFERS: " + diffs[0][:80]
            else:
                verdict = "not checked (--no-prom)"
            if base_cluster and compare(answers[(n, "base")], a_s, False):
                verdict += "; DIFFERS from base"
            rv = m["strata"] / m["victoria"]
            rp = m["strata"] / m["prometheus"] if prom else nan
            rb = m["strata"] / m["base"] if base_cluster else nan
            r_vm.append((rv, n))
            r_prom.append((rp, n))
            if base_cluster:
                r_base.append((rb, n))
                r_bvm.append((m["base"] / m["victoria"], n))
            say("%-32s %-7s %9.1f %9.1f %9.1f %9.1f %7.2f %7.2f %8.2f %7d  %s" % (
                n[:32], k, m["strata"], m.get("base", nan), m["victoria"],
                m.get("prometheus", nan), rv, rp, rb, len(a_s["data"]["result"]), verdict))
            if args.raw:
                say("%-32s %-7s %9.1f  (strata pushdown=0)" % ("", "", m["strata-raw"]))
        if r_vm:
            say("geomean strata/victoria %.2f (best %.2f %s, worst %.2f %s); "
                "strata/prometheus %.2f (best %.2f, worst %.2f)" % (
                    geomean([r for r, _ in r_vm]), min(r_vm)[0], min(r_vm)[1], max(r_vm)[0],
                    max(r_vm)[1], geomean([r for r, _ in r_prom]), min(r_prom)[0],
                    max(r_prom)[0]))
        if r_base:
            say("geomean new/base %.2f (best %.2f %s, worst %.2f %s); base/victoria %.2f "
                "(worst %.2f %s)" % (
                    geomean([r for r, _ in r_base]), min(r_base)[0], min(r_base)[1],
                    max(r_base)[0], max(r_base)[1], geomean([r for r, _ in r_bvm]),
                    max(r_bvm)[0], max(r_bvm)[1]))
        say("load average: %s" % open("/proc/loadavg").read().strip())
        say("queries: %s" % "; ".join("%s = %s" % (n, q) for n, _, q in qlist))
        say()
        v = ingest["victoria"]
        say("ingest samples/s (4 conns x 10k lines; median of %d rounds): victoria %d; %s" % (
            args.ingest_rounds, v, "; ".join(
                "%s %d (%.2fx victoria)" % (k, ingest[k], ingest[k] / v)
                for k in ("strata rf1", "strata rf3") if k in ingest)))
        say("ingest rounds: %s" % "; ".join(
            "%s %s" % (k, " ".join("%d" % r for r in rates[k])) for k in sorted(rates)))
        for phase in ("ingest", "query"):
            names = sorted(set(w for w, p in rss if p == phase))
            say("peak RSS MiB during %s: %s" % (phase, ", ".join(
                "%s %s" % (w, mib(rss[(w, phase)])) for w in names)))
        tot = sum(rss.get((w, "ingest")) or 0 for w in ("router", "node1", "node2", "node3"))
        say("strata rf3 ingest, all 4 processes: %s MiB for 3 copies (%s MiB per copy) vs "
            "victoria %s MiB" % (mib(tot), mib(tot / 3), mib(rss[("victoria", "ingest")])))
        ok = True
        return report
    finally:
        if prom:
            prom.stop()
        if vm:
            vm.stop()
        if base_cluster:
            try:
                base_cluster.stop()
            except AssertionError as e:
                print("warning: %s" % e)
            base_cluster.close(failed=not ok)
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
            print("kept %s (line protocol, prometheus tsdb, vm, logs)" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000x3,4000x1",
                    help="HOSTSxHOURS[,HOSTSxHOURS...] (default 1000x3,4000x1)")
    ap.add_argument("--reps", type=int, default=7, help="timed rounds (median; default 7)")
    ap.add_argument("--step", type=int, default=60)
    ap.add_argument("--quick", action="store_true",
                    help="200 hosts x 1 h, 3 rounds, no RF=1 ingest run")
    ap.add_argument("--only", default=None,
                    help="run only the queries whose name or text contains this string "
                         "(several: A|B|C)")
    ap.add_argument("--no-rf1", action="store_true", help="skip the RF=1 ingest run")
    ap.add_argument("--ingest-rounds", type=int, default=3,
                    help="ingest runs per engine, interleaved, each into a fresh instance "
                         "(median; default 3)")
    ap.add_argument("--raw", action="store_true",
                    help="time Strata with pushdown=0 as well (raw samples to the router)")
    ap.add_argument("--perf", default=None, metavar="DIR",
                    help="perf record -g the router and nodes during the timed rounds into DIR")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs")
    ap.add_argument("--ab", default=None, metavar="BASE_BUILD",
                    help="also run a cluster of BASE_BUILD's binaries on the same data (A/B)")
    ap.add_argument("--no-prom", action="store_true",
                    help="skip Prometheus (no answer check)")
    ap.add_argument("--build", default=None,
                    help="build dir with node/, router/ and cli/ (default $STRATA_BIN_DIR or build)")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.no_rf1 = "200x1", True
        if args.reps == 7:
            args.reps = 3
    if args.build:
        os.environ["STRATA_BIN_DIR"] = os.path.abspath(args.build)
    if not shutil.which("victoria-metrics"):
        sys.exit("victoria-metrics is not installed (Debian package victoria-metrics)")
    import harness
    reports = []
    for size in args.sizes.split(","):
        h, hr = size.lower().split("x")
        reports.append(run_size(args, harness, int(h), float(hr)))
    if len(reports) > 1:
        print("\n== summary")
        for r in reports:
            print("\n".join(r))


if __name__ == "__main__":
    main()
