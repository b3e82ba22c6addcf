"""Network partitions between Strata processes, with proxy.py in front of
node n3's RPC port: cluster.ini names the proxy, n3 binds the real port with
--rpc-listen, so every RPC to n3 (from the router and from its peers)
crosses the proxy, which can cut, delay or blackhole it. Node HTTP (metrics,
node-local exports) is not proxied, so n3 stays observable.

Plus a node started with a mismatched cluster.ini: its peers must refuse
it (fingerprint) and must not forward writes to it.

RF=3 on 3 nodes, 6 shards, write_consistency = quorum.
"""

import re
import sys
import time
import unittest

from harness import (ALL, AckLog, BackgroundWriter, BatchGen, ClusterTestCase,
                     assert_samples_equal, body_of, export_to_dict, metric_sum, parse_export,
                     scaled, shard_ids, write_with_retries)

REPL = {"replica_timeout": "1s", "heartbeat_interval": "200ms",
        "hint_max_bytes": "256MiB", "hint_max_age": "1h"}
ROUTER = {"request_timeout": "3s"}
NOT_UP = ("down", "connecting")
UP = ("up", "catching_up")
N3 = 2


def say(msg):
    sys.stderr.write("    %s\n" % msg)
    sys.stderr.flush()


class PartitionCase(ClusterTestCase):

    def pcluster(self, replication=REPL, router=ROUTER, **kw):
        """Started, with every replication link up."""
        kw.setdefault("proxied", [N3])
        c = self.cluster(nodes=3, routers=1, shards=6, rf=3, replication=replication,
                         router=router, **kw).start()
        c.wait_peers_up()
        return c

    def send(self, c, log, built, tries=10, **params):
        params.setdefault("precision", "ms")
        r = write_with_retries(c, body_of(built), tries=tries, **params)
        log.record(built, r.ok)
        return r

    def export_all(self, c, **extra):
        params = [("match[]", ALL[0])] + list(extra.items())
        st, _, data = c.get("/api/v1/export", 0, params)
        self.assertEqual(st, 200, "router export %r: HTTP %d: %r" % (extra, st, data[:500]))
        return export_to_dict(parse_export(data), "router export %r" % (extra,))

    def n3_hints(self, c):
        return c.hints_pending(0).get("n3", 0) + c.hints_pending(1).get("n3", 0)

    def converge(self, c, log, what, t_ref):
        c.wait_hints_drained(120, what="%s: hint queues to drain" % what)
        t_drained = time.monotonic() - t_ref
        _, union = c.wait_replicas_identical(60)
        t_ident = time.monotonic() - t_ref
        say("%s: convergence took %.1fs (hints drained after %.1fs, replicas identical "
            "after %.1fs, %d comparison(s))" % (what, t_ident, t_drained, t_ident,
                                               c.replica_polls))
        if c.first_replica_diffs:
            say("  replicas still differed after the hints drained: %s"
                % c.first_replica_diffs[0][:400])
        log.check(union, "%s: union of the replicas' node-local exports" % what)
        return union

    def assert_through_proxy(self, c):
        p = c.proxies[N3]
        c.wait_until(lambda: p.stats["connections"] >= 1 and p.stats["bytes_up"] > 0, 30,
                     "RPC traffic to n3 through its proxy")

    def wait_acked(self, c, log, w, n, what, timeout=90):
        n0 = log.n_acked
        c.wait_until(lambda: log.n_acked >= n0 + n or not w.is_alive(), timeout,
                     "%d acknowledged writes %s" % (n, what))
        if not w.is_alive():
            w.stop()  # raises what the writer hit
            self.fail("writer ended early (%s)" % w.summary())


class PartitionTest(PartitionCase):

    def test_cut(self):
        # Contract 7: n3's links all cut (connections reset, new ones
        # refused) while a writer runs: quorum writes keep succeeding
        # (retries allowed); heal; hints drain; replicas identical.
        c = self.pcluster()
        self.assert_through_proxy(c)
        p = c.proxies[N3]
        gen, log = BatchGen("cut", hosts=30, seed=23), AckLog()
        w = BackgroundWriter(c, gen, log, tries=30, backoff=0.2)
        w.start()
        try:
            self.wait_acked(c, log, w, 5, "before the cut")
            p.set_mode("cut")
            t_cut = time.monotonic()
            state = c.wait_node_state("n3", NOT_UP, 30)
            say("/cluster: n3 %s %.1fs after the cut" % (state, time.monotonic() - t_cut))
            for i in (0, 1):
                c.wait_until(lambda: c.peer_metric(i, "strata_peer_up").get("n3") == 0, 30,
                             "%s: strata_peer_up{peer=\"n3\"} == 0" % c.node_ids[i])
            self.wait_acked(c, log, w, scaled(20, 5), "while n3 is cut off")
            c.wait_until(lambda: self.n3_hints(c) > 0, 30, "hints for n3 on n1 or n2")
            say("cut: %s, resets %d" % (w.summary(), p.stats["resets"]))
            p.set_mode("forward")
            t_heal = time.monotonic()
            c.wait_node_state("n3", UP, 30)
            self.wait_acked(c, log, w, 5, "after the heal")
        finally:
            p.set_mode("forward")
            if w.is_alive():
                w.stop()
        self.converge(c, log, "cut healed", t_heal)
        log.check(self.export_all(c), "router export at the end")
        self.assertEqual(w.unacked[:3], [], "bodies never acknowledged while n3 was cut off "
                         "(quorum, 2 of 3 up): %d" % len(w.unacked))
        c.stop()

    def test_delay(self):
        # Contract 8 (delay): 300 ms each way to n3, below replica_timeout
        # and the heartbeat deadline (2 intervals): nothing fails, not even
        # sync writes, and no retry is needed.
        # The proxy delays each chunk in turn, so under load the latency
        # stacks beyond 300 ms: generous heartbeat (down after 2 s of
        # silence) and timeouts, so only a real failure fails.
        c = self.pcluster(replication=dict(REPL, replica_timeout="3s",
                                           heartbeat_interval="1s"),
                          router={"request_timeout": "8s"})
        self.assert_through_proxy(c)
        p = c.proxies[N3]
        gen, log = BatchGen("dly", hosts=30, seed=29), AckLog()
        p.set_delay(0.3)
        t0 = time.monotonic()
        n = scaled(12, 4)
        for b in range(n):
            cons = "sync" if b % 3 == 0 else "quorum"
            r = self.send(c, log, gen.batch(b), tries=1, consistency=cons)
            self.assertEqual(r.status, 204, "consistency=%s with 300 ms delay to n3: %r"
                             % (cons, r))
        say("%d writes with 300 ms delay to n3 took %.1fs; delayed chunks %d"
            % (n, time.monotonic() - t0, p.stats["delayed_chunks"]))
        self.assertGreater(p.stats["delayed_chunks"], 0)
        for cons in ("one", "quorum"):
            log.check(self.export_all(c, read_consistency=cons),
                      "export (%s) with 300 ms delay to n3" % cons)
        states = c.node_states()
        say("/cluster states with the delay: %r" % states)
        p.set_delay(0)
        t_heal = time.monotonic()
        self.converge(c, log, "delay removed", t_heal)
        # sync needed n3's ack for every batch: n3 has them all already.
        c.stop()

    def test_blackhole(self):
        # Contract 8 (blackhole): n3's connections accept but nothing gets
        # through either way: writes still succeed within the timeouts
        # (retries allowed), hints cover the gap; heal; converge.
        c = self.pcluster()
        self.assert_through_proxy(c)
        p = c.proxies[N3]
        gen, log = BatchGen("bh", hosts=30, seed=31), AckLog()
        w = BackgroundWriter(c, gen, log, tries=30, backoff=0.2)
        w.start()
        try:
            self.wait_acked(c, log, w, 5, "before the blackhole")
            p.set_mode("blackhole")
            t_bh = time.monotonic()
            self.wait_acked(c, log, w, scaled(20, 5), "while n3 is blackholed")
            state = c.wait_node_state("n3", NOT_UP, 30)
            say("/cluster: n3 %s %.1fs after the blackhole" % (state,
                                                               time.monotonic() - t_bh))
            c.wait_until(lambda: self.n3_hints(c) > 0, 30, "hints for n3 on n1 or n2")
            self.wait_acked(c, log, w, 5, "after n3 is seen down")
            say("blackhole: %s, dropped up %d B, down %d B" % (
                w.summary(), p.stats["dropped_up"], p.stats["dropped_down"]))
            p.set_mode("forward")
            t_heal = time.monotonic()
            c.wait_node_state("n3", UP, 60)
            say("n3 up again %.1fs after the heal" % (time.monotonic() - t_heal))
            self.wait_acked(c, log, w, 5, "after the heal")
        finally:
            p.set_mode("forward")
            if w.is_alive():
                w.stop()
        self.converge(c, log, "blackhole healed", t_heal)
        log.check(self.export_all(c), "router export at the end")
        self.assertEqual(w.unacked[:3], [], "bodies never acknowledged while n3 was "
                         "blackholed: %d" % len(w.unacked))
        c.stop()


    def test_blackhole_answers_only(self):
        # One-way: requests reach n3 (it applies them, coordinates, forwards)
        # but its answers vanish. Not acknowledged is not "not written": the
        # router and the peers time out, retry elsewhere or hint, and the
        # same batches land again (idempotent). Writes still succeed; after
        # the heal the replicas converge to exactly what was sent.
        c = self.pcluster()
        self.assert_through_proxy(c)
        p = c.proxies[N3]
        gen, log = BatchGen("bhd", hosts=30, seed=43), AckLog()
        w = BackgroundWriter(c, gen, log, tries=30, backoff=0.2)
        w.start()
        try:
            self.wait_acked(c, log, w, 5, "before the one-way blackhole")
            p.set_mode("blackhole", "down")
            self.wait_acked(c, log, w, scaled(20, 5), "while n3's answers vanish")
            c.wait_node_state("n3", NOT_UP, 30)
            self.wait_acked(c, log, w, 5, "after n3 is seen down")
            say("one-way blackhole: %s, forwarded up %d B, dropped down %d B" % (
                w.summary(), p.stats["bytes_up"], p.stats["dropped_down"]))
            p.set_mode("forward")
            t_heal = time.monotonic()
            c.wait_node_state("n3", UP, 60)
            say("n3 up again %.1fs after the heal" % (time.monotonic() - t_heal))
            self.wait_acked(c, log, w, 5, "after the heal")
        finally:
            p.set_mode("forward")
            if w.is_alive():
                w.stop()
        self.converge(c, log, "one-way blackhole healed", t_heal)
        log.check(self.export_all(c), "router export at the end")
        self.assertEqual(w.unacked[:3], [], "bodies never acknowledged while n3's answers "
                         "vanished: %d" % len(w.unacked))
        c.stop()


class MismatchTest(PartitionCase):

    def test_mismatched_config_node_to_node(self):
        # Contract 9: n3 runs with another shard count (another topology
        # fingerprint). Its peers must refuse it, log that loudly, and not
        # forward writes to it (they hint or fail instead); quorum writes
        # still succeed on n1 + n2, sync ones cannot. Restarted with the
        # right config, n3 gets everything.
        c = self.cluster(nodes=3, routers=1, shards=6, rf=3, replication=REPL, router=ROUTER,
                         node_overrides={N3: {"cluster": {"shards": 12}}})
        c.start()
        c.wait_peers_up(nodes=[0, 1])
        placement = c.cluster_placement()
        gen, log = BatchGen("fp", hosts=30, seed=37), AckLog()
        for b in range(scaled(10, 3)):
            r = self.send(c, log, gen.batch(b), tries=3)
            self.assertEqual(r.status, 204, "quorum write, n3 refused: %r" % r)
        st, resp = c.write(body_of(gen.batch(99)), precision="ms", consistency="sync")
        self.assertEqual(st, 503, "sync write with n3 refused: %r" % (resp,))
        self.assertTrue(shard_ids(resp.get("shards") or []), resp)
        log.record(gen.batch(99), False)

        n3 = re.compile(r"\bn3\b|%s" % re.escape(c.node_rpc_addr(N3)))

        def loud_lines():
            out = []
            for i in (0, 1):
                for l in c.log_lines(c.nodes[i], r"fingerprint"):
                    if n3.search(l) and re.search(r"level=(warn|warning|error|crit)", l):
                        out.append("%s: %s" % (c.node_ids[i], l))
            return out
        lines = c.wait_until(loud_lines, 30, "n1 or n2 to log the fingerprint refusal of n3 "
                             "(warn/error, naming n3 or %s)" % c.node_rpc_addr(N3))
        say("refusal logged: %s" % lines[0][:300])
        self.assertEqual(c.node_states().get("n3"), "down")

        # n3 received nothing: no forwarded write was applied there.
        rows = c.node_export(N3, match=ALL[0])
        self.assertEqual(rows[:3], [], "n3 (mismatched config) stored %d series" % len(rows))
        ms = [c.node_metrics(i) for i in (0, 1)]
        ok = sum(metric_sum(m, "strata_replica_writes_total", peer="n3", result="ok")
                 for m in ms)
        err = sum(metric_sum(m, "strata_replica_writes_total", peer="n3", result="error")
                  for m in ms)
        pending = sum(metric_sum(m, "strata_hints_pending", peer="n3") for m in ms)
        up = [metric_sum(m, "strata_peer_up", peer="n3") for m in ms]
        say("n1+n2 -> n3: replica writes ok %d, error %d; hints pending %d; peer_up %r"
            % (ok, err, pending, up))
        self.assertEqual(ok, 0, "replica writes to the mismatched n3 succeeded")
        self.assertGreater(pending + err, 0, "writes for n3 were neither hinted nor failed")
        self.assertEqual(up, [0, 0], "strata_peer_up{peer=\"n3\"} on n1, n2")

        # The right config: n3 is accepted and catches up.
        self.assertEqual(c.sigterm(N3), 0)
        c.node_configs.pop(N3)
        t0 = time.monotonic()
        c.restart(N3)
        c.wait_node_state("n3", UP, 30)
        r = self.send(c, log, gen.batch(99), tries=5, consistency="sync")
        self.assertEqual(r.status, 204, r)
        union = self.converge(c, log, "n3 with the right config", t0)
        assert_samples_equal(log.acked.data, union, "replicas after n3 caught up")
        for s in placement:
            self.assertIn("n3", placement[s])
        c.stop()


if __name__ == "__main__":
    unittest.main()
