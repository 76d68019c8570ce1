"""Projection rules, batch application (over an in-memory CouchDB stand-in) and the pure audit logic."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest

from contracts import bus, events
from contracts.events import ActivationCompleted, ApiCalled, DecodeError, EntityChanged, SubjectKeyAdded
from contracts.settings import Settings
from contracts.topics import Topics
from projections import audit, catalog, views
from projections.replay import ReplayError, parse_offsets
from projections.runner import Batch, decode_checked, project_batch

Doc = dict[str, Any]


def action(name: str, version: str, updated: int) -> Doc:
    return {"namespace": "guest", "name": name, "entityType": "action", "version": version, "updated": updated}


def changed(doc_id: str, doc: Doc | None, at: int = 1, op: str = "put", error: str | None = None) -> EntityChanged:
    writes: list[tuple[str, Doc | None]] = [] if error else [(doc_id, doc)]
    return EntityChanged(request_id=f"r{at}", subject="guest", op=op, entity_type="action", doc_id=doc_id,
                         writes=writes, at=at, error=error, error_status=409 if error else None)


def rev_key(rev: str) -> tuple[int, str]:
    pos, _, rid = rev.partition("-")
    return int(pos), rid


class MemCouch:
    """Just enough of projections.couch.Couch: revisions, tombstones, conflicts on demand, and `new_edits=false`
    writes (leaves kept per doc; reads see the winner: highest position, then highest revision id)."""

    def __init__(self) -> None:
        self.dbs: dict[str, dict[str, Doc]] = {}
        self.leaves: dict[str, dict[str, set[str]]] = {}  # db -> id -> revisions written with new_edits=false
        self.revs = itertools.count(1)
        self.reads: list[list[str]] = []
        self.written: list[str] = []  # ids of docs stored (no-op writes of a known revision are not)
        self.conflict_once: set[str] = set()

    def get_many(self, db: str, ids: list[str]) -> dict[str, Doc]:
        self.reads.append(list(ids))
        docs = self.dbs.setdefault(db, {})
        return {i: copy.deepcopy(docs[i]) for i in ids if i in docs}

    def bulk_write(self, db: str, docs: list[Doc], new_edits: bool = True) -> list[str]:
        store, conflicts = self.dbs.setdefault(db, {}), []
        if not new_edits:
            for d in docs:
                leaves = self.leaves.setdefault(db, {}).setdefault(d["_id"], set())
                if d["_rev"] in leaves:
                    continue
                leaves.add(d["_rev"])
                self.written.append(d["_id"])
                cur = store.get(d["_id"])
                if cur is None or rev_key(d["_rev"]) > rev_key(cur["_rev"]):
                    store[d["_id"]] = copy.deepcopy(d)
            return []
        for d in docs:
            cur = store.get(d["_id"])
            if d["_id"] in self.conflict_once:  # someone else wrote it just now
                self.conflict_once.discard(d["_id"])
                store[d["_id"]] = {**(cur or d), "_rev": f"{next(self.revs)}-x"}
                conflicts.append(d["_id"])
                continue
            if (cur or {}).get("_rev") != d.get("_rev"):
                conflicts.append(d["_id"])
            elif d.get("_deleted"):
                store.pop(d["_id"], None)
            else:
                store[d["_id"]] = {**d, "_rev": f"{next(self.revs)}-x"}
                self.written.append(d["_id"])
        return conflicts

    def docs(self, db: str) -> dict[str, Doc]:
        return {i: {k: v for k, v in d.items() if k != "_rev"} for i, d in self.dbs.get(db, {}).items()}


DBS = {views.SUBJECTS: "s", views.WHISKS: "w", views.ACTIVATIONS: "a"}


def history() -> Batch:
    rec = {"namespace": "guest", "name": "a", "activationId": "x1", "start": 1,
           "response": {"status": "success", "success": True}}
    evs: list[events.Event] = [
        SubjectKeyAdded(subject="guest", namespace="guest", uuid="u", key_salt="s", key_hash="h"),
        changed("guest/a", action("a", "0.0.1", 1), 1),
        changed("guest/b", action("b", "0.0.1", 2), 2),
        changed("guest/a", action("a", "0.0.2", 3), 3),
        changed("guest/a", None, 4, op="delete"),
        changed("guest/b", None, 5, error="conflict"),
        changed("guest/a", action("a", "0.0.1", 6), 6),
        ActivationCompleted(activation_id="x1", namespace="guest", record=rec),
        ActivationCompleted(activation_id="x2", namespace="guest", rejected_status=429, rejected="too many"),
    ]
    return [(0, off, ev) for off, ev in enumerate(evs)]


def project_all(couch: MemCouch, batch: Batch, size: int, known: dict[str, set[str]] | None = None) -> None:
    for i in range(0, len(batch), size):
        project_batch(couch, DBS, batch[i:i + size], known)  # type: ignore[arg-type]


def test_apply_keeps_the_source_offset_and_skips_what_it_has() -> None:
    doc = views.apply(views.WHISKS, "guest/a", None, changed("guest/a", action("a", "1", 1)), 0, 10)
    assert doc is not None and doc["wsk_offset"] == 10 and doc["version"] == "1"
    assert views.already_applied(doc, 0, 10) and views.already_applied(doc, 0, 3)
    assert not views.already_applied(doc, 0, 11)


@pytest.mark.parametrize("size", [1, 2, 4, 100])
def test_batches_of_any_size_give_the_same_documents(size: int) -> None:
    reference, other = MemCouch(), MemCouch()
    project_all(reference, history(), 100)
    project_all(other, history(), size)
    for db in DBS.values():
        assert other.docs(db) == reference.docs(db)
    assert reference.docs("w")["guest/a"]["version"] == "0.0.1" and reference.docs("w")["guest/a"]["wsk_offset"] == 6
    assert set(reference.docs("a")) == {"guest/x1"}  # a rejected activation has no record


def test_replaying_twice_is_a_no_op() -> None:
    couch = MemCouch()
    project_all(couch, history(), 3)
    before = {db: couch.docs(db) for db in DBS.values()}
    revs = {db: {i: d["_rev"] for i, d in couch.dbs[db].items()} for db in couch.dbs}
    project_all(couch, history(), 3)
    assert {db: couch.docs(db) for db in DBS.values()} == before
    assert {db: {i: d["_rev"] for i, d in couch.dbs[db].items()} for db in couch.dbs} == revs  # nothing rewritten


def test_known_ids_skip_reads_of_docs_that_cannot_exist() -> None:
    plain, fresh = MemCouch(), MemCouch()
    project_all(plain, history(), 2)
    known: dict[str, set[str]] = {v: set() for v in DBS}
    project_all(fresh, history(), 2, known)
    for db in DBS.values():
        assert fresh.docs(db) == plain.docs(db)
    assert sum(map(len, fresh.reads)) < sum(map(len, plain.reads))
    assert known[views.WHISKS] == {"guest/a", "guest/b"}


def test_a_conflict_is_reread_and_refolded() -> None:
    couch = MemCouch()
    project_all(couch, history()[:3], 10)
    couch.conflict_once = {"guest/a"}
    project_all(couch, history()[3:], 10)
    assert couch.docs("w")["guest/a"]["wsk_offset"] == 6


def test_check_rejects_events_the_rules_cannot_apply() -> None:
    bad = [
        b'{"type":"entity.changed","request_id":"r","subject":"s","op":"put","entity_type":"action",'
        b'"doc_id":"a/b","writes":[["a/b", 5]]}',
        b'{"type":"entity.changed","request_id":"r","subject":"s","op":"put","entity_type":"action",'
        b'"doc_id":"a/b","writes":"a/b"}',
        b'{"type":"activation.completed","activation_id":"x","namespace":"n","record":[1]}',
        b'{"type":"subject.key_added","subject":"s","namespace":"n","uuid":1,"key_salt":"a","key_hash":"b"}',
        b"\x00\x01garbage",
        b'{"type":"no.such.type"}',
    ]
    for raw in bad:
        with pytest.raises(DecodeError):
            decode_checked(raw)
    assert isinstance(decode_checked(events.encode(history()[1][2])), EntityChanged)


def test_pointer_names_and_generations() -> None:
    s = Settings(prefix="p")
    assert catalog.names(s, 0) == {"subjects": "p_subjects", "whisks": "p_whisks", "activations": "p_activations"}
    assert catalog.names(s, 3)["whisks"] == "p_whisks_g3"
    assert catalog.parse(s, None).generation == 0
    p = catalog.parse(s, {"_id": "views", "_rev": "1-a", "generation": 2, "dbs": catalog.names(s, 2),
                          "resume": {"p.entities": {"0": 17}}})
    assert p.dbs["activations"] == "p_activations_g2" and p.resume_at("p.entities", 0) == 17
    assert p.resume_at("p.entities", 1) is None
    assert catalog.existing_generations(["p_whisks", "p_whisks_g2", "p_meta", "q_whisks_g9", "p_whisks_gx"], s) \
        == {0, 2}


def test_offset_specs() -> None:
    t = Topics("p")
    assert parse_offsets(["5"], t) == {("p.subjects", None): 5, ("p.entities", None): 5, ("p.completions", None): 5}
    assert parse_offsets(["entities:1=7", "completions=3"], t) == {("p.entities", 1): 7, ("p.completions", None): 3}
    for bad in ["x", "access=3", "entities:a=1"]:
        with pytest.raises(ReplayError):
            parse_offsets([bad], t)


def test_topic_settings_fit_an_event_store(monkeypatch: pytest.MonkeyPatch) -> None:
    assert bus.topic_configs("p.entities")["retention.ms"] == "-1"
    assert bus.topic_configs("p.access")["cleanup.policy"] == "delete"  # the full log, not compacted
    assert bus.topic_configs("p.completions")["retention.ms"] == "-1"
    monkeypatch.setenv("WSK_ACTIVATION_RETENTION_MS", "86400000")
    assert bus.topic_configs("p.completions")["retention.ms"] == "86400000"
    assert bus.topic_configs("p.health")["retention.ms"] == str(bus.DAY_MS)
    assert bus.topic_configs("p.feedstate") == {}  # its owner passes cleanup.policy=compact


# --- audit -------------------------------------------------------------------------------------------


def test_audit_records_and_filters() -> None:
    call = ApiCalled(transaction_id="t1", subject="alice", namespace="alice", method="PUT",
                     path="/api/v1/namespaces/_/actions/pkg/hello", status=409, duration_ms=3.0, at=1000)
    r = audit.to_record(call, "p.access", 0, 4)
    assert r is not None and r.entity == "alice/pkg/hello" and r.outcome == "error" and r.offset == 4
    assert audit.matches(r, audit.Filter(subject="alice", entity="hello", outcome="409", action="put"))
    assert audit.matches(r, audit.Filter(entity="alice/pkg/*", since=1000, until=1000))
    assert not audit.matches(r, audit.Filter(entity="bob/*"))
    assert not audit.matches(r, audit.Filter(kinds=("entity",)))
    assert not audit.matches(r, audit.Filter(since=1001))
    e = audit.to_record(changed("guest/a", None, 7, op="delete"))
    assert e is not None and (e.kind, e.action, e.outcome, e.namespace) == ("entity", "delete", "ok", "guest")
    rej = audit.to_record(ActivationCompleted(activation_id="x", namespace="n", rejected_status=429, rejected="t"))
    assert rej is not None and rej.outcome == "error" and rej.status == 429
    assert audit.to_record(events.InvokerPing(invoker=0, user_memory_mb=1, free_memory_mb=1)) is None
    assert len(audit.table([r, e])) == 3


def test_audit_counts_an_event_sent_twice_once() -> None:
    import doctest

    assert doctest.testmod(audit).failed == 0
    call = ApiCalled(transaction_id="t1", subject="alice", namespace="alice", method="GET", path="/x", status=200,
                     duration_ms=1.0)
    other = ApiCalled(transaction_id="t1", subject="alice", namespace="alice", method="GET", path="/x", status=200,
                      duration_ms=1.0)  # the same call made again is a second event (its own event_id)
    kept = list(audit.once([("a", 0, 1, call), ("a", 1, 7, call), ("a", 0, 2, other)]))
    assert [(p, o) for _, p, o, _ in kept] == [(0, 1), (0, 2)]


def test_state_as_of_folds_the_entity_log() -> None:
    log = [(p, o, ev) for p, o, ev in history() if isinstance(ev, EntityChanged)]
    assert audit.state_as_of(log, "guest/a", 0) is None
    assert audit.state_as_of(log, "guest/a", 1) == action("a", "0.0.1", 1)
    assert audit.state_as_of(log, "guest/a", 3) == action("a", "0.0.2", 3)
    assert audit.state_as_of(log, "guest/a", 4) is None
    assert audit.state_as_of(log, "guest/a", 99) == action("a", "0.0.1", 6)
    assert audit.state_as_of(log, "guest/b", 99) == action("b", "0.0.1", 2)  # the failed delete changed nothing


def test_parse_time() -> None:
    now = 1_700_000_000_000
    assert audit.parse_time("now", now) == now
    assert audit.parse_time("1699999999000", now) == 1_699_999_999_000
    assert audit.parse_time("10m", now) == now - 600_000
    assert audit.parse_time("2023-11-14T22:13:20Z", now) == now
    assert audit.parse_time("2023-11-14T22:13:20+00:00", now) == now
    with pytest.raises(ValueError):
        audit.parse_time("yesterday-ish", now)
