"""T3: kill -9 the Faust worker (entities, auth, balancer, watchdog) under steady traffic, restart it.

Faust tables come back from their changelog topics; the worker re-reads events after its last committed offset
(at-least-once), so a decision or an assignment may be made twice. Entity decisions are idempotent by request;
the invoker never runs an activation id twice (invoker/runner.py); we count what happened."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import requests

from contracts.settings import Settings
from tests.chaos import faults
from tests.stack import Stack, start_stack

pytestmark = pytest.mark.chaos

LIMITS = {"invocationsPerMinute": 100000, "concurrentInvocations": 1000}


@pytest.fixture(scope="module")
def wstack(infra: Settings) -> Iterator[Stack]:
    s = start_stack(infra)
    yield s
    s.stop()


def test_kill_faust_worker(wstack: Stack) -> None:
    c = wstack.client(wstack.subject("wk", limits=LIMITS))
    faults.put_action(c, "w", "import time\ndef main(a):\n    time.sleep(0.5)\n    return {'i': a.get('i')}\n")
    accepted: list[str] = []
    ambiguous: list[str] = []  # 503 "accepted but not yet admitted": may still run
    failed: list[tuple[int, str]] = []
    puts: list[str] = []
    stop = threading.Event()

    def traffic(k: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                r = c.post("actions/w", {"i": i}, blocking=(i % 2 == 0))
            except requests.RequestException as e:
                failed.append((0, str(e)))
                continue
            if r.status_code in (200, 202):
                accepted.append(r.json()["activationId"])
            elif r.status_code == 503 and "not yet admitted" in r.text:
                ambiguous.append(r.headers.get("x-openwhisk-activation-id", ""))
            else:
                failed.append((r.status_code, r.text[:200]))
            if k == 0 and i % 3 == 0:
                p = c.put(f"actions/wk{i}", {"exec": {"kind": "python:3", "code": "def main(a): return a"}},
                          overwrite=True)
                if p.status_code == 200:
                    puts.append(f"wk{i}")
            i += 1

    threads = [threading.Thread(target=traffic, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(4)
        t_kill = faults.kill9(wstack.settings, "streams")
        time.sleep(1)
        faults.restart(wstack, "streams")

        def invokes() -> bool:
            r = c.post("actions/w", {"probe": 1}, blocking=True, result=True, timeout=5000)
            return r.status_code == 200
        faults.wait_until("invoke after worker restart", invokes, 90, every=0.5)
        recovered = time.monotonic() - t_kill
        time.sleep(3)
    finally:
        stop.set()
        for t in threads:
            t.join(90)
    found = faults.wait_records(wstack, "wk", set(accepted), 60)
    lost = set(accepted) - set(found)
    assert not lost, lost
    assert all(d["response"]["statusCode"] == 0 for d in found.values())
    assert not failed, failed[:10]
    evs = faults.completions(wstack.settings)
    runs = Counter(e.activation_id for e in evs if e.record is not None)
    doubled = [a for a in accepted if runs[a] > 1]
    assert not doubled, doubled
    for name in puts:
        assert c.get(f"actions/{name}").status_code == 200
    faults.report("faust_worker_kill", {
        "accepted": len(accepted), "lost": len(lost), "doubled_executions": len(doubled),
        "ambiguous_503": len(ambiguous), "other_errors": len(failed), "entity_puts": len(puts),
        "recovery_s": round(recovered, 1),
    })
