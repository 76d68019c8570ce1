"""dockerd restarts under load: every container goes with it (no live-restore).

Each accepted activation must get exactly one record: one the engine took away mid-run gets a "whisk internal error"
that says so (it is not run again: it may have had effects), one that had not reached its container yet waits for
the engine and runs on a fresh one, and everything after the restart succeeds. The invokers stay up (no watchdog
closes), rebuild their pools (stem cells again), and the action network's wall is in place again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests

from cli import procs, services
from contracts.settings import Settings
from invoker import network
from invoker.runner import ENGINE_DOWN, ENGINE_LOST
from tests.chaos import faults
from tests.stack import Stack

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

SLOW = "import time\ndef main(a):\n    time.sleep(3)\n    return {'i': a.get('i')}\n"
QUICK = "def main(a):\n    return {'i': a.get('i')}\n"


def _dockerd() -> int:
    out = subprocess.run(["pidof", "dockerd"], capture_output=True, text=True).stdout.split()
    assert out, "no dockerd is running"
    return int(out[0])


def _supervised(pid: int) -> bool:
    """A dockerd that `streamwhisk up` started runs under supervisord, which restarts it by itself."""
    ppid = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
    return b"supervisord" in Path(f"/proc/{ppid}/cmdline").read_bytes()


def restart_dockerd(base: Settings) -> tuple[float, float]:
    """SIGTERM dockerd (it stops every container), start it again; (time of the signal, time it answers)."""
    pid = _dockerd()
    supervised = _supervised(pid)
    t0 = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    assert procs.wait_exit(pid, 60), "dockerd did not stop"
    if not supervised:
        services.ensure_docker(base, faults.say)
    faults.wait_until("dockerd answers again", services.docker_healthy, 90, every=0.2)
    return t0, time.monotonic()


def test_dockerd_restart_under_load(stack: Stack, infra: Settings) -> None:
    c = stack.client(stack.subject("dockerd", {"invocationsPerMinute": 10_000, "concurrentInvocations": 100}))
    faults.put_action(c, "slow", SLOW)
    faults.put_action(c, "quick", QUICK)
    assert c.post("actions/quick", {"i": 0}, blocking=True).status_code == 200
    accepted: list[tuple[str, float, str]] = []  # (activation id, requested at, action)
    answers: Counter[Any] = Counter()
    lock, stop = threading.Lock(), threading.Event()

    def load(worker: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            name = "slow" if (worker + i) % 2 else "quick"
            blocking = i % 3 == 0
            at = time.monotonic()
            try:
                r: Any = c.post(f"actions/{name}", {"i": i}, blocking=blocking)
            except requests.RequestException as e:
                r = e
            with lock:
                if isinstance(r, Exception):
                    answers[type(r).__name__] += 1
                    continue
                answers[r.status_code] += 1
                aid = r.json().get("activationId") if r.headers.get("content-type", "").startswith(
                    "application/json") else None
                if aid:
                    accepted.append((aid, at, name))
            time.sleep(0.5)

    threads = [threading.Thread(target=load, args=(w,), daemon=True) for w in range(3)]
    for t in threads:
        t.start()
    time.sleep(6)  # slow activations in flight, warm containers in the pool
    killed, back = restart_dockerd(infra)
    faults.wait_until("a blocking invoke succeeds", lambda: c.post(
        "actions/quick", {"i": -1}, blocking=True).status_code == 200, 60)
    serving = time.monotonic()
    time.sleep(12)
    stop.set()
    for t in threads:
        t.join(90)

    ids = {aid for aid, _, _ in accepted}
    found = faults.wait_records(stack, "dockerd", ids, 150)
    assert len(found) == len(ids), f"{len(ids) - len(found)} accepted activations have no record"
    statuses: Counter[str] = Counter()
    for aid, at, _ in accepted:
        resp = found[aid]["response"]
        statuses[resp["status"]] += 1
        if resp["status"] != "success":
            # Only the engine's going away explains a failure, and only for work accepted before it was back.
            assert resp["result"]["error"] in (ENGINE_LOST, ENGINE_DOWN), resp
            assert at < back, (aid, at - killed, resp)
    for aid, at, _ in accepted:
        if at > back + 1:
            assert found[aid]["response"]["status"] == "success", found[aid]

    done = [ev for ev in faults.completions(stack.settings, 30) if ev.activation_id in ids]
    per_id = Counter(ev.activation_id for ev in done)
    assert max(per_id.values()) == 1, [a for a, n in per_id.items() if n > 1]  # one execution or close each
    closed = [ev for ev in done if "stopped responding" in str(ev.record["response"]["result"])]
    assert not closed, "the watchdog closed activations: an invoker looked dead"

    # The pools came back (stem cells) and the wall is in place again.
    faults.wait_until("stem cells again", lambda: faults.running_containers(stack.settings.container_prefix) >= 2,
                      60)
    _, bridge, chain = network.names(stack.settings.prefix)
    for parent, rule in network.jumps(bridge, chain):
        assert subprocess.run(["iptables", "-C", parent, *rule], capture_output=True).returncode == 0, (parent, rule)

    faults.report("dockerd_restart", {
        "accepted": len(ids), "records": len(found), "statuses": dict(statuses), "answers": dict(answers),
        "engine_lost": sum(1 for a in found.values() if a["response"]["result"].get("error") == ENGINE_LOST),
        "engine_down": sum(1 for a in found.values() if a["response"]["result"].get("error") == ENGINE_DOWN),
        "dockerd_down_s": round(back - killed, 1), "serving_after_s": round(serving - killed, 1),
    })
