"""DockerDriver against the real Docker engine with the locally built python runtime image."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from invoker.containers import ActionContainer, ContainerSpec, DockerDriver
from runtimes.build import ensure_images

pytestmark = pytest.mark.integration

PREFIX = "swtest_"
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z (stdout|stderr): (.*)$")


@pytest.fixture(scope="module")
def image() -> str:
    return ensure_images()["streamwhisk/action-python"]


@pytest.fixture(scope="module")
def socket_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="sw-", dir="/tmp"))  # short: AF_UNIX paths max 108 bytes
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
async def driver(socket_root: Path) -> AsyncIterator[DockerDriver]:
    d = DockerDriver(socket_root)
    yield d
    await d.remove_all(PREFIX)
    await d.close()


async def start(d: DockerDriver, image: str, code: str, memory_mb: int = 256) -> ActionContainer:
    spec = ContainerSpec(image=image, name=PREFIX + uuid.uuid4().hex[:12], memory_mb=memory_mb)
    c = await d.start(spec)
    r = await d.init(c, {"value": {"name": "t", "main": "main", "code": code, "binary": False}}, 10)
    assert r.status == 200, r
    return c


def run_payload(value: dict[str, Any]) -> dict[str, Any]:
    return {"value": value, "namespace": "guest", "action_name": "/guest/t", "activation_id": uuid.uuid4().hex}


HELLO = """
import os, sys
def main(args):
    print("hello", args.get("name"))
    print("warn", os.environ["__OW_NAMESPACE"], file=sys.stderr)
    return {"greeting": "Hi " + args.get("name", "?")}
"""


async def test_init_run_warm_and_logs(driver: DockerDriver, image: str) -> None:
    c = await start(driver, image, HELLO)
    for name in ("Ann", "Bob"):  # second run is warm
        since = time.time_ns()
        r = await driver.run(c, run_payload({"name": name}), 10)
        assert r.status == 200 and json.loads(r.body) == {"greeting": f"Hi {name}"}
        logs = await driver.logs(c, since, 1 << 20)
        assert logs.complete and not logs.truncated
        parsed = [LINE.match(line) for line in logs.lines]
        assert all(parsed), logs.lines
        assert sorted((m.group(2), m.group(3)) for m in parsed if m) == [
            ("stderr", "warn guest"),
            ("stdout", f"hello {name}"),
        ]
    await driver.remove(c)


async def test_log_truncation(driver: DockerDriver, image: str) -> None:
    c = await start(driver, image, "def main(a):\n    for i in range(100):\n        print('x' * 50)\n    return {}\n")
    since = time.time_ns()
    assert (await driver.run(c, run_payload({}), 10)).status == 200
    logs = await driver.logs(c, since, 500)
    assert logs.complete and logs.truncated
    assert len(logs.lines) == 6  # 5 lines of ~88 bytes fit in 500
    assert logs.lines[-1] == "Logs were truncated because the total bytes size exceeds the limit of 500 bytes."
    await driver.remove(c)


async def test_pause_unpause(driver: DockerDriver, image: str) -> None:
    c = await start(driver, image, HELLO)
    await driver.pause(c)
    assert c.paused
    await driver.unpause(c)
    r = await driver.run(c, run_payload({"name": "P"}), 10)
    assert r.status == 200 and json.loads(r.body) == {"greeting": "Hi P"}
    await driver.remove(c)


async def test_timeout(driver: DockerDriver, image: str) -> None:
    c = await start(driver, image, "import time\ndef main(a):\n    time.sleep(5)\n    return {}\n")
    r = await driver.run(c, run_payload({}), 1.0)
    assert r.timed_out and r.status is None
    assert 900 < r.elapsed_ms < 2500
    await driver.remove(c)


async def test_memory_limit(driver: DockerDriver, image: str) -> None:
    code = "def main(a):\n    b = b'x' * (300 << 20)\n    return {'n': len(b)}\n"
    c = await start(driver, image, code, memory_mb=128)
    r = await driver.run(c, run_payload({}), 20)
    assert r.status is None and not r.timed_out  # the proxy (PID 1) is killed, the connection drops
    assert await driver.was_oom_killed(c)
    await driver.remove(c)


async def test_no_network(driver: DockerDriver, image: str) -> None:
    code = """
import socket
def main(a):
    out = {}
    for host, port in (("172.17.0.1", 80), ("1.1.1.1", 53), ("127.0.0.1", 22)):
        try:
            socket.create_connection((host, port), timeout=2).close()
            out[host] = "connected"
        except OSError as ex:
            out[host] = ex.strerror or str(ex)
    out["ifaces"] = [n for _, n in socket.if_nameindex()]
    return out
"""
    c = await start(driver, image, code)
    r = await driver.run(c, run_payload({}), 15)
    assert r.status == 200
    out = json.loads(r.body)
    assert out["172.17.0.1"] == "Network is unreachable"
    assert out["1.1.1.1"] == "Network is unreachable"
    assert out["127.0.0.1"] == "Connection refused"
    assert out["ifaces"] == ["lo"]
    await driver.remove(c)


async def test_hardening_and_remove(driver: DockerDriver, image: str) -> None:
    code = """
import os
def main(a):
    try:
        open("/etc/x", "w")
        ro = False
    except OSError:
        ro = True
    with open("/tmp/ok", "w") as f:
        f.write("fine")
    caps = [l for l in open("/proc/self/status") if l.startswith("CapEff")][0].split()[1]
    return {"ro": ro, "caps": caps, "uid": os.getuid()}
"""
    c = await start(driver, image, code)
    r = await driver.run(c, run_payload({}), 10)
    assert r.status == 200, r
    out = json.loads(r.body)
    assert out["ro"] is True
    assert out["caps"] == "0000000000000000"
    info = docker.from_env().api.inspect_container(c.id)["HostConfig"]
    assert info["NetworkMode"] == "none" and info["Memory"] == info["MemorySwap"] == 256 << 20
    assert info["CpuShares"] == 128 and info["PidsLimit"] == 1024
    assert "no-new-privileges" in info["SecurityOpt"]
    await driver.remove(c)
    assert not Path(c.socket_path).parent.exists()
    with pytest.raises(docker.errors.NotFound):
        docker.from_env().api.inspect_container(c.id)
    r = await driver.run(c, run_payload({}), 1)
    assert r.status is None


async def test_remove_all(driver: DockerDriver, image: str, socket_root: Path) -> None:
    for _ in range(2):
        await driver.start(ContainerSpec(image=image, name=PREFIX + "ra_" + uuid.uuid4().hex[:8]))
    assert await driver.remove_all(PREFIX + "ra_") == 2
    assert not [n for n in os.listdir(socket_root) if n.startswith(PREFIX + "ra_")]
