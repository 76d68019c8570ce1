"""Activations are written without reading them first: deterministic revisions with `new_edits: false`.

Checks the three properties the read-before-write gave: a redelivered event is a no-op, the highest log offset
wins whatever the order of the writes, and a replay gives the same documents (here: `_rev` included).
"""

from __future__ import annotations

import pytest

from contracts.events import ActivationCompleted
from projections import views
from projections.replay import Stats, Writer
from projections.runner import Batch, project_batch
from tests.unit.test_views import DBS, Doc, MemCouch, history, rev_key


def completion(aid: str, status: str, start: int = 1) -> ActivationCompleted:
    rec = {"namespace": "guest", "name": "a", "activationId": aid, "start": start,
           "response": {"status": status, "success": status == "success"}}
    return ActivationCompleted(activation_id=aid, namespace="guest", record=rec)


def log() -> Batch:
    """The whole history of test_views, then: x3 gets a watchdog error record and later its real record."""
    base = history()
    n = len(base)
    return [*base, (0, n, completion("x3", "whisk internal error")), (0, n + 1, completion("x4", "success")),
            (0, n + 2, completion("x3", "success"))]


def test_revision_is_deterministic_and_orders_by_offset() -> None:
    assert views.revision(0, 9) == views.revision(0, 9)
    assert views.revision(0, 9) != views.revision(1, 9)
    assert views.revision(2, 41).startswith("42-")
    revs = [views.revision(0, off) for off in (0, 8, 9, 10, 99, 100, 12345)]
    assert sorted(revs, key=rev_key) == revs  # numeric positions: "10-" is after "9-"
    pos, _, rid = views.revision(0, 7).partition("-")
    assert pos == "8" and len(rid) == 32 and int(rid, 16) >= 0  # CouchDB stores a 32-hex id as 16 bytes


def test_the_live_projector_does_not_read_activations() -> None:
    couch = MemCouch()
    project_batch(couch, DBS, log())  # type: ignore[arg-type]
    read = {i for ids in couch.reads for i in ids}
    assert read and not any(i.startswith("guest/x") for i in read)  # whisks and subjects are still read
    docs = couch.docs("a")
    assert set(docs) == {"guest/x1", "guest/x3", "guest/x4"}
    assert docs["guest/x3"]["response"]["status"] == "success" and docs["guest/x3"]["wsk_offset"] == len(log()) - 1


def test_a_redelivered_event_is_a_no_op() -> None:
    couch = MemCouch()
    for p, o, ev in log():
        project_batch(couch, DBS, [(p, o, ev)])  # type: ignore[arg-type]
    stored, before = len(couch.written), {db: dict(couch.dbs[db]) for db in couch.dbs}
    for i in range(len(log())):  # the consumer restarts from any earlier committed offset
        project_batch(couch, DBS, log()[i:])  # type: ignore[arg-type]
    assert len(couch.written) == stored and {db: dict(couch.dbs[db]) for db in couch.dbs} == before


def test_the_highest_offset_wins_whatever_the_order_of_the_writes() -> None:
    late, watchdog = log()[-1], log()[-3]
    assert late[1] > watchdog[1]
    couch = MemCouch()
    project_batch(couch, DBS, [late])  # type: ignore[arg-type]
    project_batch(couch, DBS, [watchdog])  # an older event written after (e.g. a partial in-place replay)
    doc = couch.dbs["a"]["guest/x3"]
    assert doc["response"]["status"] == "success" and doc["_rev"] == views.revision(0, late[1])
    assert len(couch.leaves["a"]["guest/x3"]) == 2  # the older one is a losing leaf, never the one read

    folded = MemCouch()  # both in one batch: folded into one write of the same revision
    project_batch(folded, DBS, [watchdog, late])  # type: ignore[arg-type]
    assert folded.dbs["a"]["guest/x3"] == doc and len(folded.leaves["a"]["guest/x3"]) == 1


def test_live_fresh_replay_and_in_place_replay_give_identical_activation_docs() -> None:
    live = MemCouch()
    for p, o, ev in log():  # the live projector: small batches, blind
        project_batch(live, DBS, [(p, o, ev)])  # type: ignore[arg-type]
    fresh = MemCouch()
    known: dict[str, set[str]] = {v: set() for v in DBS}
    for i in range(0, len(log()), 4):  # a fresh replay: big batches, known ids
        project_batch(fresh, DBS, log()[i:i + 4], known)  # type: ignore[arg-type]
    assert fresh.dbs["a"] == live.dbs["a"]  # `_rev` included
    for db in ("s", "w"):
        assert fresh.docs(db) == live.docs(db)

    in_place = MemCouch()  # an in-place replay onto what was deleted, then once more onto the result
    assert project_batch(in_place, DBS, log(), None, False) > 0  # type: ignore[arg-type]
    assert in_place.dbs["a"] == live.dbs["a"]
    reads = len(in_place.reads)
    assert project_batch(in_place, DBS, log(), None, False) == 0  # type: ignore[arg-type]
    assert len(in_place.reads) > reads and in_place.dbs["a"] == live.dbs["a"]


def test_in_place_replay_over_docs_written_with_ordinary_revisions() -> None:
    """Docs an older projector wrote (`1-...` from the server): skipped if they have the event, replaced if not."""
    couch = MemCouch()
    watchdog, late = log()[-3], log()[-1]
    old = views.apply(views.ACTIVATIONS, "guest/x3", None, watchdog[2], watchdog[0], watchdog[1])
    assert old is not None
    couch.bulk_write("a", [old])  # ordinary write: the server picks the revision
    assert project_batch(couch, DBS, [watchdog], None, False) == 0  # type: ignore[arg-type]
    assert project_batch(couch, DBS, [watchdog, late], None, False) == 1  # type: ignore[arg-type]
    doc = couch.dbs["a"]["guest/x3"]
    assert doc["response"]["status"] == "success" and doc["_rev"] == views.revision(0, late[1])


async def test_the_replay_writer_lanes_give_the_same_documents_as_one_sequential_pass() -> None:
    many = [(0, i, completion(f"y{i}", "success")) for i in range(200)]
    full = [*log(), *[(p, o + len(log()), ev) for p, o, ev in many]]
    sequential = MemCouch()
    project_batch(sequential, DBS, full)  # type: ignore[arg-type]

    lanes = MemCouch()
    stats = Stats()
    writer = Writer(lanes, DBS, {v: set() for v in DBS}, True, stats)  # type: ignore[arg-type]
    try:
        for i in range(0, len(full), 7):
            await writer.submit(full[i:i + 7])
        await writer.drain()
    finally:
        await writer.close()
    for db in DBS.values():
        assert lanes.docs(db) == sequential.docs(db)
    assert lanes.dbs["a"] == sequential.dbs["a"]  # `_rev` included
    assert stats.docs >= len(sequential.docs("a")) + len(sequential.docs("w"))


async def test_a_writer_failure_reaches_the_reader() -> None:
    class Down(MemCouch):
        def bulk_write(self, db: str, docs: list[Doc], new_edits: bool = True) -> list[str]:
            raise ConnectionError("couchdb down")

    writer = Writer(Down(), DBS, None, True, Stats())  # type: ignore[arg-type]
    try:
        await writer.submit(log())
        with pytest.raises(ConnectionError):
            await writer.drain()
        with pytest.raises(ConnectionError):
            await writer.submit(log())
    finally:
        await writer.close()
