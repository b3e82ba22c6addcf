#!/usr/bin/env python3
"""Repair soak: 3 nodes, RF=3, write_consistency=quorum, one router, under
continuous ingest while a random node is kill -9'd and restarted every few
seconds; one node's data directory is wiped once (node stopped, directory
removed, node started: it rebuilds from its replicas). Not a test (not in
CI): it prints figures and a verdict.

  tests/bench/repair_soak.py --build build [--minutes 30] [--cycles 0]
        [--writers 2] [--hosts 40] [--rate 10] [--repair-interval 5m]
        [--converge-timeout 600] [--seed N]

Ingest: --writers threads, each writing its own --hosts series (one line per
host per batch, measurement soak_w<k>, at most --rate batches a second)
through the router with consistency=quorum, retrying a 503 or a cut
connection with the same body.
Batch b of writer k has timestamp base + b * 100 ms and the value
b * 1000 + host, so a sample is known from its batch number alone: the
loader keeps one byte per batch (acknowledged, or sent without an
acknowledgement: maybe stored).

Kills: every cycle a random running node gets SIGKILL, stays down 0.5-3 s,
is started again (waits for its /ready), then 2-5 s pass. Once, halfway
through the run, the cycle's node is stopped instead, its data directory
removed and the node started again; the soak waits (bounded) for its
rebuild to finish (strata_node_rebuilding 0) before the next kill, after
killing it once more while it rebuilds (it must rebuild again), and checks
that its own export then holds every sample acknowledged before the wipe.
The kills end after --minutes or --cycles cycles (0: no cycle limit),
whichever comes first.

Then: the writers stop, every node is up, `strata repair` runs (repeated
while replicas differ) until every node's own export holds exactly the
same samples, bounded by --converge-timeout. Checked per node, from the
node's own export (its local data of every shard; RF=3 on 3 nodes: every
shard): acknowledged samples missing, samples with a value no write sent,
and difference from the other replicas. Exit 0 only when nothing
acknowledged is missing anywhere and all replicas are identical.

Everything is on 127.0.0.1 with ports picked at run time; processes are
stopped by PID (the harness). The temp dir is removed on success, kept on
failure (its path is printed).
"""
import argparse
import array
import os
import random
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
# a node restarted after kill -9 replays its WAL on a loaded machine: give
# it time (read by the harness at import)
os.environ.setdefault("STRATA_IT_START_TIMEOUT", "120")
import harness  # noqa: E402

STEP_MS = 100
UNSENT, ACKED, MAYBE = 0, 1, 2


def say(msg):
    sys.stdout.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stdout.flush()


class Loader(threading.Thread):
    """One writer: batch b -> hosts lines at base + b*STEP_MS, value
    b*1000+h. status[b] says what became of batch b."""

    def __init__(self, c, k, hosts, base_ms, max_batches, rate):
        super().__init__(name="writer%d" % k, daemon=True)
        self.c, self.k, self.hosts, self.base_ms = c, k, hosts, base_ms
        self.period = 1.0 / rate if rate > 0 else 0.0
        self.measurement = "soak_w%d" % k
        self.status = bytearray(max_batches)
        self.next = 0
        self.retries = 0
        self.errors = {}
        self.exc = None
        self.ev = threading.Event()

    def body(self, b):
        ts = self.base_ms + b * STEP_MS
        return "".join("%s,host=h%03d v=%d %d\n" % (self.measurement, h, b * 1000 + h, ts)
                       for h in range(self.hosts))

    def run(self):
        try:
            t_next = time.monotonic()
            while not self.ev.is_set() and self.next < len(self.status):
                b = self.next
                t_next += self.period
                if t_next > time.monotonic():  # at most --rate batches a second
                    self.ev.wait(t_next - time.monotonic())
                else:
                    t_next = time.monotonic()
                r = harness.write_with_retries(self.c, self.body(b), tries=60, backoff=0.25,
                                               consistency="quorum", precision="ms")
                self.status[b] = ACKED if r.ok else MAYBE
                self.retries += r.attempts - 1
                for e in r.errors:
                    key = e.split(":")[0][:40]
                    self.errors[key] = self.errors.get(key, 0) + 1
                self.next += 1
        except BaseException as e:
            self.exc = e

    def stop(self):
        self.ev.set()
        self.join(300)
        if self.is_alive():
            raise RuntimeError("%s did not stop" % self.name)
        if self.exc:
            raise RuntimeError("%s failed: %r" % (self.name, self.exc))

    def n(self, what):
        return self.status[:self.next].count(what)

    def check(self, data, status=None):
        """data: {series key: (timestamps, values)} of one node. Returns
        (acknowledged samples missing, samples with a value never sent,
        a few examples). status: an earlier copy of self.status[:next]
        (then only what was acknowledged by then counts as missing)."""
        missing = wrong = 0
        examples = []
        status = self.status if status is None else status
        sent = self.next if status is self.status else len(status)
        acked = [b for b in range(sent) if status[b] == ACKED]
        for h in range(self.hosts):
            key = harness.series_key({"__name__": self.measurement + "_v",
                                      "host": "h%03d" % h})
            ts_arr, v_arr = data.get(key, ((), ()))
            have = set(ts_arr)
            for b in acked:
                if self.base_ms + b * STEP_MS not in have:
                    missing += 1
                    if len(examples) < 3:
                        examples.append("missing %s h%03d batch %d" % (self.measurement, h, b))
            for ts, v in zip(ts_arr, v_arr):
                off = ts - self.base_ms
                b = off // STEP_MS
                ok = (off % STEP_MS == 0 and 0 <= b < self.next and self.status[b] != UNSENT
                      and v == float(b * 1000 + h))
                if not ok:
                    wrong += 1
                    if len(examples) < 3:
                        examples.append("unexpected %s h%03d ts %d value %r" %
                                        (self.measurement, h, ts, v))
        return missing, wrong, examples


def node_data(c, i, shards):
    """Node i's own data of the soak's series, every shard: {series key:
    (array of timestamps, array of values)} (compact: millions of samples)."""
    out = {}
    for s in range(shards):
        for r in c.node_export(i, shard=s, match='{__name__=~"soak_w.*"}'):
            key = harness.series_key(r["metric"])
            if key in out:
                raise AssertionError("%s: series %r twice" % (c.node_ids[i], r["metric"]))
            out[key] = (array.array("q", (int(t) for t in r["timestamps"])),
                        array.array("d", (float(v) for v in r["values"])))
    return out


def n_samples(data):
    return sum(len(t) for t, _ in data.values())


def metric(c, i, name):
    try:
        return harness.metric_sum(c.node_metrics(i), name)
    except Exception:
        return None


def cli_repair(c):
    t0 = time.monotonic()
    p = subprocess.run([harness.binary("cli"), "repair", "--router",
                        c.router_url(0)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=600)
    out = p.stdout.decode(errors="replace")
    lines = [l for l in out.splitlines() if "into" in l or "error" in l.lower()]
    say("strata repair -> exit %d in %.1f s: %s" % (p.returncode, time.monotonic() - t0,
                                                    " | ".join(l.strip() for l in lines)[:600]))
    return p.returncode


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--cycles", type=int, default=0, help="stop the kills after N (0: no limit)")
    ap.add_argument("--writers", type=int, default=2)
    ap.add_argument("--hosts", type=int, default=40, help="series per writer")
    ap.add_argument("--rate", type=float, default=10.0,
                    help="batches per second per writer (0: as fast as acknowledged)")
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--repair-interval", default="5m")
    ap.add_argument("--converge-timeout", type=float, default=600.0)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    os.environ["STRATA_BIN_DIR"] = build
    rng = random.Random(a.seed)
    say("repair soak: seed %d, %.1f min, cycles %s, %d writers x %d series, %d shards, "
        "repair_interval %s; load %s" % (a.seed, a.minutes, a.cycles or "unlimited", a.writers,
                                         a.hosts, a.shards, a.repair_interval,
                                         open("/proc/loadavg").read().strip()))
    c = harness.Cluster(nodes=3, routers=1, shards=a.shards, rf=3, tag="repair-soak",
                        cluster={"write_consistency": "quorum"},
                        replication={"replica_timeout": "2s", "heartbeat_interval": "250ms",
                                     "hint_max_age": "2h",
                                     "repair_interval": a.repair_interval},
                        router={"request_timeout": "10s"})
    ok = False
    try:
        c.start()
        c.wait_peers_up(60)
        base_ms = (int(time.time()) // 3600 - 2) * 3600 * 1000
        max_batches = int(2 * 3600 * 1000 / STEP_MS)  # 2 h of timestamps: up to about now
        loaders = [Loader(c, k, a.hosts, base_ms, max_batches, a.rate) for k in range(a.writers)]
        for w in loaders:
            w.start()
        t_start = time.monotonic()
        deadline = t_start + a.minutes * 60
        cycles, wiped, rebuild_s, kills = 0, None, None, [0, 0, 0]
        rebuild_killed, rebuild_missing = False, None
        wipe_at = t_start + a.minutes * 30
        last_report = t_start
        while time.monotonic() < deadline and (not a.cycles or cycles < a.cycles):
            if any(not w.is_alive() for w in loaders):
                raise RuntimeError("a writer stopped: %r" % [w.exc for w in loaders])
            i = rng.randrange(3)
            wipe = wiped is None and (time.monotonic() >= wipe_at or
                                      (a.cycles and cycles == a.cycles // 2))
            if wipe:
                before = [bytes(w.status[:w.next]) for w in loaders]
                rc = c.sigterm(i)
                shutil.rmtree(c.data_dir(i))
                os.makedirs(c.data_dir(i))
                wiped = i
                say("cycle %d: %s stopped (exit %s), data dir wiped" % (cycles + 1,
                                                                        c.node_ids[i], rc))
            else:
                c.kill9(i)
                kills[i] += 1
            time.sleep(rng.uniform(0.5, 3.0))
            t0 = time.monotonic()
            c.start_node(i)
            if wipe:
                # killed once more while it rebuilds (at once: a rebuild
                # takes seconds): it must rebuild again
                if metric(c, i, "strata_node_rebuilding") == 1:
                    c.kill9(i)
                    kills[i] += 1
                    rebuild_killed = True
                    say("%s kill -9'd while rebuilding; started again" % c.node_ids[i])
                    c.start_node(i)
                c.wait_until(lambda: metric(c, i, "strata_node_rebuilding") == 0, 300,
                             "the wiped node to finish rebuilding")
                rebuild_s = time.monotonic() - t0
                d = node_data(c, i, a.shards)
                rebuild_missing = sum(w.check(d, before[k])[0] for k, w in enumerate(loaders))
                say("%s rebuilt in %.1f s; its own export lacks %d samples acknowledged before "
                    "the wipe" % (c.node_ids[i], rebuild_s, rebuild_missing))
                del d
            cycles += 1
            time.sleep(rng.uniform(2.0, 5.0))
            if time.monotonic() - last_report >= 60:
                last_report = time.monotonic()
                say("cycle %d, %.1f min: batches acked %s, maybe %s; load %s" % (
                    cycles, (last_report - t_start) / 60,
                    [w.n(ACKED) for w in loaders], [w.n(MAYBE) for w in loaders],
                    open("/proc/loadavg").read().strip()))
        kill_s = time.monotonic() - t_start
        for w in loaders:
            w.stop()
        for i in range(3):
            if not c.nodes[i].running():
                c.start_node(i)
        c.wait_peers_up(120)
        acked = sum(w.n(ACKED) for w in loaders)
        maybe = sum(w.n(MAYBE) for w in loaders)
        say("kills over: %d cycles in %.1f min (kill -9 per node %s; wiped %s, rebuilt in %s s%s,"
            " lacking %s samples); batches acked %d (%d samples), not acked %d; writer retries %d,"
            " errors %r"
            % (cycles, kill_s / 60, kills, c.node_ids[wiped] if wiped is not None else "none",
               "%.1f" % rebuild_s if rebuild_s is not None else "-",
               ", killed once while rebuilding" if rebuild_killed else "", rebuild_missing,
               acked, acked * a.hosts,
               maybe, sum(w.retries for w in loaders),
               {k: v for w in loaders for k, v in w.errors.items()}))
        # converge: repair until every node holds the same samples
        t_conv = time.monotonic()
        conv_deadline = t_conv + a.converge_timeout
        datas, passes, converged, identical_s = None, 0, False, None
        try:
            say("hints drained %.1f s after the kills" %
                c.wait_hints_drained(min(300, a.converge_timeout)))
        except AssertionError as e:
            say("hints not drained: %s" % str(e)[:400])
        while time.monotonic() < conv_deadline:
            t_cmp = time.monotonic() - t_conv  # the exports below take seconds
            datas = [node_data(c, i, a.shards) for i in range(3)]
            same = datas[0] == datas[1] == datas[2]
            if same and identical_s is None:
                identical_s = t_cmp
            if same and passes > 0:
                converged = True
                break
            if passes == 0:
                say("before repair: per node %s samples; identical: %s" % (
                    [n_samples(d) for d in datas],
                    datas[0] == datas[1] == datas[2]))
            passes += 1
            cli_repair(c)
        conv_s = time.monotonic() - t_conv
        say("%s: replicas identical in the exports taken %s s after the kills ended; "
            "checked again after %d repair pass(es), %.1f s after the kills" % (
                "converged" if converged else "NOT converged",
                "%.1f" % identical_s if identical_s is not None else "-", passes, conv_s))
        total_missing = 0
        for i in range(3):
            mi = wr = 0
            ex = []
            for w in loaders:
                m, x, e = w.check(datas[i])
                mi, wr, ex = mi + m, wr + x, ex + e
            total_missing += mi + wr
            others = [j for j in range(3) if j != i]
            diff = sum(1 for j in others if datas[j] != datas[i])
            say("%s: %d samples held, %d acknowledged missing, %d extra/wrong, differs from %d "
                "other replica(s)%s; repaired samples %s, repair passes %s" % (
                    c.node_ids[i], n_samples(datas[i]), mi, wr, diff,
                    ("; e.g. " + "; ".join(ex)) if ex else "",
                    metric(c, i, "strata_node_repair_samples_total"),
                    metric(c, i, "strata_node_repair_passes_total")))
        ok = converged and total_missing == 0 and not rebuild_missing
        say("VERDICT: %s -- cycles %d, samples acked %d, time to converge %s s (%.1f s with the "
            "check after repair); load %s" % (
            "ok" if ok else "FAILED", cycles, acked * a.hosts,
            "%.1f" % identical_s if identical_s is not None else "-", conv_s,
            open("/proc/loadavg").read().strip()))
    finally:
        try:
            c.stop(expect=None)
        finally:
            c.close(failed=not ok)
            if not ok:
                say("kept %s" % c.dir)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
