"""A node started with a different cluster.ini (another shard count) is
refused by the router's handshake, loudly: the router logs the fingerprint
mismatch, stays not ready, and writes to that node's shards get 503. Started
again with the right config, the same node is accepted."""

import re
import unittest

from harness import (ALL, ClusterTestCase, Model, assert_samples_equal, devops_lines,
                     export_to_dict, http_status, shard_ids)


class FingerprintTest(ClusterTestCase):

    def test_mismatched_node_is_refused(self):
        c = self.cluster(nodes=3, routers=1, shards=12,
                         node_overrides={2: {"cluster": {"shards": 16}}})
        c.start(wait_routers_ready=False)
        router = c.routers[0]
        url = c.router_url(0)
        # A loud line: level warn or error, mentions the fingerprint, names
        # n3 (by id or rpc address). Poking /ready on each poll also serves
        # a router that connects lazily.
        n3 = re.compile(r"\bn3\b|%s" % re.escape(c.node_rpc_addr(2)))

        def loud_line():
            http_status(url + "/ready")
            for l in router.log_text().splitlines():
                if (re.search(r"fingerprint", l, re.I) and n3.search(l) and
                        re.search(r"level=(warn|warning|error|crit)", l)):
                    return l
            return None

        c.wait_until(loud_line, 30, "the router to log a fingerprint mismatch (warn/error, "
                     "naming n3 or %s)" % c.node_rpc_addr(2))
        self.assertEqual(http_status(url + "/ready"), 503)
        self.assertEqual(http_status(url + "/health"), 200)
        states = {n["id"]: n["state"] for n in c.cluster_info()["nodes"]}
        self.assertEqual(states, {"n1": "up", "n2": "up", "n3": "down"})

        built = devops_lines(hosts=10, points=3, seed=9)
        body = [l for l, _ in built]
        st, resp = c.write(body)
        self.assertEqual(st, 503, resp)
        self.assertTrue(resp.get("shards"), resp)
        self.assertLessEqual(shard_ids(resp["shards"]), set(c.shards_of(2)))

        # The same node with the cluster's config is accepted.
        self.assertEqual(c.sigterm(2), 0)
        c.node_configs.pop(2)
        c.restart(2)
        self.assertEqual(http_status(url + "/ready"), 200)
        st, resp = c.write(body)
        self.assertEqual(st, 204, resp)
        model = Model()
        model.add_lines(built)
        assert_samples_equal(model.data, export_to_dict(c.export(ALL[0])), "after the fix")
        c.stop()


if __name__ == "__main__":
    unittest.main()
