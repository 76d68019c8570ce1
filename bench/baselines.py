"""Baselines measured in the same run: the warm container alone, bare Kafka, bare docker run."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from bench.stats import summary
from contracts import bus
from contracts.settings import Settings
from invoker.containers import SENTINEL, ContainerSpec, DockerDriver

DOCKER_ROOT = "/var/lib/docker"
_offsets: dict[str, int] = {}
IMAGE = "streamwhisk/action-python:latest"
CODE = "def main(args):\n    return {'x': args.get('x')}\n"


async def direct_container(runs: int, socket_root: Path) -> dict[str, Any]:
    """What the warm container itself costs: /run over the unix socket, and /run + the invoker's log collection."""
    d = DockerDriver(socket_root)
    out: dict[str, Any] = {}
    try:
        t0 = time.monotonic()
        c = await d.start(ContainerSpec(IMAGE, f"swbench_{uuid.uuid4().hex[:12]}"))
        out["start_to_ready_ms"] = (time.monotonic() - t0) * 1000
        r = await d.init(c, {"value": {"name": "bench", "main": "main", "code": CODE, "binary": False}}, 10)
        assert r.status == 200, r.body
        out["init_ms"] = r.elapsed_ms
        run_only, with_logs = [], []
        payload = {"value": {"x": 1}, "activation_id": "bench", "deadline": str(int(time.time() * 1000) + 60000)}
        for _ in range(runs):
            r = await d.run(c, payload, 10)
            assert r.status == 200, r.body
            run_only.append(r.elapsed_ms)
        for _ in range(max(10, runs // 10)):  # the invoker also waits for the log sentinels after every run
            since = time.time_ns()
            t = time.perf_counter()
            await d.run(c, payload, 10)
            await d.logs(c, since, 10 * 1048576, wait_s=2.0)
            with_logs.append((time.perf_counter() - t) * 1000)
        file_logs = []
        for _ in range(max(10, runs // 10)):  # prototype: read the json-file log directly (as OpenWhisk does)
            t = time.perf_counter()
            await d.run(c, payload, 10)
            await asyncio.to_thread(_file_sentinels, c.id, 2.0)
            file_logs.append((time.perf_counter() - t) * 1000)
        out["run"] = summary(run_only)
        out["run_plus_logs"] = summary(with_logs)
        out["run_plus_file_logs"] = summary(file_logs)
        await d.remove(c)
    finally:
        await d.remove_all("swbench_")
        await d.close()
        await asyncio.to_thread(_rmdir_quiet, socket_root)
    return out


def _rmdir_quiet(path: Path) -> None:
    with contextlib.suppress(OSError):  # only when empty: the driver removed every container's dir
        path.rmdir()


def _file_sentinels(cid: str, wait_s: float) -> None:
    """Tail docker's json-file log until both sentinels of the last activation are in (no docker API call)."""
    path = Path(DOCKER_ROOT) / "containers" / cid / f"{cid}-json.log"
    deadline = time.monotonic() + wait_s
    with open(path, "rb") as f:
        f.seek(_offsets.get(cid, 0))
        seen: set[str] = set()
        while len(seen) < 2 and time.monotonic() < deadline:
            for line in f.readlines():
                if SENTINEL.encode() in line:
                    seen.add(orjson.loads(line)["stream"])
            if len(seen) < 2:
                time.sleep(0.0005)
        _offsets[cid] = f.tell()


async def kafka_round_trip(settings: Settings, n: int) -> dict[str, Any]:
    """Produce one event and consume it back, with the platform's own client settings (contracts/bus.py)."""
    topic = f"{settings.prefix}.benchscratch"
    await bus.ensure_topics(settings.kafka, [topic], 1)
    p = bus.producer(settings.kafka)
    c = bus.consumer(settings.kafka, group=None, from_start=False)
    await p.start()
    await c.start()
    try:
        tps = await bus.partitions(c, topic)
        c.assign(tps)
        await c.seek_to_end(*tps)
        for tp in tps:
            await c.position(tp)
        rtt, acks = [], []
        # an invoker ping's size, raw JSON: no dependence on contracts.events classes (they change)
        ev = orjson.dumps({"type": "bench.ping", "v": 1, "event_id": uuid.uuid4().hex, "at": 0, "invoker": 0,
                           "user_memory_mb": 0, "free_memory_mb": 0, "warm": []})
        for i in range(n + 5):
            t = time.perf_counter()
            fut = await p.send(topic, ev, key=b"k")
            await c.getone()
            got = (time.perf_counter() - t) * 1000
            await fut
            acked = (time.perf_counter() - t) * 1000
            if i >= 5:  # the first few include connection setup
                rtt.append(got)
                acks.append(acked)
        return {"produce_to_consume": summary(rtt), "produce_ack": summary(acks)}
    finally:
        await c.stop()
        await p.stop()


def docker_run(n: int) -> dict[str, Any]:
    """`docker run --rm` of the runtime image doing nothing: the floor of any cold start."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(["docker", "run", "--rm", "--network", "none", IMAGE, "python3", "-c", "pass"],
                       check=True, capture_output=True, timeout=60)
        times.append((time.perf_counter() - t) * 1000)
    return summary(times)


async def driver_start(n: int, socket_root: Path) -> dict[str, Any]:
    """The invoker's own cold path: create + start (hardened) until the proxy socket answers, then remove."""
    d = DockerDriver(socket_root)
    starts, removes = [], []
    try:
        for _ in range(n):
            t = time.perf_counter()
            c = await d.start(ContainerSpec(IMAGE, f"swbench_{uuid.uuid4().hex[:12]}"))
            starts.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            await d.remove(c)
            removes.append((time.perf_counter() - t) * 1000)
    finally:
        await d.remove_all("swbench_")
        await d.close()
        await asyncio.to_thread(_rmdir_quiet, socket_root)
    return {"start_to_ready": summary(starts), "remove": summary(removes)}


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)
