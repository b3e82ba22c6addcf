"""Anti-entropy repair and rebuilding an empty replica: 3 nodes, RF=3, one
router, scheduled repair off ([replication] repair_interval = 0s) so that
what heals is what the test asks for.

  - hints dropped: n3 is stopped, writes are acknowledged by n1/n2, then the
    hint queues for n3 are deleted (n1 and n2 stopped meanwhile), so hints
    can no longer heal n3; `strata repair --dry-run` counts what n3 lacks
    and changes nothing, `strata repair` pulls it, and every shard's
    replicas end with identical node-local exports holding every
    acknowledged sample.
  - data dir wiped under load: older data is written first and flushed
    ([storage] partition = 1m, memtable_max_age = 1s: sealed segments on
    every node), then n3 is kill -9'd while a writer runs, its whole data
    directory removed, and it is started again; it notices the empty
    directory, rebuilds from n1/n2 with the sealed partitions copied as
    segment files (strata_node_repair_files_copied_total > 0), the rest
    pulled (strata_node_rebuilding 1 -> 0, the node marker written), and
    afterwards its own export holds every acknowledged sample, old and new.
    A second `strata repair` skips the sealed partitions the first found
    equal (strata_repair_partitions_skipped_total).
  - conflicting rewrite: every series' samples are rewritten with new
    values while n3 is SIGSTOPped (then kill -9'd) and n3's hints are
    dropped; `strata
    repair` replaces n3's older values with the newer version's (counted as
    resolved conflicts) and leaves n1/n2's (their version is higher), so
    every replica ends with the latest values.
  - dropped delete: a delete n3 missed (SIGSTOPped, then kill -9'd) and
    whose hints are dropped reaches n3 through `strata repair` (the peers'
    versioned tombstones travel before any sample), so n3's own export no
    longer holds the deleted samples and the replicas end identical.
  - repairs while writing, on nodes with two thread-pool threads
    (UV_THREADPOOL_SIZE=2): six `POST /api/v1/admin/repair` at once (each
    node gets six RPC_REPAIRs, each pass calling the peers' DIGEST) while
    writes go on; every write is acknowledged at the first try and every
    repair answers without error. Passes run on the repair thread, so they
    cannot fill the pool that serves the peers' calls and the writes (they
    did: the nodes stalled until the calls timed out).
"""

import os
import re
import shutil
import subprocess
import json
import sys
import threading
import time
import unittest
import urllib.parse

from harness import (AckLog, BackgroundWriter, BatchGen, ClusterTestCase, binary, body_of,
                     http_request, metric_sum, recent_base_s, write_with_retries)

REPL = {"replica_timeout": "1s", "heartbeat_interval": "200ms", "hint_max_age": "1h",
        "repair_interval": "0s"}
SHARDS = 4


def say(msg):
    sys.stderr.write("    %s\n" % msg)
    sys.stderr.flush()


class RepairTest(ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        cls.c = cls.start_class_cluster(nodes=3, routers=1, shards=SHARDS, rf=3,
                                        replication=REPL, router={"request_timeout": "3s"},
                                        storage={"partition": "1m", "memtable_max_age": "1s"})
        cls.c.wait_peers_up()

    def node_data(self, i, measurement):
        """Node i's local data of one measurement's series over every shard
        (RF=3: all of them)."""
        out = {}
        for s in range(SHARDS):
            out.update(self.c.node_shard_data(i, s))
        return {k: v for k, v in out.items()
                if dict(k)["__name__"].startswith(measurement + "_")}

    def cli_repair(self, *args):
        """`strata repair ARGS` against the router: (exit code, stdout)."""
        p = subprocess.run([binary("cli"), "repair", "--router", self.c.router_url(0)] +
                           list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=120)
        out = p.stdout.decode()
        say("strata repair %s -> %d:\n%s" % (" ".join(args), p.returncode, out.rstrip()))
        return p.returncode, out

    def moved_into(self, out, node):
        """Samples the summary says went into `node`."""
        m = re.search(r"into %s\s+(\d+) series, (\d+) samples" % node, out)
        self.assertIsNotNone(m, "no summary line for %s in %r" % (node, out))
        return int(m.group(2))

    def repair_metric(self, i, name):
        return metric_sum(self.c.node_metrics(i), name)

    def test_a_dropped_hints_are_repaired(self):
        c = self.c
        log = AckLog()
        gen = BatchGen("hintless", hosts=20, seed=5)
        self.assertEqual(c.sigterm(2), 0)
        for b in range(30):
            built = gen.batch(b)
            r = write_with_retries(c, body_of(built), consistency="quorum", precision="ms")
            log.record(built, r.ok)
        self.assertEqual(log.n_unacked, 0)
        # n3 is down: everything n3 must get is in the hint queues of n1/n2.
        for i in (0, 1):
            self.assertEqual(c.sigterm(i), 0)
        dropped = 0
        for i in (0, 1):
            d = os.path.join(c.data_dir(i), "hints", c.node_ids[2])
            if os.path.isdir(d):
                shutil.rmtree(d)
                dropped += 1
        self.assertGreater(dropped, 0, "no hint queue for n3 was found to drop")
        c.start_all()
        c.wait_peers_up()
        want = sum(len(v) for v in log.acked.data.values())
        rc, out = self.cli_repair("--dry-run")
        self.assertEqual(rc, 0)
        self.assertEqual(self.moved_into(out, "n3"), want)
        self.assertEqual(self.repair_metric(2, "strata_node_repair_samples_total"), 0)
        self.assertTrue(c.replica_diffs()[0], "a dry run changed nothing")
        t0 = time.monotonic()
        rc, out = self.cli_repair()
        self.assertEqual(rc, 0)
        self.assertEqual(self.moved_into(out, "n3"), want)
        self.assertEqual(self.moved_into(out, "n1"), 0)
        secs, union = c.wait_replicas_identical(30)
        say("replicas identical %.1f s after `strata repair` (hints dropped: %d queues)"
            % (time.monotonic() - t0, dropped))
        # /cluster shows the last repair per shard (from the nodes' STATS)
        c.wait_until(lambda: all(p.get("repair", {}).get("last_ms", 0) > 0
                                 for p in c.cluster_info()["placement"]), 30,
                     "/cluster to show a repair for every shard")
        pulled = sum(p["repair"]["samples_pulled"] for p in c.cluster_info()["placement"])
        self.assertLessEqual(pulled, want)
        # no node rebuilding (a node stopped in the middle of its first
        # start's rebuild, as n1/n2 may be here, finishes it once its peers
        # are up again)
        c.wait_until(lambda: all(n["rebuilding"] is False for n in c.cluster_info()["nodes"]),
                     30, "/cluster to show no node rebuilding")
        rc, out = self.cli_repair("--shard", "0", "--node", "n3", "--from", "n1")
        self.assertEqual((rc, self.moved_into(out, "n3")), (0, 0), "nothing left to copy")
        log.check({k: v for k, v in union.items() if dict(k)["__name__"].startswith("hintless_")},
                  "union of the replicas after repair")
        log.check(self.node_data(2, "hintless"), "n3 alone after repair")
        self.assertEqual(self.repair_metric(2, "strata_node_repair_samples_total"), want)

    def test_b_wiped_data_dir_rebuilds(self):
        c = self.c
        # older data first, ten 1-minute partitions, flushed on every node
        old = AckLog()
        gen = BatchGen("wipeold", hosts=30, seed=11, base_ms=(recent_base_s() - 3600) * 1000,
                       step_ms=20000)
        for b in range(30):
            built = gen.batch(b)
            r = write_with_retries(c, body_of(built), consistency="all", precision="ms")
            old.record(built, r.ok)
        self.assertEqual(old.n_unacked, 0)
        c.wait_until(lambda: all(self.repair_metric(i, "strata_node_head_samples") == 0
                                 for i in range(3)), 60, "every head flushed")
        log = AckLog()
        w = BackgroundWriter(c, BatchGen("wipe", hosts=30, seed=9), log, tries=30, backoff=0.2,
                             consistency="quorum")
        w.start()
        try:
            c.wait_until(lambda: log.n_acked >= 20 or not w.is_alive(), 60, "20 writes")
            c.kill9(2)
            shutil.rmtree(c.data_dir(2))
            n0 = log.n_acked
            c.wait_until(lambda: log.n_acked >= n0 + 10 or not w.is_alive(), 60,
                         "10 writes while n3 is gone")
            t0 = time.monotonic()
            c.start_node(2)
            c.wait_until(lambda: self.repair_metric(2, "strata_node_rebuilding") == 0, 60,
                         "n3 to finish rebuilding")
            rebuild_s = time.monotonic() - t0
            n1 = log.n_acked
            c.wait_until(lambda: log.n_acked >= n1 + 5 or not w.is_alive(), 60,
                         "5 writes after the rebuild")
        finally:
            w.stop()
        self.assertTrue(os.path.exists(os.path.join(c.data_dir(2), "node.marker")))
        self.assertIn("rebuild finished", c.nodes[2].log_text())
        files = self.repair_metric(2, "strata_node_repair_files_copied_total")
        self.assertGreater(files, 0, "the sealed partitions were copied as files")
        # the hints of the last writes may still be in flight: wait for the
        # replicas to agree, then n3 alone must hold every acknowledged sample
        c.wait_hints_drained(60)
        c.wait_replicas_identical(60)
        got = self.node_data(2, "wipe")
        log.check(got, "n3 alone after rebuilding")
        old.check(self.node_data(2, "wipeold"), "n3 alone after rebuilding (copied files)")
        say("rebuild of n3 took %.1f s (%d segment files copied); %d writes acknowledged; "
            "n3 holds %d series" % (rebuild_s, files, log.n_acked, len(got)))
        # sealed partitions found equal are not compared again until they
        # change (a compaction in between changes some: bounded retries)
        skipped = 0
        for _ in range(4):
            rc, out = self.cli_repair()
            self.assertEqual(rc, 0)
            skipped = sum(self.repair_metric(i, "strata_repair_partitions_skipped_total")
                          for i in range(3))
            if skipped:
                break
        self.assertGreater(skipped, 0, out)
        self.assertRegex(out, r"[1-9]\d* sealed partitions skipped")
        old.check(self.node_data(2, "wipeold"), "n3 after the skipping pass")

    def test_c_conflicting_rewrite_converges(self):
        c = self.c
        t = int(time.time() * 1000) - 60000
        keys = [(h, t + 1000 * k) for h in range(8) for k in range(5)]

        def put(value):
            body = "".join("rewrite,host=h%d value=%d %d\n" % (h, value, ts) for h, ts in keys)
            r = write_with_retries(c, body, consistency="quorum", precision="ms")
            self.assertEqual(r.status, 204, "write %d: %s %r" % (value, r.status, r.errors[-3:]))

        def values(i):
            return sorted(v for d in self.node_data(i, "rewrite").values() for v in d.values())

        put(1)
        c.wait_until(lambda: all(values(i) == [1] * len(keys) for i in range(3)), 30,
                     "value 1 on every replica")
        resolved0 = self.repair_metric(2, "strata_node_repair_conflicts_resolved_total")
        c.sigstop(2)
        try:
            put(2)  # n1/n2 take it; n3's copy waits in hints
            for i in (0, 1):
                self.assertEqual(c.sigterm(i), 0)
            for i in (0, 1):
                d = os.path.join(c.data_dir(i), "hints", c.node_ids[2])
                if os.path.isdir(d):
                    shutil.rmtree(d)
        finally:
            # SIGKILL, not SIGCONT: the forwarded write sits unread in n3's
            # socket buffer and would still arrive after a resume
            c.kill9(2)
        c.start_all()
        c.wait_peers_up()
        self.assertEqual(values(2), [1] * len(keys), "n3 kept the older values")
        rc, out = self.cli_repair()
        self.assertEqual(rc, 0)
        m = re.search(r"into n3 .*\((\d+) set to the newer version\)", out)
        self.assertIsNotNone(m, out)
        self.assertEqual(int(m.group(1)), len(keys))
        self.assertEqual(self.moved_into(out, "n1"), 0, "n1's newer values are left")
        c.wait_replicas_identical(30)
        for i in range(3):
            self.assertEqual(values(i), [2] * len(keys), "latest values on %s" % c.node_ids[i])
        self.assertEqual(self.repair_metric(2, "strata_node_repair_conflicts_resolved_total")
                         - resolved0, len(keys))

    def test_d_dropped_delete_is_repaired(self):
        c = self.c
        t = int(time.time() * 1000) - 60000
        body = "".join("gone,host=h%d value=1 %d\n" % (h, t + 1000 * k)
                       for h in range(4) for k in range(5))
        r = write_with_retries(c, body, consistency="quorum", precision="ms")
        self.assertEqual(r.status, 204, r.errors[-3:])

        def held(i):
            return sum(len(d) for d in self.node_data(i, "gone").values())

        c.wait_until(lambda: all(held(i) == 20 for i in range(3)), 30, "data on every replica")
        tombs0 = self.repair_metric(2, "strata_node_repair_tombstones_total")
        c.sigstop(2)
        try:
            url = c.router_url(0) + "/api/v1/admin/tsdb/delete_series?" + \
                urllib.parse.urlencode({"match[]": '{__name__="gone_value"}',
                                        "consistency": "quorum"})
            st, _, data = http_request(url, "POST", b"")
            self.assertEqual(st, 204, data[:300])
            for i in (0, 1):
                self.assertEqual(c.sigterm(i), 0)
            for i in (0, 1):
                d = os.path.join(c.data_dir(i), "hints", c.node_ids[2])
                if os.path.isdir(d):
                    shutil.rmtree(d)
        finally:
            c.kill9(2)  # the forwarded delete may sit unread in n3's socket
        c.start_all()
        c.wait_peers_up()
        self.assertEqual(held(2), 20, "n3 missed the delete")
        rc, out = self.cli_repair()
        self.assertEqual(rc, 0)
        c.wait_replicas_identical(30)
        for i in range(3):
            self.assertEqual(held(i), 0, "deleted on %s" % c.node_ids[i])
        self.assertGreaterEqual(self.repair_metric(2, "strata_node_repair_tombstones_total")
                                - tombs0, 1)


class RepairConcurrencyTest(ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        repl = dict(REPL, replica_timeout="10s")
        cls.c = cls.start_class_cluster(nodes=3, routers=1, shards=SHARDS, rf=3,
                                        replication=repl, router={"request_timeout": "30s"},
                                        node_env={"UV_THREADPOOL_SIZE": "2"})
        cls.c.wait_peers_up()

    def test_repairs_do_not_block_writes(self):
        c = self.c
        t = int(time.time() * 1000) - 120000
        lines = ["busy,host=h%d value=%d %d" % (h, k, t + 1000 * k)
                 for h in range(40) for k in range(30)]
        r = write_with_retries(c, "\n".join(lines) + "\n", consistency="quorum",
                               precision="ms")
        self.assertEqual(r.status, 204, r.errors[-3:])
        answers = []

        def repair():
            st, _, data = http_request(c.router_url(0) + "/api/v1/admin/repair", "POST", b"",
                                       timeout=300)
            answers.append((st, data))

        threads = [threading.Thread(target=repair) for _ in range(6)]
        for th in threads:
            th.start()
        try:
            for k in range(20):
                body = "".join("busy2,host=h%d value=%d %d\n" % (h, k, t + 1000 * k)
                               for h in range(40))
                st, data = c.write(body, consistency="quorum", precision="ms")
                self.assertEqual(st, 204, "write %d: %r" % (k, data))
        finally:
            for th in threads:
                th.join(300)
        self.assertEqual(len(answers), 6)
        for st, data in answers:
            self.assertEqual(st, 200, data[:300])
            nodes = json.loads(data)["data"]["nodes"]
            self.assertEqual(len(nodes), 3)
            for nd in nodes:
                self.assertEqual(nd["error"], "", nd)
                self.assertTrue(all(s["error"] == "" for s in nd["shards"]), nd)


if __name__ == "__main__":
    unittest.main()
