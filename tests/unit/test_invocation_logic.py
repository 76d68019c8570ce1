"""Pure parts of the invocation path: throttles, balancer, pool bookkeeping, outcome mapping, log limits."""

from __future__ import annotations

import doctest
from typing import Any

import pytest

from contracts.events import ActivationAssigned, ActivationCompleted, ActivationRequested
from invoker import outcome, pool, runner
from invoker.containers import HttpResult, limit_lines
from streams import admission, balancer, throttle

MIN = 60000


def test_doctests() -> None:
    for mod in (throttle, balancer, admission, runner, outcome):
        assert doctest.testmod(mod).failed == 0
    import invoker.containers as containers

    assert doctest.testmod(containers).failed == 0


# --- throttles ---------------------------------------------------------------------------------------------


def _req(aid: str, at: int = 0, ns: str = "ns", memory: int = 256, timeout: int = 1000) -> ActivationRequested:
    return ActivationRequested(activation_id=aid, namespace=ns, subject="s", at=at, params={},
                               action={"namespace": ns, "name": "a", "limits": {"memory": memory, "timeout": timeout}})


def _admit(p: admission.Partition, aid: str, lim: dict[str, Any], now: int, invoker: int = 0) -> str | None:
    """What the admit agent does with one invocation, minus the I/O: admitted ones are assigned."""
    refusal = p.admit(_req(aid, now), lim, now)
    if refusal is None:
        p.assigned(ActivationAssigned(invoker=invoker, request=_req(aid, now), at=now), now)
    else:
        p.refused(aid, now)
    return refusal


def test_rate_counts_refused_attempts_too() -> None:
    lim = {"invocationsPerMinute": 3}
    p = admission.Partition(0)
    msgs = []
    for i in range(5):
        msgs.append(_admit(p, f"a{i}", lim, 5 * MIN + 10))
        p.completed(f"a{i}")
    assert msgs[:3] == [None, None, None]
    assert msgs[3] == "Too many requests in the last minute (count: 4, allowed: 3)."
    assert msgs[4] == "Too many requests in the last minute (count: 5, allowed: 3)."
    assert _admit(p, "b", lim, 6 * MIN) is None  # a new wall-clock minute
    assert p.minutes["ns"]["count"] == 1


def test_concurrency_counts_in_flight() -> None:
    lim = {"concurrentInvocations": 1}
    p = admission.Partition(0)
    assert _admit(p, "a", lim, 0) is None and p.per_ns["ns"] == 1
    assert _admit(p, "b", lim, 1) == "Too many concurrent requests in flight (count: 1, allowed: 1)."
    p.completed("a")
    assert _admit(p, "c", lim, 2) is None


def test_default_limits() -> None:
    p = admission.Partition(0)
    for i in range(60):
        assert _admit(p, f"a{i}", {}, 0) is None
        p.completed(f"a{i}")
    assert _admit(p, "x", {}, 0) == "Too many requests in the last minute (count: 61, allowed: 60)."


def test_each_activation_counts_once() -> None:
    """Assignments and completions read twice (a worker re-reading after a crash, a rebuild overlapping the
    agents) change nothing."""
    lim = {"concurrentInvocations": 2, "invocationsPerMinute": 1000}
    p = admission.Partition(0)
    assert _admit(p, "a", lim, 0) is None and p.seen("a")
    p.assigned(ActivationAssigned(invoker=0, request=_req("a"), at=0), 0)
    assert p.per_ns["ns"] == 1 and p.used[0] == 256
    p.completed("a")
    p.completed("a")
    assert p.per_ns["ns"] == 0 and p.used[0] == 0
    assert _admit(p, "b", lim, 2) is None and _admit(p, "c", lim, 3) is None
    assert _admit(p, "d", lim, 5) == "Too many concurrent requests in flight (count: 2, allowed: 2)."


def test_rebuild_from_the_log_gives_the_state_the_agents_kept() -> None:
    """State kept live and state rebuilt from the same assignments and completions agree: nothing else is
    needed to recover (no changelog)."""
    lim = {"concurrentInvocations": 3, "invocationsPerMinute": 5}
    live = admission.Partition(0)
    log: list[Any] = []
    now = 10 * MIN
    for i in range(8):
        aid = f"a{i}"
        refusal = live.admit(_req(aid, now + i), lim, now + i)
        if refusal is None:
            ev = ActivationAssigned(invoker=i % 2, request=_req(aid, now + i), at=now + i)
            live.assigned(ev, now + i)  # a worker whose monotonic and wall clocks agree, for the comparison
            log.append(ev)
        else:
            live.refused(aid, now + i)
            log.append(ActivationCompleted(activation_id=aid, namespace="ns", rejected_status=429, rejected=refusal,
                                           at=now + i))
        if i % 3 == 0 and refusal is None:
            live.completed(aid)
            log.append(ActivationCompleted(activation_id=aid, namespace="ns", invoker=i % 2, record={}, at=now + i))
    back = admission.rebuild(0, reversed(log), now + 100, now + 100)  # order across topics is not kept
    assert back.inflight == live.inflight and back.per_ns == live.per_ns and back.used == live.used
    assert back.minutes == live.minutes and set(back.decided) == set(live.decided)
    assert back.running == live.running


def test_decided_ids_are_forgotten_after_the_window() -> None:
    p = admission.Partition(0)
    p.refused("old", 0)
    p.prune(admission.WINDOW_MS + admission.PRUNE_EVERY_MS + 1)
    assert not p.seen("old")


# --- balancer ----------------------------------------------------------------------------------------------


def inv(heard: int = 100, mem: int = 1024, warm: list[str] | None = None) -> dict[str, Any]:
    return {"heard": heard, "user_memory_mb": mem, "warm": warm or []}


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
    invokers = {0: inv(heard=0), 1: inv(heard=balancer.HEALTH_TIMEOUT_MS + 50)}
    now = balancer.HEALTH_TIMEOUT_MS + 100
    assert {balancer.schedule(invokers, {}, f"ns/a{i}", 256, now) for i in range(10)} == {1}
    assert balancer.schedule({0: inv(heard=0)}, {}, "ns/a", 256, now) is None
    assert balancer.schedule({0: {"user_memory_mb": 1024}}, {}, "ns/a", 256, now) is None  # never heard


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
