"""The cluster built by deploy/k8s/cluster.py works: a pod from a local image, Service DNS, NodePort, port-forward."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.k8s.conftest import CLUSTER, Cluster

pytestmark = [pytest.mark.kubernetes, pytest.mark.timeout(5400)]  # setup may include a fresh build

NS = "swk8s-smoke"
NODE_IP = "10.250.0.2"  # the node's address in its own network namespace (deploy/k8s/cluster.py)

MANIFEST = """
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: NS, labels: {app: web}}
spec:
  containers:
  - name: web
    image: IMAGE
    imagePullPolicy: Never
    command: ["python3", "-m", "http.server", "8080", "--bind", "0.0.0.0"]
    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: NS}
spec:
  containers:
  - name: client
    image: IMAGE
    imagePullPolicy: Never
    command: ["sleep", "infinity"]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: NS}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"""


@pytest.fixture(scope="module")
def smoke(k8s_cluster: Cluster) -> Iterator[Cluster]:
    from runtimes.build import ensure_images

    # The Debian-based python runtime image that `up` builds (reused when present).
    image = ensure_images(repos=["streamwhisk/action-python"])["streamwhisk/action-python"]
    k8s_cluster.import_image(image)
    k8s_cluster.kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=true", timeout=180)
    k8s_cluster.kubectl("create", "namespace", NS)
    # The namespace's default ServiceAccount is made by the controller-manager a moment later.
    for _ in range(60):
        if k8s_cluster.kubectl("-n", NS, "get", "sa", "default", check=False).returncode == 0:
            break
        time.sleep(1)
    k8s_cluster.kubectl("apply", "-f", "-", input=MANIFEST.replace("NS", NS).replace("IMAGE", image))
    k8s_cluster.kubectl("-n", NS, "wait", "--for=condition=Ready", "pod/web", "pod/client", "--timeout=180s",
                        timeout=200)
    yield k8s_cluster
    k8s_cluster.kubectl("delete", "namespace", NS, "--wait=false", check=False)


def test_node_and_dns_ready(k8s_cluster: Cluster) -> None:
    nodes = json.loads(k8s_cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert len(nodes) == 1
    ready = {c["type"]: c["status"] for c in nodes[0]["status"]["conditions"]}
    assert ready["Ready"] == "True"
    dns = json.loads(k8s_cluster.kubectl("-n", "kube-system", "get", "deploy", "coredns", "-o", "json").stdout)
    assert dns["status"].get("availableReplicas") == 1


def test_pod_from_local_image_runs(smoke: Cluster) -> None:
    out = smoke.kubectl("-n", NS, "exec", "client", "--", "sh", "-c", "cat /etc/debian_version; id -u").stdout
    assert out.split()[1] == "0" and out.split()[0][0].isdigit()


def test_service_dns_from_another_pod(smoke: Cluster) -> None:
    cluster_ip = smoke.kubectl("-n", NS, "get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}").stdout
    probe = ("import socket,urllib.request;"
             f"print(socket.gethostbyname('web.{NS}.svc.cluster.local'), socket.gethostbyname('web'));"
             "print(urllib.request.urlopen('http://web/', timeout=5).status)")
    # The Service's endpoints reach kube-proxy's rules a moment after the pod is Ready: retry a refused connection.
    deadline = time.monotonic() + 30
    while True:
        try:
            out = smoke.kubectl("-n", NS, "exec", "client", "--", "python3", "-c", probe).stdout.split()
            break
        except AssertionError as e:
            if "Connection refused" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(1)
    assert out == [cluster_ip, cluster_ip, "200"]


def test_nodeport_from_host(smoke: Cluster) -> None:
    port = smoke.kubectl("-n", NS, "get", "svc", "web", "-o", "jsonpath={.spec.ports[0].nodePort}").stdout
    with urllib.request.urlopen(f"http://{NODE_IP}:{port}/", timeout=5) as r:
        assert r.status == 200


def test_port_forward_from_loopback(smoke: Cluster) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pf = subprocess.Popen([str(smoke.bin / "kubectl"), "--kubeconfig", str(smoke.kubeconfig), "-n", NS,
                           "port-forward", "svc/web", f"{port}:80", "--address", "127.0.0.1"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    assert r.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline or pf.poll() is not None:
                    raise
                time.sleep(0.5)
    finally:
        pf.terminate()
        pf.wait(10)


DENY = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-deny, namespace: NS}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
"""
ALLOW = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-allow-clients, namespace: NS}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {matchLabels: {role: client}}}]}]
"""


def _reaches_web(c: Cluster) -> bool:
    probe = "import urllib.request; urllib.request.urlopen('http://web/', timeout=2)"
    return c.kubectl("-n", NS, "exec", "client", "--", "python3", "-c", probe, check=False).returncode == 0


def _until(cond: object, want: bool, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond() == want:  # type: ignore[operator]
            return True
        time.sleep(1)
    return False


def _netpol(*args: str) -> str:
    return subprocess.run([sys.executable, str(CLUSTER), "netpol", *args], check=True, text=True,
                          capture_output=True, timeout=120).stdout


def test_network_policy_enforced(smoke: Cluster) -> None:
    """kube-router's firewall makes the bridge CNI honour NetworkPolicies: deny, then allow by pod label.

    Enforcement is switched on for the test and back off after it if it was off (`cluster.py netpol`)."""
    was_on = "netpol: on" in _netpol()
    if not was_on:
        _netpol("on")
    try:
        assert _reaches_web(smoke)
        smoke.kubectl("apply", "-f", "-", input=DENY.replace("NS", NS))
        assert _until(lambda: _reaches_web(smoke), False), "deny-all ingress policy not enforced"
        smoke.kubectl("apply", "-f", "-", input=ALLOW.replace("NS", NS))
        time.sleep(3)
        assert not _reaches_web(smoke), "a pod without the allowed label got through"
        smoke.kubectl("-n", NS, "label", "pod", "client", "role=client", "--overwrite")
        assert _until(lambda: _reaches_web(smoke), True), "allowed pod still blocked"
    finally:
        smoke.kubectl("-n", NS, "delete", "networkpolicy", "--all", check=False)
        smoke.kubectl("-n", NS, "label", "pod", "client", "role-", check=False)
        if not was_on:
            _netpol("off")
