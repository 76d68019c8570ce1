"""The `kubernetes` tests' cluster: deploy/k8s/cluster.py builds (cached) and starts it once, and leaves it up.

These tests run only when asked: `-m kubernetes` (or STREAMWHISK_K8S=1); a fresh build takes half an hour.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from contracts.settings import REPO

CLUSTER = REPO / "deploy" / "k8s" / "cluster.py"


def _asked(config: pytest.Config) -> bool:
    return os.environ.get("STREAMWHISK_K8S") == "1" or "kubernetes" in (config.option.markexpr or "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _asked(config):
        return
    skip = pytest.mark.skip(reason="needs the built cluster: run with -m kubernetes (or STREAMWHISK_K8S=1)")
    for item in items:
        if item.get_closest_marker("kubernetes"):
            item.add_marker(skip)


@dataclass
class Cluster:
    kubeconfig: Path
    bin: Path

    def kubectl(self, *args: str, check: bool = True, timeout: float = 120,
                input: str | None = None) -> subprocess.CompletedProcess[str]:
        """kubectl against the cluster; raises with its stderr when check and it fails."""
        p = subprocess.run([str(self.bin / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args], text=True,
                           capture_output=True, timeout=timeout, input=input)
        if check and p.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}")
        return p

    def import_image(self, *names: str) -> None:
        """docker save | ctr import into the cluster's containerd (pods then use it with imagePullPolicy Never)."""
        subprocess.run([sys.executable, str(CLUSTER), "import-image", *names], check=True, timeout=900)


def _cluster_env() -> dict[str, str]:
    out = subprocess.run([sys.executable, str(CLUSTER), "env"], check=True, text=True, capture_output=True).stdout
    env = {}
    for line in out.splitlines():
        k, _, v = line.removeprefix("export ").partition("=")
        env[k] = v
    return env


@pytest.fixture(scope="session")
def k8s_cluster() -> Iterator[Cluster]:
    # Both steps are idempotent: cached binaries are reused, a running cluster is kept (up only waits for it).
    subprocess.run([sys.executable, str(CLUSTER), "build"], check=True, timeout=5400)
    subprocess.run([sys.executable, str(CLUSTER), "up"], check=True, timeout=900)
    env = _cluster_env()
    yield Cluster(kubeconfig=Path(env["KUBECONFIG"]), bin=Path(env["PATH"].split(":", 1)[0]))
    # Left running on purpose: the chart tests reuse it; `cluster.py down` tears it down.
