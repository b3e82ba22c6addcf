#!/usr/bin/env python3
"""SQL latency benchmark: Strata's /sql (HTTP) and PostgreSQL wire protocol
against InfluxDB 1.x's InfluxQL (Debian `influxd`) on the same devops data.

  tests/bench/sql_bench.py [--hosts 1000] [--hours 3] [--reps 20] [--build build]
                           [--no-influx] [--keep] [--ab OTHER_BUILD]

1. `strata bench --print` makes the TSBS-like devops cpu data (seed 1),
   ending an hour ago.
2. Strata: 3 nodes + 1 router (tests/integration/harness.py, free ports,
   pg_listen on), loaded through the router with tests/bench/load_lp.py.
3. InfluxDB 1.x: its own temp dir and free ports, loaded with the same
   loader through its /write.
4. Each query: one warm-up (its rows counted and compared), then --reps
   timed runs per door, alternating (a run is timed until the whole answer
   is received; decoding JSON in Python, which costs this client more than
   a server takes to answer 180k rows, is left out for every door):
   Strata over HTTP (one keep-alive connection), Strata over the PostgreSQL
   protocol (one session, simple query protocol: what psql does), InfluxDB
   over HTTP (one keep-alive connection). Prints p50 / p99 in ms and the
   rows returned; the first two queries' numbers are compared between
   Strata and InfluxDB.
With --ab, a second Strata cluster runs the binaries of OTHER_BUILD (a
build directory of another commit) on the same data, its doors named
base-http and base-pg: before/after figures from one run.
Every process started is stopped by PID.
"""
import argparse
import http.client
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
LOADER = os.path.join(HERE, "load_lp.py")

# (name, SQL, InfluxQL); {s} {e}: the data's range (RFC 3339)
QUERIES = [
    ("count", "SELECT count(*) FROM cpu", "SELECT count(usage_user) FROM cpu"),
    # the same rows built from samples (a WHERE the reads cannot apply): the
    # path count(*) took before it was counted per tag set
    ("count, rows path", "SELECT count(*) FROM cpu WHERE hostname LIKE '%'",
     "SELECT count(usage_user) FROM cpu"),
    ("count field", "SELECT count(usage_user) FROM cpu", "SELECT count(usage_user) FROM cpu"),
    ("count by host", "SELECT hostname, count(*) FROM cpu GROUP BY hostname",
     "SELECT count(usage_user) FROM cpu GROUP BY hostname"),
    ("filtered aggregate",
     "SELECT avg(usage_user), max(usage_system) FROM cpu WHERE hostname = 'host_1'",
     "SELECT mean(usage_user), max(usage_system) FROM cpu WHERE hostname = 'host_1'"),
    ("group by host, minute max",
     "SELECT hostname, time_bucket('1 minute', time) AS m, max(usage_user) FROM cpu "
     "WHERE time >= '{s}' AND time < '{e}' GROUP BY hostname, m",
     "SELECT max(usage_user) FROM cpu WHERE time >= '{s}' AND time < '{e}' "
     "GROUP BY hostname, time(1m)"),
    ("last 10 rows", "SELECT * FROM cpu ORDER BY time DESC LIMIT 10",
     "SELECT * FROM cpu ORDER BY time DESC LIMIT 10"),
]


def pct(xs, p):
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, int(round(p / 100.0 * len(xs) + 0.5)) - 1))
    return xs[k]


class Http:
    def __init__(self, base):
        u = urllib.parse.urlparse(base)
        self.c = http.client.HTTPConnection(u.hostname, u.port, timeout=600)

    def get(self, path):
        self.c.request("GET", path)
        r = self.c.getresponse()
        return r.status, r.read()

    def post(self, path, body):
        self.c.request("POST", path, body=body.encode())
        r = self.c.getresponse()
        return r.status, r.read()


def strata_http(h, q, parse=True):
    st, body = h.post("/sql", q)
    if st != 200:
        raise RuntimeError("strata /sql %d: %s" % (st, body[:300]))
    return json.loads(body)["rows"] if parse else body


def strata_pg(pg, q, parse=True):
    """Simple query; the answer's messages cut out of the socket's bytes
    with an offset (test_sql.PgClient slices its buffer per message: fine
    for tests, quadratic over 100k DataRows)."""
    from test_sql import cstr
    pg.send(b"Q", cstr(q))
    rows = []
    buf, off = bytearray(pg.buf), 0
    pg.buf = b""
    while True:
        while len(buf) - off < 5 or len(buf) - off < 1 + struct.unpack_from("!I", buf, off + 1)[0]:
            chunk = pg.s.recv(1 << 20)
            if not chunk:
                raise RuntimeError("strata pg: connection closed")
            if off:
                del buf[:off]
                off = 0
            buf += chunk
        t = buf[off]
        n = struct.unpack_from("!I", buf, off + 1)[0]
        start = off + 5
        off += 1 + n
        if t == 0x45:  # E
            raise RuntimeError("strata pg: %r" % bytes(buf[start:off][:300]))
        if t == 0x44:  # D (timed runs only walk the messages)
            rows.append(bytes(buf[start:off]) if parse else None)
        elif t == 0x5A:  # Z: ReadyForQuery
            pg.buf = bytes(buf[off:])
            return rows


def influx(h, q, parse=True):
    st, body = h.get("/query?" + urllib.parse.urlencode({"db": "bench", "q": q}))
    if st != 200:
        raise RuntimeError("influx %d: %s" % (st, body[:300]))
    if not parse:
        return body
    res = json.loads(body)["results"][0]
    if "error" in res:
        raise RuntimeError("influx: %s" % res["error"])
    return [v for s in res.get("series", []) for v in s["values"]]


def start_influx(tmp):
    import harness
    http_port, rpc_port = harness.free_port(), harness.free_port()
    d = os.path.join(tmp, "influx")
    os.makedirs(d)
    conf = os.path.join(d, "influxdb.conf")
    with open(conf, "w") as f:
        f.write("reporting-disabled = true\nbind-address = \"127.0.0.1:%d\"\n"
                "[meta]\n  dir = \"%s/meta\"\n"
                "[data]\n  dir = \"%s/data\"\n  wal-dir = \"%s/wal\"\n"
                "  query-log-enabled = false\n"
                "[http]\n  bind-address = \"127.0.0.1:%d\"\n  log-enabled = false\n"
                "[monitor]\n  store-enabled = false\n"
                "[coordinator]\n  max-select-point = 0\n  max-select-series = 0\n"
                % (rpc_port, d, d, d, http_port))
    log = open(os.path.join(d, "influxd.log"), "wb")
    p = subprocess.Popen(["influxd", "-config", conf], stdout=log, stderr=log)
    url = "http://127.0.0.1:%d" % http_port
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if harness.http_request(url + "/ping", timeout=2)[0] == 204:
                return p, url
        except OSError:
            pass
        if p.poll() is not None:
            raise RuntimeError("influxd exited; see %s" % log.name)
        time.sleep(0.2)
    raise RuntimeError("influxd did not answer /ping")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--hours", type=float, default=3)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--build", default=None)
    ap.add_argument("--no-influx", action="store_true")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--ab", default=None, help="a build dir of other binaries to run alongside")
    ap.add_argument("--only", default=None, help="run only the queries whose name contains this")
    args = ap.parse_args()
    if args.build:
        os.environ["STRATA_BIN_DIR"] = os.path.abspath(args.build)
    import harness
    from test_sql import PgClient

    tmp = tempfile.mkdtemp(prefix="strata-sql-bench-")
    cluster = inf = base = None
    try:
        now = int(time.time())
        end_s = now - now % 3600 - 3600
        start_s = end_s - int(args.hours * 3600)
        lp = os.path.join(tmp, "devops.lp")
        with open(lp, "wb") as out:
            subprocess.run([harness.binary("cli"), "bench", "--print", "--hosts", str(args.hosts),
                            "--hours", str(args.hours), "--start", str(start_s), "--seed", "1"],
                           stdout=out, check=True)
        with open(lp) as f:
            lines = sum(1 for _ in f)
        print("data: %d hosts x %g h = %d rows, %d samples" % (args.hosts, args.hours, lines,
                                                               lines * 10))
        pg_port = harness.free_port()
        cluster = harness.Cluster(nodes=3, routers=1, shards=12, rf=1, tag="sql-bench",
                                  router={"request_timeout": "300s",
                                          "pg_listen": "127.0.0.1:%d" % pg_port})
        cluster.start()
        t0 = time.monotonic()
        subprocess.run([sys.executable, LOADER, "--url", cluster.router_url() +
                        "/write?precision=ns", "--file", lp, "--batch", "10000", "--conns", "4"],
                       capture_output=True, text=True, check=True)
        print("strata load: %.1f s" % (time.monotonic() - t0))
        doors = [("strata-http", Http(cluster.router_url()), strata_http),
                 ("strata-pg", PgClient(pg_port), strata_pg)]
        if args.ab:
            mine = os.environ.get("STRATA_BIN_DIR")
            os.environ["STRATA_BIN_DIR"] = os.path.abspath(args.ab)
            bpg = harness.free_port()
            base = harness.Cluster(nodes=3, routers=1, shards=12, rf=1, tag="sql-bench-base",
                                   router={"request_timeout": "300s",
                                           "pg_listen": "127.0.0.1:%d" % bpg})
            base.start()
            if mine:
                os.environ["STRATA_BIN_DIR"] = mine
            else:
                del os.environ["STRATA_BIN_DIR"]
            subprocess.run([sys.executable, LOADER, "--url", base.router_url() +
                            "/write?precision=ns", "--file", lp, "--batch", "10000", "--conns", "4"],
                           capture_output=True, text=True, check=True)
            doors += [("base-http", Http(base.router_url()), strata_http),
                      ("base-pg", PgClient(bpg), strata_pg)]
        if not args.no_influx and shutil.which("influxd"):
            inf, url = start_influx(tmp)
            h = Http(url)
            h.post("/query?q=CREATE+DATABASE+bench", "")
            t0 = time.monotonic()
            subprocess.run([sys.executable, LOADER, "--url", url + "/write?db=bench&precision=ns",
                            "--file", lp, "--batch", "10000", "--conns", "4"],
                           capture_output=True, text=True, check=True)
            print("influxdb load: %.1f s" % (time.monotonic() - t0))
            doors.append(("influxdb", h, influx))
        s_iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start_s))
        e_iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end_s))
        print("%-28s %-12s %10s %10s %8s" % ("query", "door", "p50 ms", "p99 ms", "rows"))
        for name, sql, iql in QUERIES:
            if args.only and args.only not in name:
                continue
            sql, iql = sql.format(s=s_iso, e=e_iso), iql.format(s=s_iso, e=e_iso)
            print("load average: %s" % open("/proc/loadavg").read().strip())
            lat = {d: [] for d, _, _ in doors}
            first = {}
            for d, conn, fn in doors:  # warm-up
                first[d] = fn(conn, iql if d == "influxdb" else sql)
            for _ in range(args.reps):
                for d, conn, fn in doors:
                    t = time.monotonic()
                    fn(conn, iql if d == "influxdb" else sql, False)
                    lat[d].append((time.monotonic() - t) * 1000)
            for d, _, _ in doors:
                print("%-28s %-12s %10.1f %10.1f %8d" % (name, d, pct(lat[d], 50),
                                                         pct(lat[d], 99), len(first[d])))
            if "influxdb" in first and name in ("count", "count, rows path", "filtered aggregate"):
                a = first["strata-http"][0]
                b = first["influxdb"][0][1:]
                same = all(abs(float(x) - float(y)) <= 1e-9 * max(1, abs(float(y)))
                           for x, y in zip(a, b))
                print("%-28s strata %s influxdb %s: %s" % ("", a, b, "same" if same else "DIFFER"))
        for d, conn, _ in doors:
            if d.endswith("-pg"):
                conn.close()
    finally:
        if inf:
            inf.terminate()
            try:
                inf.wait(30)
            except subprocess.TimeoutExpired:
                inf.kill()
        if cluster:
            cluster.close()
        if base:
            base.close()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("kept", tmp)


if __name__ == "__main__":
    main()
