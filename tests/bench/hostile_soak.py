#!/usr/bin/env python3
"""Hostile soak: a 3-node RF=3 cluster + 1 router under a mix of hostile
requests while a normal writer keeps writing. Not a test (not in CI): it
prints figures and a verdict.

  tests/bench/hostile_soak.py --build build [--duration 600] [--after 60] [--rss-budget-mb 3072]

What runs at once, each in its own thread, until --duration is over:
  normal     line protocol, 100 series x 1 sample per request, new timestamps
             each time; remembers every acknowledged (204) sample
  partitions 24 series x 2000 daily samples per request (a partition each)
  future     lines far in the future mixed with valid ones
  subquery   max_over_time(...[1d:1s]) single and triple nested
  regex      nested-quantifier regexes in queries and /api/v1/series
  topk       topk(100000, ...) and sort_desc over every series
  cardinal   batches of 100k never-seen series
  nul        %00 inside query, match[] and label values
  slowbody   bodies trickled one byte per second
  rpcframe   a valid RPC handshake, then half of a 48 MiB frame, held open

After --duration the hostile kinds stop and the normal writer alone goes
on for --after seconds (its latency "after" the mix). At the end: every
sample the normal writer saw acknowledged is read back (export through the
router, read_consistency=quorum for the check), the normal writer's
latency p50/p99 during and after the mix, each node's peak RSS (sampled
VmRSS and VmHWM) against --rss-budget-mb and peak open descriptors, the
nodes' segment and flush counters (segment files opened and reads skipped
unopened, early flushes, compactions, errors), and the count of each
hostile kind's outcomes by HTTP status. Exit 1 when acknowledged data is
missing, a node went over budget or died, or the read-back did not answer.
The data dir is removed in the background (it can hold ~10^5 files).

Everything is on 127.0.0.1 with ports picked at run time; processes are
stopped by PID (the harness).
"""
import argparse
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402


def now_ms():
    return int(time.time() * 1000)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.by_kind = {}

    def add(self, kind, outcome):
        with self.lock:
            d = self.by_kind.setdefault(kind, {})
            d[outcome] = d.get(outcome, 0) + 1


def post(url, body, timeout=60, headers=None):
    try:
        st, _, data = harness.http_request(url, "POST", body, headers or {}, timeout=timeout)
        return st, data
    except Exception as e:  # connection cut, timeout: an outcome too
        return type(e).__name__, b""


def get(url, timeout=60):
    try:
        st, _, data = harness.http_request(url, timeout=timeout)
        return st, data
    except Exception as e:
        return type(e).__name__, b""


def rss_kb(pid, key="VmRSS:"):
    try:
        for line in open("/proc/%d/status" % pid):
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def hello_frame(cluster, fp, node_id):
    def ld(field, b):
        return bytes([field << 3 | 2]) + varint(len(b)) + b

    payload = (bytes([0x08]) + varint(1) + ld(2, cluster.encode())
               + bytes([3 << 3 | 1]) + struct.pack("<Q", fp) + ld(4, node_id.encode()))
    return struct.pack("<IBBQ", 10 + len(payload), 1, 0, 0) + payload


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--duration", type=float, default=600)
    ap.add_argument("--after", type=float, default=60,
                    help="seconds the normal writer goes on alone after the mix")
    ap.add_argument("--rss-budget-mb", type=int, default=3072)
    args = ap.parse_args()
    os.environ["STRATA_BIN_DIR"] = os.path.abspath(args.build)

    c = harness.Cluster(nodes=3, routers=1, shards=12, rf=3, tag="soak",
                        storage={"retention": "0", "memtable_max_age": "5s",
                                 "head_max_mb": "512", "max_new_series_per_hour": "2000000"},
                        router={"request_timeout": "20s"})
    c.start()
    router = c.router_url(0)
    stop = threading.Event()
    normal_stop = threading.Event()
    lat_after = []
    fds = [0] * 3
    deadline = time.time() + args.duration
    stats = Stats()
    acked = {}  # series index -> set of ts
    lat = []
    peak = [0] * 3
    died = []

    def normal():
        i = 0
        base = now_ms() - 60000
        while not normal_stop.is_set():
            ts = base + i
            body = "".join("soak_normal,s=%d v=%d %d\n" % (s, i, ts) for s in range(100)).encode()
            during = not stop.is_set()
            t0 = time.time()
            st, _ = post(router + "/write?precision=ms", body)
            (lat if during else lat_after).append(time.time() - t0)
            stats.add("normal", st)
            if st == 204:
                acked[ts] = i
            i += 1

    def partitions():
        k = 0
        while not stop.is_set():
            day0 = random.randint(0, 15000)
            body = "".join("soak_pm,s=%d v=%d %d\n" % (s, d, (day0 + d) * 86400000 + 5000 + k)
                           for s in range(24) for d in range(2000)).encode()
            stats.add("partitions", post(router + "/write?precision=ms", body)[0])
            k += 1

    def future():
        while not stop.is_set():
            t = now_ms()
            body = ("soak_future v=1 %d\nsoak_future v=2 %d\nsoak_future v=3 9200000000000000\n"
                    % (t + 10 * 86400000, t)).encode()
            stats.add("future", post(router + "/write?precision=ms", body)[0])

    def q(path, **params):
        return router + path + "?" + urllib.parse.urlencode(params)

    def subquery():
        qs = ["max_over_time(soak_normal_v[1d:1s])",
              "max_over_time(max_over_time(max_over_time(soak_normal_v[1d:1s])[1d:1s])[1d:1s])"]
        while not stop.is_set():
            for e in qs:
                stats.add("subquery", get(q("/api/v1/query", query=e))[0])

    def regex():
        while not stop.is_set():
            stats.add("regex", get(q("/api/v1/query", query='count(soak_normal_v{s=~"(a+)+$"})'))[0])
            stats.add("regex", get(q("/api/v1/series", **{"match[]": '{s=~"((a+)+)+$"}'}))[0])

    def topk():
        while not stop.is_set():
            stats.add("topk", get(q("/api/v1/query", query="topk(100000, {__name__=~\"soak.*\"})"))[0])
            stats.add("topk", get(q("/api/v1/query", query="sort_desc({__name__=~\"soak.*\"})"))[0])

    def cardinal():
        k = 0
        while not stop.is_set():
            t = now_ms()
            body = "".join("soak_card,id=c%d_%d v=1 %d\n" % (k, j, t) for j in range(100000)).encode()
            stats.add("cardinal", post(router + "/write?precision=ms", body, timeout=60)[0])
            k += 1

    def nul():
        while not stop.is_set():
            stats.add("nul", get(router + "/api/v1/query?query=count(soak_normal_v)%00%20and%20on()%20vector(0)")[0])
            stats.add("nul", get(router + "/api/v1/series?match[]=soak_normal_v%7Bs%3D%221%00x%22%7D")[0])

    def slowbody():
        while not stop.is_set():
            socks = []
            for _ in range(20):
                try:
                    s = socket.create_connection(("127.0.0.1", c.router_port[0]), timeout=5)
                    s.sendall(b"POST /write HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
                    socks.append(s)
                except OSError:
                    stats.add("slowbody", "connect_failed")
            for _ in range(30):
                if stop.is_set():
                    break
                for s in list(socks):
                    try:
                        s.sendall(b"x")
                    except OSError:
                        stats.add("slowbody", "cut")
                        socks.remove(s)
                stop.wait(1)
            for s in socks:
                stats.add("slowbody", "held")
                s.close()

    fp = 0
    out = subprocess.run([harness.binary("node"), "--check", "--config", c.config_path,
                          "--node-id", "n1"], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("fingerprint "):
            fp = int(line.split()[1], 16)

    def rpcframe():
        while not stop.is_set():
            socks = []
            for _ in range(10):
                try:
                    s = socket.create_connection(("127.0.0.1", c.node_rpc[0]), timeout=5)
                    s.sendall(hello_frame("itest", fp, "soak"))
                    s.sendall(struct.pack("<IBBQ", 10 + (48 << 20), 16, 0, 7))
                    s.sendall(b"\0" * (24 << 20))
                    socks.append(s)
                except OSError:
                    stats.add("rpcframe", "cut_early")
            stop.wait(10)
            for s in socks:
                try:
                    s.sendall(b"\0")
                    stats.add("rpcframe", "held")
                except OSError:
                    stats.add("rpcframe", "cut")
                s.close()

    def sampler():
        while not normal_stop.is_set():
            for i, p in enumerate(c.nodes):
                if p.poll() is not None:
                    if i not in died:
                        died.append(i)
                    stop.set()
                    normal_stop.set()
                peak[i] = max(peak[i], rss_kb(p.pid))
                try:
                    fds[i] = max(fds[i], len(os.listdir("/proc/%d/fd" % p.pid)))
                except OSError:
                    pass
            normal_stop.wait(0.5)

    hostile = [partitions, future, subquery, regex, topk, cardinal, nul, slowbody, rpcframe]
    threads = [threading.Thread(target=k, daemon=True) for k in hostile]
    steady = [threading.Thread(target=k, daemon=True) for k in (normal, sampler)]
    t0 = time.time()
    for t in steady + threads:
        t.start()
    while time.time() < deadline and not stop.is_set():
        stop.wait(1)
    stop.set()
    for t in threads:
        t.join(timeout=120)
    elapsed = time.time() - t0
    after_end = time.time() + args.after
    while time.time() < after_end and not normal_stop.is_set():
        normal_stop.wait(1)
    normal_stop.set()
    for t in steady:
        t.join(timeout=120)

    hwm = [rss_kb(p.pid, "VmHWM:") for p in c.nodes]
    # read back every acknowledged normal sample (quorum read)
    missing = 0
    got = {}
    settle = time.time()
    for s in range(100):
        for _attempt in range(30):  # the hostile mix may still be draining
            try:
                st, data = c.export_raw(['soak_normal_v{s="%d"}' % s])
            except AssertionError:
                st, data = "timeout", b""
            if st == 200:
                for row in harness.parse_export(data):
                    got[s] = set(row["timestamps"])
                break
            time.sleep(2)
    settle = time.time() - settle
    for s in range(100):
        have = got.get(s, set())
        missing += sum(1 for ts in acked if ts not in have)
    unread = 100 - len(got)
    counters = []
    for i in range(3):
        try:
            m = c.node_metrics(i, timeout=30)
        except Exception as e:  # a dead or stuck node: say so
            counters.append("n%d: metrics unavailable (%s)" % (i + 1, type(e).__name__))
            continue
        val = lambda name: int(sum(v for (n, _), v in m.items() if n == name))
        counters.append("n%d: segments %d, segment opens %d, segment reads skipped %d, early "
                        "flushes %d, flushes %d, compactions %d, flush errors %d, compaction "
                        "errors %d, open files %d, degraded %d, backpressure cut %d"
                        % (i + 1, val("strata_node_segments"),
                           val("strata_node_segment_opens_total"),
                           val("strata_node_segment_reads_skipped_total"),
                           val("strata_node_early_flushes_total"),
                           val("strata_node_flushes_total"), val("strata_node_compactions_total"),
                           val("strata_node_flush_errors_total"),
                           val("strata_node_compaction_errors_total"),
                           val("strata_node_open_files"), val("strata_node_degraded"),
                           val("strata_node_writes_backpressure_timeouts_total")))
    # stop the processes, then remove the (huge) data dir off the critical path
    data_dir = c.dir
    c.dir = tempfile.mkdtemp(prefix="strata-soak-empty-")
    c.close()
    gone = data_dir + ".deleting"
    os.rename(data_dir, gone)
    subprocess.Popen(["nice", "-n", "19", "rm", "-rf", gone, c.dir])

    def pct(v, p):
        return v[min(len(v) - 1, int(p * len(v)))] * 1000 if v else 0

    lat.sort()
    lat_after.sort()
    print("soak: %.0f s of hostile mix + %.0f s normal writer alone; normal writes acknowledged "
          "%d (%d samples), missing after the run %d, series not read back %d"
          % (elapsed, args.after, len(acked), len(acked) * 100, missing, unread))
    print("read back took %.1f s after the normal writer stopped" % settle)
    print("normal write latency during the mix: p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d writes)"
          % (pct(lat, 0.50), pct(lat, 0.99), pct(lat, 1.0), len(lat)))
    print("normal write latency after the mix:  p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d writes)"
          % (pct(lat_after, 0.50), pct(lat_after, 0.99), pct(lat_after, 1.0), len(lat_after)))
    for i in range(3):
        print("node n%d: peak sampled RSS %.0f MiB, VmHWM %.0f MiB (budget %d MiB), "
              "peak open descriptors %d"
              % (i + 1, peak[i] / 1024, hwm[i] / 1024, args.rss_budget_mb, fds[i]))
    for line in counters:
        print(line)
    for k, d in sorted(stats.by_kind.items()):
        print("%-10s %s" % (k, ", ".join("%s: %d" % (o, n) for o, n in sorted(d.items(), key=str))))
    bad = missing or unread or died or any(h / 1024 > args.rss_budget_mb for h in hwm)
    print("verdict: %s" % ("FAIL" if bad else "ok"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
