"""T3: kill -9 a Faust worker (entities, auth, balancer, watchdog) under steady traffic.

The worker's state comes back from the log (the entity log, the partitions' assignments and completions); a
worker re-reads events after its last committed offset (at-least-once), so a decision or an assignment may be
made twice. Entity decisions are idempotent by request; admission does not assign an id twice and the invoker
never runs one twice (invoker/runner.py); we count what happened. With one worker it is restarted; with two, the
other takes the dead one's partitions over first."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import requests

from contracts.settings import Settings
from tests.chaos import faults
from tests.stack import Client, Stack, start_stack

pytestmark = pytest.mark.chaos

LIMITS = {"invocationsPerMinute": 100000, "concurrentInvocations": 1000}
SLEEPY = "import time\ndef main(a):\n    time.sleep(0.5)\n    return {'i': a.get('i')}\n"
PARTITIONS = 4


@dataclass
class Traffic:
    accepted: dict[str, list[str]] = field(default_factory=dict)  # namespace -> activation ids
    ambiguous: list[str] = field(default_factory=list)  # 503 "accepted but not yet admitted": may still run
    failed: list[tuple[int, str]] = field(default_factory=list)
    puts: list[tuple[str, str]] = field(default_factory=list)  # (namespace, action) acknowledged


def under_load(stack: Stack, clients: dict[str, Client], fault: Callable[[], float]) -> dict[str, object]:
    """Invokes (half blocking) from one thread per namespace, plus entity PUTs, while `fault` runs; then check
    that every accepted activation has exactly one execution record and every acknowledged PUT is readable."""
    for c in clients.values():
        faults.put_action(c, "w", SLEEPY)
    out = Traffic(accepted={ns: [] for ns in clients})
    stop = threading.Event()

    def traffic(ns: str, c: Client) -> None:
        i = 0
        while not stop.is_set():
            try:
                r = c.post("actions/w", {"i": i}, blocking=(i % 2 == 0))
            except requests.RequestException as e:
                out.failed.append((0, str(e)))
                continue
            if r.status_code in (200, 202):
                out.accepted[ns].append(r.json()["activationId"])
            elif r.status_code == 503 and "not yet admitted" in r.text:
                out.ambiguous.append(r.headers.get("x-openwhisk-activation-id", ""))
            else:
                out.failed.append((r.status_code, r.text[:200]))
            if i % 3 == 0:
                p = c.put(f"actions/wk{i}", {"exec": {"kind": "python:3", "code": "def main(a): return a"}},
                          overwrite=True)
                if p.status_code == 200:
                    out.puts.append((ns, f"wk{i}"))
            i += 1

    threads = [threading.Thread(target=traffic, args=item) for item in clients.items()]
    for t in threads:
        t.start()
    try:
        time.sleep(4)
        t_kill = fault()

        def all_invoke() -> bool:
            return all(c.post("actions/w", {"probe": 1}, blocking=True, result=True, timeout=5000).status_code == 200
                       for c in clients.values())
        faults.wait_until("every namespace invokes after the fault", all_invoke, 90, every=0.5)
        recovered = time.monotonic() - t_kill
        time.sleep(3)
    finally:
        stop.set()
        for t in threads:
            t.join(90)
    lost: set[str] = set()
    for ns, ids in out.accepted.items():
        found = faults.wait_records(stack, ns, set(ids), 60)
        lost |= set(ids) - set(found)
        assert all(d["response"]["statusCode"] == 0 for d in found.values())
    assert not lost, lost
    assert not out.failed, out.failed[:10]
    runs = Counter(e.activation_id for e in faults.completions(stack.settings) if e.record is not None)
    doubled = [a for ids in out.accepted.values() for a in ids if runs[a] > 1]
    assert not doubled, doubled
    for ns, name in out.puts:
        assert clients[ns].get(f"actions/{name}").status_code == 200
    return {"accepted": sum(len(v) for v in out.accepted.values()), "lost": len(lost),
            "doubled_executions": len(doubled), "ambiguous_503": len(out.ambiguous),
            "other_errors": len(out.failed), "entity_puts": len(out.puts), "recovery_s": round(recovered, 1)}


@pytest.fixture(scope="module")
def wstack(infra: Settings) -> Iterator[Stack]:
    s = start_stack(infra)
    yield s
    s.stop()


def test_kill_faust_worker(wstack: Stack) -> None:
    def fault() -> float:
        t_kill = faults.kill9(wstack.settings, "streams")
        time.sleep(1)
        faults.restart(wstack, "streams")
        return t_kill

    clients = {"wk": wstack.client(wstack.subject("wk", limits=LIMITS))}
    faults.report("faust_worker_kill", under_load(wstack, clients, fault))


def test_kill_one_of_two_faust_workers(infra: Settings) -> None:
    """The survivor takes the dead worker's partitions (after the 10 s session timeout) with their tables; when the
    worker returns they split again. Traffic runs in one namespace per partition, so both workers' are hit."""
    stack = start_stack(infra, partitions=PARTITIONS, streams_workers=2)
    try:
        faults.wait_owners(stack.settings, PARTITIONS, 2)
        clients = {ns: stack.client(stack.subject(f"user-of-{ns}", limits=LIMITS, namespace=ns))
                   for ns in faults.namespaces(stack.settings.prefix, PARTITIONS)}
        takeover: list[float] = []

        def fault() -> float:
            t_kill = faults.kill9(stack.settings, "streams1")
            faults.wait_owners(stack.settings, PARTITIONS, 1)
            takeover.append(time.monotonic() - t_kill)
            faults.restart(stack, "streams1")
            return t_kill

        figures = under_load(stack, clients, fault)
        faults.wait_owners(stack.settings, PARTITIONS, 2)
        faults.report("faust_worker_kill_one_of_two", {**figures, "takeover_s": round(takeover[0], 1)})
    finally:
        stack.stop()
