"""Read repair: 3 nodes, RF=3, one router, scheduled anti-entropy off
([replication] repair_interval = 0s) so that only a read can heal.

n3 misses writes for good (stopped while n1/n2 acknowledge them, then the
hint queues for n3 deleted, as test_repair does). A read_consistency=one
read starts no repair. A quorum read that asks n3 for a shard sees n3's
copy disagree and the router asks n3 to repair that shard over the read's
range: n3's own node-local export then holds every acknowledged sample of
the shards the read asked it for (strata_router_read_repair_divergent_total
and strata_router_read_repairs_total moved). Once through an export, once
through a PromQL range query.

STRATA_TEST_READ_REPAIR=off starts the cluster with read_repair = off: the
test must then fail (n3 never converges).
"""

import os
import shutil
import sys
import time
import unittest

from harness import (AckLog, BatchGen, ClusterTestCase, body_of, f64, metric_sum,
                     write_with_retries)

REPL = {"replica_timeout": "1s", "heartbeat_interval": "200ms", "hint_max_age": "1h",
        "repair_interval": "0s",
        "read_repair": os.environ.get("STRATA_TEST_READ_REPAIR", "on")}
SHARDS = 4
CONVERGE_S = 30


def say(msg):
    sys.stderr.write("    %s\n" % msg)
    sys.stderr.flush()


class ReadRepairTest(ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        cls.c = cls.start_class_cluster(nodes=3, routers=1, shards=SHARDS, rf=3,
                                        replication=REPL, router={"request_timeout": "10s"})
        cls.c.wait_peers_up()

    def lose_writes(self, measurement, seed):
        """n3 misses every write of `measurement` for good. Returns the
        AckLog and the batch generator."""
        c = self.c
        log = AckLog()
        gen = BatchGen(measurement, hosts=12, seed=seed)
        self.assertEqual(c.sigterm(2), 0)
        for b in range(10):
            built = gen.batch(b)
            r = write_with_retries(c, body_of(built), consistency="quorum", precision="ms")
            log.record(built, r.ok)
        self.assertEqual(log.n_unacked, 0)
        for i in (0, 1):
            self.assertEqual(c.sigterm(i), 0)
        for i in (0, 1):
            d = os.path.join(c.data_dir(i), "hints", c.node_ids[2])
            if os.path.isdir(d):
                shutil.rmtree(d)
        c.start_all()
        c.wait_peers_up()
        for n in c.node_ids:
            c.wait_node_state(n, "up")
        return log, gen

    def read_shards(self):
        """Shards a quorum read (2 of 3 replicas, in placement order) asks n3 for."""
        n3 = self.c.node_ids[2]
        shards = [s for s, reps in self.c.cluster_placement().items() if n3 in reps[:2]]
        self.assertTrue(shards, "n3 is read for no shard: placement %r"
                        % self.c.cluster_placement())
        return shards

    def lacking(self, log, measurement, shards):
        """Acknowledged samples of `measurement` in `shards` that n3's own
        export does not hold (n1 holds every shard: it tells which series
        belong where)."""
        acked = log.acked.copy().data
        missing = 0
        for s in shards:
            keys = [k for k in self.c.node_shard_data(0, s)
                    if dict(k)["__name__"].startswith(measurement + "_")]
            got = self.c.node_shard_data(2, s)
            for k in keys:
                for t, v in acked.get(k, {}).items():
                    g = got.get(k, {}).get(t)
                    if g is None or f64(g) != f64(v):
                        missing += 1
        return missing

    def router_metric(self, name):
        return metric_sum(self.c.metrics(self.c.router_url(0)), name)

    def converge(self, log, measurement, shards, t0, reread):
        """Poll until n3 holds everything; while it does not, the quorum
        read is made again (read repair is rate limited per (shard, node):
        a read right after an earlier repair of the same pair is dropped,
        and a later read offers it again, as a dashboard's next refresh
        does). With read repair off no number of reads converges."""
        def done():
            if self.lacking(log, measurement, shards) == 0:
                return True
            reread()
            return False
        self.c.wait_until(done, CONVERGE_S,
                          "n3's own export to hold every acknowledged sample of shards %r"
                          % shards)
        return time.monotonic() - t0

    def test_a_export(self):
        c = self.c
        log, gen = self.lose_writes("rre", 3)
        shards = self.read_shards()
        before = self.lacking(log, "rre", shards)
        self.assertGreater(before, 0, "n3 lacks nothing: the setup did not lose writes")
        div0 = self.router_metric("strata_router_read_repair_divergent_total")
        rep0 = self.router_metric("strata_router_read_repairs_total")
        # a `one` read never repairs
        st, _, _ = c.get("/api/v1/export", params=[("match[]", '{__name__=~"rre_.*"}'),
                                                   ("read_consistency", "one")])
        self.assertEqual(st, 200)
        self.assertEqual(self.router_metric("strata_router_read_repair_divergent_total"), div0)
        self.assertEqual(self.router_metric("strata_router_read_repairs_total"), rep0)
        self.assertEqual(self.lacking(log, "rre", shards), before)
        # a quorum read sees n3 disagree and has it repaired
        t0 = time.monotonic()

        def read():
            st, _, body = c.get("/api/v1/export", params=[("match[]", '{__name__=~"rre_.*"}'),
                                                          ("read_consistency", "quorum")])
            self.assertEqual(st, 200, body[:300])

        read()
        secs = self.converge(log, "rre", shards, t0, read)
        self.assertGreater(self.router_metric("strata_router_read_repair_divergent_total"), div0)
        self.assertGreater(self.router_metric("strata_router_read_repairs_total"), rep0)
        pulled = metric_sum(c.node_metrics(2), "strata_node_repair_samples_total")
        self.assertGreaterEqual(pulled, before)
        say("export: n3 lacked %d samples of shards %r; converged %.2f s after the first quorum "
            "read (%d samples pulled)" % (before, shards, secs, pulled))

    def test_b_query_range(self):
        c = self.c
        log, gen = self.lose_writes("rrq", 4)
        shards = self.read_shards()
        before = self.lacking(log, "rrq", shards)
        self.assertGreater(before, 0, "n3 lacks nothing: the setup did not lose writes")
        div0 = self.router_metric("strata_router_read_repair_divergent_total")
        rep0 = self.router_metric("strata_router_read_repairs_total")
        start, end = gen.ts(0) // 1000, gen.ts(9) // 1000
        t0 = time.monotonic()

        def read():
            st, _, body = c.get("/api/v1/query_range",
                                params=[("query", "rrq_a"), ("start", str(start)),
                                        ("end", str(end)), ("step", "1"),
                                        ("read_consistency", "quorum")])
            self.assertEqual(st, 200, body[:300])

        read()
        secs = self.converge(log, "rrq", shards, t0, read)
        self.assertGreater(self.router_metric("strata_router_read_repair_divergent_total"), div0)
        self.assertGreater(self.router_metric("strata_router_read_repairs_total"), rep0)
        say("query_range: n3 lacked %d samples of shards %r; converged %.2f s after the first "
            "quorum query" % (before, shards, secs))


if __name__ == "__main__":
    unittest.main()
