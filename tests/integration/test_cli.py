"""CLI smoke test: `strata status`, `strata write FILE`, `strata export
SELECTOR` against a running cluster. Minimal on purpose (the CLI is young):
exit code 0, and the data written through it arrives.

The CLI is pointed at router 0 with `--router http://127.0.0.1:PORT` after
the subcommand and with $STRATA_ROUTER (cli/strata.c: both are read).

Also (issue 12): `strata bench`'s default data ends now and is kept by a
cluster with the default 30d retention, `--print --start T` keeps its bytes;
every command takes `--config cluster.ini` and talks to its `[router] listen`
(default 127.0.0.1:8086; `--router` wins, `$STRATA_ROUTER` does not); a stdout pipe closed early
(`| head`) ends `bench --print` and `export` quietly with exit 0.
"""

import hashlib
import os
import subprocess
import time
import unittest

from harness import (ALL, ClusterTestCase, Model, assert_samples_equal, binary, devops_lines,
                     export_to_dict, free_port, parse_export)


class CliTest(ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        cls.cli = binary("cli")
        # the default retention of cluster.ini (harness clusters keep forever)
        cls.c = cls.start_class_cluster(nodes=2, routers=1, shards=4, rf=1,
                                        storage={"retention": "30d"})

    def run_cli(self, args, conn=True, timeout=60, env_router=None):
        url = "http://127.0.0.1:%d" % self.c.router_port[0]
        argv = [self.cli] + args + (["--router", url] if conn else [])
        env = dict(os.environ, STRATA_ROUTER=env_router or url)
        try:
            return subprocess.run(argv, capture_output=True, timeout=timeout, env=env,
                                  stdin=subprocess.DEVNULL, cwd=self.c.dir)
        except subprocess.TimeoutExpired:
            self.fail("%s did not finish in %d s" % (" ".join(argv), timeout))

    def ok(self, r):
        self.assertEqual(r.returncode, 0, "exit %d\nstdout: %s\nstderr: %s" % (
            r.returncode, r.stdout[-2000:].decode("utf-8", "replace"),
            r.stderr[-2000:].decode("utf-8", "replace")))
        return r.stdout.decode("utf-8", "replace")

    def test_help_and_version(self):
        self.ok(self.run_cli(["--help"], conn=False))
        self.ok(self.run_cli(["--version"], conn=False))

    def test_status(self):
        r = self.run_cli(["status"])
        text = self.ok(r) + r.stderr.decode("utf-8", "replace")
        for nid in self.c.node_ids:
            self.assertRegex(text, r"\b%s\b" % nid)

    def lp_file(self, name, built):
        """The lines of devops_lines() in a file of the cluster's dir; returns its path."""
        path = os.path.join(self.c.dir, name)
        with open(path, "w") as f:
            f.write("\n".join(l for l, _ in built) + "\n")
        return path

    def test_write_and_export(self):
        built = devops_lines(hosts=6, points=25, seed=21, measurement="clicpu")
        self.ok(self.run_cli(["write", self.lp_file("cli.lp", built)]))
        model = Model()
        model.add_lines(built)
        got = export_to_dict(self.c.export('{__name__=~"clicpu_.*"}'))
        assert_samples_equal(model.data, got, "data written by `strata write`")

        out = self.ok(self.run_cli(["export", 'clicpu_usage_user{hostname="host_3"}']))
        exp = model.select(lambda l: l["__name__"] == "clicpu_usage_user" and
                           l.get("hostname") == "host_3")
        try:
            rows = parse_export(out)
        except AssertionError:
            rows = None  # not the JSON-lines format: check the content loosely
        if rows is not None and rows and isinstance(rows[0], dict) and "metric" in rows[0]:
            assert_samples_equal(exp, export_to_dict(rows), "`strata export` output")
        else:
            self.assertIn("host_3", out)
            self.assertNotIn("host_4", out)

    # ---- strata bench: default timestamps end now --------------------------------------

    def print_ts(self, args):
        """`strata bench --print ARGS`: the lines' timestamps in seconds."""
        out = self.ok(self.run_cli(["bench", "--print"] + args, conn=False))
        return [int(l.rsplit(" ", 1)[1]) // 10**9 for l in out.splitlines()]

    def test_bench_default_start_ends_now(self):
        for args, points in ((["--hosts", "2", "--points", "3"], 3),
                             (["--hosts", "1", "--hours", "1"], 360),
                             (["--hosts", "1", "--hours", "0.5", "--interval", "60"], 30)):
            with self.subTest(args=args):
                iv = int(args[args.index("--interval") + 1]) if "--interval" in args else 10
                before = int(time.time())
                ts = sorted(set(self.print_ts(args)))
                after = int(time.time())
                self.assertEqual(len(ts), points)
                self.assertEqual([t % iv for t in ts], [0] * points, "aligned to the interval")
                self.assertEqual(ts, list(range(ts[0], ts[0] + points * iv, iv)))
                # the span [first, last + interval) ends at the interval boundary of now
                end = ts[-1] + iv
                self.assertLessEqual(end, after)
                self.assertGreaterEqual(end, before - before % iv)
        # --start still decides
        self.assertEqual(sorted(set(self.print_ts(["--hosts", "1", "--points", "2",
                                                   "--start", "2016-01-01T00:00:00Z"]))),
                         [1451606400, 1451606410])

    def test_bench_print_with_start_unchanged(self):
        """Byte-identical to the output before the default changed."""
        pinned = (
            (["--hosts", "3", "--points", "5", "--start", "2016-01-01T00:00:00Z"], PIN_A),
            (["--hosts", "4", "--hours", "0.05", "--start", "1451606400", "--seed", "7",
              "--decimals", "2", "--interval", "15"], PIN_B),
        )
        for args, digest in pinned:
            with self.subTest(args=args):
                r = self.run_cli(["bench", "--print"] + args, conn=False)
                self.ok(r)
                self.assertEqual(hashlib.sha256(r.stdout).hexdigest(), digest)

    def test_bench_default_run_is_kept(self):
        """A default-dated bench run on a 30d-retention cluster is queryable at once."""
        self.ok(self.run_cli(["bench", "--hosts", "2", "--hours", "0.1", "--batch", "10",
                              "--conns", "1"]))
        got = self.c.export('cpu_usage_user{hostname=~"host_[01]"}', start=0,
                            end=int(time.time()) + 3600)
        self.assertEqual(sorted(len(g["timestamps"]) for g in got), [36, 36], got)

    # ---- --config cluster.ini ----------------------------------------------------------

    def test_config_option(self):
        cfg = self.c.config_path  # the harness's file: no [router] listen
        port = self.c.router_port[0]
        dead = "http://127.0.0.1:%d" % free_port()  # nothing listens there
        listen = self.c.write_config(os.path.join(self.c.dir, "listen.ini"),
                                     router={"listen": "127.0.0.1:%d" % port})
        wild = self.c.write_config(os.path.join(self.c.dir, "wild.ini"),
                                   router={"listen": "0.0.0.0:%d" % port})
        elsewhere = self.c.write_config(os.path.join(self.c.dir, "elsewhere.ini"),
                                        router={"listen": dead[len("http://"):]})
        lp = self.lp_file("config.lp", devops_lines(hosts=1, points=2, measurement="cfgcpu"))
        commands = (["status"], ["write", lp], ["export", "cfgcpu_usage_user"],
                    ["query", "cfgcpu_usage_user"],
                    ["bench", "--hosts", "1", "--points", "1", "--conns", "1"])
        for cmd in commands:
            with self.subTest(cmd=cmd[0]):
                # the router comes from [router] listen; --config wins over $STRATA_ROUTER
                self.ok(self.run_cli(cmd + ["--config", listen], conn=False, env_router=dead))
                # a wildcard listen address means this machine
                self.ok(self.run_cli(cmd + ["--config", wild], conn=False, env_router=dead))
                # --router wins over --config
                self.ok(self.run_cli(cmd + ["--config", elsewhere]))
                # --config wins over $STRATA_ROUTER: the file's router is the one tried
                r = self.run_cli(cmd + ["--config", elsewhere], conn=False)
                err = r.stderr.decode("utf-8", "replace")
                self.assertEqual(r.returncode, 1, err)
                self.assertIn(dead[len("http://"):], err)
                self.assertNotIn("unrecognized", err)
        # no [router] listen: the router's default address, 127.0.0.1:8086 (whatever
        # answers there, the CLI neither refuses the file nor falls back to $STRATA_ROUTER)
        r = self.run_cli(["status", "--config", cfg, "--timeout", "5"], conn=False,
                         env_router=dead)
        err = r.stderr.decode("utf-8", "replace")
        self.assertNotEqual(r.returncode, 2, err)
        self.assertNotIn("names no router", err)
        self.assertNotIn(dead[len("http://"):], err)
        if r.returncode != 0:
            self.assertIn("127.0.0.1:8086", err)
        # an IPv6 listen address: the CLI speaks IPv4 only, and says so
        v6 = self.c.write_config(os.path.join(self.c.dir, "v6.ini"),
                                 router={"listen": "[::]:%d" % port})
        r = self.run_cli(["status", "--config", v6], conn=False)
        err = r.stderr.decode("utf-8", "replace")
        self.assertEqual(r.returncode, 2, err)
        self.assertIn("[router] listen", err)
        self.assertIn("pass --router", err)
        # --print needs no router
        self.ok(self.run_cli(["bench", "--print", "--hosts", "1", "--points", "1",
                              "--config", cfg], conn=False))
        # the file is checked like strata-node --check does
        bad = os.path.join(self.c.dir, "bad.ini")
        with open(cfg) as f:
            text = f.read()
        with open(bad, "w") as f:
            f.write(text.replace("[cluster]\n", "[cluster]\nfoo = 1\n", 1))
        r = self.run_cli(["status", "--config", bad])
        err = r.stderr.decode("utf-8", "replace")
        self.assertEqual(r.returncode, 1, err)
        self.assertRegex(err, r"bad\.ini:2: unknown key 'foo'")
        r = self.run_cli(["status", "--config", os.path.join(self.c.dir, "missing.ini")])
        self.assertEqual(r.returncode, 1)
        self.assertIn("missing.ini", r.stderr.decode("utf-8", "replace"))

    # ---- a closed stdout pipe ----------------------------------------------------------

    def run_to_closed_pipe(self, args, read_first=0):
        """Run the CLI with stdout a pipe that is closed after reading
        `read_first` bytes (0: closed before the CLI writes anything)."""
        url = "http://127.0.0.1:%d" % self.c.router_port[0]
        argv = [self.cli] + args
        env = dict(os.environ, STRATA_ROUTER=url)
        if read_first:
            p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 stdin=subprocess.DEVNULL, env=env)
            got = p.stdout.read(read_first)
            self.assertEqual(len(got), read_first)
            p.stdout.close()
        else:
            rfd, wfd = os.pipe()
            os.close(rfd)
            p = subprocess.Popen(argv, stdout=wfd, stderr=subprocess.PIPE,
                                 stdin=subprocess.DEVNULL, env=env)
            os.close(wfd)
        try:
            err = p.stderr.read()
            p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            self.fail("%s did not stop after its stdout was closed" % " ".join(argv))
        finally:
            p.stderr.close()
        return p.returncode, err.decode("utf-8", "replace")

    def test_closed_pipe_ends_quietly(self):
        built = devops_lines(hosts=20, points=150, seed=5, measurement="pipecpu")
        self.ok(self.run_cli(["write", self.lp_file("pipe.lp", built)]))
        cases = (
            (["bench", "--print", "--hosts", "1000", "--hours", "3"], 4096),
            (["bench", "--print", "--hosts", "1000", "--hours", "3"], 0),
            (["export", '{__name__=~"pipecpu_.*"}'], 100),
            (["export", '{__name__=~"pipecpu_.*"}'], 0),
            (["export", '{__name__=~"pipecpu_.*"}', "--format", "csv"], 100),
            (["export", '{__name__=~"pipecpu_.*"}', "--format", "csv"], 0),
        )
        for args, read_first in cases:
            with self.subTest(args=args, read_first=read_first):
                rc, err = self.run_to_closed_pipe(args, read_first)
                self.assertEqual((rc, err), (0, ""))


# sha256 of `strata bench --print` for test_bench_print_with_start_unchanged,
# taken from the build before the default start changed.
PIN_A = "f20b80fce0c50597105fddfc4054faa7b49e8cda8985bc0945258527e7dedb2c"
PIN_B = "c956c7300d84970efcf336ae32aba1733d190a589c752bf9d74302ffd46fc6f4"


if __name__ == "__main__":
    unittest.main()
