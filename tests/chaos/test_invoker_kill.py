"""T1: kill -9 an invoker while activations run. Every accepted activation ends with exactly one final record
(success, or "whisk internal error" from the watchdog), none runs twice, new work goes to the other invoker."""

from __future__ import annotations

import concurrent.futures
import signal
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from contracts.settings import Settings
from streams import watchdog
from tests.chaos import faults
from tests.stack import Stack, start_stack

pytestmark = pytest.mark.chaos

N = 12
SLEEP_S = 6
PROBE = f"import time\ndef main(a):\n    time.sleep({SLEEP_S})\n    return {{'i': a.get('i')}}\n"


@pytest.fixture(scope="module")
def kstack(infra: Settings) -> Iterator[Stack]:
    s = start_stack(infra)
    yield s
    s.stop()  # also removes the containers the killed invoker left behind (they carry the stack's name prefix)


def test_kill_invoker_mid_run(kstack: Stack) -> None:
    c = kstack.client()
    faults.put_action(c, "probe", PROBE, memory=128, timeout=30000)
    faults.put_action(c, "quick", "def main(a):\n    return {'ok': True}\n", memory=128)
    with concurrent.futures.ThreadPoolExecutor(N) as pool:
        futs = [pool.submit(c.post, "actions/probe", {"i": i}, blocking=(i % 2 == 0)) for i in range(N)]
        # Kill the invoker that runs most of them, once they are running.
        prefix = kstack.settings.prefix
        faults.wait_until("probes running", lambda: sum(
            faults.running_containers(f"wsk{prefix}{i}_") for i in range(2)) >= 4, 60)
        time.sleep(2)
        busy = [faults.running_containers(f"wsk{prefix}{i}_") for i in range(2)]
        victim = 0 if busy[0] >= busy[1] else 1
        t_kill = faults.kill9(kstack.settings, f"invoker{victim}")

        # Reroute: new work succeeds on the other invoker.
        def quick() -> bool:
            r = c.post("actions/quick", {}, blocking=True, timeout=10000)
            return r.status_code == 200 and r.json()["response"]["success"] is True
        faults.wait_until("quick invoke after the kill", quick, 30, every=0.2)
        reroute_s = time.monotonic() - t_kill
        answers = [f.result() for f in futs]

    # A blocking caller whose activation the watchdog closed gets 500 with the record (statusCode 3), as in OW.
    accepted = {r.json()["activationId"] for r in answers if r.status_code in (200, 202, 500)}
    assert len(accepted) == N, [(r.status_code, r.text[:200]) for r in answers]
    found = faults.wait_records(kstack, "guest", accepted, SLEEP_S + watchdog.DEAD_AFTER_MS / 1000 + 30)
    lost = accepted - set(found)
    assert not lost, f"activations without a record: {lost}"
    closed = {a for a, d in found.items() if d["response"]["statusCode"] == 3}
    for a in closed:
        msg = found[a]["response"]["result"]["error"]
        assert msg == watchdog.DEAD_MESSAGE.format(n=victim), msg
    ok = {a for a, d in found.items() if d["response"]["statusCode"] == 0}
    assert ok | closed == accepted
    assert closed, "the killed invoker had no activation in flight"

    # Executions: at most one invoker completion per id; one final record per id in the projection.
    evs = [e for e in faults.completions(kstack.settings) if e.activation_id in accepted]
    by_invoker = Counter(e.activation_id for e in evs if e.record and "stopped responding" not in str(e.record))
    doubled = [a for a, n in by_invoker.items() if n > 1]
    assert not doubled
    closes = Counter(e.activation_id for e in evs if e.record and "stopped responding" in str(e.record))
    assert all(n == 1 for n in closes.values()), closes
    close_times = sorted(found[a]["end"] for a in closed)
    kill_wall_ms = (time.time() - (time.monotonic() - t_kill)) * 1000
    detection_s = (close_times[0] - kill_wall_ms) / 1000
    assert detection_s < 15

    # The killed invoker comes back, runs new work, and does not run its old assignments.
    faults.restart(kstack, f"invoker{victim}")
    time.sleep(3)
    after = faults.completions(kstack.settings)
    assert Counter(e.activation_id for e in after if e.activation_id in closed) == Counter(
        e.activation_id for e in evs if e.activation_id in closed)
    faults.report("invoker_kill", {
        "accepted": len(accepted), "succeeded": len(ok), "closed_by_watchdog": len(closed), "lost": len(lost),
        "doubled_executions": len(doubled), "detection_s": round(detection_s, 1), "reroute_s": round(reroute_s, 1),
        "orphan_record_max_s": round((close_times[-1] - kill_wall_ms) / 1000, 1),
    })


def test_sigterm_drains_running_activations(kstack: Stack) -> None:
    """SIGTERM (supervisord's stop, a pod's deletion) lets running activations finish with their own records
    instead of leaving them to the watchdog; the invoker then exits by itself."""
    from cli import procs

    c = kstack.client()
    faults.put_action(c, "drain", "import time\ndef main(a):\n    time.sleep(4)\n    return {'i': a.get('i')}\n",
                      memory=128, timeout=30000)
    answers = [c.post("actions/drain", {"i": i}) for i in range(4)]
    ids = {r.json()["activationId"] for r in answers if r.status_code == 202}
    assert len(ids) == 4, [r.text for r in answers]
    time.sleep(2.5)  # assigned and running (a cold start here is well under a second)
    pids = [faults.pid(kstack.settings, f"invoker{i}") for i in range(2)]
    t0 = time.monotonic()
    for i in range(2):
        faults.stop_signal(kstack.settings, f"invoker{i}", signal.SIGTERM)
    for p in pids:
        assert p is not None and procs.wait_exit(p, 30), "an invoker did not exit after SIGTERM"
    exited_s = time.monotonic() - t0
    found = faults.wait_records(kstack, "guest", ids, 30)
    codes = {a: d["response"]["statusCode"] for a, d in found.items()}
    assert codes == dict.fromkeys(ids, 0), {a: found[a]["response"] for a in ids}
    assert {found[a]["response"]["result"]["i"] for a in ids} == set(range(4))
    for i in range(2):
        faults.restart(kstack, f"invoker{i}")
    faults.report("invoker_sigterm_drain", {"running": len(ids), "succeeded": len(ids), "exited_s": round(exited_s, 1)})
