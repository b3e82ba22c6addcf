"""Durability across restarts: SIGTERM + start, kill -9 + start, whole-cluster
restart. wal_durability = every_write, so every write acknowledged with 204
before a kill must be there afterwards, bit-exact."""

import re
import threading
import unittest

from harness import (ALL, ClusterTestCase, Model, assert_samples_equal, chunks, devops_lines,
                     export_to_dict, http_status, shard_ids, parse_json)

DURABLE = {"wal_durability": "every_write", "memtable_max_mb": "64KiB"}


def bodies_of(built, n):
    return chunks(built, n)


class RestartTest(ClusterTestCase):

    def write_all(self, c, bodies, model):
        for body in bodies:
            st, resp = c.write([l for l, _ in body])
            self.assertEqual(st, 204, resp)
            model.add_lines(body)

    def check_all(self, c, model, what):
        assert_samples_equal(model.data, export_to_dict(c.export(ALL[0])), what)

    def test_sigterm_then_start(self):
        c = self.cluster(nodes=3, routers=1, storage=DURABLE).start()
        model = Model()
        data = devops_lines(hosts=12, points=40, seed=3)
        self.write_all(c, bodies_of(data[:240], 60), model)
        before = [export_to_dict(c.node_export(i)) for i in range(3)]
        self.assertEqual(c.sigterm(0), 0, "SIGTERM must exit 0:\n" + c.nodes[0].log_tail())
        c.restart(0)
        assert_samples_equal(before[0], export_to_dict(c.node_export(0)),
                             "n1 local data after SIGTERM + start")
        self.check_all(c, model, "export after n1 restart")
        # Writes after the restart land, and a second restart keeps both.
        self.write_all(c, bodies_of(data[240:], 60), model)
        self.assertEqual(c.sigterm(0), 0)
        c.restart(0)
        self.check_all(c, model, "export after the second n1 restart")
        # Whole cluster: clean stop (every exit code 0), start on the same
        # ports and data dirs.
        c.stop()
        c.start_all()
        self.check_all(c, model, "export after a whole-cluster restart")
        c.stop()

    def test_kill9_keeps_acknowledged_writes(self):
        c = self.cluster(nodes=3, routers=1, storage=DURABLE).start()
        victim = 1
        data = devops_lines(hosts=10, points=300, seed=5)  # 3000 lines, distinct samples
        bodies = bodies_of(data, 10)  # 300 bodies
        acked, failed = [], []
        stop = threading.Event()

        def writer():
            for i, body in enumerate(bodies):
                if stop.is_set():
                    return
                try:
                    st, _ = c.write([l for l, _ in body], timeout=30)
                except OSError:
                    st = None
                (acked if st == 204 else failed).append(i)

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        try:
            c.wait_until(lambda: len(acked) >= 20, 60, "20 acknowledged writes")
            c.kill9(victim)
            # With n2 dead a body of 10 hosts x 10 fields touches its shards:
            # writes must start failing.
            c.wait_until(lambda: failed or not t.is_alive(), 60, "a refused write")
        finally:
            stop.set()
            t.join(60)
        self.assertFalse(t.is_alive(), "writer thread did not stop")
        self.assertTrue(failed, "no write failed while a node was dead")

        # While n2 is down: not ready, writes 503 naming its shards, reads 503.
        url = c.router_url(0)
        c.wait_until(lambda: http_status(url + "/ready") == 503, 30, "router /ready 503")
        victim_shards = set(c.shards_of(victim))
        st, resp = c.write([l for l, _ in bodies[failed[0]]])
        self.assertEqual(st, 503, resp)
        self.assertIsInstance(resp, dict, resp)
        self.assertTrue(resp.get("error"), resp)
        self.assertTrue(resp.get("shards"), resp)
        self.assertLessEqual(shard_ids(resp["shards"]), victim_shards,
                             "503 names shards that are not on the dead node")
        info = c.cluster_info()
        states = {n["id"]: n["state"] for n in info["nodes"]}
        self.assertEqual(states, {"n1": "up", "n2": "down", "n3": "up"})

        c.restart(victim)
        # Every acknowledged write is there, bit-exact.
        acked_model = Model()
        for i in acked:
            acked_model.add_lines(bodies[i])
        got = export_to_dict(c.export(ALL[0]))
        present = {k: {t: got.get(k, {}).get(t) for t in v} for k, v in acked_model.data.items()}
        missing = [(dict(k), t) for k, v in present.items() for t, x in v.items() if x is None]
        self.assertEqual(missing[:5], [], "%d acknowledged samples lost" % len(missing))
        acked_got = {k: {t: got[k][t] for t in v} for k, v in acked_model.data.items()}
        assert_samples_equal(acked_model.data, acked_got, "acknowledged samples after kill -9")
        # Retrying the refused bodies is safe; then everything sent is there.
        full = Model()
        for i in sorted(acked + failed):
            full.add_lines(bodies[i])
        for i in failed:
            st, resp = c.write([l for l, _ in bodies[i]])
            self.assertEqual(st, 204, resp)
        self.check_all(c, full, "export after retrying refused writes")
        c.stop()

    def test_reads_with_a_dead_node(self):
        # No replica of n3's shards answers: reads fail with 503
        # "unavailable" naming a shard, instead of returning partial data.
        c = self.cluster(nodes=3, routers=1, router={"request_timeout": "3s"}).start()
        built = devops_lines(hosts=10, points=3, seed=17)
        st, resp = c.write([l for l, _ in built])
        self.assertEqual(st, 204, resp)
        c.kill9(2)
        url = c.router_url(0)
        c.wait_until(lambda: http_status(url + "/ready") == 503, 30, "router /ready 503")
        dead = c.shards_of(2)
        for path, params in [("/api/v1/export", [("match[]", ALL[0])]),
                             ("/api/v1/series", [("match[]", ALL[0])]),
                             ("/api/v1/labels", []),
                             ("/api/v1/label/hostname/values", [])]:
            with self.subTest(path=path):
                st, _, data_ = c.get(path, 0, params)
                self.assertEqual(st, 503, data_[:300])
                js = parse_json(data_)
                self.assertEqual(js.get("status"), "error")
                self.assertEqual(js.get("errorType"), "unavailable")
                named = [int(x) for x in re.findall(r"\d+", re.sub(r"\S*:\d+", "",
                                                                    js.get("error", "")))]
                self.assertRegex(js.get("error", ""), r"shard")
                self.assertTrue(set(named) & set(dead), "no dead shard named: %r" % js)
        c.restart(2)
        model = Model()
        model.add_lines(built)
        self.check_all(c, model, "export after n3 is back")
        c.stop()

    def test_sigstop_node(self):
        # A frozen node (SIGSTOP): accepted connections, no answers. The
        # router gives up after request_timeout with 503 naming only its
        # shards; after SIGCONT the same body is accepted.
        c = self.cluster(nodes=3, routers=1, storage=DURABLE,
                         router={"request_timeout": "2s"}).start()
        built = devops_lines(hosts=10, points=3, seed=13)
        body = [l for l, _ in built]
        c.sigstop(2)
        try:
            st, resp = c.write(body, timeout=60)
            self.assertEqual(st, 503, resp)
            self.assertTrue(resp.get("shards"), resp)
            self.assertLessEqual(shard_ids(resp["shards"]), set(c.shards_of(2)))
        finally:
            c.sigcont(2)
        c.wait_routers_ready()
        st, resp = c.write(body)
        self.assertEqual(st, 204, resp)
        model = Model()
        model.add_lines(built)
        self.check_all(c, model, "export after SIGCONT and a retry")
        c.stop()


if __name__ == "__main__":
    unittest.main()
