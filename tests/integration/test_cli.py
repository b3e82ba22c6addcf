"""CLI smoke test: `strata status`, `strata write FILE`, `strata export
SELECTOR` against a running cluster. Minimal on purpose (the CLI is young):
exit code 0, and the data written through it arrives.

The CLI is pointed at router 0 with `--router http://127.0.0.1:PORT` after
the subcommand and with $STRATA_ROUTER (cli/strata.c: both are read).
"""

import os
import subprocess
import unittest

from harness import (ALL, ClusterTestCase, Model, assert_samples_equal, binary, devops_lines,
                     export_to_dict, parse_export)


class CliTest(ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        cls.cli = binary("cli")
        cls.c = cls.start_class_cluster(nodes=2, routers=1, shards=4, rf=1)

    def run_cli(self, args, conn=True, timeout=60):
        url = "http://127.0.0.1:%d" % self.c.router_port[0]
        argv = [self.cli] + args + (["--router", url] if conn else [])
        env = dict(os.environ, STRATA_ROUTER=url)
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

    def test_write_and_export(self):
        built = devops_lines(hosts=6, points=25, seed=21, measurement="clicpu")
        path = os.path.join(self.c.dir, "cli.lp")
        with open(path, "w") as f:
            f.write("\n".join(l for l, _ in built) + "\n")
        self.ok(self.run_cli(["write", path]))
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


if __name__ == "__main__":
    unittest.main()
