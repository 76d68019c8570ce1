"""The disk guard (api/diskguard.py): its decision, its settings, and the guarded send."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from api import diskguard
from api.diskguard import DiskGuard, MiB, refusal
from contracts.errors import WhiskError
from contracts.settings import Settings, local_data_dirs

R = 256 * MiB


def test_no_refusal_at_or_above_the_reserve() -> None:
    assert refusal([], R) is None
    assert refusal([(["kafka"], R), (["pouchdb"], 10 * R)], R) is None


def test_names_the_low_disk() -> None:
    assert refusal([(["kafka"], 12 * MiB + 5), (["pouchdb"], 10 * R)], R) == (
        "The event log's disk (Kafka data) is almost full (12 MiB free, 256 MiB reserved); the request was not "
        "accepted. Try again later.")
    assert refusal([(["kafka"], R), (["pouchdb"], R - 1)], R) == (
        "The database's disk (PouchDB data) is almost full (255 MiB free, 256 MiB reserved); the request was not "
        "accepted. Try again later.")


def test_both_low_and_one_disk_for_both() -> None:
    both = refusal([(["kafka"], 0), (["pouchdb"], MiB)], R)
    assert both is not None and both.startswith("The event log's disk (Kafka data) is almost full (0 MiB free")
    assert " and the database's disk (PouchDB data) is almost full (1 MiB free" in both
    shared = refusal([(["kafka", "pouchdb"], 3 * MiB)], R)
    assert shared is not None and shared.startswith(
        "The disk of the event log and the database (Kafka data, PouchDB data) is almost full (3 MiB free")
    assert refusal([(["scratch"], 0)], R) == (
        "The disk holding scratch is almost full (0 MiB free, 256 MiB reserved); the request was not "
        "accepted. Try again later.")


def test_settings_parse_the_guarded_dirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("WSK_DISK_GUARD", raising=False)
    monkeypatch.setenv("WSK_HOME", str(tmp_path))
    s = Settings()
    assert s.guarded_dirs == [("kafka", tmp_path / "kafka" / "data"), ("pouchdb", tmp_path / "pouchdb")]
    assert s.disk_guard == local_data_dirs(tmp_path)
    monkeypatch.setenv("WSK_DISK_GUARD", "")
    assert Settings().guarded_dirs == []
    monkeypatch.setenv("WSK_DISK_GUARD", "kafka=/a, pouchdb = /b ,")
    assert Settings().guarded_dirs == [("kafka", Path("/a")), ("pouchdb", Path("/b"))]
    monkeypatch.setenv("WSK_DISK_GUARD", "/no/label")
    with pytest.raises(ValueError, match="label=path"):
        _ = Settings().guarded_dirs


def test_sample_groups_dirs_on_one_filesystem_and_skips_missing(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    disks = diskguard.sample([("kafka", tmp_path / "a"), ("pouchdb", tmp_path / "b"), ("x", tmp_path / "none")])
    assert len(disks) == 1 and list(disks[0][0]) == ["kafka", "pouchdb"] and disks[0][1] > 0


async def test_guarded_send_refuses_while_low_and_logs_transitions(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    free = {"kafka": 10 * MiB}
    monkeypatch.setattr(diskguard, "sample", lambda dirs: [([label], free[label]) for label, _ in dirs])
    sent: list[Any] = []

    class Producer:
        async def send_and_wait(self, *args: Any, **kwargs: Any) -> str:
            sent.append(args)
            return "ok"

    g = DiskGuard([("kafka", Path("/k"))], 256)
    p = g.guard(Producer())  # type: ignore[arg-type]
    caplog.set_level(logging.WARNING, "api.disk")
    g.poll()
    g.poll()
    with pytest.raises(WhiskError) as e:
        await p.send_and_wait("t", b"v")
    assert e.value.status == 503 and "Kafka data" in e.value.message and sent == []
    token = diskguard.accepted_work.set(True)  # work already accepted writes into the reserve
    try:
        assert await p.send_and_wait("t", b"in-flight") == "ok"
    finally:
        diskguard.accepted_work.reset(token)
    free["kafka"] = 300 * MiB
    g.poll()
    assert await p.send_and_wait("t", b"after") == "ok"
    assert [m.getMessage().split(":")[0] for m in caplog.records] == [
        "refusing writes", "disk space is back above the reserve"]
    assert g.refused == 1


def test_no_dirs_no_guard() -> None:
    g = DiskGuard([], 256)
    g.poll()
    g.check()
    assert g.low is None
