"""A stack started by `streamwhisk up` (supervisord, as users run it) in a temporary WSK_HOME of its own.

Ports are drawn from 20000-32000 (other tests' free_port() takes the ephemeral range), topics, groups, databases
and containers get a prefix of their own, and the Kafka jars and pouchdb-server of the shared home are linked in,
so nothing is downloaded. Used by tests/chaos/test_self_healing.py and the soak (bench/soak.py).
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from contracts import keys
from contracts.settings import REPO, Settings


def free_ports(n: int) -> list[int]:
    """Ports below the ephemeral range (other tests' free_port() takes those), free now."""
    out: list[int] = []
    while len(out) < n:
        p = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
        if p not in out:
            out.append(p)
    return out


def cli(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def ours(home: Path) -> list[int]:
    """Live processes of this stack: its home in their command line or in their environment."""
    mark, env_mark = str(home).encode(), f"WSK_HOME={home}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            named = mark in (proc / "cmdline").read_bytes() or env_mark in (proc / "environ").read_bytes().split(b"\0")
            if named and (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def wait(what: str, check: Callable[[], Any], timeout: float, every: float = 0.2) -> float:
    """Seconds until check() is true; AssertionError past timeout."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)
    return time.monotonic() - t0


@dataclass
class UpStack:
    home: Path
    env: dict[str, str]
    settings: Settings
    up_output: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.nginx_port}"

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return cli(self.env, *args, timeout=timeout)

    def pid_file(self, part: str) -> Path:
        return self.home / "run" / f"{part}.pid"

    def invoke_ok(self, action: str, n: int, authkey: str = keys.GUEST_KEY, timeout: float = 30) -> bool:
        """A blocking invoke through nginx of an action returning {"<anything>": n} answers with n."""
        url = f"{self.url}/api/v1/namespaces/_/actions/{action}"
        try:
            r = requests.post(url, params={"blocking": "true", "result": "true"}, json={"n": n},
                              auth=tuple(authkey.split(":", 1)), timeout=timeout)  # type: ignore[arg-type]
            return r.status_code == 200 and list(r.json().values()) == [n]
        except (requests.RequestException, ValueError):
            return False

    def down(self) -> list[str]:
        """`down`, then what it left: problems as text (none: an empty list)."""
        problems = []
        down = self.cli("down", timeout=300)
        if down.returncode != 0:
            problems.append(f"down exited {down.returncode}: {down.stdout[-2000:]}{down.stderr[-2000:]}")
        if left := ours(self.home):
            problems.append(f"left running after down: {left}")
        containers = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"name=^/?{self.settings.container_prefix}[0-9]+_"],
            capture_output=True, text=True).stdout.split()
        if containers:
            problems.append(f"action containers left after down: {containers}")
        return problems


def prepare(base: Settings, home: Path, invokers: int = 1, prefix_letter: str = "h") -> UpStack:
    """A fresh WSK_HOME linked to the shared Kafka jars and node modules, with ports and a prefix of its own."""
    (home / "stamps").mkdir(parents=True, exist_ok=True)
    (home / "kafka-libs").symlink_to(base.home / "kafka-libs")
    (home / "node").symlink_to(base.home / "node")
    (home / "stamps" / "kafka-libs.sha256").write_text((base.home / "stamps" / "kafka-libs.sha256").read_text())
    kafka, controller, couch, connect, nginx, api = free_ports(6)
    prefix = f"{prefix_letter}{os.urandom(3).hex()}"
    env = {**os.environ, "WSK_HOME": str(home), "WSK_KAFKA": f"127.0.0.1:{kafka}",
           "WSK_KAFKA_CONTROLLER_PORT": str(controller), "WSK_COUCHDB": f"http://127.0.0.1:{couch}",
           "WSK_CONNECT_PORT": str(connect), "WSK_NGINX_PORT": str(nginx), "WSK_API_PORT": str(api),
           "WSK_PREFIX": prefix, "WSK_INVOKERS": str(invokers), "WSK_STREAMS_WORKERS": "1"}
    settings = Settings(home=home, kafka=env["WSK_KAFKA"], kafka_controller_port=controller,
                        couchdb=env["WSK_COUCHDB"], api_port=api, nginx_port=nginx, connect_port=connect,
                        prefix=prefix, invokers=invokers, streams_workers=1)
    return UpStack(home, env, settings)


def up(stack: UpStack) -> None:
    """`up --no-images` (the images are shared); RuntimeError with its output if it fails."""
    res = stack.cli("up", "--no-images")
    stack.up_output = res.stdout + res.stderr
    if res.returncode != 0:
        raise RuntimeError(f"up exited {res.returncode}:\n{res.stdout[-3000:]}{res.stderr[-3000:]}")
