"""Versioned writes: for one series and timestamp the write with the higher
version (the coordinator's hybrid logical clock) wins on every replica,
whatever order the copies arrive in. RF=3 on 3 nodes, one shard, quorum.

The late old copy is made with hinted handoff: n3 hangs (SIGSTOP) while
value 2 is written, so the coordinator X keeps a hint for it; X then hangs
too, n3 comes back and value 3 is written (n3 gets it directly); when X
comes back it replays its old hint (value 2) to n3. Without versions n3
would end with 2 and the replicas would differ.

Deletes obey the same rule (a delete carries its coordinator's version):
with the same choreography, a delete that reaches n3 late does not hide a
rewrite made after it, and a write made before a delete that reaches n3
late stays deleted -- on every replica's own export.
"""

import sys
import threading
import time
import unittest
import urllib.parse

from harness import ClusterTestCase, http_request, metric_sum, write_with_retries

REPL = {"replica_timeout": "1s", "heartbeat_interval": "200ms",
        "hint_max_bytes": "64MiB", "hint_max_age": "1h"}
ROUTER = {"request_timeout": "3s"}
UP = ("up", "catching_up")


def say(msg):
    sys.stderr.write("    %s\n" % msg)
    sys.stderr.flush()


class VersionsCase(ClusterTestCase):

    def put(self, c, series, value, t):
        r = write_with_retries(c, "vt,host=%s value=%s %d" % (series, value, t), tries=40,
                               backoff=0.2, precision="ms")
        self.assertEqual(r.status, 204, "write %s=%s: %s %r" % (series, value, r.status,
                                                               r.errors[-3:]))

    def values(self, c, i, series):
        rows = c.node_export(i, match='{host="%s"}' % series)
        return [v for row in rows for v in row["values"]]

    def test_late_old_hint_loses(self):
        c = self.cluster(nodes=3, routers=1, shards=1, rf=3, replication=REPL,
                         router=ROUTER).start()
        c.wait_peers_up()
        t = int(time.time() * 1000) - 60000
        self.put(c, "a", 1, t)
        c.wait_until(lambda: all(self.values(c, i, "a") == [1] for i in range(3)), 30,
                     "value 1 on every replica")
        stopped = set()
        try:
            c.sigstop(2)
            stopped.add(2)
            self.put(c, "a", 2, t)  # n3 misses it: a hint on the coordinator
            # concurrent rewrites of one timestamp from two clients meanwhile
            written = set()

            def rewriter(k):
                for j in range(8):
                    v = 100 * (k + 1) + j
                    self.put(c, "b", v, t)
                    written.add(v)

            th = [threading.Thread(target=rewriter, args=(k,)) for k in range(2)]
            for x in th:
                x.start()
            for x in th:
                x.join(120)
            def holders():
                return [i for i in (0, 1) if c.hints_pending(i).get("n3", 0) > 0]

            c.wait_until(holders, 30, "a hint for n3")
            h = holders()
            x = h[0]
            say("hints for n3 held by %s" % [c.node_ids[i] for i in h])
            c.sigstop(x)
            stopped.add(x)
            c.sigcont(2)
            stopped.discard(2)
            c.wait_node_state("n3", UP, 30)
            self.put(c, "a", 3, t)  # newer: n3 gets it directly
            c.wait_until(lambda: self.values(c, 2, "a") == [3], 30, "value 3 on n3")
            c.sigcont(x)  # x replays the old hint (value 2) to n3: it must lose
            stopped.discard(x)
        finally:
            for i in stopped:
                c.sigcont(i)
        t0 = time.monotonic()
        c.wait_hints_drained(60)
        c.wait_replicas_identical(60)
        say("replicas identical %.1fs after the last resume" % (time.monotonic() - t0))
        for i in range(3):
            self.assertEqual(self.values(c, i, "a"), [3], "latest value on %s" % c.node_ids[i])
            b = self.values(c, i, "b")
            self.assertEqual(len(b), 1, b)
            self.assertIn(b[0], written)
        c.stop()

    def delete(self, c, series):
        deadline = time.monotonic() + 60
        while True:
            url = c.router_url(0) + "/api/v1/admin/tsdb/delete_series?" + \
                urllib.parse.urlencode({"match[]": '{host="%s"}' % series})
            st, _, data = http_request(url, "POST", b"")
            if st == 204 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(st, 204, "delete %s: %s %r" % (series, st, data[:300]))

    def test_late_delete_and_late_write(self):
        c = self.cluster(nodes=3, routers=1, shards=1, rf=3, replication=REPL,
                         router=ROUTER).start()
        c.wait_peers_up()
        t = int(time.time() * 1000) - 60000
        self.put(c, "d", 1, t)
        c.wait_until(lambda: all(self.values(c, i, "d") == [1] for i in range(3)), 30,
                     "value 1 on every replica")
        stopped = set()
        try:
            c.sigstop(2)
            stopped.add(2)
            self.delete(c, "d")   # n3 misses it: a hint (delete, version V1)
            self.put(c, "e", 2, t)  # ... and this write (version < V2 below)

            def holders():
                return [i for i in (0, 1) if c.hints_pending(i).get("n3", 0) >= 2]

            c.wait_until(holders, 30, "two hints for n3")
            x = holders()[0]
            c.sigstop(x)
            stopped.add(x)
            c.sigcont(2)
            stopped.discard(2)
            c.wait_node_state("n3", UP, 30)
            self.put(c, "d", 3, t)  # rewritten after the delete: n3 gets it first
            self.delete(c, "e")     # deleted after the write: n3 gets the delete first
            c.wait_until(lambda: self.values(c, 2, "d") == [3], 30, "value 3 on n3")
            # x replays the late delete of d and the late write of e to n3
            c.sigcont(x)
            stopped.discard(x)
        finally:
            for i in stopped:
                c.sigcont(i)
        c.wait_hints_drained(60)
        c.wait_replicas_identical(60)
        for i in range(3):
            self.assertEqual(self.values(c, i, "d"), [3], "rewrite kept on %s" % c.node_ids[i])
            self.assertEqual(self.values(c, i, "e"), [], "e stays deleted on %s" % c.node_ids[i])
        hidden = metric_sum(c.node_metrics(2), "strata_node_samples_hidden_late_total")
        self.assertGreaterEqual(hidden, 1, "n3 left the late older write out")
        c.stop()


if __name__ == "__main__":
    unittest.main()
