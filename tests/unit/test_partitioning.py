"""Several streams workers: partition shares of invoker memory, the views' folds, and routed entity lookups."""

from __future__ import annotations

import doctest
import pathlib

import pytest

from contracts.events import (
    ActivationAssigned,
    ActivationRequested,
    EntityChanged,
    InvokerPing,
    SubjectBlocked,
    SubjectDeleted,
    SubjectKeyAdded,
)
from contracts.topics import Topics
from streams import admission, balancer, views, watchdog


def test_doctests() -> None:
    for mod in (views, balancer, watchdog):
        assert doctest.testmod(mod).failed == 0


# --- slots and shares ----------------------------------------------------------------------------------------


def test_used_counts_only_the_workers_partitions() -> None:
    """A worker's invoker memory in use is the sum over the partitions it holds (admission keeps one state each)."""
    states = admission.Admission("unused:9092", Topics("p"), lambda _: None)
    for number, inv, mb in ((0, 0, 256), (1, 0, 512), (1, 1, 128)):
        part = states.parts.setdefault(number, admission.Partition(number))
        req = ActivationRequested(activation_id=f"a{number}{inv}", namespace="n", subject="s", params={},
                                  action={"namespace": "n", "name": "x", "limits": {"memory": mb}})
        part.assigned(ActivationAssigned(invoker=inv, request=req), 0)
    assert states.used() == {0: 768, 1: 128}
    states.drop([1])  # taken away: another worker counts it now
    assert states.used() == {0: 256}


def test_share_splits_memory_by_owned_partitions() -> None:
    inv = {0: {"user_memory_mb": 2048, "heard": 1}, 1: {"user_memory_mb": 1000, "heard": 1}}
    assert balancer.share(inv, 4, 4) is inv  # one worker holds all: unchanged
    half = balancer.share(inv, 2, 4)
    assert [half[i]["user_memory_mb"] for i in (0, 1)] == [1024, 500]
    assert half[0]["heard"] == 1 and inv[0]["user_memory_mb"] == 2048  # a copy, other fields kept
    assert balancer.share(inv, 1, 1) is inv


def test_two_workers_never_overcommit_an_invoker() -> None:
    """Each worker schedules into its half: together they place at most the invoker's memory before spilling."""
    inv = {0: {"heard": 100, "user_memory_mb": 1024, "warm": []}, 1: {"heard": 100, "user_memory_mb": 1024, "warm": []}}
    used: dict[int, dict[int, int]] = {0: {}, 1: {}}  # per worker (A holds partitions 0, 1; B holds 2, 3)
    placed = {0: 0, 1: 0}
    for n in range(16):
        mine = used[0] if n % 4 < 2 else used[1]
        target = balancer.schedule(balancer.share(inv, 2, 4), mine, "ns/a", 256, 150)
        assert target is not None
        mine[target] = mine.get(target, 0) + 256
        placed[target] += 256
        if n < 8:  # 8 x 256 MB fits both invokers exactly
            assert all(v <= 1024 for v in placed.values()), placed


# --- views ----------------------------------------------------------------------------------------------------


def test_subject_fold_follows_the_lifecycle() -> None:
    s: dict[str, dict[str, object]] = {}
    views.fold_subject(s, SubjectKeyAdded(subject="u", namespace="a", uuid="1", key_salt="", key_hash="",
                                          limits={"concurrentInvocations": 3}))
    views.fold_subject(s, SubjectKeyAdded(subject="u", namespace="b", uuid="2", key_salt="", key_hash=""))
    assert s["u"] == {"namespaces": ["a", "b"], "blocked": False, "limits": {"concurrentInvocations": 3}}
    views.fold_subject(s, SubjectBlocked(subject="u", blocked=True))
    assert s["u"]["blocked"] is True
    views.fold_subject(s, SubjectBlocked(subject="nobody", blocked=True))
    assert "nobody" not in s
    views.fold_subject(s, SubjectDeleted(subject="u"))
    assert s == {}


def test_invoker_fold_keeps_the_last_ping_read() -> None:
    """An invoker's pings share its key's partition: the last read is the newest, even if the invoker's wall clock
    stepped back in between (a fold by the pings' own times ignored every ping for as long as the step)."""
    s: dict[int, dict[str, object]] = {}
    views.fold_invoker(s, InvokerPing(invoker=1, user_memory_mb=512, free_memory_mb=512, warm=["ns/a"], at=2000), 10)
    views.fold_invoker(s, InvokerPing(invoker=1, user_memory_mb=256, free_memory_mb=0, at=2000 - 3_600_000), 20)
    assert s == {1: {"heard": 20, "user_memory_mb": 256, "warm": [], "incarnation": "", "restarted": 0}}


def test_entity_fold_applies_writes_and_deletes() -> None:
    s: dict[str, dict[str, object]] = {}
    views.fold_entity(s, EntityChanged(request_id="r", subject="u", op="put", entity_type="package", doc_id="a/p",
                                       writes=[("a/p", {"name": "p"}), ("a/p/x", {"name": "x"})]))
    views.fold_entity(s, EntityChanged(request_id="r", subject="u", op="delete", entity_type="action",
                                       doc_id="a/p/x", writes=[("a/p/x", None)]))
    assert s == {"a/p": {"name": "p"}}


def test_routed_lookup_reads_own_namespace_locally_and_others_from_the_view() -> None:
    local = {"a/x": {"n": "local"}}
    remote = {"a/x": {"n": "stale"}, "b/pkg": {"n": "shared"}}
    look = views.Routed("a", local.get, remote.get)
    assert look("a/x") == {"n": "local"}
    assert look("a/gone") is None and not look.remote_missed  # own namespace: the table is the truth
    assert look("b/pkg") == {"n": "shared"} and not look.remote_missed
    assert look("b/none") is None and look.remote_missed


async def test_decided_catches_the_view_up_once_on_a_remote_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    v = views.Views("127.0.0.1:1", "s", "h", "e")
    synced: list[int] = []

    async def sync(timeout_s: float = 3.0) -> bool:  # the view reads the doc made a moment ago
        synced.append(1)
        v.entities.data["b/pkg"] = {"n": "shared"}
        return True

    monkeypatch.setattr(v.entities, "sync", sync)
    assert await v.decided("a", {}.get, lambda look: look("b/pkg")) == {"n": "shared"} and synced == [1]
    assert await v.decided("a", {}.get, lambda look: look("b/none"), final=lambda _: True) is None
    assert await v.decided("a", {"a/x": 1}.get, lambda look: look("a/x")) == 1
    assert synced == [1]  # neither a final answer nor a local miss waits for the view


# --- watchdog -------------------------------------------------------------------------------------------------


def test_watchdog_closes_only_its_own_partitions() -> None:
    req = ActivationRequested(activation_id="x", namespace="ns", subject="s", params={}, at=0,
                              action={"namespace": "ns", "name": "a", "limits": {"timeout": 1000}})
    fl = {"x": watchdog.entry(ActivationAssigned(invoker=0, request=req, at=0), partition=3, since_ms=0)}
    dead_now = watchdog.DEAD_AFTER_MS + 1
    assert watchdog.orphans(fl, {}, dead_now, 0, {3}) == [("x", "dead")]
    assert watchdog.orphans(fl, {}, dead_now, 0, {0, 1, 2}) == []


# --- the Faust consumer's long poll ----------------------------------------------------------------------------


async def test_faust_consumer_long_poll_is_bounded(tmp_path: pathlib.Path) -> None:
    """streams.transport lowers faust's fixed 1500 ms fetch wait through aiokafka's private attribute: check both
    that it is set and that aiokafka still hands that attribute to its fetcher (a dependency upgrade could not)."""
    import inspect

    from aiokafka import AIOKafkaConsumer

    from contracts.settings import Settings
    from streams import transport
    from streams.app import create_app

    app = create_app(Settings(home=tmp_path, prefix="unit", kafka="127.0.0.1:1"))
    consumer = app.consumer._thread._create_worker_consumer(app.transport)
    assert consumer._fetch_max_wait_ms == transport.FETCH_MAX_WAIT_MS == 100
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(AIOKafkaConsumer.start)
