"""Two Faust workers share the partitions (issue #7): each namespace's state lives on one worker, the reference
data (subjects, invoker health, shared packages) on both, and when one worker is killed the other takes its
partitions over with their tables, then gives half back when it returns.

The stack has 4 partitions and one namespace per partition, so each worker owns two of the namespaces. With
tables that are not co-partitioned this fails at once: subjects keyed by subject would refuse a namespace that
hashes to the other worker (403), and throttle releases keyed by activation id would land on the wrong worker,
leaking in-flight counts until 429."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

from cli import services
from contracts import bus
from contracts.settings import Settings
from contracts.topics import Topics
from tests.chaos import faults
from tests.stack import Client, Stack, start_stack

pytestmark = pytest.mark.integration

PARTITIONS = 4
LIMITS = {"concurrentInvocations": 2, "invocationsPerMinute": 10000}
ECHO = "def main(a):\n    return {k: v for k, v in a.items() if not k.startswith('__')}\n"


@pytest.fixture(scope="module")
def two_workers(infra: Settings) -> Iterator[Stack]:
    s = start_stack(infra, invokers=2, partitions=PARTITIONS, streams_workers=2)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def tenants(two_workers: Stack) -> dict[str, Client]:
    """A subject per namespace, each namespace on its own partition; subject names differ from namespaces (and
    so do their partitions), as users' do."""
    return {ns: two_workers.client(two_workers.subject(f"user-of-{ns}", limits=LIMITS, namespace=ns))
            for ns in faults.namespaces(two_workers.settings.prefix, PARTITIONS)}


def invoke(c: Client, action: str, i: int, timeout: float = 60) -> Any:
    """A blocking invoke, retried while a partition is moving between workers (202/503 until it has an owner)."""
    deadline = time.monotonic() + timeout
    while True:
        r = c.post(f"actions/{action}", {"i": i}, blocking=True, result=True)
        if r.status_code == 200 or time.monotonic() > deadline:
            return r
        assert r.status_code in (202, 503), (r.status_code, r.text)
        time.sleep(0.5)


def test_both_workers_hold_partitions(two_workers: Stack) -> None:
    split = faults.wait_owners(two_workers.settings, PARTITIONS, 2)
    assert sorted(len(s) for s in split) == [2, 2], split


def test_every_namespace_is_decided_admitted_and_released_on_its_worker(tenants: dict[str, Client]) -> None:
    for c in tenants.values():
        assert c.put("actions/echo", {"exec": {"kind": "python:3", "code": ECHO}}).status_code == 200
        again = c.put("actions/echo", {"exec": {"kind": "python:3", "code": ECHO}})
        assert again.status_code == 409, again.text  # the decider saw its own table
    for ns, c in tenants.items():
        # 3 x the concurrency limit, one after another: each completion must release its namespace's slot.
        for i in range(3 * LIMITS["concurrentInvocations"]):
            r = c.post("actions/echo", {"i": i}, blocking=True, result=True)
            assert r.status_code == 200, (ns, i, r.status_code, r.text)
            assert r.json() == {"i": i}


def test_shared_package_across_workers(two_workers: Stack, tenants: dict[str, Client]) -> None:
    """A package published in a namespace of one worker, bound, sequenced and fired from a namespace of the
    other, right after it was made (the view catches up on a miss)."""
    split = faults.wait_owners(two_workers.settings, PARTITIONS, 2)
    owner, user = (next(ns for ns in tenants if faults.partition_of(ns, PARTITIONS) in part) for part in split)
    o, u = tenants[owner], tenants[user]
    assert o.put("packages/shared", {"publish": True, "parameters": [{"key": "from", "value": owner}]}).ok
    assert o.put("actions/shared/hello", {"exec": {"kind": "python:3", "code": ECHO}}).ok
    r = u.put("packages/bound", {"binding": {"namespace": owner, "name": "shared"}})
    assert r.status_code == 200, r.text
    r = u.put("actions/seq", {"exec": {"kind": "sequence", "components": [f"/{owner}/shared/hello"]}})
    assert r.status_code == 200, r.text
    assert u.post("actions/bound/hello", {"x": 1}, blocking=True, result=True).json() == {"x": 1, "from": owner}
    r = u.post("actions/seq", {"y": 2}, blocking=True, result=True)
    assert r.status_code == 200 and r.json() == {"y": 2, "from": owner}, r.text

    assert u.put("triggers/t", {}).ok
    r = u.put("rules/r", {"trigger": f"/{user}/t", "action": f"/{owner}/shared/hello"})
    assert r.status_code == 200, r.text
    fired = u.post("triggers/t", {"z": 3})
    assert fired.status_code == 202, fired.text
    record = faults.wait_until("trigger record", lambda: _ok(u.get(f"activations/{fired.json()['activationId']}")),
                               30)
    line = record["logs"][0]
    assert '"success":true' in line.replace(" ", ""), line
    aid = line.split('"activationId":"')[1].split('"')[0]
    run = faults.wait_until("rule's activation", lambda: _ok(u.get(f"activations/{aid}")), 30)
    assert run["response"]["result"] == {"z": 3, "from": owner}


def test_survivor_takes_over_and_gives_back(two_workers: Stack, tenants: dict[str, Client]) -> None:
    faults.wait_owners(two_workers.settings, PARTITIONS, 2)
    t_kill = faults.kill9(two_workers.settings, "streams1")
    split = faults.wait_owners(two_workers.settings, PARTITIONS, 1)
    took_over = time.monotonic() - t_kill
    assert split == [set(range(PARTITIONS))]
    for ns, c in tenants.items():
        # Faust may rebalance again while the survivor reads the dead worker's partitions back; a 503 there says
        # "may still be applied", so a client retries, as here (the same PUT is answered 409 either way).
        [again] = faults.wait_until(f"{ns}'s entity service after the takeover", partial(_put_echo, c), 120, every=1)
        assert again.status_code == 409, (ns, again.text)  # the dead worker's entities came back from the log
        for i in range(3 * LIMITS["concurrentInvocations"]):  # so did its throttles: no leaked in-flight count
            r = invoke(c, "echo", i)
            assert r.status_code == 200, (ns, i, r.status_code, r.text)
    faults.restart(two_workers, "streams1")
    back = faults.wait_owners(two_workers.settings, PARTITIONS, 2)
    assert sorted(len(s) for s in back) == [2, 2], back
    for ns, c in tenants.items():
        r = invoke(c, "echo", 99)
        assert r.status_code == 200 and r.json() == {"i": 99}, (ns, r.text)
    faults.report("streams_worker_takeover", {"partitions": PARTITIONS, "takeover_s": round(took_over, 1)})


def _put_echo(c: Client) -> list[Any] | None:
    """The answer in a list (a Response of 409 is falsy), or None while the entity service did not answer."""
    r = c.put("actions/echo", {"exec": {"kind": "python:3", "code": ECHO}})
    return None if r.status_code == 503 and "did not answer in time" in r.text else [r]


def _ok(r: Any) -> dict[str, Any] | None:
    return dict(r.json()) if r.status_code == 200 else None


def test_worker_refuses_topics_of_another_partition_count(infra: Settings) -> None:
    """Topics are made once; a worker told another count must stop, not split namespaces from their tables."""
    s = dataclasses.replace(infra, prefix=f"t{uuid.uuid4().hex[:8]}", partitions=2)
    asyncio.run(bus.ensure_topics(s.kafka, [Topics(s.prefix).invocations], 1))
    run = subprocess.run([sys.executable, "-m", "streams"], env=services.settings_env(s), cwd=services.REPO,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert "WSK_PARTITIONS is 2" in run.stderr and f"'{s.prefix}.invocations': 1" in run.stderr, run.stderr[-500:]
