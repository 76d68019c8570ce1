"""streams.watchdog: which in-flight activations to close, and the record it writes."""

from __future__ import annotations

import doctest

import pytest

from contracts import events
from contracts.events import ActivationAssigned, ActivationRequested, InvokerPing
from streams import admission, balancer, clock, views, watchdog


def _assigned(aid: str, invoker: int, at: int, timeout: int = 1000) -> ActivationAssigned:
    req = ActivationRequested(activation_id=aid, namespace="ns", subject="s", params={}, cause="c1", at=at - 10,
                              action={"namespace": "ns", "name": "a", "version": "0.0.2",
                                      "limits": {"timeout": timeout, "memory": 128}, "exec": {"kind": "python:3"}})
    return ActivationAssigned(invoker=invoker, request=req, at=at)


def _entry(aid: str, invoker: int, at: int, timeout: int = 1000) -> dict[str, object]:
    """An entry assigned at `at`, on a worker whose monotonic and wall clocks agree."""
    return watchdog.entry(_assigned(aid, invoker, at, timeout), 0, at)


def test_doctests() -> None:
    assert doctest.testmod(clock).failed == 0


def test_orphans_of_a_dead_invoker_only() -> None:
    fl = {"x": _entry("x", 0, 1000), "y": _entry("y", 1, 1000)}
    now = 20_000
    inv = {0: {"heard": now - watchdog.DEAD_AFTER_MS - 1}, 1: {"heard": now - 100}}
    assert watchdog.orphans(fl, inv, now, 0) == [("x", "dead")]


def test_unknown_invoker_counts_as_dead() -> None:
    fl = {"x": _entry("x", 7, 1000)}
    assert watchdog.orphans(fl, {}, 1000 + watchdog.DEAD_AFTER_MS + 1, 0) == [("x", "dead")]


def test_grace_after_the_watchdog_starts() -> None:
    """After a worker restart the invokers table holds old ping times: wait for fresh pings before judging."""
    fl = {"x": _entry("x", 0, 1000)}
    now = 100_000
    assert watchdog.orphans(fl, {0: {"heard": 1000}}, now, now - 1000) == []
    assert watchdog.orphans(fl, {0: {"heard": 1000}}, now, now - watchdog.DEAD_AFTER_MS - 1) == [("x", "dead")]


def test_deadline_backstop() -> None:
    fl = {"x": _entry("x", 0, 1000, timeout=5000)}
    now = 1000 + 5000 + watchdog.DEADLINE_GRACE_MS + 1
    assert watchdog.orphans(fl, {0: {"heard": now}}, now, 0) == [("x", "deadline")]
    assert watchdog.orphans(fl, {0: {"heard": now}}, now - 2, 0) == []


def test_deadline_counts_from_the_worker_not_from_wall_stamps() -> None:
    """The assignment's wall time (here an hour off, as after a clock step) plays no part in the deadline."""
    for wall in (1000 - 3_600_000, 1000 + 3_600_000):
        fl = {"x": watchdog.entry(_assigned("x", 0, wall, timeout=5000), 0, 1000)}
        assert watchdog.orphans(fl, {0: {"heard": 9000}}, 9000, 0) == []


def test_error_completion_is_a_whisk_internal_error_record() -> None:
    e = _entry("x", 1, 1000)
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


def test_error_record_duration_is_measured_not_a_wall_difference() -> None:
    """start is the assignment's wall time, end = start + the monotonic time since: a step in between (here the
    wall clock is an hour ahead of the worker's monotonic reading) is not in the record."""
    e = watchdog.entry(_assigned("x", 1, 1_700_000_000_000), 0, 50_000)
    rec = watchdog.error_completion("x", e, "dead", 56_000).record
    assert rec is not None
    assert (rec["start"], rec["end"], rec["duration"]) == (1_700_000_000_000, 1_700_000_006_000, 6000)


def test_pings_read_at_start_age_by_their_stamp_and_live_ones_count_when_read(monkeypatch: pytest.MonkeyPatch) -> None:
    v = views.Views("127.0.0.1:1", "s", "h", "e")
    monkeypatch.setattr(clock, "mono_ms", lambda: 100_000)
    monkeypatch.setattr(events, "now_ms", lambda: 50_000_000)

    def heard(at: int) -> int:
        v._fold_invoker(v.invokers.data, InvokerPing(invoker=0, user_memory_mb=512, free_memory_mb=512, at=at))
        return int(v.invokers.data[0]["heard"])

    assert heard(50_000_000 - 3000) == 97_000  # loading: read back from before the worker started
    assert heard(50_000_000 + 3_600_000) == 100_000  # a stamp from the future is just now, not later
    v.invokers.ready.set()
    assert heard(50_000_000 - 3_600_000) == 100_000  # live: heard now, whatever the invoker's clock says


def test_a_wall_clock_step_closes_nothing_and_hides_no_dead_invoker(monkeypatch: pytest.MonkeyPatch) -> None:
    """The invoker pings once a second with its wall time; every clock but the monotonic one steps +1 h, then -2 h.
    Nothing is closed and the invoker stays healthy; once it stops pinging it is found dead DEAD_AFTER_MS later,
    though its last ping is stamped an hour "ahead" of the worker's clock. (On wall times, the +1 h step closed
    every in-flight activation at once and the -2 h one kept a dead invoker healthy for hours.)"""
    mono, wall = [1_000_000], [1_700_000_000_000]
    monkeypatch.setattr(clock, "mono_ms", lambda: mono[0])
    monkeypatch.setattr(events, "now_ms", lambda: wall[0])
    v = views.Views("127.0.0.1:1", "s", "h", "e")
    v.invokers.ready.set()
    dog = watchdog.Watchdog(v.invokers)
    part = admission.Partition(0)
    part.assigned(_assigned("x", 0, wall[0], timeout=300_000), clock.mono_ms())
    for step in (3_600_000, -7_200_000):
        wall[0] += step
        for _ in range(10):
            mono[0] += 1000
            wall[0] += 1000
            v._fold_invoker(v.invokers.data, InvokerPing(invoker=0, user_memory_mb=512, free_memory_mb=512,
                                                         at=wall[0]))
            assert dog.due(part.inflight, {0}, clock.mono_ms()) == []
            assert balancer.healthy(dict(v.invokers.data), clock.mono_ms()) == [0]
    wall[0] += 3_600_000  # the invoker dies; the clock steps forward again
    for _ in range(watchdog.DEAD_AFTER_MS // 1000):
        mono[0] += 1000
        assert dog.due(part.inflight, {0}, clock.mono_ms()) == []
    mono[0] += 1000
    assert balancer.healthy(dict(v.invokers.data), clock.mono_ms()) == []  # routed elsewhere before it is lost
    closed = dog.due(part.inflight, {0}, clock.mono_ms())
    assert [c.activation_id for c in closed] == ["x"]
    rec = closed[0].record
    assert rec is not None and rec["duration"] == 20_000 + watchdog.DEAD_AFTER_MS + 1000 == rec["end"] - rec["start"]


def test_a_stalled_worker_does_not_blame_the_invokers() -> None:
    """A worker that stood still (starved of CPU, paused) read no pings meanwhile: its first sweep after does not
    close the invokers' work; a silence that goes on while it sweeps on time does."""
    v = views.Views("127.0.0.1:1", "s", "h", "e")
    v.invokers.ready.set()
    views.fold_invoker(v.invokers.data, InvokerPing(invoker=0, user_memory_mb=512, free_memory_mb=512), 1000)
    dog = watchdog.Watchdog(v.invokers)
    fl = {"x": _entry("x", 0, 1000, timeout=300_000)}
    assert dog.due(fl, {0}, 1000) == []
    now = 1000 + 18_000  # the next sweep, 18 s late
    assert dog.due(fl, {0}, now) == []
    for _ in range(watchdog.DEAD_AFTER_MS // 1000):  # on time again, and still no ping
        now += 1000
        assert dog.due(fl, {0}, now) == []
    assert [c.activation_id for c in dog.due(fl, {0}, now + 1000)] == ["x"]


def test_work_assigned_to_an_invoker_that_restarted_is_closed_at_its_first_ping() -> None:
    """The restarted process skips what was assigned before its start, so the watchdog closes that work as soon as
    it hears the new incarnation, instead of 5 s of silence (which a quick restart never shows) or the deadline."""
    inflight = {"old": {"invoker": 0, "since": 1000, "timeout": 60_000},
                "new": {"invoker": 0, "since": 5000, "timeout": 60_000}}
    inv: dict[int, dict[str, object]] = {}
    views.fold_invoker(inv, InvokerPing(invoker=0, user_memory_mb=1, free_memory_mb=1, incarnation="a"), 900)
    assert watchdog.orphans(inflight, inv, 1500, 0) == []
    views.fold_invoker(inv, InvokerPing(invoker=0, user_memory_mb=1, free_memory_mb=1, incarnation="b"), 4000)
    assert watchdog.orphans(inflight, inv, 5500, 0) == [("old", "restarted")]
    assert balancer.HEALTH_TIMEOUT_MS < watchdog.DEAD_AFTER_MS
    rec = watchdog.error_completion("old", {**inflight["old"], "assigned": 1, "namespace": "n", "subject": "s",
                                            "requested": 1, "memory": 256, "action": {
                                                "namespace": "n", "name": "a", "version": "0.0.1", "limits": {},
                                                "kind": "python:3"}}, "restarted", 5500).record
    assert rec is not None and "(invoker0) restarted" in rec["response"]["result"]["error"]


def test_no_invoker_is_declared_dead_while_kafka_is_unreachable() -> None:
    """No ping can be read while Kafka is down: the silence is the bus's, not the invokers'. A close decided then
    would reach the log after the real completion (seen in the soak) and the record would say it failed."""
    v = views.Views("127.0.0.1:1", "s", "h", "e")
    v.invokers.ready.set()
    views.fold_invoker(v.invokers.data, InvokerPing(invoker=0, user_memory_mb=512, free_memory_mb=512), 1000)
    dog = watchdog.Watchdog(v.invokers)
    fl = {"x": _entry("x", 0, 1000, timeout=300_000)}
    now = 1000
    for _ in range(20):  # Kafka down for 20 s, sweeping on time
        now += 1000
        assert dog.due(fl, {0}, now, bus_up=False) == []
    for _ in range(watchdog.DEAD_AFTER_MS // 1000):  # back, and the invoker gets its grace to be heard
        now += 1000
        assert dog.due(fl, {0}, now) == []
    assert [c.activation_id for c in dog.due(fl, {0}, now + 1000)] == ["x"]  # still silent: dead
