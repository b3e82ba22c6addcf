"""Kubernetes manifests (deploy/k8s) checked against the real binaries.

1. `kubectl kustomize` renders the base and every overlay. The YAML is turned
   into JSON offline by `kubectl label --local -f - -o json` (no API server,
   no PyYAML): a no-op label removal whose only effect is an empty
   `metadata.labels` map on objects that had none.
2. Consistency of every render: probe ports exist among the container ports,
   probe paths are real endpoints (/ready for readiness, /health for
   liveness), every `--flag` in command/args appears in the binary's --help,
   the StatefulSet's serviceName is a headless Service (clusterIP None,
   publishNotReadyAddresses) selecting its pods, the [node] ids of cluster.ini
   are exactly the pod names <sts>-0..N-1 with addresses <pod>.<service>:port
   on container ports, the ConfigMap mounted at --config exists and holds
   the file, --data-dir is on a volumeClaimTemplate, terminationGracePeriod
   > 10 s, a PodDisruptionBudget selects the node pods and allows no more
   disruptions than write quorum tolerates, Services target existing ports.
3. The rendered cluster.ini passes `strata-node --check` (for every node id)
   and `strata-router --check`.
4. A real cluster is run from the base's very cluster.ini: /etc/hosts maps
   each <pod>.<service> name to its own loopback address (backed up first,
   always restored), nodes start with --node-id <pod>, a router on a free
   port; ~100 lines with current timestamps are written and exported back
   bit-exactly.
5. SIGTERM to every process: each exits 0 within the StatefulSet's
   terminationGracePeriodSeconds; restarted from the same data dirs, every
   acknowledged sample is still there.

STRATA_DEPLOY_DIR overrides the manifest directory (default <repo>/deploy/k8s).
"""

import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

import harness
from harness import (ClusterTestCase, HarnessError, Proc, assert_samples_equal, binary,
                     devops_lines, export_to_dict, free_port, http_request, http_status,
                     parse_export, Model)

DEPLOY = os.environ.get("STRATA_DEPLOY_DIR") or os.path.join(harness.REPO, "deploy", "k8s")
KUBECTL = os.environ.get("KUBECTL", "/usr/bin/kubectl")
OVERLAY_NODES = {"three-nodes": 3, "six-nodes": 6, "secure": 3}
ENDPOINTS = {"/health", "/ready"}
HOSTS = "/etc/hosts"
HOSTS_MARK = "# strata-test-deploy pid=%d" % os.getpid()
LOOPBACK_BASE = (127, 0, 0, 10)
START_TIMEOUT = harness.START_TIMEOUT


# ---------------------------------------------------------------- render --

def kubectl():
    if not (os.path.isfile(KUBECTL) and os.access(KUBECTL, os.X_OK)):
        raise AssertionError("MISSING kubectl: %s not found or not executable (set KUBECTL). "
                             "This test fails, it does not skip." % KUBECTL)
    return KUBECTL


def _run(argv, stdin=None, timeout=60):
    try:
        return subprocess.run(argv, input=stdin, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError("%s did not finish within %d s" % (" ".join(argv), timeout))


def _json_stream(text):
    dec = json.JSONDecoder()
    out, pos = [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return out
        obj, pos = dec.raw_decode(text, pos)
        if obj.get("kind") == "List":
            out.extend(obj.get("items", []))
        else:
            out.append(obj)


_render_cache = {}


def render(path):
    """kubectl kustomize PATH -> list of objects (dicts)."""
    path = os.path.abspath(path)
    if path in _render_cache:
        return _render_cache[path]
    k = kubectl()
    r = _run([k, "kustomize", path])
    if r.returncode != 0:
        raise AssertionError("kubectl kustomize %s failed (exit %d):\n%s"
                             % (path, r.returncode, r.stderr.decode(errors="replace")))
    yaml_text = r.stdout
    r2 = _run([k, "label", "--local", "-f", "-", "-o", "json", "strata-test-nolabel-"],
              stdin=yaml_text)
    if r2.returncode != 0:
        raise AssertionError("kubectl label --local (YAML -> JSON) on the render of %s failed "
                             "(exit %d):\n%s" % (path, r2.returncode,
                                                 r2.stderr.decode(errors="replace")))
    objs = _json_stream(r2.stdout.decode("utf-8"))
    ndocs = len([l for l in yaml_text.decode("utf-8").split("\n") if l.rstrip() == "---"]) + 1
    if len(objs) != ndocs:
        raise AssertionError("render of %s: %d YAML documents but %d objects after conversion"
                             % (path, ndocs, len(objs)))
    _render_cache[path] = objs
    return objs


def render_targets():
    """[(label, path, expected node count or None)]: the base and every overlay."""
    if not os.path.isfile(os.path.join(DEPLOY, "kustomization.yaml")):
        raise AssertionError("no kustomization.yaml in %s (set STRATA_DEPLOY_DIR)" % DEPLOY)
    out = [("base", DEPLOY, None)]
    odir = os.path.join(DEPLOY, "overlays")
    names = sorted(os.listdir(odir)) if os.path.isdir(odir) else []
    for want in OVERLAY_NODES:
        if want not in names:
            raise AssertionError("overlay %s missing under %s" % (want, odir))
    for n in names:
        if os.path.isfile(os.path.join(odir, n, "kustomization.yaml")):
            out.append(("overlay " + n, os.path.join(odir, n), OVERLAY_NODES.get(n)))
    return out


# --------------------------------------------------------------- helpers --

def parse_ini(text):
    """cluster.ini -> {section header: {key: value}} (comments stripped like
    docs/configuration.md: ; or # at line start or after a blank)."""
    secs, cur = {}, None
    for line in text.splitlines():
        s = line.strip()
        if not s or s[0] in ";#":
            continue
        s = re.split(r"[ \t][;#]", s, 1)[0].strip()
        m = re.match(r"^\[(.*)\]$", s)
        if m:
            cur = m.group(1).strip()
            secs.setdefault(cur, {})
            continue
        if cur is None or "=" not in s:
            continue
        k, v = s.split("=", 1)
        secs[cur][k.strip()] = v.strip()
    return secs


def ini_nodes(secs):
    """[(id, {rpc, http})] in file order."""
    out = []
    for h, kv in secs.items():
        m = re.match(r'^node\s+"(.*)"$', h)
        if m:
            out.append((m.group(1), kv))
    return out


def split_addr(a):
    host, _, port = a.rpartition(":")
    return host.strip("[]"), int(port)


def by_kind(objs, kind):
    return [o for o in objs if o.get("kind") == kind]


def named(objs, kind, name):
    for o in by_kind(objs, kind):
        if o["metadata"]["name"] == name:
            return o
    return None


def matches(selector, labels):
    """A label selector (matchLabels/matchExpressions or a plain map) against labels."""
    if not selector:
        return False
    ml = selector.get("matchLabels") if ("matchLabels" in selector or
                                         "matchExpressions" in selector) else selector
    for k, v in (ml or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions", []) if "matchExpressions" in selector else []:
        op, vals = e["operator"], e.get("values", [])
        have = labels.get(e["key"])
        if op == "In" and have not in vals:
            return False
        if op == "NotIn" and have in vals:
            return False
        if op == "Exists" and have is None:
            return False
        if op == "DoesNotExist" and have is not None:
            return False
    return True


_help_cache = {}


def help_text(kind):
    if kind not in _help_cache:
        r = _run([binary(kind), "--help"])
        if r.returncode != 0:
            raise AssertionError("%s --help exited %d" % (binary(kind), r.returncode))
        _help_cache[kind] = (r.stdout + r.stderr).decode()
    return _help_cache[kind]


def flag_value(argv, flag):
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a[len(flag) + 1:]
    return None


def port_of(probe_port, container):
    """Resolve a probe/target port (int or name) to a container port number,
    or None when it is not one of the container's ports."""
    ports = container.get("ports", [])
    if isinstance(probe_port, int) or (isinstance(probe_port, str) and probe_port.isdigit()):
        n = int(probe_port)
        return n if any(p.get("containerPort") == n for p in ports) else None
    for p in ports:
        if p.get("name") == probe_port:
            return p.get("containerPort")
    return None


def configmap_for(objs, pod_spec, container, path):
    """(configmap object, key) serving file `path` inside container, or a reason."""
    vols = {v["name"]: v for v in pod_spec.get("volumes", [])}
    best = None
    for vm in container.get("volumeMounts", []):
        mp = vm["mountPath"].rstrip("/")
        if path == mp or path.startswith(mp + "/"):
            if best is None or len(mp) > len(best[0]):
                best = (mp, vm)
    if best is None:
        return None, "%s is not under any volumeMount" % path
    mp, vm = best
    vol = vols.get(vm["name"])
    if vol is None or "configMap" not in vol:
        return None, "%s is mounted from volume %r which is not a configMap" % (path, vm["name"])
    cm_name = vol["configMap"]["name"]
    cm = named(objs, "ConfigMap", cm_name)
    if cm is None:
        return None, "configMap %r (mounted at %s) is not in the render" % (cm_name, mp)
    rel = vm.get("subPath") or path[len(mp):].lstrip("/")
    key = rel
    for it in vol["configMap"].get("items", []) or []:
        if it["path"] == rel:
            key = it["key"]
    if key not in cm.get("data", {}):
        return None, "configMap %s has no key %r (for %s)" % (cm_name, key, path)
    return (cm, key), None


def container_argv(c):
    return list(c.get("command", [])) + list(c.get("args", []))


# ------------------------------------------------------- consistency check --

def check_render(objs, expect_nodes=None):
    """Returns (problems list, info dict with ini text, node ids, grace...)."""
    P = []
    info = {}
    stss = [s for s in by_kind(objs, "StatefulSet") if s["metadata"]["name"] == "strata-node"]
    deps = [d for d in by_kind(objs, "Deployment") if d["metadata"]["name"] == "strata-router"]
    if len(stss) != 1:
        P.append("expected one StatefulSet strata-node, found %d" % len(stss))
    if len(deps) != 1:
        P.append("expected one Deployment strata-router, found %d" % len(deps))
    if P:
        return P, info
    sts, dep = stss[0], deps[0]

    for wl, kind in ((sts, "node"), (dep, "router")):
        wname = "%s/%s" % (wl["kind"], wl["metadata"]["name"])
        spec = wl["spec"]
        tmpl_labels = spec["template"]["metadata"].get("labels", {})
        if not matches(spec.get("selector"), tmpl_labels):
            P.append("%s: selector %s does not match template labels %s"
                     % (wname, spec.get("selector"), tmpl_labels))
        pod = spec["template"]["spec"]
        grace = pod.get("terminationGracePeriodSeconds")
        if kind == "node":
            if grace is None:
                P.append("%s: terminationGracePeriodSeconds not set" % wname)
            elif not grace > 10:
                P.append("%s: terminationGracePeriodSeconds %s is not > 10 (clean "
                         "shutdown within 10 s)" % (wname, grace))
            info["grace"] = grace or 30
        elif grace is not None and not grace > 10:
            P.append("%s: terminationGracePeriodSeconds %s is not > 10" % (wname, grace))
        cs = [c for c in pod.get("containers", [])
              if any(os.path.basename(a) == "strata-" + kind for a in container_argv(c))]
        if len(cs) != 1:
            P.append("%s: expected one container running strata-%s (in command/args), found %d"
                     % (wname, kind, len(cs)))
            continue
        c = cs[0]
        argv = container_argv(c)
        # flags exist in the binary
        htext = help_text(kind)
        for a in argv:
            if a.startswith("--"):
                f = a.split("=", 1)[0]
                if not re.search(re.escape(f) + r"(?![A-Za-z0-9-])", htext):
                    P.append("%s: flag %s is not in `strata-%s --help`" % (wname, f, kind))
        # probes
        for pname, want in (("readinessProbe", "/ready"), ("livenessProbe", "/health"),
                            ("startupProbe", None)):
            pr = c.get(pname)
            if pr is None:
                if want:
                    P.append("%s: no %s" % (wname, pname))
                continue
            hg = pr.get("httpGet")
            if hg is None:
                P.append("%s: %s is not httpGet" % (wname, pname))
                continue
            path = hg.get("path", "/")
            if path not in ENDPOINTS:
                P.append("%s: %s path %s is not a real endpoint %s"
                         % (wname, pname, path, sorted(ENDPOINTS)))
            elif want and path != want:
                P.append("%s: %s path %s, expected %s" % (wname, pname, path, want))
            if port_of(hg.get("port"), c) is None:
                P.append("%s: %s port %r is not a containerPort %s"
                         % (wname, pname, hg.get("port"),
                            [(p.get("name"), p.get("containerPort")) for p in c.get("ports", [])]))
            info.setdefault("probe_ports", {})[(kind, pname)] = port_of(hg.get("port"), c)
        # config file from an existing ConfigMap
        cfg = flag_value(argv, "--config")
        if cfg is None:
            P.append("%s: no --config" % wname)
            continue
        found, why = configmap_for(objs, pod, c, cfg)
        if why:
            P.append("%s: %s" % (wname, why))
            continue
        cm, key = found
        info["ini_" + kind] = cm["data"][key]
        info["configmap_" + kind] = cm["metadata"]["name"]
        if kind == "node":
            info["node_container"] = c
            nid = flag_value(argv, "--node-id")
            if nid is not None and nid not in ("$(POD_NAME)", "$(HOSTNAME)"):
                P.append("%s: --node-id %r: a fixed id cannot serve every replica" % (wname, nid))
            dd = flag_value(argv, "--data-dir")
            if dd is None:
                P.append("%s: no --data-dir (default ./strata-data is not persistent)" % wname)
            else:
                claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
                mounted = [vm for vm in c.get("volumeMounts", [])
                           if dd.rstrip("/") == vm["mountPath"].rstrip("/") or
                           dd.startswith(vm["mountPath"].rstrip("/") + "/")]
                if not any(vm["name"] in claims for vm in mounted):
                    P.append("%s: --data-dir %s is not on a volumeClaimTemplate %s"
                             % (wname, dd, sorted(claims)))
        else:
            listen = flag_value(argv, "--listen")
            if listen is None:
                P.append("%s: no --listen (default 127.0.0.1:8086 is unreachable from "
                         "outside the pod)" % wname)
            else:
                h, p = split_addr(listen)
                if h in ("127.0.0.1", "localhost", "::1"):
                    P.append("%s: --listen %s is loopback only" % (wname, listen))
                if port_of(p, c) is None:
                    P.append("%s: --listen port %d is not a containerPort" % (wname, p))
                for pname in ("readinessProbe", "livenessProbe"):
                    pp = info.get("probe_ports", {}).get(("router", pname))
                    if pp is not None and pp != p:
                        P.append("%s: %s port %d is not the --listen port %d"
                                 % (wname, pname, pp, p))

    if info.get("ini_node") is not None and info.get("ini_router") is not None and \
            info["ini_node"] != info["ini_router"]:
        P.append("node and router mount different cluster.ini (%s vs %s)"
                 % (info.get("configmap_node"), info.get("configmap_router")))

    # headless service
    svc_name = sts["spec"].get("serviceName")
    svc = named(objs, "Service", svc_name) if svc_name else None
    node_labels = sts["spec"]["template"]["metadata"].get("labels", {})
    if svc is None:
        P.append("StatefulSet serviceName %r is not a Service in the render" % svc_name)
    else:
        if svc["spec"].get("clusterIP") != "None":
            P.append("Service %s: clusterIP %r, must be None (headless)"
                     % (svc_name, svc["spec"].get("clusterIP")))
        if svc["spec"].get("publishNotReadyAddresses") is not True:
            P.append("Service %s: publishNotReadyAddresses must be true (peers must resolve "
                     "before they are ready)" % svc_name)
        if not matches(svc["spec"].get("selector"), node_labels):
            P.append("Service %s does not select the node pods" % svc_name)

    # every Service targets existing ports of the pods it selects
    workloads = [(sts, "node"), (dep, "router")]
    for s in by_kind(objs, "Service"):
        sel = s["spec"].get("selector")
        tgt = [(w, k) for w, k in workloads
               if matches(sel, w["spec"]["template"]["metadata"].get("labels", {}))]
        if not tgt:
            P.append("Service %s selects no Strata pods" % s["metadata"]["name"])
        for w, k in tgt:
            cs = w["spec"]["template"]["spec"]["containers"]
            for sp in s["spec"].get("ports", []):
                t = sp.get("targetPort", sp.get("port"))
                if not any(port_of(t, c) is not None for c in cs):
                    P.append("Service %s port %s: targetPort %r is not a port of %s"
                             % (s["metadata"]["name"], sp.get("port"), t, k))

    # cluster.ini nodes = pod names, addresses = <pod>.<service>:<container port>
    replicas = sts["spec"].get("replicas", 1)
    info["replicas"] = replicas
    if expect_nodes is not None and replicas != expect_nodes:
        P.append("StatefulSet replicas %d, overlay expects %d" % (replicas, expect_nodes))
    ini = info.get("ini_node")
    if ini is not None:
        secs = parse_ini(ini)
        nodes = ini_nodes(secs)
        ids = [n for n, _ in nodes]
        want = ["%s-%d" % (sts["metadata"]["name"], i) for i in range(replicas)]
        info["node_ids"] = ids
        info["nodes"] = nodes
        info["secs"] = secs
        if ids != want:
            P.append("cluster.ini node ids %s != pod names %s" % (ids, want))
        c = info.get("node_container")
        for nid, kv in nodes:
            for key in ("rpc", "http"):
                if key not in kv:
                    P.append("node %s: no %s" % (nid, key))
                    continue
                h, p = split_addr(kv[key])
                if not (h == "%s.%s" % (nid, svc_name) or
                        h.startswith("%s.%s." % (nid, svc_name))):
                    P.append("node %s: %s host %s is not %s.%s[...]"
                             % (nid, key, h, nid, svc_name))
                if c is not None and port_of(p, c) is None:
                    P.append("node %s: %s port %d is not a containerPort of strata-node"
                             % (nid, key, p))
        hp = info.get("probe_ports", {})
        if nodes and "http" in nodes[0][1]:
            _, http_port = split_addr(nodes[0][1]["http"])
            for pname in ("readinessProbe", "livenessProbe"):
                pp = hp.get(("node", pname))
                if pp is not None and pp != http_port:
                    P.append("StatefulSet %s port %d is not the nodes' http port %d"
                             % (pname, pp, http_port))
        # PDB
        rf = int(secs.get("cluster", {}).get("replication_factor", "1"))
        tolerated = rf - (rf // 2 + 1)
        pdbs = [p for p in by_kind(objs, "PodDisruptionBudget")
                if matches(p["spec"].get("selector"), node_labels)]
        if not pdbs:
            P.append("no PodDisruptionBudget selects the node pods %s" % node_labels)
        for p in pdbs:
            ps = p["spec"]
            if "maxUnavailable" in ps:
                mu = ps["maxUnavailable"]
                allowed = (int(replicas * int(mu[:-1]) / 100 + 0.999999)
                           if isinstance(mu, str) and mu.endswith("%") else int(mu))
            elif "minAvailable" in ps:
                ma = ps["minAvailable"]
                need = (int(replicas * int(ma[:-1]) / 100 + 0.999999)
                        if isinstance(ma, str) and ma.endswith("%") else int(ma))
                allowed = replicas - need
            else:
                allowed = replicas
            if allowed > max(tolerated, 1) and replicas > 1:
                P.append("PDB %s allows %d node pods down at once; RF %d quorum tolerates %d"
                         % (p["metadata"]["name"], allowed, rf, tolerated))
            if allowed < 1:
                P.append("PDB %s allows no disruption at all (drains would hang)"
                         % p["metadata"]["name"])
    return P, info


# ------------------------------------------------------------ manifests --

class ManifestTest(unittest.TestCase):

    def test_render_and_consistency(self):
        problems = []
        for label, path, expect in render_targets():
            objs = render(path)
            P, info = check_render(objs, expect)
            problems += ["%s: %s" % (label, p) for p in P]
            kinds = sorted({o["kind"] for o in objs})
            sys.stderr.write("  %s: %d objects %s, %s node(s)\n"
                             % (label, len(objs), kinds, info.get("replicas")))
        if problems:
            self.fail("manifest problems:\n  " + "\n  ".join(problems))

    def test_config_passes_check(self):
        tmp = tempfile.mkdtemp(prefix="strata-it-deploy-check-")
        ok = False
        try:
            for label, path, _ in render_targets():
                P, info = check_render(render(path))
                ini = info.get("ini_node")
                self.assertIsNotNone(ini, "%s: no cluster.ini found: %s" % (label, P))
                f = os.path.join(tmp, re.sub(r"\W", "_", label) + ".ini")
                with open(f, "w") as fh:
                    fh.write(ini)
                for nid in info.get("node_ids", []):
                    r = _run([binary("node"), "--config", f, "--node-id", nid, "--check"])
                    self.assertEqual(r.returncode, 0, "%s: strata-node --check --node-id %s: "
                                     "exit %d\n%s%s" % (label, nid, r.returncode,
                                                        r.stdout.decode(), r.stderr.decode()))
                r = _run([binary("router"), "--config", f, "--check"])
                self.assertEqual(r.returncode, 0, "%s: strata-router --check: exit %d\n%s%s"
                                 % (label, r.returncode, r.stdout.decode(), r.stderr.decode()))
            ok = True
        finally:
            if ok:
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                sys.stderr.write("test_deploy: keeping %s\n" % tmp)


# ------------------------------------------------------------ /etc/hosts --

class HostsFile:
    """Adds marked lines to /etc/hosts; restore() removes exactly them (and
    falls back to the backup). Writes go through a temp file + rename."""

    def __init__(self, backup_dir):
        self.active = False
        with open(HOSTS, "rb") as f:
            self.orig = f.read()
        self.backup = os.path.join(backup_dir, "hosts.backup")
        with open(self.backup, "wb") as f:
            f.write(self.orig)
        atexit.register(self.restore)

    @staticmethod
    def _write(data):
        st = os.stat(HOSTS)
        tmp = HOSTS + ".strata-test.%d" % os.getpid()
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, st.st_mode & 0o7777)
            try:
                os.replace(tmp, HOSTS)
            except OSError:  # e.g. a bind-mounted /etc/hosts: rewrite in place
                with open(HOSTS, "r+b") as f:
                    f.write(data)
                    f.truncate()
                    f.flush()
                    os.fsync(f.fileno())
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def add(self, entries):
        """entries: [(ip, name)]"""
        base = self.orig if self.orig.endswith(b"\n") or not self.orig else self.orig + b"\n"
        lines = "".join("%s %s %s\n" % (ip, name, HOSTS_MARK) for ip, name in entries)
        try:
            self.active = True
            self._write(base + lines.encode())
        except OSError as e:
            raise AssertionError("cannot write %s (needed to map the manifests' DNS names to "
                                 "loopback): %s" % (HOSTS, e))

    def restore(self):
        if not self.active:
            return
        try:
            with open(HOSTS, "rb") as f:
                cur = f.read()
            kept = b"".join(l for l in cur.splitlines(True)
                            if HOSTS_MARK.encode() not in l)
            if kept.rstrip(b"\n") != self.orig.rstrip(b"\n"):
                sys.stderr.write("test_deploy: %s changed by someone else meanwhile; removing "
                                 "only our lines\n" % HOSTS)
            self._write(kept if kept.rstrip(b"\n") != self.orig.rstrip(b"\n") else self.orig)
            self.active = False
        except OSError as e:
            sys.stderr.write("test_deploy: CANNOT RESTORE %s (%s); backup at %s\n"
                             % (HOSTS, e, self.backup))
            raise


def _bindable(ip, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ip, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


# ---------------------------------------------------- cluster from render --

class DeployedClusterTest(ClusterTestCase):
    """The base render's cluster.ini, run for real on loopback."""

    @classmethod
    def setUpClass(cls):
        cls.dir = None
        cls.hosts = None
        cls.procs = []
        cls.nodes, cls.router = [], None
        try:
            cls._setup()
        except BaseException:
            cls._class_failed = True
            cls._cleanup()
            raise

    @classmethod
    def _setup(cls):
        P, info = check_render(render(DEPLOY))
        if info.get("ini_node") is None or not info.get("nodes"):
            raise AssertionError("base render has no usable cluster.ini: %s" % P)
        cls.info = info
        cls.grace = float(info.get("grace") or 30)
        cls.dir = tempfile.mkdtemp(prefix="strata-it-deploy-")
        cls.ini = os.path.join(cls.dir, "cluster.ini")
        with open(cls.ini, "w") as f:
            f.write(info["ini_node"])
        node_bin, router_bin = binary("node"), binary("router")
        # one loopback address per node: every node uses the same ports
        entries, cls.node_http = [], []
        b = LOOPBACK_BASE
        for i, (nid, kv) in enumerate(info["nodes"]):
            ip = "%d.%d.%d.%d" % (b[0], b[1], b[2], b[3] + i)
            hosts = set()
            for key in ("rpc", "http"):
                h, p = split_addr(kv[key])
                hosts.add(h)
                if not _bindable(ip, p):
                    raise AssertionError("%s:%d is not free/bindable (needed for %s %s)"
                                         % (ip, p, nid, key))
            for h in sorted(hosts):
                entries.append((ip, h))
            _, hp = split_addr(kv["http"])
            cls.node_http.append("http://%s:%d" % (ip, hp))
        cls.hosts = HostsFile(cls.dir)
        cls.hosts.add(entries)
        for ip, name in entries:
            try:
                got = socket.gethostbyname(name)
            except OSError as e:
                raise AssertionError("%s does not resolve after editing %s: %s"
                                     % (name, HOSTS, e))
            if got != ip:
                raise AssertionError("%s resolves to %s, not %s" % (name, got, ip))
        for i, (nid, _) in enumerate(info["nodes"]):
            dd = os.path.join(cls.dir, "d%d" % i)
            cls.nodes.append(Proc(nid, [node_bin, "--config", cls.ini, "--node-id", nid,
                                        "--data-dir", dd],
                                  os.path.join(cls.dir, "%s.log" % nid), cls.dir))
        cls.router_port = free_port()
        cls.router_url = "http://127.0.0.1:%d" % cls.router_port
        cls.router = Proc("router", [router_bin, "--config", cls.ini, "--listen",
                                     "127.0.0.1:%d" % cls.router_port],
                          os.path.join(cls.dir, "router.log"), cls.dir)
        cls.procs = cls.nodes + [cls.router]
        cls.start_all()

    @classmethod
    def wait_ready(cls, proc, url, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        last = None
        for _ in range(int(timeout / harness.POLL_INTERVAL) + 10):
            rc = proc.poll()
            if rc is not None:
                raise HarnessError("%s exited %s before %s was 200\n--- log tail:\n%s"
                                   % (proc.name, rc, url, proc.log_tail()))
            last = http_status(url, timeout=2.0)
            if last == 200:
                return
            if time.monotonic() > deadline:
                break
            time.sleep(harness.POLL_INTERVAL)
        raise HarnessError("%s: %s not 200 within %.0f s (last %s)\n--- log tail:\n%s"
                           % (proc.name, url, timeout, last, proc.log_tail()))

    @classmethod
    def start_all(cls):
        for p in cls.nodes:
            p.start()
        for p, url in zip(cls.nodes, cls.node_http):
            cls.wait_ready(p, url + "/ready")
        cls.router.start()
        cls.wait_ready(cls.router, cls.router_url + "/ready")

    @classmethod
    def logs(cls, n=30):
        return "\n".join("--- %s (%s):\n%s" % (p.name, p.log_path, p.log_tail(n))
                         for p in cls.procs)

    @classmethod
    def _cleanup(cls):
        for p in cls.procs:
            p.kill()
        try:
            if cls.hosts is not None:
                cls.hosts.restore()
        finally:
            if cls.dir:
                if cls._class_failed:
                    sys.stderr.write("\n%s\ntest_deploy: failed, keeping %s\n"
                                     % (cls.logs(), cls.dir))
                else:
                    shutil.rmtree(cls.dir, ignore_errors=True)

    @classmethod
    def tearDownClass(cls):
        cls._cleanup()

    def export_all(self):
        st, _, data = http_request(self.router_url + "/api/v1/export?" + urllib.parse.urlencode(
            [("match[]", '{__name__=~".+"}')]))
        self.assertEqual(st, 200, "export: HTTP %d: %r" % (st, data[:300]))
        return export_to_dict(parse_export(data))

    def test_write_drain_restart(self):
        # every process is up and answers its endpoints
        for url in self.node_http + [self.router_url]:
            for ep in ("/health", "/ready", "/metrics"):
                self.assertEqual(http_status(url + ep, timeout=10), 200, url + ep)
        # ~100 lines, current timestamps (retention 30d in the manifests' config)
        now_s = int(time.time())
        built = devops_lines(hosts=10, points=10, start_s=now_s - 100, step_s=10, precision="ms")
        model = Model()
        for i in range(0, len(built), 25):
            part = built[i:i + 25]
            body = "\n".join(l for l, _ in part).encode()
            st, _, data = http_request(self.router_url + "/write?precision=ms", "POST", body,
                                       {"Content-Type": "text/plain; charset=utf-8"})
            self.assertEqual(st, 204, "write: HTTP %d: %r\n%s" % (st, data[:500], self.logs()))
            model.add_lines(part)
        self.assertEqual(model.n_samples(), 1000)
        assert_samples_equal(model.data, self.export_all(), "export before SIGTERM")

        # SIGTERM drain: all at once (as a rollout/node drain would), each must
        # exit 0 within the StatefulSet's grace period
        t0 = time.monotonic()
        for p in self.procs:
            p.signal(signal.SIGTERM)
        bad = []
        for p in self.procs:
            left = max(0.1, self.grace - (time.monotonic() - t0))
            rc = p.wait(left)
            if rc is None:
                p.kill()
                bad.append("%s did not exit within terminationGracePeriodSeconds=%.0f (SIGKILLed)"
                           % (p.name, self.grace))
            elif rc != 0:
                bad.append("%s exited %s after SIGTERM" % (p.name, rc))
        if bad:
            self.fail("; ".join(bad) + "\n" + self.logs())
        sys.stderr.write("  drain: all %d processes exited 0 in %.2f s (grace %.0f s)\n"
                         % (len(self.procs), time.monotonic() - t0, self.grace))

        # restart from the same data dirs: nothing acknowledged is lost
        self.start_all()
        assert_samples_equal(model.data, self.export_all(), "export after SIGTERM + restart")

        # and a final clean stop
        for p in reversed(self.procs):
            rc, killed = p.terminate(self.grace)
            self.assertTrue(rc == 0 and not killed, "%s: exit %s%s\n%s"
                            % (p.name, rc, " (SIGKILLed)" if killed else "", self.logs()))


if __name__ == "__main__":
    unittest.main()
