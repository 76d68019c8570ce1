"""streams.watchdog: which in-flight activations to close, and the record it writes."""

from __future__ import annotations

from contracts.events import ActivationAssigned, ActivationRequested
from streams import watchdog


def _assigned(aid: str, invoker: int, at: int, timeout: int = 1000) -> ActivationAssigned:
    req = ActivationRequested(activation_id=aid, namespace="ns", subject="s", params={}, cause="c1", at=at - 10,
                              action={"namespace": "ns", "name": "a", "version": "0.0.2",
                                      "limits": {"timeout": timeout, "memory": 128}, "exec": {"kind": "python:3"}})
    return ActivationAssigned(invoker=invoker, request=req, at=at)


def test_orphans_of_a_dead_invoker_only() -> None:
    fl = {"x": watchdog.entry(_assigned("x", 0, 1000)), "y": watchdog.entry(_assigned("y", 1, 1000))}
    now = 20_000
    inv = {0: {"seen": now - watchdog.DEAD_AFTER_MS - 1}, 1: {"seen": now - 100}}
    assert watchdog.orphans(fl, inv, now, 0) == [("x", "dead")]


def test_unknown_invoker_counts_as_dead() -> None:
    fl = {"x": watchdog.entry(_assigned("x", 7, 1000))}
    assert watchdog.orphans(fl, {}, 1000 + watchdog.DEAD_AFTER_MS + 1, 0) == [("x", "dead")]


def test_grace_after_the_watchdog_starts() -> None:
    """After a worker restart the invokers table holds old ping times: wait for fresh pings before judging."""
    fl = {"x": watchdog.entry(_assigned("x", 0, 1000))}
    now = 100_000
    assert watchdog.orphans(fl, {0: {"seen": 1000}}, now, now - 1000) == []
    assert watchdog.orphans(fl, {0: {"seen": 1000}}, now, now - watchdog.DEAD_AFTER_MS - 1) == [("x", "dead")]


def test_deadline_backstop() -> None:
    fl = {"x": watchdog.entry(_assigned("x", 0, 1000, timeout=5000))}
    now = 1000 + 5000 + watchdog.DEADLINE_GRACE_MS + 1
    assert watchdog.orphans(fl, {0: {"seen": now}}, now, 0) == [("x", "deadline")]
    assert watchdog.orphans(fl, {0: {"seen": now}}, now - 2, 0) == []


def test_error_completion_is_a_whisk_internal_error_record() -> None:
    e = watchdog.entry(_assigned("x", 1, 1000))
    done = watchdog.error_completion("x", e, "dead", 7000)
    assert done.activation_id == "x" and done.namespace == "ns" and done.invoker == 1 and done.memory_mb == 128
    assert done.rejected_status is None
    rec = done.record
    assert rec is not None
    assert rec["response"] == {"status": "whisk internal error", "statusCode": 3, "success": False,
                               "result": {"error": watchdog.DEAD_MESSAGE.format(n=1)}}
    assert rec["start"] == 1000 and rec["end"] == 7000 and rec["duration"] == 6000
    assert rec["name"] == "a" and rec["version"] == "0.0.2" and rec["cause"] == "c1"
    ann = {a["key"]: a["value"] for a in rec["annotations"]}
    assert ann["path"] == "ns/a" and ann["kind"] == "python:3" and ann["waitTime"] == 10
    deadline = watchdog.error_completion("x", e, "deadline", 7000).record
    assert deadline is not None and "time limit" in deadline["response"]["result"]["error"]
