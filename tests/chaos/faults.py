"""Helpers for the fault tests: a private Kafka + PouchDB Server, kill -9 and restart of one process, and
a checker that compares accepted activation ids with the records that exist."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import requests

from cli import procs, services
from contracts.settings import Settings
from tests.stack import Client, Stack, free_port

say = services.say


def private_infra(base: Settings) -> Settings:
    """Our own Kafka and PouchDB Server on free ports (the shared ones are never killed): Kafka jars and node
    modules are symlinked from the shared home."""
    home = Path(tempfile.mkdtemp(prefix="sw-chaos-"))
    for sub in ("kafka-libs", "node"):
        (home / sub).symlink_to(base.home / sub)
    s = dataclasses.replace(base, home=home, kafka=f"127.0.0.1:{free_port()}", kafka_controller_port=free_port(),
                            couchdb=f"http://127.0.0.1:{free_port()}")
    services.start_kafka(s, say)
    services.start_couch(s, say)
    return s


def stop_private_infra(s: Settings) -> None:
    services.stop_all(s, say, remove_containers=False)
    shutil.rmtree(s.home, ignore_errors=True)


def pid(settings: Settings, name: str) -> int | None:
    return procs.read_pid(services.pid_file(settings, name))


def kill9(settings: Settings, name: str) -> float:
    """kill -9 one process of a stack; returns the time of the kill (monotonic)."""
    p = pid(settings, name)
    assert p is not None, f"{name} is not running"
    os.kill(p, signal.SIGKILL)
    t = time.monotonic()
    assert procs.wait_exit(p, 10)
    return t


def stop_signal(settings: Settings, name: str, sig: int) -> None:
    p = pid(settings, name)
    assert p is not None, f"{name} is not running"
    os.kill(p, sig)


def restart(stack: Stack, name: str) -> None:
    comp = next(c for c in services.components(stack.settings) if c.name == name)
    services.start_component(stack.settings, comp.name, comp.module, comp.args, say, wait=True, env=stack.env)


def wait_until(what: str, check: Callable[[], Any], timeout: float, every: float = 0.2,
               retry_on: tuple[type[Exception], ...] = (requests.RequestException,)) -> Any:
    """check() until it returns something true; exceptions of retry_on count as not yet."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except retry_on as e:
            last = e
        time.sleep(every)
    raise TimeoutError(f"{what}: not after {timeout:.0f} s (last: {last!r})")


def couch_ids(stack: Stack, db: str) -> set[str]:
    s = stack.settings
    r = requests.get(f"{s.couchdb}/{s.db(db)}/_all_docs", timeout=30)
    r.raise_for_status()
    return {row["id"] for row in r.json()["rows"] if not row["id"].startswith("_design")}


def records(stack: Stack, namespace: str, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The activation docs (CouchDB projection) for the given ids that exist."""
    s = stack.settings
    keys = [f"{namespace}/{i}" for i in ids]
    out: dict[str, dict[str, Any]] = {}
    for k in range(0, len(keys), 200):
        r = requests.post(f"{s.couchdb}/{s.db('activations')}/_all_docs", params={"include_docs": "true"},
                          json={"keys": keys[k:k + 200]}, timeout=30)
        r.raise_for_status()
        for row in r.json()["rows"]:
            if row.get("doc"):
                out[row["doc"]["activationId"]] = row["doc"]
    return out


def wait_records(stack: Stack, namespace: str, ids: set[str], timeout: float) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    found: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        found = records(stack, namespace, ids)
        if len(found) == len(ids):
            break
        time.sleep(0.5)
    return found


def put_action(c: Client, name: str, code: str, **limits: int) -> None:
    body: dict[str, Any] = {"exec": {"kind": "python:3", "code": code}}
    if limits:
        body["limits"] = limits
    r = c.put(f"actions/{name}", body, overwrite=True)
    assert r.status_code == 200, r.text


def timed(fn: Callable[[], requests.Response]) -> tuple[requests.Response | Exception, float]:
    t0 = time.monotonic()
    try:
        return fn(), time.monotonic() - t0
    except requests.RequestException as e:
        return e, time.monotonic() - t0


def report(name: str, figures: dict[str, Any], env: str = "WSK_CHAOS_REPORT") -> None:
    """Figures go to stdout (pytest -s) and to $env (one JSON line per test), for RELIABILITY.md."""
    import json

    line = json.dumps({"test": name, **figures}, sort_keys=True)
    print(f"\n[figures] {line}")
    out = os.environ.get(env)
    if out:
        with open(out, "a") as f:
            f.write(line + "\n")


def completions(settings: Settings, timeout_s: float = 10.0) -> list[Any]:
    """Every ActivationCompleted on the stack's completions topic (to count executions and watchdog closes)."""
    import asyncio

    from contracts import bus, events
    from contracts.events import ActivationCompleted
    from contracts.topics import Topics

    async def read() -> list[Any]:
        c = bus.consumer(settings.kafka, group=None)
        await c.start()
        try:
            tps = await bus.partitions(c, Topics(settings.prefix).completions)
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            ends = await c.end_offsets(tps)
            out: list[Any] = []
            deadline = asyncio.get_running_loop().time() + timeout_s
            while any([await c.position(tp) < ends[tp] for tp in tps]):
                if asyncio.get_running_loop().time() > deadline:
                    break
                for msgs in (await c.getmany(timeout_ms=500)).values():
                    for m in msgs:
                        try:
                            ev = events.decode(m.value)
                        except events.DecodeError:
                            continue
                        if isinstance(ev, ActivationCompleted):
                            out.append(ev)
            return out
        finally:
            await c.stop()

    return asyncio.run(read())


def running_containers(prefix: str) -> int:
    import subprocess

    out = subprocess.run(["docker", "ps", "-q", "--filter", f"name=^/?{prefix}"], capture_output=True, text=True)
    return len(out.stdout.split())


# --- several streams workers ----------------------------------------------------------------------------------


def partition_of(namespace: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as the API's producer) picks for a namespace key."""
    from aiokafka.partitioner import DefaultPartitioner

    return int(DefaultPartitioner()(namespace.encode(), list(range(partitions)), []))


def namespaces(prefix: str, partitions: int) -> list[str]:
    """One namespace name per partition, in partition order."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < partitions:
        found.setdefault(partition_of(f"{prefix}n{i}", partitions), f"{prefix}n{i}")
        i += 1
    return [found[p] for p in range(partitions)]


def owners(settings: Settings) -> list[set[int]]:
    """The partitions of the invocations topic each member of the streams consumer group holds."""
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

    from contracts.topics import Topics

    async def describe() -> list[set[int]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka)
        await admin.start()
        try:
            resp = await admin.describe_consumer_groups([f"{settings.prefix}-streams"])
        finally:
            await admin.close()
        topic = Topics(settings.prefix).invocations
        out = []
        for group in resp[0].groups:
            for member in group[5]:
                asg = ConsumerProtocolMemberAssignment.decode(member[4]) if member[4] else None
                out.append({p for t, ps in (asg.assignment if asg else []) for p in ps if t == topic})
        return out
    return asyncio.run(describe())


def wait_owners(settings: Settings, partitions: int, members: int, timeout: float = 90) -> list[set[int]]:
    """Wait until `members` workers hold all partitions between them, each some; returns their shares."""
    def split() -> list[set[int]] | None:
        got = owners(settings)
        ok = len(got) == members and sorted(p for s in got for p in s) == list(range(partitions))
        return got if ok and all(got) else None
    result: list[set[int]] = wait_until(f"{members} streams worker(s) holding all partitions", split, timeout,
                                        every=1)
    return result
