"""The local stack tooling (cli.install / cli.services) against real Kafka, PouchDB Server and nginx.

Runs in a temporary WSK_HOME on free ports, so it does not collide with a stack started by `streamwhisk up`.
Kafka jars and pouchdb-server are reused from the default home when present (hard links / a symlink).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from cli import procs, services, status
from contracts.settings import REPO, Settings, load

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reuse_downloads(shared: Path, home: Path) -> None:
    libs = shared / "kafka-libs"
    if libs.is_dir() and (shared / "stamps" / "kafka-libs.sha256").is_file():
        shutil.copytree(libs, home / "kafka-libs", copy_function=os.link)
        (home / "stamps").mkdir()
        shutil.copy(shared / "stamps" / "kafka-libs.sha256", home / "stamps")
    if (shared / "node" / "node_modules" / ".bin" / "pouchdb-server").exists():
        (home / "node").symlink_to(shared / "node")


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    shared = load().home
    home = tmp_path_factory.mktemp("wsk-home")
    _reuse_downloads(shared, home)
    env = {
        "WSK_HOME": str(home),
        "WSK_KAFKA": f"127.0.0.1:{_free_port()}",
        "WSK_KAFKA_CONTROLLER_PORT": str(_free_port()),
        "WSK_COUCHDB": f"http://127.0.0.1:{_free_port()}",
        "WSK_NGINX_PORT": str(_free_port()),
        "WSK_API_PORT": str(_free_port()),
        "WSK_PREFIX": f"t{uuid.uuid4().hex[:8]}",
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        s = load()
        try:
            yield s
        finally:
            services.stop_all(s, remove_containers=False)


def test_install_is_idempotent(settings: Settings) -> None:
    cmd = [sys.executable, "-m", "cli.main", "install"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert again.returncode == 0
    assert "downloading" not in again.stdout and "installing" not in again.stdout


async def test_kafka_produce_consume(settings: Settings) -> None:
    await asyncio.to_thread(services.start_kafka, settings)
    topic = f"t-{uuid.uuid4().hex}"
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"hello", key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka, auto_offset_reset="earliest",
                                group_id=f"g-{uuid.uuid4().hex}")
    await consumer.start()
    try:
        msg = await consumer.getone()
    finally:
        await consumer.stop()
    assert (msg.key, msg.value) == (b"k", b"hello")


def _couch(settings: Settings, method: str, path: str, body: dict[str, object] | None = None) -> dict[str, object]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{settings.couchdb}/{path}", data=data, method=method, headers={
        "Accept": "application/json", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        result: dict[str, object] = json.loads(resp.read())
        return result


def test_couch_put_get(settings: Settings) -> None:
    services.start_couch(settings)
    db = settings.db("stacktest")
    assert _couch(settings, "PUT", db)["ok"] is True
    assert _couch(settings, "PUT", f"{db}/doc1", {"n": 1})["ok"] is True
    assert _couch(settings, "GET", f"{db}/doc1")["n"] == 1


def test_nginx_renders_and_starts(settings: Settings) -> None:
    services.nginx_test(settings)  # nginx -t -c <home>/nginx/nginx.conf
    conf = (settings.home / "nginx" / "nginx.conf").read_text()
    assert f"listen 127.0.0.1:{settings.nginx_port};" in conf
    assert f"server 127.0.0.1:{settings.api_port};" in conf
    assert "{{" not in conf
    services.start_nginx(settings, api_available=False)
    # No API behind it in this test: nginx itself answers, with its JSON 503 for "API down".
    assert services.http_status(f"http://127.0.0.1:{settings.nginx_port}/api/v1") == 503


def test_second_start_leaves_running_parts_alone(settings: Settings) -> None:
    before = {n: procs.read_pid(services.pid_file(settings, n)) for n in ("kafka", "couchdb", "nginx")}
    lines: list[str] = []
    services.start_kafka(settings, lines.append)
    services.start_couch(settings, lines.append)
    services.start_nginx(settings, lines.append, api_available=False)
    after = {n: procs.read_pid(services.pid_file(settings, n)) for n in before}
    assert before == after and None not in after.values()
    assert all("already running" in line for line in lines), lines
    rows = {r.name: r for r in status.status(settings)}
    assert rows["kafka"].health == "ok" and rows["couchdb"].health == "ok"


def test_stop_all_leaves_nothing_behind(settings: Settings) -> None:
    pids = [procs.read_pid(services.pid_file(settings, n)) for n in ("kafka", "couchdb", "nginx")]
    services.stop_all(settings, remove_containers=False)
    assert not list((settings.home / "run").glob("*.pid"))
    for pid in pids:
        assert pid is not None and procs.wait_exit(pid, 5)
    host, port = services.kafka_hostport(settings)
    assert not services.tcp_open(host, port)
    assert not services.tcp_open(*services.couch_hostport(settings))
    assert not services.tcp_open("127.0.0.1", settings.nginx_port)
