"""Install the Helm chart into the cluster of deploy/k8s/cluster.py, as tests/k8s/test_chart.py uses it.

Steps (each timed; `python3 -m tests.k8s.chart install` runs them by hand and prints the figures):
1. images: dockerfiles/build.sh (nice -n 15; Docker's cache makes a rebuild quick), then `docker save | ctr import`
   into the cluster's containerd, skipped for an image whose id was already imported there;
2. storage: the cluster's static hostPath volumes (class swk8s-hostpath), released ones wiped (`reclaim-volumes`);
3. `helm install` with deploy/k8s/values-local.yaml (NodePort nginx: no ingress controller is built), which also
   waits for the init jobs (post-install hooks);
4. every pod Ready (kubectl wait), then the API answering through the NodePort.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.settings import REPO

NS = "streamwhisk"
RELEASE = "sw"
TAG = "0.1.0"
NODE_IP = "10.250.0.2"  # deploy/k8s/cluster.py: the host reaches NodePorts and pod IPs through it
CHART = REPO / "helm" / "streamwhisk"
VALUES = REPO / "deploy" / "k8s" / "values-local.yaml"
IMAGES = [f"streamwhisk/{n}:{TAG}" for n in ("streamwhisk", "nginx", "kafka", "couchdb", "invoker-engine")]
STAMP = Path.home() / ".cache" / "streamwhisk-k8s-chart" / "imported.json"
GUEST_KEY = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP"


def log(msg: str) -> None:
    print(f"[chart {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cluster_env() -> dict[str, str]:
    out = subprocess.run([sys.executable, str(REPO / "deploy" / "k8s" / "cluster.py"), "env"], check=True,
                         text=True, capture_output=True).stdout
    return dict(line.removeprefix("export ").partition("=")[::2] for line in out.splitlines() if "=" in line)


@dataclass
class Kube:
    """kubectl and helm against one cluster (tests.k8s.conftest.Cluster gives the same kubeconfig)."""

    kubeconfig: Path
    kubectl_bin: Path
    helm_bin: str = ""

    def kubectl(self, *args: str, check: bool = True, timeout: float = 120,
                input: str | None = None) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([str(self.kubectl_bin), "--kubeconfig", str(self.kubeconfig), *args], text=True,
                           capture_output=True, timeout=timeout, input=input)
        if check and p.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
        return p

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def helm(self, *args: str, timeout: float = 1200, check: bool = True) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([self.helm_bin, "--kubeconfig", str(self.kubeconfig), *args], text=True,
                           capture_output=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed: {(p.stdout + p.stderr)[-3000:]}")
        return p


@dataclass
class Installed:
    kube: Kube
    url: str  # http://NODE:NODEPORT, the chart's nginx
    timings: dict[str, float] = field(default_factory=dict)
    namespace: str = NS
    release: str = RELEASE

    @property
    def api(self) -> str:
        return f"{self.url}/api/v1"

    def name(self, part: str) -> str:
        return f"{self.release}-streamwhisk-{part}"

    def pods(self, part: str) -> list[dict[str, Any]]:
        sel = f"app.kubernetes.io/instance={self.release},app.kubernetes.io/component={part}"
        items: list[dict[str, Any]] = self.kube.json("-n", self.namespace, "get", "pods", "-l", sel)["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def exec(self, target: str, *cmd: str, container: str | None = None, timeout: float = 300,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        c = ["-c", container] if container else []
        return self.kube.kubectl("-n", self.namespace, "exec", target, *c, "--", *cmd, timeout=timeout, check=check)

    def wait_ready(self, timeout: float = 900) -> float:
        """Seconds until every pod of the release is Ready (the hook jobs' pods are gone or Succeeded)."""
        t0 = time.monotonic()
        while True:
            pods = self.kube.json("-n", self.namespace, "get", "pods")["items"]
            waiting = [p["metadata"]["name"] for p in pods if not _ready(p)]
            if pods and not waiting:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"pods not Ready after {timeout:.0f} s: {waiting}\n" + self.describe(waiting))
            time.sleep(2)

    def describe(self, names: list[str]) -> str:
        out = []
        for n in names[:4]:
            d = self.kube.kubectl("-n", self.namespace, "describe", "pod", n, check=False).stdout
            logs = self.kube.kubectl("-n", self.namespace, "logs", n, "--all-containers", "--tail", "20",
                                     check=False)
            out.append(f"--- {n}\n{d[-2500:]}\n{logs.stdout[-2500:]}{logs.stderr[-500:]}")
        return "\n".join(out)


def _ready(pod: dict[str, Any]) -> bool:
    phase = pod["status"].get("phase")
    if phase == "Succeeded":
        return True
    if phase == "Failed" and any(o.get("kind") == "Job" for o in pod["metadata"].get("ownerReferences", [])):
        return True  # a job's failed try (it retries with a new pod; helm install fails if the job does)
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conds = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
    return conds.get("Ready") == "True"


# ---------------------------------------------------------------------------------------------------- images

def build_images() -> float:
    t0 = time.monotonic()
    res = subprocess.run(["nice", "-n", "15", "bash", str(REPO / "dockerfiles" / "build.sh"), TAG], cwd=REPO,
                         capture_output=True, text=True, timeout=5400,
                         env={**os.environ, "PYTHON": str(REPO / ".venv" / "bin" / "python")})
    if res.returncode != 0:
        raise AssertionError(f"dockerfiles/build.sh failed: {(res.stdout + res.stderr)[-3000:]}")
    return time.monotonic() - t0


def _docker_id(image: str) -> str:
    return subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", image], capture_output=True, text=True,
                          check=True, timeout=60).stdout.strip()


def _ctr_digests() -> dict[str, str]:
    sock = Path(os.environ.get("SWK8S_DIR", "/var/lib/streamwhisk-k8s")) / "containerd" / "containerd.sock"
    out = subprocess.run(["ctr", "-a", str(sock), "-n", "k8s.io", "images", "ls"], capture_output=True, text=True,
                         timeout=60).stdout.splitlines()[1:]
    return {cols[0]: cols[2] for cols in (ln.split() for ln in out) if len(cols) >= 3}


def import_images(images: list[str] = IMAGES) -> float:
    """docker save | ctr import, skipping an image already imported with the same docker id and still there."""
    t0 = time.monotonic()
    stamp: dict[str, list[str]] = json.loads(STAMP.read_text()) if STAMP.exists() else {}
    have = _ctr_digests()
    for image in images:
        ref = f"docker.io/{image}"
        did = _docker_id(image)
        if stamp.get(image) == [did, have.get(ref, "")]:
            continue
        t = time.monotonic()
        subprocess.run([sys.executable, str(REPO / "deploy" / "k8s" / "cluster.py"), "import-image", image],
                       check=True, capture_output=True, timeout=1800)
        stamp[image] = [did, _ctr_digests().get(ref, "")]
        log(f"imported {image} in {time.monotonic() - t:.1f} s")
    STAMP.parent.mkdir(parents=True, exist_ok=True)
    STAMP.write_text(json.dumps(stamp, indent=1))
    return time.monotonic() - t0


# ---------------------------------------------------------------------------------------------------- install

def uninstall(kube: Kube, namespace: str = NS) -> None:
    kube.helm("uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "5m", check=False)
    kube.kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=true", timeout=600)


def install(kube: Kube, *sets: str, namespace: str = NS) -> Installed:
    """A fresh install (the previous namespace and its volumes removed first); timings in the result."""
    timings: dict[str, float] = {}
    uninstall(kube, namespace)
    # The cluster's hostPath volumes (class swk8s-hostpath, Retain) the deleted namespace's claims released: wiped and
    # made Available again, so Kafka and CouchDB start from empty disks.
    subprocess.run([sys.executable, str(REPO / "deploy" / "k8s" / "cluster.py"), "reclaim-volumes"], check=True,
                   capture_output=True, timeout=300)
    kube.kubectl("create", "namespace", namespace)
    # The engine containers are privileged: the namespace must allow it where Pod Security admission enforces.
    kube.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=privileged")
    for _ in range(60):  # the default ServiceAccount comes from the controller-manager a moment later
        if kube.kubectl("-n", namespace, "get", "sa", "default", check=False).returncode == 0:
            break
        time.sleep(1)
    t0 = time.monotonic()
    kube.helm("install", RELEASE, str(CHART), "-n", namespace, "-f", str(VALUES), *sets, "--timeout", "15m")
    timings["helm_install_s"] = time.monotonic() - t0  # includes the post-install init jobs
    inst = Installed(kube, "", timings, namespace)
    inst.wait_ready()
    timings["install_to_all_ready_s"] = time.monotonic() - t0
    svc = kube.json("-n", namespace, "get", "svc", inst.name("api"))
    inst.url = f"http://{NODE_IP}:{svc['spec']['ports'][0]['nodePort']}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{inst.url}/ping", timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{inst.url}/ping did not answer")
        time.sleep(1)
    timings["install_to_serving_s"] = time.monotonic() - t0
    return inst


def kube_from_env() -> Kube:
    from cli import helmtools

    env = cluster_env()
    return Kube(Path(env["KUBECONFIG"]), Path(env["PATH"].split(":", 1)[0]) / "kubectl", helmtools.ensure_helm())


def main(argv: list[str]) -> int:
    if argv[1:2] == ["install"]:
        kube = kube_from_env()
        t = {"build_s": build_images(), "import_s": import_images()}
        inst = install(kube, *argv[2:])
        print(json.dumps({**t, **inst.timings, "url": inst.url}, indent=1))
        return 0
    if argv[1:2] == ["uninstall"]:
        uninstall(kube_from_env())
        return 0
    print("usage: python3 -m tests.k8s.chart install [HELM ARGS...] | uninstall", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
