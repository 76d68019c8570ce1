"""The Helm chart (helm/streamwhisk): lint, render with two value sets (plus external Kafka/CouchDB), validate every
manifest against the Kubernetes schemas, check the objects that matter, run the chart's nginx config in front of an
echo upstream, and build the component images from the local Debian base.

helm is built from its Go module and the schemas come from the kubernetes-validate wheel (cli/helmtools.py):
nothing is fetched at test time but packages.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from cli import helmtools
from contracts.settings import REPO

pytestmark = pytest.mark.integration

KUBE_VERSION = "1.30.0"
CHART = REPO / "helm" / "streamwhisk"
PROD = CHART / "values-production.yaml"
GUEST_KEY = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP"
EXTERNAL = ["--set", "kafka.enabled=false", "--set", "kafka.external.bootstrapServers=kafka-a:9092\\,kafka-b:9092",
            "--set", "couchdb.enabled=false", "--set", "couchdb.external.url=https://u:pw@couch.example.com:6984"]
VALUE_SETS: dict[str, list[str]] = {"default": [], "production": ["-f", str(PROD)], "external": EXTERNAL}
Doc = dict[str, Any]


@pytest.fixture(scope="module")
def helm() -> str:
    try:
        path = helmtools.ensure_helm()
        helmtools.ensure_validator()
    except helmtools.ToolError as e:
        pytest.fail(f"cannot get the chart tools: {e}")
    return path


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120)


def render(helm: str, *args: str) -> list[Doc]:
    import yaml  # kubernetes-validate's dependency, there once ensure_validator ran

    res = run_helm(helm, "template", "sw", str(CHART), "--namespace", "sw", "--kube-version", KUBE_VERSION, *args)
    assert res.returncode == 0, res.stderr
    return [d for d in yaml.safe_load_all(res.stdout) if d]


@pytest.fixture(scope="module")
def rendered(helm: str) -> dict[str, list[Doc]]:
    return {name: render(helm, *args) for name, args in VALUE_SETS.items()}


def find(docs: list[Doc], kind: str, part: str | None = None) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind
            and (part is None or d["metadata"]["labels"]["app.kubernetes.io/component"] == part)]


def one(docs: list[Doc], kind: str, part: str) -> Doc:
    found = find(docs, kind, part)
    assert len(found) == 1, f"{kind}/{part}: {len(found)} found"
    return found[0]


def pod_spec(d: Doc) -> Doc:
    return d["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def workloads(docs: list[Doc]) -> list[Doc]:
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet")]


# ---------------------------------------------------------------- lint, render, schema

@pytest.mark.parametrize("values", ["default", "production"])
def test_helm_lint(helm: str, values: str) -> None:
    res = run_helm(helm, "lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION, *VALUE_SETS[values])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 chart(s) failed" in res.stdout


@pytest.mark.parametrize("values", list(VALUE_SETS))
def test_every_manifest_matches_the_kubernetes_schema(rendered: dict[str, list[Doc]], values: str) -> None:
    docs = rendered[values]
    assert len(docs) >= 15
    errors = []
    for d in docs:
        try:
            helmtools.validate(d, KUBE_VERSION)
        except ValueError as e:
            errors.append(str(e))
    assert not errors, "\n".join(errors)


def test_the_validator_rejects_a_broken_manifest(rendered: dict[str, list[Doc]]) -> None:
    # Guard against a validator that accepts everything.
    bad = json.loads(json.dumps(one(rendered["default"], "Deployment", "api")))
    bad["spec"]["replicas"] = "three"
    with pytest.raises(ValueError, match="replicas"):
        helmtools.validate(bad, KUBE_VERSION)
    bad = json.loads(json.dumps(one(rendered["default"], "Deployment", "api")))
    pod_spec(bad)["containers"][0]["livenessprobe"] = {}
    with pytest.raises(ValueError):
        helmtools.validate(bad, KUBE_VERSION)


def test_bad_values_fail_with_a_message(helm: str) -> None:
    res = run_helm(helm, "template", "sw", str(CHART), "--kube-version", KUBE_VERSION,
                   "--set", "invoker.containerFactory=kubernetes")
    assert res.returncode != 0 and "containerFactory" in res.stderr
    res = run_helm(helm, "template", "sw", str(CHART), "--kube-version", KUBE_VERSION, "--set", "couchdb.enabled=false")
    assert res.returncode != 0 and "couchdb.external.url is required" in res.stderr
    res = run_helm(helm, "template", "sw", str(CHART), "--kube-version", KUBE_VERSION,
                   "--set", "kafka.replicationFactor=3")
    assert res.returncode != 0 and "replicationFactor" in res.stderr
    res = run_helm(helm, "template", "sw", str(CHART), "--kube-version", KUBE_VERSION,
                   "--set", "streams.replicas=2")  # default: 1 partition
    assert res.returncode != 0 and "streams.replicas cannot exceed kafka.partitions" in res.stderr


# ---------------------------------------------------------------- the objects that matter

def test_default_install_has_every_part(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["default"]
    for kind, part in [("StatefulSet", "kafka"), ("StatefulSet", "couchdb"), ("Deployment", "api"),
                       ("Deployment", "streams"), ("Deployment", "projections"), ("Deployment", "connect"),
                       ("Deployment", "feeds"),
                       ("DaemonSet", "invoker"), ("Ingress", "api"), ("Service", "api")]:
        one(docs, kind, part)
    jobs = {d["metadata"]["name"] for d in find(docs, "Job")}
    assert jobs == {"sw-streamwhisk-init-topics", "sw-streamwhisk-init-databases", "sw-streamwhisk-init-subjects"}
    for job in find(docs, "Job"):
        assert "post-install" in job["metadata"]["annotations"]["helm.sh/hook"]
    cfg = one(docs, "ConfigMap", "config")["data"]
    assert cfg["WSK_KAFKA"] == "sw-streamwhisk-kafka.sw.svc:9092"
    assert cfg["WSK_PREFIX"] == "whisk"
    assert (cfg["WSK_CONNECT_HOST"], cfg["WSK_CONNECT_PORT"]) == ("sw-streamwhisk-connect.sw.svc", "8083")
    assert one(docs, "Deployment", "feeds")["spec"]["strategy"] == {"type": "Recreate"}


def test_nginx_configmap_is_the_local_template(rendered: dict[str, list[Doc]]) -> None:
    data = one(rendered["default"], "ConfigMap", "scripts")["data"]
    local = (REPO / "deploy" / "nginx" / "nginx.conf.tmpl").read_text()
    assert data["nginx.conf.tmpl"] == local.rstrip("\n")  # YAML `|-` drops the final newline only


def test_invoker_daemonset_uses_the_node_docker(rendered: dict[str, list[Doc]]) -> None:
    ds = one(rendered["default"], "DaemonSet", "invoker")
    spec = pod_spec(ds)
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["docker-sock"]["hostPath"] == {"path": "/var/run/docker.sock", "type": "Socket"}
    invoker = next(c for c in spec["containers"] if c["name"] == "invoker")
    mounts = {m["name"]: m["mountPath"] for m in invoker["volumeMounts"]}
    assert mounts["docker-sock"] == "/var/run/docker.sock"
    # Action containers get their sockets bind-mounted by the node's Docker: same path in the pod and on the host.
    assert mounts["sockets"] == volumes["sockets"]["hostPath"]["path"] == "/run/streamwhisk"
    assert spec["nodeSelector"] == {"streamwhisk.io/invoker": "true"}
    assert "python3 -m invoker --id" in invoker["args"][0]
    prod = pod_spec(one(rendered["production"], "DaemonSet", "invoker"))
    env = {e["name"]: e.get("value") for e in prod["containers"][0]["env"]}
    assert json.loads(env["INVOKER_NODE_IDS"]) == {"worker-1": 0, "worker-2": 1, "worker-3": 2}


def _allows(policy: Doc, labels: dict[str, str]) -> bool:
    """Would this NetworkPolicy's ingress admit a pod with these labels (same namespace)?"""
    for rule in policy["spec"].get("ingress", []):
        for peer in rule.get("from", []):
            sel = peer.get("podSelector", {}).get("matchLabels", {})
            if "namespaceSelector" not in peer and sel.items() <= labels.items():
                return True
    return False


@pytest.mark.parametrize("values", ["default", "production"])
def test_network_policies_keep_actions_away_from_kafka_and_couchdb(rendered: dict[str, list[Doc]],
                                                                    values: str) -> None:
    docs = rendered[values]
    action = {"app.kubernetes.io/instance": "sw", "streamwhisk.io/role": "action"}
    stores = [p for p in ("kafka", "couchdb") if find(docs, "StatefulSet", p)]
    assert "kafka" in stores
    for part in stores:
        policy = one(docs, "NetworkPolicy", part)
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        assert policy["spec"]["podSelector"]["matchLabels"] == \
            one(docs, "StatefulSet", part)["spec"]["selector"]["matchLabels"]
        assert not _allows(policy, action), f"action pods reach {part}"
        assert not _allows(policy, {"app": "something-else"})
        platform = [d for d in workloads(docs) + find(docs, "Job")
                    if d["spec"]["template"]["metadata"]["labels"].get("streamwhisk.io/platform") == "true"]
        parts = {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in platform}
        assert parts == {"api", "streams", "projections", "feeds", "invoker", "connect", "init"}
        for d in platform:  # every Streamwhisk component and init job is let in
            assert _allows(policy, d["spec"]["template"]["metadata"]["labels"]), f"{d['metadata']['name']} -> {part}"
    actions = one(docs, "NetworkPolicy", "actions")
    assert actions["spec"]["podSelector"]["matchLabels"] == action
    assert set(actions["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    blocks = [p["ipBlock"] for r in actions["spec"]["egress"] for p in r["to"] if "ipBlock" in p]
    assert blocks == [{"cidr": "0.0.0.0/0", "except": blocks[0]["except"]}]
    assert "10.0.0.0/8" in blocks[0]["except"]  # pod and service IPs, where Kafka and CouchDB live
    # Egress to pods only for DNS.
    pod_rules = [r for r in actions["spec"]["egress"] if any("podSelector" in p for p in r["to"])]
    assert all({p["port"] for p in r["ports"]} == {53} for r in pod_rules)


@pytest.mark.parametrize("values", list(VALUE_SETS))
def test_keys_only_in_secrets(rendered: dict[str, list[Doc]], values: str) -> None:
    docs = rendered[values]
    secret_part = GUEST_KEY.split(":")[1]
    for d in docs:
        if d["kind"] != "Secret":
            text = json.dumps(d)
            assert secret_part not in text, f"plaintext key in {d['kind']}/{d['metadata']['name']}"
            assert "pw@couch" not in text, f"CouchDB password in {d['kind']}/{d['metadata']['name']}"
    secrets = find(docs, "Secret")
    if values == "production":
        assert secrets == []  # auth.existingSecret
        api = pod_spec(one(docs, "Deployment", "api"))["containers"][0]
        ref = next(e for e in api["env"] if e["name"] == "WSK_COUCHDB")["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "streamwhisk-keys", "key": "couchdb-url"}
        return
    (secret,) = secrets
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["guest-key"] == GUEST_KEY
    if values == "external":
        assert data["couchdb-url"] == "https://u:pw@couch.example.com:6984"
    # Only the subjects job sees the keys.
    users = [d["metadata"]["name"] for d in docs if "guest-key" in json.dumps(d) and d["kind"] != "Secret"]
    assert users == ["sw-streamwhisk-init-subjects"]


@pytest.mark.parametrize("values", list(VALUE_SETS))
def test_probes_resources_and_pdbs(rendered: dict[str, list[Doc]], values: str) -> None:
    docs = rendered[values]
    for w in workloads(docs):
        spec = pod_spec(w)
        assert spec["automountServiceAccountToken"] is False
        for c in spec["containers"]:
            where = f"{w['metadata']['name']}/{c['name']}"
            assert "readinessProbe" in c and "livenessProbe" in c, where
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"], where
        for c in spec.get("initContainers", []):
            assert c["resources"]["limits"]["memory"], w["metadata"]["name"]
    pdbs = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in find(docs, "PodDisruptionBudget")}
    for w in workloads(docs):
        part = w["metadata"]["labels"]["app.kubernetes.io/component"]
        if w["kind"] == "DaemonSet":
            continue
        assert part in pdbs, f"no PodDisruptionBudget for {part}"
        assert pdbs[part]["spec"]["selector"]["matchLabels"].items() <= \
            w["spec"]["template"]["metadata"]["labels"].items()
        assert pdbs[part]["spec"]["maxUnavailable"] == 1


def test_production_values(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["production"]
    for part in ("api", "projections", "connect"):
        assert one(docs, "Deployment", part)["spec"]["replicas"] > 1, part
    assert one(docs, "Deployment", "streams")["spec"]["replicas"] == 3  # Faust workers share the 6 partitions
    kafka = one(docs, "StatefulSet", "kafka")
    assert kafka["spec"]["replicas"] == 3
    env = {e["name"]: e.get("value") for e in pod_spec(kafka)["containers"][0]["env"]}
    assert (env["REPLICATION"], env["MIN_ISR"]) == ("3", "2")
    assert not find(docs, "StatefulSet", "couchdb")  # an existing CouchDB
    cfg = one(docs, "ConfigMap", "config")["data"]
    assert (cfg["WSK_PARTITIONS"], cfg["WSK_REPLICATION"]) == ("6", "3")
    ingress = one(docs, "Ingress", "api")["spec"]
    assert ingress["tls"] == [{"hosts": ["whisk.example.com"], "secretName": "whisk-example-com-tls"}]
    paths = {p["path"] for p in ingress["rules"][0]["http"]["paths"]}
    assert {"/api", "/api/v1/web"} <= paths
    assert all(c["image"].startswith("registry.example.com/") for w in workloads(docs)
               for c in pod_spec(w)["containers"])
    assert pod_spec(one(docs, "Deployment", "api"))["imagePullSecrets"] == [{"name": "registry-example-com"}]
    ext = one(rendered["external"], "ConfigMap", "config")["data"]
    assert ext["WSK_KAFKA"] == "kafka-a:9092,kafka-b:9092"
    assert not find(rendered["external"], "StatefulSet")
    assert not find(rendered["external"], "NetworkPolicy", "kafka")


# ---------------------------------------------------------------- the chart's nginx in front of an echo upstream

class Echo(http.server.BaseHTTPRequestHandler):
    """Answers every request with what it received (method, path, headers, body size and hash)."""
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if self.path.endswith("/slow"):
            time.sleep(3)
        out = json.dumps({"method": self.command, "path": self.path, "headers": dict(self.headers.items()),
                          "size": len(body), "sha256": hashlib.sha256(body).hexdigest(),
                          "body": body[:200].decode(errors="replace")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Upstream", "echo")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def chart_nginx(rendered: dict[str, list[Doc]]) -> Iterator[str]:
    """Debian's nginx run by the chart's own start script with the chart's ConfigMap, upstream = an echo server."""
    if shutil.which("nginx") is None:
        pytest.fail("nginx is not installed (streamwhisk install puts it there)")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    data = one(rendered["default"], "ConfigMap", "scripts")["data"]
    # Workers run as an unprivileged user (as in the pod): the prefix must be traversable by it.
    tmp = Path(tempfile.mkdtemp(prefix="sw-helm-nginx-"))
    tmp.chmod(0o755)
    (tmp / "nginx.conf.tmpl").write_text(data["nginx.conf.tmpl"] + "\n")
    (tmp / "nginx-start.sh").write_text(data["nginx-start.sh"] + "\n")
    port = free_port()
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/bin"), "LISTEN": f"127.0.0.1:{port}",
           "UPSTREAM": f"127.0.0.1:{server.server_address[1]}", "NGINX_PREFIX": str(tmp / "p"),
           "NGINX_TEMPLATE": str(tmp / "nginx.conf.tmpl")}
    with open(tmp / "nginx.out", "wb") as out:
        proc = subprocess.Popen(["sh", str(tmp / "nginx-start.sh")], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"nginx did not start: {(tmp / 'nginx.out').read_text()[-2000:]}")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        server.shutdown()
        server.server_close()
        shutil.rmtree(tmp, ignore_errors=True)


def test_nginx_routes_api_v1_with_headers_intact(chart_nginx: str) -> None:
    r = requests.get(f"{chart_nginx}/api/v1/namespaces/_/actions?limit=5&skip=0", timeout=10, headers={
        "Host": "whisk.example.com", "X-Forwarded-For": "203.0.113.7", "Authorization": "Basic dTpw",
        "X-Custom": "kept"})
    assert r.status_code == 200 and r.headers["X-Upstream"] == "echo"
    seen = r.json()
    assert (seen["method"], seen["path"]) == ("GET", "/api/v1/namespaces/_/actions?limit=5&skip=0")
    h = seen["headers"]
    assert h["Host"] == "whisk.example.com"
    assert h["X-Forwarded-For"] == "203.0.113.7, 127.0.0.1"
    assert h["X-Forwarded-Proto"] == "http"
    assert h["Authorization"] == "Basic dTpw" and h["X-Custom"] == "kept"
    assert len(h["X-Request-ID"]) == 32  # made by nginx when the caller sent none
    r = requests.delete(f"{chart_nginx}/api/v1/namespaces/_/rules/r1", timeout=10, headers={"X-Request-ID": "abc"})
    assert r.json()["method"] == "DELETE" and r.json()["headers"]["X-Request-ID"] == "abc"


def test_nginx_routes_web_actions(chart_nginx: str) -> None:
    body = json.dumps({"name": "Jane"})
    r = requests.post(f"{chart_nginx}/api/v1/web/guest/default/hello.json?x=1", data=body, timeout=10,
                      headers={"Content-Type": "application/json"})
    seen = r.json()
    assert (seen["method"], seen["path"]) == ("POST", "/api/v1/web/guest/default/hello.json?x=1")
    assert seen["body"] == body and seen["headers"]["Content-Type"] == "application/json"
    assert seen["headers"]["X-Forwarded-For"] == "127.0.0.1"


def test_nginx_passes_big_bodies(chart_nginx: str) -> None:
    big = os.urandom(10 * 1024 * 1024)
    r = requests.put(f"{chart_nginx}/api/v1/namespaces/_/actions/big?overwrite=true", data=big, timeout=60)
    assert r.status_code == 200, r.text[:300]
    assert (r.json()["size"], r.json()["sha256"]) == (len(big), hashlib.sha256(big).hexdigest())


def test_nginx_waits_for_a_slow_upstream(chart_nginx: str) -> None:
    t0 = time.monotonic()
    r = requests.post(f"{chart_nginx}/api/v1/namespaces/_/actions/slow", json={}, timeout=30)
    took = time.monotonic() - t0
    assert r.status_code == 200 and r.json()["path"].endswith("/slow")
    assert took >= 3.0


# ---------------------------------------------------------------- images

DOCKERFILES = sorted((REPO / "dockerfiles").glob("**/Dockerfile"))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.parent.relative_to(REPO / "dockerfiles")))
def test_dockerfiles_build_from_the_local_base(dockerfile: Path) -> None:
    # Each starts FROM the locally built Debian base (no registry image).
    lines = [ln for ln in dockerfile.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "ARG BASE=streamwhisk/base-python:latest"
    assert lines[1] == "FROM ${BASE}"
    keywords = {"ARG", "FROM", "ENV", "RUN", "COPY", "WORKDIR", "USER", "CMD", "EXPOSE"}
    assert all(ln.split()[0] in keywords for ln in lines if not ln.startswith((" ", "\t")))


@pytest.fixture(scope="module")
def images() -> str:
    """dockerfiles/build.sh builds the component, runtime and nginx images FROM the local base (tag `test`)."""
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
        pytest.fail("docker is not running")
    t0 = time.monotonic()
    res = subprocess.run(["bash", str(REPO / "dockerfiles" / "build.sh"), "test", "streamwhisk", "runtimes", "nginx"],
                         capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHON": sys.executable})
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    print(f"images built in {time.monotonic() - t0:.1f} s")
    return "test"


def test_component_images_build_and_run(images: str) -> None:
    check = "import api.app, streams.app, projections.runner, invoker.runner, feeds.service, cli.admin; print('ok')"
    out = subprocess.run(["docker", "run", "--rm", "--network", "none", f"streamwhisk/streamwhisk:{images}",
                          "python3", "-c", check], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr
    out = subprocess.run(["docker", "run", "--rm", "--network", "none", f"streamwhisk/nginx:{images}", "nginx", "-v"],
                         capture_output=True, text=True, timeout=60)
    assert "nginx/" in out.stderr


def test_chart_images_and_scripts_run_the_platform(infra: Any, images: str, rendered: dict[str, list[Doc]]) -> None:
    """The pods' containers, with the chart's commands and scripts, on this host's network (a pod's loopback is
    shared the same way) against the shared Kafka and CouchDB: init steps, then an action created and invoked
    through the chart's nginx."""
    import uuid

    data = one(rendered["default"], "ConfigMap", "scripts")["data"]
    files = Path(tempfile.mkdtemp(prefix="sw-helm-files-"))
    files.chmod(0o755)
    for name in ("k8s_init.py", "nginx-start.sh", "nginx.conf.tmpl"):
        (files / name).write_text(data[name] + "\n")
        (files / name).chmod(0o644)
    prefix = f"helm{uuid.uuid4().hex[:6]}"
    api_port, nginx_port = free_port(), free_port()
    env = {"WSK_KAFKA": infra.kafka, "WSK_COUCHDB": infra.couchdb, "WSK_PREFIX": prefix, "WSK_API_PORT": str(api_port),
           "WSK_HOME": "/var/lib/streamwhisk", "WSK_PARTITIONS": "2", "INIT_TIMEOUT": "60",
           "GUEST_KEY": GUEST_KEY, "SYSTEM_KEY": GUEST_KEY.replace("23bc", "789c")}
    env_args = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
    image = f"streamwhisk/streamwhisk:{images}"
    mount = ["-v", f"{files}:/etc/streamwhisk:ro"]
    unprivileged = ["-u", "65534:65534", "--read-only", "--tmpfs", "/var/lib/streamwhisk:uid=65534"]
    names: list[str] = []

    def start(part: str, *args: str) -> None:
        names.append(f"{prefix}-{part}")
        subprocess.run(["docker", "run", "-d", "--name", names[-1], "--network", "host", *args],
                       check=True, capture_output=True, timeout=60)

    try:
        for step in ("topics", "databases", "subjects"):  # the init jobs
            res = subprocess.run(["docker", "run", "--rm", "--network", "host", *env_args, *mount, *unprivileged,
                                  image, "python3", "/etc/streamwhisk/k8s_init.py", step],
                                 capture_output=True, text=True, timeout=120)
            assert res.returncode == 0, f"{step}: {res.stdout}{res.stderr}"[-2000:]
        for part in ("api", "streams", "projections", "feeds"):
            start(part, *env_args, *unprivileged, image, "python3", "-m", part)
        start("invoker", *env_args, *mount, "-u", "0:0", "-v", "/var/run/docker.sock:/var/run/docker.sock",
              "-v", f"{infra.socket_root}:{infra.socket_root}", "-e", f"WSK_SOCKET_ROOT={infra.socket_root}",
              "-e", "NODE_NAME=node-a", "-e", 'INVOKER_NODE_IDS={"node-a": 0}', "--tmpfs", "/var/lib/streamwhisk",
              image, "sh", "-c", "exec python3 -m invoker --id $(python3 /etc/streamwhisk/k8s_init.py invoker-id)")
        start("nginx", "-e", f"LISTEN=127.0.0.1:{nginx_port}", "-e", f"UPSTREAM=127.0.0.1:{api_port}", *mount,
              "-u", "65534:65534", "--read-only", "--tmpfs", "/var/lib/streamwhisk-nginx:uid=65534",
              f"streamwhisk/nginx:{images}", "sh", "/etc/streamwhisk/nginx-start.sh")
        url = f"http://127.0.0.1:{nginx_port}/api/v1"
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{nginx_port}/ping", timeout=3).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "the API did not answer through nginx in 90 s"
            time.sleep(0.5)
        auth = tuple(GUEST_KEY.split(":"))
        r = requests.get(f"{url}/namespaces", auth=auth, timeout=30)
        assert r.status_code == 200 and r.json() == ["guest"], r.text
        code = "def main(args):\n    return {'greeting': 'hello ' + args.get('name', '?')}\n"
        r = requests.put(f"{url}/namespaces/_/actions/hello?overwrite=true", auth=auth, timeout=60,
                         json={"exec": {"kind": "python:3", "code": code}})
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 60  # the invoker's first ping may still be on its way
        while True:
            r = requests.post(f"{url}/namespaces/_/actions/hello?blocking=true&result=true", auth=auth, timeout=90,
                              json={"name": "kubernetes"})
            if r.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert r.status_code == 200 and r.json() == {"greeting": "hello kubernetes"}, r.text + "".join(
            f"\n--- {n}\n" + subprocess.run(["docker", "logs", "--tail", "15", n], capture_output=True, text=True,
                                             timeout=30).stderr for n in names if "invoker" in n or "streams" in n)
        for name in names:  # nothing crashed on the way
            state = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", name],
                                   capture_output=True, text=True, timeout=30).stdout.strip()
            assert state == "true", f"{name} stopped: " + subprocess.run(
                ["docker", "logs", "--tail", "30", name], capture_output=True, text=True, timeout=30).stderr
    finally:
        if names:
            subprocess.run(["docker", "rm", "-f", *names], capture_output=True, timeout=120)
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"name=^/wsk{prefix}"],
                             capture_output=True, text=True, timeout=30).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=120)
        for d in Path(infra.socket_root).glob(f"{prefix}*"):
            shutil.rmtree(d, ignore_errors=True)
        for db in ("subjects", "whisks", "activations"):
            with contextlib.suppress(requests.RequestException):
                requests.delete(f"{infra.couchdb}/{prefix}_{db}", timeout=10)
        shutil.rmtree(files, ignore_errors=True)
