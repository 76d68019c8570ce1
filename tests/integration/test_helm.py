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
import re
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
# "node": invokers on the node's Docker (a DaemonSet); the default is engine=pod (a StatefulSet with its own dockerd).
NODE = ["--set", "invoker.engine=node"]
# "monitoring": ServiceMonitors for the Prometheus Operator (opt-in: they need its CRDs).
MONITORING = ["--set", "metrics.serviceMonitor.enabled=true"]
VALUE_SETS: dict[str, list[str]] = {"default": [], "production": ["-f", str(PROD)], "external": EXTERNAL,
                                    "node": NODE, "monitoring": MONITORING}
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

@pytest.mark.parametrize("values", ["default", "production", "monitoring"])
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
        if d["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # the operator's CRDs: no schema here (test_service_monitors checks them)
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
                       ("StatefulSet", "invoker"), ("Ingress", "api"), ("Service", "api")]:
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


def test_invoker_daemonset_uses_the_node_docker(helm: str, rendered: dict[str, list[Doc]]) -> None:
    assert not find(rendered["node"], "StatefulSet", "invoker")
    ds = one(rendered["node"], "DaemonSet", "invoker")
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
    prod = pod_spec(one(render(helm, "-f", str(PROD), *NODE), "DaemonSet", "invoker"))
    env = {e["name"]: e.get("value") for e in prod["containers"][0]["env"]}
    assert json.loads(env["INVOKER_NODE_IDS"]) == {"worker-1": 0, "worker-2": 1, "worker-3": 2}


def test_invoker_pod_engine_needs_nothing_from_the_node(rendered: dict[str, list[Doc]]) -> None:
    """engine=pod (default): a StatefulSet whose pods run their own dockerd; no hostPath, no node socket."""
    docs = rendered["default"]
    assert not find(docs, "DaemonSet")
    sts = one(docs, "StatefulSet", "invoker")
    assert sts["spec"]["replicas"] == 1 and sts["spec"]["podManagementPolicy"] == "Parallel"
    assert one(docs, "Service", "invoker")["spec"]["clusterIP"] == "None"
    assert sts["spec"]["serviceName"] == one(docs, "Service", "invoker")["metadata"]["name"]
    spec = pod_spec(sts)
    assert all("hostPath" not in v for v in spec["volumes"]), spec["volumes"]
    assert not spec.get("hostNetwork") and not spec.get("hostPID")
    c = {x["name"]: x for x in spec["containers"]}
    assert set(c) == {"engine", "invoker", "api-relay"}
    engine, invoker, relay = c["engine"], c["invoker"], c["api-relay"]
    assert engine["image"] == invoker["image"] == "streamwhisk/invoker-engine:0.1.0"
    assert relay["image"] == "streamwhisk/streamwhisk:0.1.0"
    # Only the engine is privileged; the invoker gets what its socket dirs and the action wall need.
    assert engine["securityContext"]["privileged"] is True
    assert "privileged" not in invoker["securityContext"] and "privileged" not in relay["securityContext"]
    assert set(invoker["securityContext"]["capabilities"]["add"]) == {"CHOWN", "FOWNER", "DAC_OVERRIDE", "NET_ADMIN",
                                                                      "NET_RAW"}
    assert relay["securityContext"]["runAsUser"] == 65534
    assert relay["securityContext"]["capabilities"]["drop"] == ["ALL"]
    # The engine's memory limit covers the actions it runs (they live in its cgroup).
    assert engine["resources"]["limits"]["memory"] == "2560Mi"
    mounts = {n: {m["name"]: m for m in x["volumeMounts"]} for n, x in c.items()}
    volumes = {v["name"]: v for v in spec["volumes"]}
    for shared in ("engine-run", "sockets", "engine-data"):
        assert "emptyDir" in volumes[shared]
        # dockerd bind-mounts socket dirs by its own path: both containers must see them at the same one.
        assert mounts["engine"][shared]["mountPath"] == mounts["invoker"][shared]["mountPath"], shared
    assert mounts["invoker"]["engine-data"]["readOnly"] is True
    assert mounts["invoker"]["sockets"]["mountPath"] == "/run/streamwhisk"
    env = {e["name"]: e.get("value") for e in invoker["env"]}
    assert env["DOCKER_HOST"] == "unix:///run/engine/docker.sock"
    assert env["WSK_ACTION_DENY"] == "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16"  # networkPolicy.clusterCIDRs
    assert "POD_NAME" in env and "NODE_NAME" not in env  # invoker id = StatefulSet ordinal
    assert "images-loaded" in invoker["args"][0] and "python3 -m invoker --id" in invoker["args"][0]
    renv = {e["name"]: e.get("value") for e in relay["env"]}
    assert renv["RELAY_UPSTREAM"] == "sw-streamwhisk-api.sw.svc:80"
    assert renv["RELAY_LISTEN"] == f"0.0.0.0:{env['WSK_NGINX_PORT']}"  # the gateway port the wall lets actions reach
    eenv = {e["name"]: e.get("value") for e in engine["env"]}
    assert eenv["ENGINE_ACTION_SUBNET"] == "172.31.254.0/24"
    assert not spec.get("initContainers") or all(ic["name"] != "runtime-images" for ic in spec["initContainers"])
    pdb = one(docs, "PodDisruptionBudget", "invoker")
    assert pdb["spec"]["selector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
    # Production's registry carries over to the engine image.
    prod = {x["name"]: x for x in pod_spec(one(rendered["production"], "StatefulSet", "invoker"))["containers"]}
    assert prod["engine"]["image"] == "registry.example.com/streamwhisk/invoker-engine:0.1.0"


def test_invoker_pod_engine_values(helm: str) -> None:
    docs = render(helm, "--set", "invoker.replicas=2", "--set", "invoker.engineImage=reg.example/eng:1",
                  "--set", "invoker.userMemoryMB=1024", "--set", "invoker.actionDNS={9.9.9.9,1.1.1.1}")
    sts = one(docs, "StatefulSet", "invoker")
    assert sts["spec"]["replicas"] == 2
    c = {x["name"]: x for x in pod_spec(sts)["containers"]}
    assert c["engine"]["image"] == c["invoker"]["image"] == "reg.example/eng:1"
    assert c["engine"]["resources"]["limits"]["memory"] == "1536Mi"
    assert {e["name"]: e.get("value") for e in c["engine"]["env"]}["ENGINE_DNS"] == "9.9.9.9 1.1.1.1"
    for bad, message in [(["--set", "invoker.engine=host"], "invoker.engine"),
                         (["--set", "invoker.replicas=17"], "invoker.replicas must be 1..16"),
                         (["--set", "images.streamwhisk=my/app:1"], "invoker.engineImage is required")]:
        res = run_helm(helm, "template", "sw", str(CHART), "--kube-version", KUBE_VERSION, *bad)
        assert res.returncode != 0 and message in res.stderr, (bad, res.stderr)


def test_k8s_init_invoker_id_from_the_ordinal() -> None:
    script = str(CHART / "files" / "k8s_init.py")
    env = {k: v for k, v in os.environ.items() if k != "NODE_NAME"}
    for pod, want in [("sw-streamwhisk-invoker-0", "0"), ("sw-streamwhisk-invoker-11", "11")]:
        res = subprocess.run([sys.executable, script, "invoker-id"], env={**env, "POD_NAME": pod},
                             capture_output=True, text=True, timeout=30)
        assert res.stdout.strip() == want, res.stderr
    res = subprocess.run([sys.executable, script, "invoker-id"], env={**env, "POD_NAME": "x-invoker-16"},
                         capture_output=True, text=True, timeout=30)
    assert res.returncode != 0 and "0..15" in res.stderr


def test_k8s_init_api_relay_forwards_both_ways() -> None:
    """The relay actions use to reach the API in an engine=pod invoker: bytes both ways, half-close passed on."""
    with socket.socket() as up:
        up.bind(("127.0.0.1", 0))
        up.listen()
        relay_port = free_port()
        proc = subprocess.Popen([sys.executable, str(CHART / "files" / "k8s_init.py"), "api-relay"], env={
            **os.environ, "RELAY_LISTEN": f"127.0.0.1:{relay_port}",
            "RELAY_UPSTREAM": f"127.0.0.1:{up.getsockname()[1]}"}, stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None and "api-relay:" in proc.stdout.readline()
            with socket.create_connection(("127.0.0.1", relay_port), timeout=10) as client:
                conn, _ = up.accept()
                with conn:
                    payload = os.urandom(1 << 20)
                    client.sendall(payload)
                    client.shutdown(socket.SHUT_WR)
                    got = b""
                    conn.settimeout(10)
                    while chunk := conn.recv(65536):
                        got += chunk
                    assert got == payload
                    conn.sendall(b"pong")
                    conn.shutdown(socket.SHUT_WR)
                    client.settimeout(10)
                    assert client.recv(16) == b"pong"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


@pytest.mark.parametrize("values", ["default", "production"])
def test_invoker_network_policy_bounds_the_pod(rendered: dict[str, list[Doc]], values: str) -> None:
    docs = rendered[values]
    policy = one(docs, "NetworkPolicy", "invoker")
    assert policy["spec"]["podSelector"]["matchLabels"] == \
        one(docs, "StatefulSet", "invoker")["spec"]["selector"]["matchLabels"]
    assert [p["port"] for r in policy["spec"]["ingress"] for p in r["ports"]] == [9095]
    if values == "production":  # an external CouchDB: addresses unknown, egress left open
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        return
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    # Pods only by component and port; everything else only outside the cluster's CIDRs.
    for rule in policy["spec"]["egress"]:
        for peer in rule["to"]:
            if "ipBlock" in peer:
                assert peer["ipBlock"]["except"] == ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
                assert "ports" not in rule
            else:
                assert peer["podSelector"]["matchLabels"], rule
                assert rule["ports"], rule
    pods = {p["podSelector"]["matchLabels"].get("app.kubernetes.io/component"): r["ports"][0]["port"]
            for r in policy["spec"]["egress"] for p in r["to"] if "podSelector" in p and "namespaceSelector" not in p}
    assert pods == {"kafka": 9092, "couchdb": 5984, "api": 8080}
    assert not find(rendered["node"], "NetworkPolicy", "invoker")


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
    # Neither Kafka nor CouchDB in the cluster: the only StatefulSet left is the invokers' (engine=pod).
    assert [d["metadata"]["name"] for d in find(rendered["external"], "StatefulSet")] == ["sw-streamwhisk-invoker"]
    assert not find(rendered["external"], "NetworkPolicy", "kafka")


# ---------------------------------------------------------------- metrics: scraping, ServiceMonitors, dashboards

METRICS_PARTS = {"api", "streams", "projections", "feeds", "invoker"}  # the pods serving /metrics
DASHBOARDS = sorted((CHART / "files" / "dashboards").glob("*.json"))


def _metrics_pods(docs: list[Doc]) -> list[Doc]:
    return [w for w in workloads(docs) if w["metadata"]["labels"]["app.kubernetes.io/component"] in METRICS_PARTS]


@pytest.mark.parametrize("values", list(VALUE_SETS))
def test_every_streamwhisk_pod_serves_metrics_on_9095(rendered: dict[str, list[Doc]], values: str) -> None:
    docs = rendered[values]
    pods = _metrics_pods(docs)
    assert {w["metadata"]["labels"]["app.kubernetes.io/component"] for w in pods} == METRICS_PARTS
    for w in workloads(docs):
        part = w["metadata"]["labels"]["app.kubernetes.io/component"]
        notes = w["spec"]["template"]["metadata"].get("annotations", {})
        containers = pod_spec(w)["containers"]
        with_port = [c["name"] for c in containers for p in c.get("ports", []) if p["containerPort"] == 9095]
        if part not in METRICS_PARTS:  # Kafka, CouchDB, Connect: no /metrics of ours
            assert "prometheus.io/scrape" not in notes and not with_port, w["metadata"]["name"]
            continue
        assert {k: v for k, v in notes.items() if k.startswith("prometheus.io/")} == {
            "prometheus.io/scrape": "true", "prometheus.io/port": "9095", "prometheus.io/path": "/metrics"}, part
        assert with_port == [part], f"{part}: port 9095 on {with_port}"  # the component's own container only
        c = next(c for c in containers if c["name"] == part)
        assert {"name": "metrics", "containerPort": 9095, "protocol": "TCP"} in c["ports"]
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert (env["WSK_METRICS_PORT"], env["WSK_METRICS_HOST"]) == ("9095", "0.0.0.0"), part


def test_metrics_off_leaves_no_trace(helm: str) -> None:
    docs = render(helm, "--set", "metrics.enabled=false", "--set", "metrics.serviceMonitor.enabled=true")
    text = json.dumps(docs)
    for word in ("prometheus.io/", "WSK_METRICS_PORT", "ServiceMonitor", "grafana_dashboard"):
        assert word not in text, word
    api = one(docs, "NetworkPolicy", "api")
    assert [p["port"] for r in api["spec"]["ingress"] for p in r["ports"]] == [8080]


def _relabel(labels: dict[str, str], configs: list[Doc]) -> dict[str, str] | None:
    """Prometheus relabeling (the keep/drop/replace subset), for the chart's scrape job."""
    out = dict(labels)
    for c in configs:
        action = c.get("action", "replace")
        value = c.get("separator", ";").join(out.get(s, "") for s in c.get("source_labels", []))
        m = re.fullmatch(c.get("regex", "(.*)"), value)  # Prometheus anchors the regex
        if (action == "keep" and not m) or (action == "drop" and m):
            return None
        if action == "replace" and m:
            new = m.expand(re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", c.get("replacement", "$1")))
            if new:
                out[c["target_label"]] = new
        assert action in ("keep", "drop", "replace"), action
    return out


def _pod_targets(docs: list[Doc], release_ns: str = "sw") -> list[dict[str, str]]:
    """What Kubernetes service discovery (role: pod) offers for these pod templates: one target per declared
    container port, one per container without ports."""
    def clean(name: str) -> str:
        return re.sub(r"[^a-zA-Z0-9_]", "_", name)

    targets = []
    for i, w in enumerate(workloads(docs)):
        meta = w["spec"]["template"]["metadata"]
        base = {"__meta_kubernetes_namespace": release_ns, "__meta_kubernetes_pod_name": f"{w['metadata']['name']}-0"}
        base |= {f"__meta_kubernetes_pod_label_{clean(k)}": v for k, v in meta["labels"].items()}
        base |= {f"__meta_kubernetes_pod_annotation_{clean(k)}": v for k, v in meta.get("annotations", {}).items()}
        for c in pod_spec(w)["containers"]:
            for p in c.get("ports") or [None]:
                t = dict(base, __address__=f"10.1.0.{i}" + (f":{p['containerPort']}" if p else ""),
                         __meta_kubernetes_pod_container_name=c["name"], __metrics_path__="/metrics")
                if p:
                    t["__meta_kubernetes_pod_container_port_name"] = p.get("name", "")
                targets.append(t)
    return targets


@pytest.mark.parametrize("values", ["default", "node"])
def test_scrape_config_finds_one_target_per_streamwhisk_pod(rendered: dict[str, list[Doc]], values: str) -> None:
    import yaml

    from contracts.metric_names import TARGET_LABELS

    docs = rendered[values]
    snippet = yaml.safe_load(one(docs, "ConfigMap", "prometheus")["data"]["scrape-configs.yaml"])
    (job,) = snippet
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["sw"]}}]
    assert job["honor_labels"] is True  # the activation metrics' own `namespace` label wins
    targets = [t for t in (_relabel(t, job["relabel_configs"]) for t in _pod_targets(docs)) if t]
    by_part = {t["streamwhisk_component"]: t for t in targets}
    assert len(targets) == len(by_part) and set(by_part) == METRICS_PARTS, [t["__address__"] for t in targets]
    for part, t in by_part.items():
        assert t["__address__"].endswith(":9095") and t["__metrics_path__"] == "/metrics", part
        assert t["kubernetes_namespace"] == "sw" and t["kubernetes_pod_name"].startswith(f"sw-streamwhisk-{part}")
        assert "namespace" not in t  # the OpenWhisk namespace label's name
        assert {k for k in t if not k.startswith("__")} == set(TARGET_LABELS) - {"job", "instance"}
    # Another release's pods in the namespace are not this job's.
    other = [dict(t, __meta_kubernetes_pod_label_app_kubernetes_io_instance="other") for t in _pod_targets(docs)]
    assert not [t for t in other if _relabel(t, job["relabel_configs"])]


def test_service_monitors(rendered: dict[str, list[Doc]]) -> None:
    from contracts.metric_names import TARGET_LABELS

    assert not find(rendered["default"], "ServiceMonitor")  # needs the operator's CRD: opt-in
    docs = rendered["monitoring"]
    monitors = find(docs, "ServiceMonitor")
    assert {m["metadata"]["labels"]["app.kubernetes.io/component"] for m in monitors} == METRICS_PARTS
    assert len(monitors) == len(METRICS_PARTS)
    for m in monitors:
        part = m["metadata"]["labels"]["app.kubernetes.io/component"]
        assert m["apiVersion"] == "monitoring.coreos.com/v1"
        assert set(m["spec"]) == {"namespaceSelector", "selector", "endpoints"}
        assert m["spec"]["namespaceSelector"] == {"matchNames": ["sw"]}
        want = m["spec"]["selector"]["matchLabels"]
        services = [s for s in find(docs, "Service") if want.items() <= s["metadata"]["labels"].items()]
        assert len(services) == 1, f"{part}: {len(services)} Services selected"
        svc = services[0]["spec"]
        assert svc["clusterIP"] == "None"
        assert svc["ports"] == [{"name": "metrics", "port": 9095, "targetPort": "metrics", "protocol": "TCP"}]
        (pods,) = [w for w in workloads(docs) if w["metadata"]["labels"]["app.kubernetes.io/component"] == part]
        assert svc["selector"].items() <= pods["spec"]["template"]["metadata"]["labels"].items()
        assert any(p.get("name") == "metrics" for c in pod_spec(pods)["containers"] for p in c.get("ports", []))
        (ep,) = m["spec"]["endpoints"]
        assert (ep["port"], ep["path"], ep["interval"], ep["scrapeTimeout"]) == ("metrics", "/metrics", "30s", "10s")
        assert ep["honorLabels"] is True
        assert {r["targetLabel"] for r in ep["relabelings"]} == set(TARGET_LABELS) - {"job", "instance"}
        assert all(set(r) == {"sourceLabels", "targetLabel"} and r["sourceLabels"][0].startswith("__meta_kubernetes_")
                   for r in ep["relabelings"])
    # The metrics Services are only for the monitors: none without them.
    assert not [s for s in find(rendered["default"], "Service") if s["metadata"]["name"].endswith("-metrics")]


def test_service_monitor_labels(helm: str) -> None:
    docs = render(helm, "--set", "metrics.serviceMonitor.enabled=true",
                  "--set", "metrics.serviceMonitor.labels.release=kube-prometheus-stack")
    assert all(m["metadata"]["labels"]["release"] == "kube-prometheus-stack" for m in find(docs, "ServiceMonitor"))


@pytest.mark.parametrize("values", list(VALUE_SETS))
def test_dashboard_configmaps_hold_the_files(rendered: dict[str, list[Doc]], values: str) -> None:
    assert len(DASHBOARDS) >= 2
    maps = {d["metadata"]["name"]: d for d in find(rendered[values], "ConfigMap", "dashboards")}
    assert set(maps) == {f"sw-streamwhisk-dashboard-{p.stem}" for p in DASHBOARDS}
    for path in DASHBOARDS:
        cm = maps[f"sw-streamwhisk-dashboard-{path.stem}"]
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["annotations"] == {"grafana_folder": "Streamwhisk"}
        assert "namespace" not in cm["metadata"]
        assert list(cm["data"]) == [path.name]
        assert cm["data"][path.name] == path.read_text().rstrip("\n")
        assert json.loads(cm["data"][path.name]) == json.loads(path.read_text())


def test_dashboard_configmap_options(helm: str) -> None:
    docs = render(helm, "--set", "metrics.dashboards.namespace=monitoring", "--set", "metrics.dashboards.folder=",
                  "--set", "metrics.dashboards.label=my_dashboards", "--set", "metrics.dashboards.labelValue=yes")
    maps = find(docs, "ConfigMap", "dashboards")
    assert len(maps) == len(DASHBOARDS)
    for cm in maps:
        assert cm["metadata"]["namespace"] == "monitoring" and "annotations" not in cm["metadata"]
        labels = cm["metadata"]["labels"]
        assert labels["my_dashboards"] == "yes" and "grafana_dashboard" not in labels
    assert not find(render(helm, "--set", "metrics.dashboards.enabled=false", "--set",
                           "metrics.scrapeConfig.enabled=false"), "ConfigMap", "dashboards")


def _admits_port(policy: Doc, port: int) -> list[Doc]:
    """The ingress rules of a policy that let TCP `port` in (from whichever peers they name)."""
    return [r for r in policy["spec"].get("ingress", [])
            if "ports" not in r or any(p["port"] == port and p.get("protocol", "TCP") == "TCP" for p in r["ports"])]


@pytest.mark.parametrize("values", list(VALUE_SETS))
def test_network_policies_let_scrapers_reach_metrics(rendered: dict[str, list[Doc]], values: str) -> None:
    docs = rendered[values]
    for w in _metrics_pods(docs):  # every policy that closes a metrics pod opens 9095
        labels = w["spec"]["template"]["metadata"]["labels"]
        for policy in find(docs, "NetworkPolicy"):
            if "Ingress" in policy["spec"]["policyTypes"] and \
                    policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items():
                assert _admits_port(policy, 9095), f"{policy['metadata']['name']} shuts {w['metadata']['name']}"
    api = one(docs, "NetworkPolicy", "api")
    (rule,) = [r for r in api["spec"]["ingress"] if [p["port"] for p in r["ports"]] == [9095]]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    # The scrapers get the metrics port only, not the API.
    assert rule not in _admits_port(api, 8080)


def test_network_policy_scrape_from_is_configurable(helm: str) -> None:
    peers = [{"namespaceSelector": {"matchLabels": {"team": "obs"}},
              "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]
    docs = render(helm, "--set-json", f"metrics.scrapeFrom={json.dumps(peers)}", "--set", "metrics.port=9100")
    api = one(docs, "NetworkPolicy", "api")
    (rule,) = [r for r in api["spec"]["ingress"] if [p["port"] for p in r["ports"]] == [9100]]
    assert rule["from"] == peers
    helmtools.validate(api, KUBE_VERSION)
    env = {e["name"]: e.get("value") for e in pod_spec(one(docs, "Deployment", "api"))["containers"][0]["env"]}
    assert env["WSK_METRICS_PORT"] == "9100"


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


# ---------------------------------------------------------------- engine=pod: the invoker pod, simulated on Docker

# Every capability but CAP_SYS_RESOURCE: this machine's processes lack it, so Docker 20.10's --privileged (which asks
# for all of them) fails here; containerd's privileged containers take the current set instead.
ENGINE_CAPS = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
               "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
               "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
               "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
               "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ"]
PROBE = """import json, socket, urllib.request
out = {}
for name, host, port in json.loads(TARGETS):
    try:
        socket.create_connection((host, port), timeout=3).close()
        out[name] = "connected"
    except OSError as e:
        out[name] = type(e).__name__
try:
    out["api via relay"] = urllib.request.urlopen(API + "/", timeout=5).status
except OSError as e:
    out["api via relay"] = repr(e)
print(json.dumps(out))
"""


def test_engine_pod_walls_actions_off(images: str, rendered: dict[str, list[Doc]]) -> None:
    """The engine=pod invoker pod on this host's Docker: the engine container (dockerd, runtime images loaded from
    the image), the invoker's network.ensure with only NET_ADMIN/NET_RAW in the shared network namespace, the API
    relay. An action on the inner action network reaches the API through the relay and nothing else: not a
    "platform" container on another network, not the pod's own address, not the metadata range."""
    import uuid

    res = subprocess.run(["bash", str(REPO / "dockerfiles" / "build.sh"), images, "engine"], capture_output=True,
                         text=True, timeout=1200, env={**os.environ, "PYTHON": sys.executable})
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    engine_image = f"streamwhisk/invoker-engine:{images}"
    spec = pod_spec(one(rendered["default"], "StatefulSet", "invoker"))
    c = {x["name"]: x for x in spec["containers"]}
    env = {e["name"]: e.get("value") for e in c["invoker"]["env"] if "value" in e}
    tag = uuid.uuid4().hex[:6]
    pod, relay, target, prefix = f"swpod-{tag}", f"swpod-{tag}-relay", f"swpod-{tag}-target", f"sim{tag}"
    d = Path(tempfile.mkdtemp(prefix="swpod-"))
    dirs = {n: d / n for n in ("run", "data", "sockets")}
    for p in dirs.values():
        p.mkdir()
    script = d / "k8s_init.py"
    script.write_text(one(rendered["default"], "ConfigMap", "scripts")["data"]["k8s_init.py"] + "\n")
    script.chmod(0o644)
    d.chmod(0o755)
    inner = ["docker", "-H", f"unix://{dirs['run']}/docker.sock"]
    try:
        subprocess.run(["docker", "run", "-d", "--name", target, f"streamwhisk/action-python:{images}", "python3", "-m",
                        "http.server", "8000"], check=True, capture_output=True, timeout=60)
        t0 = time.monotonic()
        subprocess.run(["docker", "run", "-d", "--name", pod, *(a for cap in ENGINE_CAPS for a in ("--cap-add", cap)),
                        "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
                        "--security-opt", "systempaths=unconfined", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
                        "-v", f"{dirs['run']}:/run/engine", "-v", f"{dirs['data']}:/var/lib/docker",
                        "-v", f"{dirs['sockets']}:/run/streamwhisk", "--memory", "1536m", engine_image],
                       check=True, capture_output=True, timeout=60)
        while not (dirs["run"] / "images-loaded").exists():
            state = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", pod], capture_output=True,
                                   text=True, timeout=30).stdout.strip()
            logs = subprocess.run(["docker", "logs", pod], capture_output=True, text=True, timeout=30)
            assert state == "true" and time.monotonic() - t0 < 180, (logs.stdout + logs.stderr)[-2000:]
            time.sleep(0.3)
        print(f"engine ready (runtime images loaded) in {time.monotonic() - t0:.1f} s")
        loaded = subprocess.run([*inner, "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True,
                                text=True, timeout=60, check=True).stdout.split()
        assert {"streamwhisk/action-python:latest", "streamwhisk/action-nodejs20:latest"} <= set(loaded)
        ip = {n: subprocess.run(["docker", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", n], capture_output=True,
                                text=True, timeout=30, check=True).stdout.strip() for n in (pod, target)}
        shared = ["--network", f"container:{pod}", "--read-only", "--cap-drop", "ALL"]
        # The invoker container's part: the action network and its wall, with the chart's env and capabilities.
        res = subprocess.run(["docker", "run", "--rm", *shared, "-u", "0",
                              *(a for cap in c["invoker"]["securityContext"]["capabilities"]["add"]
                                for a in ("--cap-add", cap)),
                              "-v", f"{dirs['run']}:/run/engine", "-v", f"{dirs['sockets']}:/run/streamwhisk",
                              *(a for k in ("DOCKER_HOST", "WSK_NGINX_PORT", "WSK_ACTION_DENY", "XTABLES_LOCKFILE")
                                for a in ("-e", f"{k}={env[k]}")), "-e", f"WSK_PREFIX={prefix}",
                              engine_image, "python3", "-c", "from invoker import network; from contracts.settings "
                              "import load; n = network.ensure(load()); print(n.name, n.gateway)"],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr[-2000:]
        net, gateway = res.stdout.split()
        subprocess.run(["docker", "run", "-d", "--name", relay, *shared, "-u", "65534:65534",
                        "-v", f"{script}:/etc/streamwhisk/k8s_init.py:ro", "-e", f"RELAY_UPSTREAM={ip[target]}:8000",
                        "-e", f"RELAY_LISTEN=0.0.0.0:{env['WSK_NGINX_PORT']}", f"streamwhisk/streamwhisk:{images}",
                        "python3", "/etc/streamwhisk/k8s_init.py", "api-relay"], check=True, capture_output=True,
                       timeout=60)
        time.sleep(2)
        targets = [("platform container", ip[target], 8000), ("pod address, relay port", ip[pod], 3233),
                   ("gateway, other port", gateway, 2375), ("metadata", "169.254.169.254", 80),
                   ("host bridge", "172.17.0.1", 2375)]
        code = PROBE.replace("TARGETS", repr(json.dumps(targets))).replace(
            "API", repr(f"http://{gateway}:{env['WSK_NGINX_PORT']}"))
        res = subprocess.run([*inner, "run", "--rm", "--network", net, "--cap-drop", "ALL", "--read-only",
                              "streamwhisk/action-python:latest", "python3", "-c", code],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr[-2000:]
        out = json.loads(res.stdout.strip().splitlines()[-1])
        assert out.pop("api via relay") == 200, out
        assert all(v != "connected" for v in out.values()), out
    finally:
        subprocess.run(["docker", "rm", "-f", pod, relay, target], capture_output=True, timeout=120)
        shutil.rmtree(d, ignore_errors=True)
