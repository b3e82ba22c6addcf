"""Faults that hints cannot heal, healed by anti-entropy repair: 3 nodes,
RF=3, quorum writes, one router, scheduled repair off ([replication]
repair_interval = 0s) so that nothing heals before the test asks. The
faults are injected with the node's test-only knobs (node/node_fault.h,
environment variables read at node start).

  - kill between ack and hint: n3 is down; n1 and n2 start with
    STRATA_TEST_HINT_DELAY_MS, so a hint for n3 is appended only long after
    the write was acknowledged; both are kill -9'd in that gap. After a
    restart no hint for n3 exists and n3 lacks every acknowledged sample
    (the replicas differ); `strata repair` makes the three node-local
    exports identical and each holds every acknowledged sample.
  - failed local write on the coordinator: n1 starts with
    STRATA_TEST_FAIL_LOCAL_WRITE=1 (its own copy of every write it
    coordinates fails, reported): the router hands each such batch to the
    next replica, which stores it and forwards it to n1, so the replicas
    agree without repair. With STRATA_TEST_DROP_LOCAL_WRITE=1 (the copy is
    lost but reported stored: nobody knows it is missing) n1 lacks the
    writes it coordinated until `strata repair` pulls them.

  - a rebuild cut short: n3 starts with an empty data directory while n1
    and n2 are down (its rebuild cannot pull anything yet) and is kill -9'd;
    started again once n1 and n2 are up, it rebuilds again (it does not
    count as a full replica because its shard directories now exist) and
    its own export holds every acknowledged sample.

  - a compaction rule's output when the evaluating side's coordinator
    fails its own copy: every node starts with
    STRATA_TEST_FAIL_LOCAL_WRITE=1; a rule's output write that a node
    coordinates meets quorum on the other two, and is then handed to the
    next replica, which forwards it back: every node's own export holds
    the rule's buckets (without the handoff the coordinator lacks them and
    only repair would bring them).

Dropped hints are covered by test_repair.py.
"""

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import unittest

import time
import urllib.parse

from harness import (AckLog, BatchGen, ClusterTestCase, binary, body_of, http_request, metric_sum,
                     write_with_retries)

REPL = {"replica_timeout": "1s", "heartbeat_interval": "200ms", "hint_max_age": "1h",
        "repair_interval": "0s"}
SHARDS = 4
HINT_DELAY_MS = 60000  # far longer than the test needs between the acks and the kill


def say(msg):
    sys.stderr.write("    %s\n" % msg)
    sys.stderr.flush()


@contextlib.contextmanager
def env(**kv):
    """os.environ with kv set (the node processes started inside inherit it)."""
    old = {k: os.environ.get(k) for k in kv}
    os.environ.update({k: str(v) for k, v in kv.items()})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class FaultTest(ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        cls.c = cls.start_class_cluster(nodes=3, routers=1, shards=SHARDS, rf=3,
                                        replication=REPL, router={"request_timeout": "5s"})
        cls.c.wait_peers_up()

    def node_data(self, i, measurement):
        """Node i's local data of one measurement's series (RF=3: every shard)."""
        out = {}
        for s in range(SHARDS):
            out.update(self.c.node_shard_data(i, s))
        return {k: v for k, v in out.items()
                if dict(k)["__name__"].startswith(measurement + "_")}

    def restart_with(self, i, **knobs):
        """Node i stopped (SIGTERM) and started again with the knobs set."""
        c = self.c
        if c.nodes[i].running():
            self.assertEqual(c.sigterm(i), 0)
        with env(**knobs):
            c.start_node(i)

    def write(self, gen, log, batches):
        for b in range(batches):
            built = gen.batch(b)
            r = write_with_retries(self.c, body_of(built), consistency="quorum", precision="ms")
            log.record(built, r.ok)
        self.assertEqual(log.n_unacked, 0, "every write acknowledged")

    def write_coordinated_by(self, i, gen, log, want=3, most=60):
        """Batches until node i (restarted with a knob) coordinated `want`
        writes: the router may take a moment to route to it again."""
        c = self.c

        def coordinated():
            return metric_sum(c.node_metrics(i), "strata_node_coordinated_writes_total")

        b = 0
        while coordinated() < want:
            self.assertLess(b, most, "%s coordinated no write" % c.node_ids[i])
            built = gen.batch(b)
            r = write_with_retries(c, body_of(built), consistency="quorum", precision="ms")
            log.record(built, r.ok)
            b += 1
        self.assertEqual(log.n_unacked, 0, "every write acknowledged")

    def repair_and_check(self, log, measurement):
        """`strata repair`, then identical replicas holding every acked sample."""
        c = self.c
        p = subprocess.run([binary("cli"), "repair", "--router", c.router_url(0)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        out = p.stdout.decode()
        say("strata repair -> %d:\n%s" % (p.returncode, out.rstrip()))
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        secs, _ = c.wait_replicas_identical(30)
        for i in range(3):
            log.check(self.node_data(i, measurement), "%s alone after repair" % c.node_ids[i])
        return out

    def test_a_kill_between_ack_and_hint(self):
        c = self.c
        log = AckLog()
        gen = BatchGen("gap", hosts=20, seed=3)
        self.assertEqual(c.sigterm(2), 0)
        # a delayed hint append holds a pool thread: give the pool room
        for i in (0, 1):
            self.restart_with(i, STRATA_TEST_HINT_DELAY_MS=HINT_DELAY_MS, UV_THREADPOOL_SIZE=16)
        c.wait_peers_up(nodes=[0, 1])
        for i in (0, 1):
            self.assertTrue(c.log_lines(c.nodes[i], r"TEST FAULT KNOB SET.*HINT_DELAY"))
        self.write(gen, log, 3)
        # acknowledged by n1 + n2; the hints for n3 are still waiting
        for i in (0, 1):
            self.assertEqual(c.hints_pending(i).get("n3", 0), 0, "no hint appended yet")
        for i in (0, 1):
            c.kill9(i)
        c.start_all()
        c.wait_peers_up()
        for i in range(3):
            self.assertEqual(sum(c.hints_pending(i).values()), 0, "the hints were lost")
        self.assertEqual(self.node_data(2, "gap"), {}, "n3 never got the writes")
        diffs, _ = c.replica_diffs()
        self.assertTrue(diffs, "the replicas differ before repair")
        out = self.repair_and_check(log, "gap")
        want = sum(len(v) for v in log.acked.data.values())
        m = re.search(r"into n3\s+(\d+) series, (\d+) samples", out)
        self.assertIsNotNone(m, out)
        self.assertEqual(int(m.group(2)), want)

    def test_b_failed_local_write(self):
        c = self.c
        # reported failure: the router's handoff gives n1 its copy, no repair
        self.restart_with(0, STRATA_TEST_FAIL_LOCAL_WRITE=1)
        c.wait_peers_up()
        log = AckLog()
        self.write_coordinated_by(0, BatchGen("lfail", hosts=20, seed=4), log)
        c.wait_replicas_identical(30)
        log.check(self.node_data(0, "lfail"), "n1 after its failed local writes")
        # a lost local write nobody knows about: only repair brings it back
        self.restart_with(0, STRATA_TEST_DROP_LOCAL_WRITE=1)
        c.wait_peers_up()
        log = AckLog()
        self.write_coordinated_by(0, BatchGen("ldrop", hosts=20, seed=6), log)
        c.wait_hints_drained(30)
        n1 = sum(len(v) for v in self.node_data(0, "ldrop").values())
        n2 = sum(len(v) for v in self.node_data(1, "ldrop").values())
        say("before repair: n1 holds %d samples, n2 %d" % (n1, n2))
        self.assertLess(n1, n2, "n1 lost the copies of the writes it coordinated")
        self.assertTrue(c.replica_diffs()[0], "the replicas differ before repair")
        self.restart_with(0)  # knobs off again
        c.wait_peers_up()
        self.repair_and_check(log, "ldrop")

    def test_c_rebuild_cut_short_starts_again(self):
        c = self.c
        log = AckLog()
        self.write(BatchGen("rebuild", hosts=20, seed=8), log, 3)
        for i in range(3):
            self.assertEqual(c.sigterm(i), 0)
        shutil.rmtree(c.data_dir(2))
        os.makedirs(c.data_dir(2))
        c.start_node(2)  # alone: nothing to pull from, it stays rebuilding

        def rebuilding():
            return metric_sum(c.node_metrics(2), "strata_node_rebuilding")

        self.assertEqual(rebuilding(), 1)
        c.kill9(2)
        self.assertTrue(any(d.startswith("shard-") for d in os.listdir(c.data_dir(2))))
        for i in (0, 1):
            c.start_node(i)
        c.start_node(2)
        c.wait_until(lambda: rebuilding() == 0, 60, "n3 to finish its second rebuild")
        self.assertIn("rebuild finished", c.nodes[2].log_text())
        log.check(self.node_data(2, "rebuild"), "n3 alone after a rebuild cut short")
        c.wait_peers_up()

    def test_d_rule_output_coordinator_copy_fails(self):
        c = self.c
        # the knob on the node that coordinates the output (the first replica
        # of the destination series' shard)
        shard = c.documented_shards([{"__name__": "frule_max"}])[0]
        k = c.node_index(c.cluster_placement()[shard][0])
        self.restart_with(k, STRATA_TEST_FAIL_LOCAL_WRITE=1)
        c.wait_peers_up()
        for node_id in c.node_ids:  # the rule goes to every node through the router
            c.wait_node_state(node_id, ("up",), 30)
        form = {"source": 'frule_value{room="r1"}', "aggregation": "max", "bucket": "10s",
                "dest": "frule_max", "exact": "1"}
        st, _, data = http_request(c.router_url(0) + "/api/v1/admin/rules", "POST",
                                   urllib.parse.urlencode(form).encode(),
                                   {"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(st, 200, data)
        self.assertEqual(json.loads(data)["data"]["nodes_acked"], 3)
        t = int(time.time() * 1000) - 3600 * 1000
        t -= t % 10000
        for b in range(5):  # one write per bucket: buckets 0..3 close
            lines = ["frule,room=r1 value=%d %d" % (k, t + k * 1000)
                     for k in range(b * 10, b * 10 + 10)]
            r = write_with_retries(c, "\n".join(lines).encode(), consistency="quorum",
                                   precision="ms")
            self.assertTrue(r.ok, r)
        want = {t + b * 10000: float(b * 10 + 9) for b in range(4)}  # buckets 0..3 closed

        def buckets(i):
            got = {}
            for k, v in self.node_data(i, "frule").items():
                if dict(k)["__name__"] == "frule_max":
                    got.update(v)
            return got

        for i in range(3):
            try:
                c.wait_until(lambda: all(buckets(i).get(ts) == v for ts, v in want.items()),
                             60, "%s's own copy of the rule's buckets" % c.node_ids[i])
            except AssertionError:
                raise AssertionError("%s holds %r, want %r (router: %r)" % (
                    c.node_ids[i], buckets(i), want, c.export("frule_max")))
        self.restart_with(k)  # knob off again
        c.wait_peers_up()


if __name__ == "__main__":
    unittest.main()
