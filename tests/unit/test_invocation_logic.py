"""Pure parts of the invocation path: throttles, balancer, pool bookkeeping, outcome mapping, log limits."""

from __future__ import annotations

import doctest
from typing import Any

import pytest

from invoker import outcome, pool, runner
from invoker.containers import HttpResult, limit_lines
from streams import balancer, throttle

MIN = 60000


def test_doctests() -> None:
    for mod in (throttle, balancer, runner, outcome):
        assert doctest.testmod(mod).failed == 0
    import invoker.containers as containers

    assert doctest.testmod(containers).failed == 0


# --- throttles ---------------------------------------------------------------------------------------------


def test_rate_counts_refused_attempts_too() -> None:
    lim = {"invocationsPerMinute": 3}
    st: dict[str, Any] | None = None
    msgs = []
    for _ in range(5):
        st, msg = throttle.admit(st, lim, 5 * MIN + 10)
        msgs.append(msg)
        if msg is None:
            st = throttle.release(st)
    assert msgs[:3] == [None, None, None]
    assert msgs[3] == "Too many requests in the last minute (count: 4, allowed: 3)."
    assert msgs[4] == "Too many requests in the last minute (count: 5, allowed: 3)."
    st, msg = throttle.admit(st, lim, 6 * MIN)  # a new wall-clock minute
    assert msg is None and st["count"] == 1


def test_concurrency_counts_in_flight() -> None:
    lim = {"concurrentInvocations": 1}
    st, msg = throttle.admit(None, lim, 0)
    assert msg is None and st["inflight"] == 1
    st, msg = throttle.admit(st, lim, 1)
    assert msg == "Too many concurrent requests in flight (count: 1, allowed: 1)."
    st = throttle.release(st)
    assert throttle.admit(st, lim, 2)[1] is None


def test_default_limits() -> None:
    st = None
    for _ in range(60):
        st, msg = throttle.admit(st, {}, 0)
        assert msg is None
        st = throttle.release(st)
    assert throttle.admit(st, {}, 0)[1] == "Too many requests in the last minute (count: 61, allowed: 60)."


class _App:
    """Faust's app.Table, as a dict: Holds only reads and writes keys."""

    @staticmethod
    def Table(name: str, default: Any = None) -> dict[str, Any]:
        return {}


def test_holds_count_each_activation_once() -> None:
    """A worker that re-reads events after a crash admits or releases the same ids again: nothing changes."""
    throttles: dict[str, Any] = {}
    holds = throttle.Holds(_App(), throttles)
    lim = {"concurrentInvocations": 2, "invocationsPerMinute": 1000}
    action = {"limits": {"timeout": 1000}}

    def admit(aid: str, now: int) -> str | None:
        st, msg = throttle.admit(throttles.get("ns"), lim, now, holds.held(aid))
        throttles["ns"] = st
        if msg is None:
            holds.take("ns", aid, 0, action, now)
        return msg

    assert admit("a", 0) is None and admit("a", 1) is None  # the same invocation, read again
    assert throttles["ns"]["inflight"] == 1
    holds.release("ns", "a")
    holds.release("ns", "a")  # its completion, read twice
    assert throttles["ns"]["inflight"] == 0
    assert admit("b", 2) is None and admit("c", 3) is None
    assert admit("b", 4) is None  # already held: not a third one
    assert admit("d", 5) == "Too many concurrent requests in flight (count: 2, allowed: 2)."


def test_a_hold_whose_release_never_came_expires() -> None:
    throttles: dict[str, Any] = {"ns": {"minute": 0, "count": 1, "inflight": 1}}
    holds = throttle.Holds(_App(), throttles)
    holds.take("ns", "lost", 3, {"limits": {"timeout": 1000}}, 0)
    until = 1000 + throttle.HOLD_GRACE_MS
    holds.prune(3, until)  # not yet past
    holds.prune(2, until + throttle.PRUNE_EVERY_MS + 1)  # another partition's: not this one's to free
    assert holds.held("lost") and throttles["ns"]["inflight"] == 1
    holds.prune(3, until + throttle.PRUNE_EVERY_MS + 1)
    assert not holds.held("lost") and throttles["ns"]["inflight"] == 0



# --- balancer ----------------------------------------------------------------------------------------------


def inv(seen: int = 100, mem: int = 1024, warm: list[str] | None = None) -> dict[str, Any]:
    return {"seen": seen, "user_memory_mb": mem, "warm": warm or []}


def test_balancer_spreads_distinct_actions() -> None:
    invokers = {0: inv(), 1: inv()}
    picks = {balancer.schedule(invokers, {}, f"ns/a{i}", 256, 200) for i in range(20)}
    assert picks == {0, 1}


def test_balancer_prefers_warm_then_home_then_free() -> None:
    invokers = {0: inv(warm=["ns/x"]), 1: inv()}
    assert balancer.schedule(invokers, {}, "ns/x", 256, 200) == 0
    home = balancer.schedule(invokers, {}, "ns/y", 256, 200)
    assert balancer.schedule(invokers, {home: 1024}, "ns/y", 256, 200) == 1 - home  # home full: next one
    assert balancer.schedule(invokers, {0: 900, 1: 1000}, "ns/y", 256, 200) == 0  # all full: most free


def test_balancer_skips_silent_invokers() -> None:
    invokers = {0: inv(seen=0), 1: inv(seen=balancer.HEALTH_TIMEOUT_MS + 50)}
    now = balancer.HEALTH_TIMEOUT_MS + 100
    assert {balancer.schedule(invokers, {}, f"ns/a{i}", 256, now) for i in range(10)} == {1}
    assert balancer.schedule({0: inv(seen=0)}, {}, "ns/a", 256, now) is None


# --- pool --------------------------------------------------------------------------------------------------


def test_pool_warm_stem_cell_and_eviction() -> None:
    p = pool.Pool(512)
    key = ("ns", "ns/a", "0.0.1@1")
    p.slots["stem"] = pool.Slot("stem", 256, "python:3")
    p.slots["w"] = pool.Slot("w", 256, "python:3", key=key, last_used=5.0)
    assert p.warm(key) is p.slots["w"]
    assert p.warm(("other", "ns/a", "0.0.1@1")) is None  # another invoking namespace never shares it
    assert p.stem_cell("python:3", 256) is p.slots["stem"] and p.stem_cell("python:3", 128) is None
    assert p.free_mb() == 0
    assert [s.name for s in p.evictable(256) or []] == ["w"]  # warm (LRU) before stem cells
    p.slots["w"].busy = True
    assert [s.name for s in p.evictable(256) or []] == ["stem"]
    p.slots["stem"].busy = True
    assert p.evictable(256) is None
    assert p.idle_since(10.0) == [] and p.warm_action_ids() == ["ns/a"]


# --- outcomes ----------------------------------------------------------------------------------------------


def res(status: int | None, body: bytes, timed_out: bool = False) -> HttpResult:
    return HttpResult(status, body, 1.0, timed_out)


@pytest.mark.parametrize(("reply", "code", "result"), [
    (res(200, b'{"a":1}'), 0, {"a": 1}),
    (res(200, b"[1, 2]"), 0, [1, 2]),
    (res(200, b'{"error":"x","b":2}'), 1, {"error": "x"}),
    (res(502, b'{"error":"y"}'), 2, {"error": "y"}),
    (res(200, b"42"), 2, {"error": "The action did not produce a valid JSON or JSON Array response: 42"}),
    (res(None, b""), 2, {"error": "The action did not produce a valid response and exited unexpectedly."}),
    (res(None, b"", True), 2, {"error": "The action exceeded its time limits of 1000 milliseconds."}),
])
def test_run_outcomes(reply: HttpResult, code: int, result: Any) -> None:
    o = outcome.from_run(reply, 1000)
    assert (o.status_code, o.result) == (code, result)
    assert o.keep_container == (code in (0, 1))
    assert o.timed_out == reply.timed_out


def test_oom_and_oversized_results() -> None:
    assert outcome.from_run(res(None, b""), 1000, oom=True).result == {
        "error": "The action exhausted its memory and was aborted."}
    big = b'{"x":"' + b"y" * 1048576 + b'"}'
    o = outcome.from_run(res(200, big), 1000)
    assert o.status_code == 1 and o.size == len(big)
    assert o.result["error"].startswith(
        f"The action produced a response that exceeded the allowed length: {len(big)} > 1048576 bytes. "
        'The truncated response was: {"x":"yyy')


def test_init_outcomes() -> None:
    assert outcome.from_init(res(200, b"{}"), 1000) is None
    assert outcome.from_init(res(None, b"", True), 500).result == {
        "error": "The action exceeded its time limits of 500 milliseconds during initialization."}
    assert outcome.from_init(res(502, b"oops"), 1000).result == {
        "error": "The action failed during initialization: oops"}
    assert outcome.from_init(res(None, b""), 1000).result == {
        "error": "The action did not initialize and exited unexpectedly."}


def test_record_fields_and_annotations() -> None:
    action = {"namespace": "ns/pkg", "name": "a", "version": "0.0.2", "exec": {"kind": "python:3"},
              "limits": {"timeout": 1000}, outcome.BINDING_FIELD: "ns/bound"}
    rec = outcome.record(activation_id="f" * 32, namespace="ns", subject="s", action=action,
                         outcome=outcome.Outcome(0, {"k": 1}, size=7), start=1000, end=1250, requested_at=900,
                         init_ms=40, logs=["l"], cause="c" * 32)
    ann = {a["key"]: a["value"] for a in rec["annotations"]}
    assert ann == {"path": "ns/pkg/a", "waitTime": 100, "kind": "python:3", "timeout": False,
                   "limits": {"timeout": 1000}, "initTime": 40, "binding": "ns/bound", "causedBy": "sequence"}
    assert rec["duration"] == 250 and rec["cause"] == "c" * 32 and rec["version"] == "0.0.2"
    assert rec["response"] == {"status": "success", "statusCode": 0, "success": True, "result": {"k": 1}, "size": 7}


def test_start_failures() -> None:
    from invoker.containers import ContainerStartError, ImageMissing

    assert runner.start_failure("blackbox", "u/img", ImageMissing("u/img")).result == {
        "error": "Failed to pull container image 'u/img'."}
    assert runner.start_failure("blackbox", "u/img", ContainerStartError("x")).status_code == 2
    o = runner.start_failure("python:3", "img", ContainerStartError("x"))
    assert o.status_code == 3 and o.result == {"error": "Failed to provision resources to run the action."}


def test_log_limit() -> None:
    assert limit_lines(["a", "b"], 4) == (["a", "b"], False)
    lines, cut = limit_lines(["a" * 10, "b"], 5)
    assert cut and lines == ["Logs were truncated because the total bytes size exceeds the limit of 5 bytes."]
