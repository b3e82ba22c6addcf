"""A replica whose local write fails is a miss, hinted, and loud.

RF=3 on 3 nodes, write_consistency=quorum, read_consistency=one; n3's data
directory sits on a small tmpfs (mount -t tmpfs: the test skips, saying
why, when mounting is not permitted) that the test fills up:

  - writes through the router still answer 204 (quorum: n1 and n2 acked),
    and n3's failed copies are reported to the coordinators, which hint
    them (strata_hints_pending for n3 > 0 on the other nodes), also for
    the shards n3 coordinates itself (the router hands those on);
  - n3's /ready answers 503 "degraded: <reason>" and the router's /cluster
    shows it ("degraded: ..." or, from its hint backlog, "catching_up");
  - a read_consistency=one export through the router returns every
    acknowledged sample: a replica known to be behind is not preferred;
  - once space returns (the filler file removed) n3 recovers without a
    restart: /ready 200 again, the hints drain, and shard by shard n3's
    node-local export (/api/v1/export?shard=) equals n1's."""

import os
import subprocess
import time
import unittest

from harness import ClusterTestCase, http_request, metric_sum

REPL = {"replica_timeout": "2s", "heartbeat_interval": "500ms",
        "hint_max_bytes": "64MiB", "hint_max_age": "1h"}


def mount_tmpfs(path, size):
    """Mount a tmpfs of `size` on path; returns None, or why it could not."""
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s" % size, "tmpfs", path],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    return None if r.returncode == 0 else (r.stderr.strip() or "mount exited %d" % r.returncode)


def umount(path):
    subprocess.run(["umount", "-l", path], capture_output=True, timeout=30)


def fill(path, chunk=1 << 20):
    """Write a file in path until the file system is full; returns its name."""
    name = os.path.join(path, "filler")
    buf = b"\0" * chunk
    with open(name, "wb", buffering=0) as f:
        for _ in range(100000):
            try:
                f.write(buf)
            except OSError:
                break
        for _ in range(10000):  # the last few pages
            try:
                f.write(b"\0" * 4096)
            except OSError:
                break
    return name


class DiskFullReplicaTest(ClusterTestCase):

    def test_failed_replica_hinted_degraded_then_recovers(self):
        c = self.cluster(nodes=3, routers=1, shards=6, rf=3, replication=REPL,
                         router={"request_timeout": "10s"})
        data3 = c.data_dir(2)
        os.makedirs(data3, exist_ok=True)
        why = mount_tmpfs(data3, "24m")
        if why:
            self.skipTest("cannot mount a tmpfs for the full-disk node: %s" % why)
        self.addCleanup(umount, data3)
        c.start()
        c.wait_peers_up()
        filler = fill(data3)
        t0 = int(time.time()) * 1000 - 600 * 1000
        sent = {}
        for b in range(20):
            lines = []
            for h in range(400):
                ts = t0 + b * 1000
                lines.append("df,host=h%d v=%d %d" % (h, b * 1000 + h, ts))
                sent[("h%d" % h, ts)] = b * 1000 + h
            st, resp = c.write(lines, precision="ms")
            self.assertEqual(st, 204, resp)
        # the misses were hinted on the healthy nodes
        pend = c.wait_until(lambda: sum(c.hints_pending(i).get("n3", 0) for i in (0, 1)) or None,
                            30, "hints for n3 on n1/n2")
        self.assertGreater(pend, 0)
        # loud: n3 says it is degraded, the router shows it
        c.wait_until(lambda: http_request(c.node_http_url(2) + "/ready", timeout=30)[0] == 503,
                     60, "n3 /ready 503")
        st, _, body = http_request(c.node_http_url(2) + "/ready", timeout=30)
        self.assertEqual(st, 503)
        self.assertTrue(body.startswith(b"degraded: "), body)
        def n3_state():
            s = c.node_states().get("n3") or ""
            return s if s.startswith("degraded: ") or s == "catching_up" else None

        state = c.wait_until(n3_state, 30, "router /cluster showing n3 degraded or behind")
        self.assertTrue(state.startswith("degraded: ") or state == "catching_up", state)
        # read_consistency=one does not prefer n3 (behind): every sample is there
        rows = c.export('{__name__="df_v"}')
        got = {(r["metric"]["host"], ts): v for r in rows
               for ts, v in zip(r["timestamps"], r["values"])}
        self.assertEqual(got, sent)
        # space returns: n3 recovers by itself
        os.remove(filler)
        c.wait_until(lambda: http_request(c.node_http_url(2) + "/ready", timeout=30)[0] == 200,
                     120, "n3 /ready 200 after space returned")
        c.wait_hints_drained(timeout=120)
        c.wait_replicas_identical(timeout=120)
        for s in range(6):
            self.assertEqual(c.node_shard_data(2, s), c.node_shard_data(0, s), "shard %d" % s)
        n3_data = {}
        for s in range(6):
            for key, pts in c.node_shard_data(2, s).items():
                n3_data.setdefault(key, {}).update(pts)
        self.assertEqual(sum(len(p) for p in n3_data.values()), len(sent))
        m = c.node_metrics(2)
        self.assertGreater(metric_sum(m, "strata_node_shard_writes_rejected_total"), 0)
        c.stop()


if __name__ == "__main__":
    unittest.main()
