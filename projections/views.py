"""Pure projection rules: (current doc, event, source position) -> new doc.

Each view database has one source topic and every doc stays on one partition (events are keyed), so the
source offset kept in the doc (`wsk_offset`) makes re-applying an event a no-op: projections are idempotent
and a replay gives the same documents as the live projection.
"""

from __future__ import annotations

import hashlib
from typing import Any

from contracts.events import (
    ActivationCompleted,
    DecodeError,
    EntityChanged,
    Event,
    SubjectBlocked,
    SubjectDeleted,
    SubjectKeyAdded,
)

Doc = dict[str, Any]
SUBJECTS, WHISKS, ACTIVATIONS = "subjects", "whisks", "activations"

# Keys CouchDB or this module owns, not part of an entity as the API shows it.
INTERNAL_KEYS = frozenset({"_id", "_rev", "_deleted", "wsk_offset", "wsk_partition"})

# Views whose doc after an event does not depend on the doc before it (an activation doc is its latest
# record): they are written without reading them first, with revisions derived from the source position.
WRITE_ONLY = frozenset({ACTIVATIONS})


def targets(ev: Event) -> list[tuple[str, str]]:
    """Which (database, doc id) an event touches."""
    if isinstance(ev, SubjectKeyAdded | SubjectBlocked | SubjectDeleted):
        return [(SUBJECTS, ev.subject)]
    if isinstance(ev, EntityChanged):
        return [(WHISKS, doc_id) for doc_id, _ in ev.writes]
    if isinstance(ev, ActivationCompleted) and ev.record is not None:
        return [(ACTIVATIONS, f"{ev.namespace}/{ev.activation_id}")]
    return []


def check(ev: Event) -> None:
    """Raise DecodeError if an event that decoded cannot be applied (wrong field types): it is dead-lettered
    instead of stopping the projector. Decoding does not check types, JSON can hold anything."""
    def bad(why: str) -> DecodeError:
        return DecodeError(f"{ev.TYPE}: {why}")

    if isinstance(ev, SubjectKeyAdded | SubjectBlocked | SubjectDeleted) and not isinstance(ev.subject, str):
        raise bad("subject is not a string")
    if isinstance(ev, SubjectKeyAdded):
        if not all(isinstance(x, str) for x in (ev.namespace, ev.uuid, ev.key_salt, ev.key_hash)):
            raise bad("namespace, uuid and key fields must be strings")
        if not isinstance(ev.limits, dict):
            raise bad("limits is not an object")
    if isinstance(ev, EntityChanged):
        if not isinstance(ev.writes, list):
            raise bad("writes is not a list")
        for w in ev.writes:
            if not (isinstance(w, tuple) and len(w) == 2 and isinstance(w[0], str)
                    and (w[1] is None or isinstance(w[1], dict))):
                raise bad(f"a write is not [doc id, doc or null]: {str(w)[:200]}")
    if isinstance(ev, ActivationCompleted) and ev.record is not None and not (
        isinstance(ev.record, dict) and isinstance(ev.namespace, str) and isinstance(ev.activation_id, str)
    ):
        raise bad("record is not an object or its ids are not strings")


def already_applied(current: Doc | None, partition: int, offset: int) -> bool:
    return current is not None and current.get("wsk_partition") == partition and current.get("wsk_offset", -1) >= offset


def revision(partition: int, offset: int) -> str:
    """The CouchDB revision of a WRITE_ONLY doc whose last event is at (partition, offset).

    Written with `new_edits: false`: writing a revision the doc already has is a no-op (a redelivered event),
    and CouchDB's (and PouchDB's) winner is the leaf with the highest position, so the highest offset wins
    whatever the order of the writes (last writer wins by log offset; a doc's events share one partition,
    they are keyed by namespace). Deterministic: a replay writes the same `_rev` as the live projector.
    """
    return f"{offset + 1}-{hashlib.md5(f'{partition}:{offset}'.encode(), usedforsecurity=False).hexdigest()}"


def apply(db: str, doc_id: str, current: Doc | None, ev: Event, partition: int, offset: int) -> Doc | None:
    """The new doc (None: deleted). Callers skip events for which already_applied() holds."""
    new = _apply(db, doc_id, current, ev)
    if new is None:
        return None
    return {**new, "_id": doc_id, "wsk_partition": partition, "wsk_offset": offset}


def _apply(db: str, doc_id: str, current: Doc | None, ev: Event) -> Doc | None:
    if isinstance(ev, SubjectKeyAdded):
        base: Doc = _strip(current) if current else {"subject": ev.subject, "namespaces": [], "blocked": False}
        ns = [n for n in base["namespaces"] if n["name"] != ev.namespace]
        ns.append({"name": ev.namespace, "uuid": ev.uuid, "key_salt": ev.key_salt, "key_hash": ev.key_hash})
        return {**base, "namespaces": ns, "limits": ev.limits or base.get("limits", {})}
    if isinstance(ev, SubjectBlocked):
        return {**_strip(current), "blocked": ev.blocked} if current else None
    if isinstance(ev, SubjectDeleted):
        return None
    if isinstance(ev, EntityChanged):
        result = current
        for wid, doc in ev.writes:
            if wid == doc_id:
                result = doc  # the last write to this id wins, as the decider applied them in order
        return result
    if isinstance(ev, ActivationCompleted):
        return dict(ev.record) if ev.record is not None else current
    return current


def _strip(doc: Doc | None) -> Doc:
    return {k: v for k, v in (doc or {}).items() if k not in INTERNAL_KEYS}


def public(doc: Doc) -> Doc:
    """A stored doc as the API shows it."""
    return _strip(doc)


# Views the API queries. Plain JavaScript map functions: CouchDB and PouchDB Server both run them.
DESIGN_DOCS: dict[str, Doc] = {
    WHISKS: {
        "_id": "_design/whisks",
        "views": {
            # [root namespace, collection, updated]; entities inside packages are listed with their namespace's.
            "by_collection": {
                "map": "function(doc){ if(doc.entityType){ var root=doc.namespace.split('/')[0];"
                " emit([root, doc.entityType, doc.updated], null);} }",
                "reduce": "_count",
            },
            "by_package": {
                "map": "function(doc){ if(doc.entityType && doc.namespace.indexOf('/')>0){"
                " emit([doc.namespace, doc.entityType, doc.updated], null);} }",
                "reduce": "_count",
            },
        },
    },
    ACTIVATIONS: {
        "_id": "_design/activations",
        "views": {
            "by_namespace": {
                "map": "function(doc){ if(doc.activationId){ emit([doc.namespace, doc.start], null);} }",
                "reduce": "_count",
            },
            "by_name": {
                "map": "function(doc){ if(doc.activationId){ var p=''; (doc.annotations||[]).forEach(function(a){"
                " if(a.key==='path'){p=a.value;} }); var parts=p.split('/');"
                " var n=parts.length>2? parts[1]+'/'+doc.name : doc.name;"
                " emit([doc.namespace, n, doc.start], null);} }",
                "reduce": "_count",
            },
        },
    },
}
