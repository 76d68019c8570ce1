"""One decision, one execution, one record per request, whatever is sent twice (issue #19's loss and duplicate
windows): the pure parts. The stack-level proof is tests/chaos/test_duplicates.py."""

from __future__ import annotations

import pathlib
from typing import Any

from contracts.events import (
    ActivationAssigned,
    ActivationCompleted,
    ActivationRequested,
    EntityChanged,
    TriggerFired,
)
from contracts.settings import Settings
from streams import admission, rules
from streams.app import Held, create_app
from streams.views import EntityState, Requests, fold_entity

SUBJECT: dict[str, Any] = {"namespaces": ["ns"], "blocked": False}
DOCS: dict[str, Any] = {
    "ns/t": {"entityType": "trigger", "namespace": "ns", "name": "t",
             "rules": {"ns/r": {"action": {"path": "ns", "name": "act"}, "status": "active"}}},
    "ns/act": {"entityType": "action", "namespace": "ns", "name": "act", "exec": {"kind": "python:3"}},
}


def _changed(rid: str, writes: list[tuple[str, Any]]) -> EntityChanged:
    return EntityChanged(request_id=rid, subject="s", op="put", entity_type="action", doc_id="n/a", writes=writes)


def _state() -> tuple[dict[str, Any], Requests, EntityState]:
    view: dict[str, Any] = {}
    read = Requests()
    return view, read, EntityState(view.get, lambda: view, read)


def _read_back(view: dict[str, Any], read: Requests, ev: EntityChanged) -> None:
    """What the entity view does with an event of the log."""
    fold_entity(view, ev)
    read.fold(ev)


def test_entity_decisions_are_the_log_read_back() -> None:
    view, read, st = _state()
    st.add("r1", [("n/a", {"v": 1})])
    assert st.get("n/a") == {"v": 1} and st.decided("r1")  # read-your-writes before the view has it
    st.add("r2", [("n/a", {"v": 2})])
    _read_back(view, read, _changed("r1", [("n/a", {"v": 1})]))
    assert st.get("n/a") == {"v": 2}  # the view is behind r2: the own decision wins
    _read_back(view, read, _changed("r2", [("n/a", {"v": 2})]))
    assert st.get("n/a") == {"v": 2} and not st.pending  # read back: nothing of our own is kept
    assert st.decided("r1") and st.decided("r2") and not st.decided("r3")


def test_a_decision_sent_by_a_dead_worker_is_seen_by_the_next() -> None:
    """The worker that takes a partition over reads the entity log to its end first: a command re-read there (its
    offset was not committed) whose decision is in the log is skipped, not decided again on a newer state."""
    view, read, st = _state()
    _read_back(view, read, _changed("r1", [("n/a", {"v": 1})]))  # sent before the kill
    assert st.decided("r1")
    assert not st.decided("r2")  # killed before its send: it left no trace, it is decided again


def test_revocation_forgets_own_decisions() -> None:
    _, _, st = _state()
    st.add("r1", [("n/a", {"v": 1})])
    st.clear()  # what was sent is in the log (the revocation flushed), and is read from there
    assert st.get("n/a") is None and not st.decided("r1")


def test_package_contents_include_own_writes() -> None:
    view, _, st = _state()
    view.update({"n/p/a": {}, "n/p/b": {}, "n/q/c": {}})
    st.add("r1", [("n/p/a", None), ("n/p/d", {})])
    assert st.contents("n/p/") == ["n/p/b", "n/p/d"]


def test_requests_kept_are_bounded() -> None:
    read = Requests(keep=2)
    for rid in ("a", "b", "c"):
        read.fold(_changed(rid, []))
    assert "a" not in read and "b" in read and "c" in read


def test_held_revocation() -> None:
    h = Held()
    h.fresh |= {0, 1}
    epoch = h.epoch
    h.revoke({1})
    assert h.fresh == {0} and h.epoch != epoch


def test_trigger_record_marks_its_fire_answered() -> None:
    """A fire re-read after a takeover whose record is in the completions is not answered again."""
    rec = ActivationCompleted(activation_id="fire1", namespace="n", record={"name": "t"}, at=1000)
    p = admission.rebuild(0, [rec], 2000, 50_000)
    assert p.seen("fire1") and not p.inflight


def _fire(fid: str) -> TriggerFired:
    return TriggerFired(activation_id=fid, namespace="ns", subject="s", trigger="ns/t", payload={})


def test_fire_counts_are_the_answers_read_back() -> None:
    """A worker killed after deciding a fire and before sending its answer left no trace of it: the count rebuilt
    from the answers in the log leaves the fire out, and deciding the re-read fire counts it once. An answer
    re-read (or written twice) counts once; a 429 refusal of a fire counts toward neither minute."""
    limits = {"firesPerMinute": 2}
    subject = {**SUBJECT, "limits": limits}
    now = 120_000
    first = rules.decide_fire(_fire("f1"), DOCS.get, subject, None, None, now)
    assert first.completion.fire and first.completion.at == now
    # killed before f2's answer was sent: the log holds f1's answer (twice: a retried produce)
    p = admission.rebuild(0, [first.completion, first.completion], now + 5, 50_000)
    assert p.fire_state("ns") == {"minute": 2, "count": 1} and p.seen("f1") and not p.seen("f2")
    second = rules.decide_fire(_fire("f2"), DOCS.get, subject, p.fire_state("ns"), None, now + 10)
    assert second.completion.record is not None and second.fire_state == {"minute": 2, "count": 2}
    p.count_fire("ns", second.fire_state)
    third = rules.decide_fire(_fire("f3"), DOCS.get, subject, p.fire_state("ns"), None, now + 20)
    assert third.completion.rejected_status == 429 and third.completion.fire
    p = admission.rebuild(0, [first.completion, second.completion, third.completion], now + 30, 50_000)
    assert p.fire_state("ns") == {"minute": 2, "count": 2} and p.minutes == {}
    later = admission.rebuild(0, [first.completion, second.completion], now + 60_000, 50_000)
    assert later.fire_state("ns") is None and later.seen("f1")  # a new minute; still answered


def test_fire_answers_that_count() -> None:
    def answer(status: int | None, fire: bool = True) -> ActivationCompleted:
        return ActivationCompleted(activation_id="f", namespace="ns", rejected_status=status, fire=fire)

    assert [admission.counts_fire(answer(s)) for s in (None, 204, 429, 404, 403)] == [True, True, False, False, False]
    assert not admission.counts_fire(answer(None, fire=False))  # an action's record


def test_assignment_seen_twice_counts_once() -> None:
    req = ActivationRequested(activation_id="a", namespace="n", subject="s", at=0, params={},
                              action={"namespace": "n", "name": "x", "limits": {"memory": 128}})
    ev = ActivationAssigned(invoker=0, request=req, at=1)
    p = admission.rebuild(0, [ev, ev], 2, 50_000)  # a retried produce, as a non-idempotent producer writes it
    assert p.seen("a") and p.per_ns["n"] == 1 and p.used[0] == 128


async def test_faust_producer_is_idempotent(tmp_path: pathlib.Path) -> None:
    """faust-streaming makes its producer idempotent only in transactions; streams.transport always does, so a
    produce retry (timed out after the broker wrote the batch) does not write an assignment or decision twice."""
    app = create_app(Settings(home=tmp_path, prefix="unit", kafka="127.0.0.1:1"))
    producer = app.producer._new_producer()
    try:
        assert producer._txn_manager is not None  # aiokafka's idempotence state (producer id + sequences)
        assert producer._sender._acks == -1
    finally:
        await producer.stop()  # never started: only closes its client


async def test_faust_assignor_without_changelogged_tables(tmp_path: pathlib.Path) -> None:
    """The worker keeps no changelogged table, and faust-streaming then falls back to round robin, which splits
    partition i of the topics over workers and leaves `assigned_actives` (what the watchdog sweeps) empty."""
    app = create_app(Settings(home=tmp_path, prefix="unit", kafka="127.0.0.1:1"))
    assert not app.tables.changelog_topics
    consumer = app.consumer._thread._create_worker_consumer(app.transport)
    try:
        assert consumer._partition_assignment_strategy == [app.assignor]
    finally:
        await consumer.stop()  # never started


async def test_revoking_runs_before_faust_flushes(tmp_path: pathlib.Path, monkeypatch: Any) -> None:
    """The agents' send guard is set before Faust flushes the producer and commits for a revocation."""
    import faust

    order: list[str] = []

    async def faust_revoked(self: Any, revoked: Any) -> None:
        order.append("faust flush + commit")

    monkeypatch.setattr(faust.App, "_on_partitions_revoked", faust_revoked)
    app = create_app(Settings(home=tmp_path, prefix="unit", kafka="127.0.0.1:1"))
    app.revoking.append(lambda numbers: order.append(f"revoking {sorted(numbers)}"))

    class TP:
        topic, partition = "x", 3

    await app._on_partitions_revoked({TP()})
    assert order == ["revoking [3]", "faust flush + commit"]
