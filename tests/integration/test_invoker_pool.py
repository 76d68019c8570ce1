"""The invoker's container pool on real Docker: warm reuse, pause/unpause, stem cells, reaping, hardening.

Each activation returns its container's hostname (the container id's first 12 characters), which the tests look
up in Docker.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import docker
import docker.errors
import pytest

from tests.stack import Client, Stack

# The invokers of the session's stack inherit these (the stack starts after collection): short idle times so the
# pool's timers can be watched. Pausing after 1 s costs other tests only an unpause (~50 ms) per warm reuse.
os.environ.setdefault("WSK_INVOKER_PAUSE_GRACE_S", "1")
os.environ.setdefault("WSK_INVOKER_IDLE_REMOVE_S", "8")

pytestmark = pytest.mark.integration

HOST = "import socket, time\ndef main(a):\n    time.sleep(a.get('s', 0))\n    return {'host': socket.gethostname()}\n"


@pytest.fixture(scope="module")
def c(stack: Stack) -> Client:
    key = stack.subject(f"pool{uuid.uuid4().hex[:6]}", limits={"invocationsPerMinute": 10000,
                                                               "concurrentInvocations": 100})
    return stack.client(key)


@pytest.fixture(scope="module")
def dock() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    yield client
    client.close()


def put(c: Client, name: str, **extra: Any) -> None:
    r = c.put(f"actions/{name}", {"exec": {"kind": "python:3", "code": HOST}, **extra}, overwrite=True)
    assert r.status_code == 200, r.text


def invoke(c: Client, name: str, **params: Any) -> tuple[str, dict[str, Any]]:
    r = c.post(f"actions/{name}", params, blocking=True)
    assert r.status_code == 200, r.text
    rec = r.json()
    return rec["response"]["result"]["host"], {a["key"]: a["value"] for a in rec["annotations"]}


def state(dock: docker.DockerClient, host: str) -> dict[str, Any] | None:
    try:
        info: dict[str, Any] = dock.api.inspect_container(host)
        return info
    except docker.errors.NotFound:
        return None


def wait_for(pred: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


def test_warm_reuse(c: Client) -> None:
    put(c, "warm")
    host1, a1 = invoke(c, "warm")
    host2, a2 = invoke(c, "warm")
    assert "initTime" in a1 and "initTime" not in a2
    assert host1 == host2
    assert a2["waitTime"] < 1000


def test_pause_after_idle_and_unpause(c: Client, dock: docker.DockerClient) -> None:
    put(c, "pausing")
    host, _ = invoke(c, "pausing")
    assert wait_for(lambda: (state(dock, host) or {}).get("State", {}).get("Paused"), 6), "never paused"
    t0 = time.monotonic()
    again, ann = invoke(c, "pausing")
    assert again == host and "initTime" not in ann  # the paused container served it, unpaused
    assert time.monotonic() - t0 < 2
    st = state(dock, host)
    assert st is not None and st["State"]["Running"] and not st["State"]["Paused"]


def _newest_container_age(dock: docker.DockerClient, prefix: str) -> float:
    created = [
        datetime.fromisoformat(x["Created"][:26].rstrip("Z") + "+00:00").timestamp()
        if isinstance(x["Created"], str) else float(x["Created"])
        for x in dock.api.containers(all=True, filters={"label": "streamwhisk.managed", "name": prefix})
    ]
    return time.time() - max(created, default=0.0)


def test_cold_start_uses_a_prewarmed_stem_cell(c: Client, dock: docker.DockerClient, stack: Stack) -> None:
    name = f"stem{uuid.uuid4().hex[:6]}"
    put(c, name)
    # Let both invokers restock their stem cells after earlier tests: wait until no container is being created.
    assert wait_for(lambda: _newest_container_age(dock, stack.settings.container_prefix) > 2.0, 30)
    before = time.time()
    host, ann = invoke(c, name)
    assert "initTime" in ann and ann["initTime"] < 1000
    st = state(dock, host)
    assert st is not None
    created = datetime.fromisoformat(st["Created"][:26].rstrip("Z") + "+00:00").timestamp()
    assert created < before, "the container was created on the activation's path"
    assert st["Config"]["Labels"]["streamwhisk.kind"] == "python:3"


def test_idle_containers_are_reaped(c: Client, dock: docker.DockerClient) -> None:
    put(c, "reaped")
    host, _ = invoke(c, "reaped")
    assert state(dock, host) is not None
    assert wait_for(lambda: state(dock, host) is None, 20), "idle container not removed"
    _, ann = invoke(c, "reaped")
    assert "initTime" in ann


def test_container_is_hardened(c: Client, dock: docker.DockerClient) -> None:
    put(c, "hard", limits={"memory": 128})
    host, _ = invoke(c, "hard")
    st = state(dock, host)
    assert st is not None
    hc = st["HostConfig"]
    assert hc["Memory"] == 128 * 1048576 and hc["MemorySwap"] == hc["Memory"]  # no swap
    assert hc["CpuShares"] == 1024 * 128 // 2048  # cpu share proportional to memory in the invoker's pool
    assert hc["PidsLimit"] == 1024
    assert hc["CapDrop"] == ["ALL"] or set(hc["CapDrop"]) >= {"NET_RAW", "NET_ADMIN"}
    assert hc["NetworkMode"].startswith("streamwhisk-") and hc["ReadonlyRootfs"] is True  # the walled-off network
    # Writable, exec-able action dir and /tmp, each at most half the memory (invoker/containers.py).
    assert hc["Tmpfs"] == {"/action": "size=64m,mode=1777,exec", "/tmp": "size=64m,mode=1777,exec"}
    assert "no-new-privileges" in hc["SecurityOpt"]
    assert not st["Config"].get("ExposedPorts") and not st["NetworkSettings"].get("Ports")
