#!/usr/bin/env python3
"""Line-protocol HTTP loader for the benchmarks (standard library only).

  tests/bench/load_lp.py --url http://127.0.0.1:8086/write?precision=ns \\
      --file /tmp/h1000_3h.lp [--batch 10000] [--conns 4] [--max-seconds 600]

Make the file with `build/cli/strata bench --print --hosts 1000 --hours 3 --start 2016-01-01T00:00:00Z >
/tmp/h1000_3h.lp` (the devops workload, docs/cli.md).

The file is read and cut into bodies of --batch lines before the clock
starts. Then --conns threads, each with one keep-alive connection, POST the
bodies taken in order from a shared index, without retries; after
--max-seconds no new request is issued. A body counts as ok on a 2xx answer.
Samples = lines x --fields-per-line (10 for the devops workload).

Prints one JSON object on stdout: requests_ok / requests_err / err_codes /
first_err, samples_sent_ok, samples_in_source, seconds (first request to
last answer), samples_per_s, mbytes_per_s, req_latency_ms_p50 / _p99 (nearest
rank), truncated_by_deadline. Exit status 1 when a request failed.
"""
import argparse
import http.client
import json
import math
import sys
import threading
import time
import urllib.parse


def cut_bodies(path, batch):
    """The file's bytes in chunks of at most `batch` whole lines. Returns
    [(body bytes, lines in it)]."""
    with open(path, "rb") as f:
        data = f.read()
    out = []
    pos = 0
    while pos < len(data):
        end = pos
        lines = 0
        while lines < batch and end < len(data):
            nl = data.find(b"\n", end)
            end = len(data) if nl < 0 else nl + 1
            lines += 1
        out.append((data[pos:end], lines))
        pos = end
    return out


def nearest_rank(sorted_xs, p):
    if not sorted_xs:
        return None
    k = math.ceil(p * len(sorted_xs)) - 1
    return sorted_xs[max(0, min(len(sorted_xs) - 1, k))]


class Sender:
    """The shared state of one run: the bodies, the next index, the tallies."""

    def __init__(self, url, bodies, deadline, headers):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port or 80
        self.target = (u.path or "/") + ("?" + u.query if u.query else "")
        self.bodies = bodies
        self.deadline = deadline
        self.headers = headers
        self.lock = threading.Lock()
        self.next = 0
        self.sent = 0
        self.ok = 0
        self.err = 0
        self.err_codes = {}
        self.first_err = ""
        self.lines_ok = 0
        self.bytes_ok = 0
        self.latencies = []

    def take(self):
        with self.lock:
            if self.next >= len(self.bodies) or time.monotonic() >= self.deadline:
                return None
            i = self.next
            self.next += 1
            return i

    def record(self, i, status, answer, seconds):
        with self.lock:
            self.sent += 1
            self.latencies.append(seconds)
            if 200 <= status < 300:
                self.ok += 1
                self.lines_ok += self.bodies[i][1]
                self.bytes_ok += len(self.bodies[i][0])
            else:
                self.err += 1
                key = str(status) if status > 0 else "transport"
                self.err_codes[key] = self.err_codes.get(key, 0) + 1
                if not self.first_err:
                    self.first_err = answer[:300].decode("utf-8", "replace")

    def connect(self):
        return http.client.HTTPConnection(self.host, self.port, timeout=300)

    def run_one_connection(self):
        conn = self.connect()
        try:
            while True:
                i = self.take()
                if i is None:
                    return
                t0 = time.monotonic()
                try:
                    conn.request("POST", self.target, body=self.bodies[i][0], headers=self.headers)
                    resp = conn.getresponse()
                    answer = resp.read()
                    status = resp.status
                except (OSError, http.client.HTTPException) as e:
                    status, answer = -1, repr(e).encode()
                    conn.close()
                    conn = self.connect()
                self.record(i, status, answer, time.monotonic() - t0)
        finally:
            conn.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="write URL, e.g. http://127.0.0.1:8086/write")
    ap.add_argument("--file", required=True, help="line-protocol file")
    ap.add_argument("--batch", type=int, default=10000, help="lines per request (default 10000)")
    ap.add_argument("--conns", type=int, default=4, help="parallel connections (default 4)")
    ap.add_argument("--fields-per-line", type=int, default=10)
    ap.add_argument("--max-seconds", type=float, default=600.0,
                    help="issue no new request after this many seconds (default 600)")
    ap.add_argument("--header", action="append", default=[], help="extra header 'Name: value'")
    a = ap.parse_args()
    if a.batch < 1 or a.conns < 1:
        ap.error("--batch and --conns must be at least 1")

    t_prep = time.monotonic()
    bodies = cut_bodies(a.file, a.batch)
    prep = time.monotonic() - t_prep
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    for h in a.header:
        name, _, value = h.partition(":")
        headers[name.strip()] = value.strip()

    t0 = time.monotonic()
    s = Sender(a.url, bodies, t0 + a.max_seconds, headers)
    threads = [threading.Thread(target=s.run_one_connection, daemon=True) for _ in range(a.conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - t0

    lat_ms = sorted(x * 1000.0 for x in s.latencies)
    samples_ok = s.lines_ok * a.fields_per_line
    res = {
        "url": a.url,
        "source": a.file,
        "batch_lines": a.batch,
        "conns": a.conns,
        "requests_total": len(bodies),
        "requests_ok": s.ok,
        "requests_err": s.err,
        "err_codes": s.err_codes,
        "first_err": s.first_err,
        "samples_sent_ok": samples_ok,
        "samples_in_source": sum(n for _, n in bodies) * a.fields_per_line,
        "mbytes_sent_ok": round(s.bytes_ok / 1e6, 1),
        "seconds": round(seconds, 3),
        "samples_per_s": round(samples_ok / seconds) if seconds > 0 else None,
        "mbytes_per_s": round(s.bytes_ok / 1e6 / seconds, 1) if seconds > 0 else None,
        "req_latency_ms_p50": None if not lat_ms else round(nearest_rank(lat_ms, 0.50), 2),
        "req_latency_ms_p99": None if not lat_ms else round(nearest_rank(lat_ms, 0.99), 2),
        "prep_seconds": round(prep, 2),
        "truncated_by_deadline": s.sent < len(bodies),
    }
    print(json.dumps(res))
    return 0 if s.err == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
