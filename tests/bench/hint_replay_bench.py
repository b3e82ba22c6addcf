#!/usr/bin/env python3
"""Hinted-handoff replay benchmark: 3 nodes, RF=3, 6 shards; n3 is killed,
--batches write bodies are acknowledged without it (the coordinators keep
hints for it), n3 is started again and the time until every hint queue is
empty is measured. Prints hints replayed and records/s.

  STRATA_BIN_DIR=build tests/bench/hint_replay_bench.py [--batches 400] [--hosts 50]
      [--delete-every K]

--delete-every K: after every K-th batch a delete (one host's samples of the
batches so far) joins the stream, so the hint queues hold deletes among the
writes (one record per shard and delete) -- replay with deletes in the
stream, where an unversioned delete travels alone in its replay window.

Uses the integration harness (tests/integration/harness.py): ports picked at
run time, processes stopped by PID at the end.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))

import urllib.parse  # noqa: E402

from harness import (BatchGen, Cluster, body_of, http_request, wait_stable,  # noqa: E402
                     write_with_retries)

REPL = {"replica_timeout": "1s", "heartbeat_interval": "200ms",
        "hint_max_bytes": "1GiB", "hint_max_age": "1h"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=400)
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--delete-every", type=int, default=0)
    a = ap.parse_args()
    c = Cluster(nodes=3, routers=1, shards=6, rf=3, replication=REPL,
                router={"request_timeout": "5s"}, tag="hint-bench").start()
    try:
        c.wait_peers_up()
        c.kill9(2)
        c.wait_node_state("n3", ("down", "connecting"), 30)
        gen = BatchGen("hb", hosts=a.hosts, seed=7)
        t0 = time.monotonic()
        deletes = 0
        for b in range(a.batches):
            r = write_with_retries(c, body_of(gen.batch(b)), tries=20, precision="ms")
            if r.status != 204:
                raise SystemExit("write %d failed: %s %r" % (b, r.status, r.errors[-2:]))
            if a.delete_every and b % a.delete_every == a.delete_every - 1:
                url = c.router_url(0) + "/api/v1/admin/tsdb/delete_series?" + \
                    urllib.parse.urlencode({"match[]": '{host="h%03d"}' % (b % a.hosts)})
                st, _, data = http_request(url, "POST", b"")
                if st != 204:
                    raise SystemExit("delete after batch %d failed: %s %r" % (b, st, data[:200]))
                deletes += 1
        t_write = time.monotonic() - t0
        wait_stable(c, lambda: tuple(c.hints_pending(i).get("n3", 0) for i in (0, 1)),
                    quiet=1.0, timeout=60, what="hint appends for n3 to settle")
        hints = sum(c.hints_pending(i).get("n3", 0) for i in (0, 1))
        t0 = time.monotonic()
        c.restart(2)
        c.wait_hints_drained(600)
        t = time.monotonic() - t0
        print("batches written     %d in %.1f s (n3 down), %d deletes among them"
              % (a.batches, t_write, deletes))
        print("hints replayed      %d" % hints)
        print("drain after restart %.2f s  (%.0f records/s, node start included)"
              % (t, hints / t if t > 0 else 0))
    finally:
        c.stop(expect=None)


if __name__ == "__main__":
    main()
