"""Shared by test_console.py and tests/bench/console_bench.py: the system
Chromium, puppeteer-core installed from console/package-lock.json into the
build directory (never the source tree), and a runner for console/console.js
steps (one headless browser per step, one JSON line back)."""

import json
import os
import shutil
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
NPM_TIMEOUT = 600
STEP_TIMEOUT = 120


def chromium_missing():
    """Why the browser tests cannot run, or None."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return "chromium not found at %s (Debian: apt-get install chromium)" % CHROMIUM
    return None


def npm_install(bin_dir, pkg="console"):
    """npm ci of <pkg>/package.json + package-lock.json (console: puppeteer-core,
    pgjs: node-postgres) into <bin_dir>/tests/<pkg>-npm (skipped when already
    done for this lockfile). Returns the node_modules path."""
    dest = os.path.join(bin_dir, "tests", pkg + "-npm")
    os.makedirs(dest, exist_ok=True)
    lock = os.path.join(HERE, pkg, "package-lock.json")
    stamp = os.path.join(dest, "node_modules", ".package-lock.json")
    if not os.path.exists(stamp) or os.path.getmtime(stamp) < os.path.getmtime(lock):
        npm = shutil.which("npm")
        if not npm:
            raise AssertionError("npm not found: the %s test needs node and npm "
                                 "(scripts/install-deps.sh installs them)" % pkg)
        for f in ("package.json", "package-lock.json"):
            shutil.copy(os.path.join(HERE, pkg, f), dest)
        env = dict(os.environ, PUPPETEER_SKIP_DOWNLOAD="1")
        p = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=dest,
                           env=env, capture_output=True, text=True, timeout=NPM_TIMEOUT)
        if p.returncode != 0:
            raise AssertionError("npm ci for %s failed:\n%s%s" % (pkg, p.stdout, p.stderr))
    return os.path.join(dest, "node_modules")


def run_step(node_modules, shots, step, url, *args, env=None):
    """Run one console.js step; returns its JSON answer (fails on error)."""
    e = dict(os.environ, NODE_PATH=node_modules, CHROMIUM=CHROMIUM)
    e.update(env or {})
    p = subprocess.run(["node", os.path.join(HERE, "console", "console.js"), step, url, shots]
                       + [str(a) for a in args], env=e, capture_output=True, text=True,
                       timeout=STEP_TIMEOUT)
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    out = json.loads(lines[-1]) if lines else {"error": "no answer"}
    if p.returncode != 0 or "error" in out:
        raise AssertionError("console step %s %s: %s\nstderr: %s"
                             % (step, args, out.get("error"), p.stderr[-2000:]))
    return out
