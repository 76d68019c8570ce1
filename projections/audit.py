"""Pure audit logic: who did what, when, from log events; and an entity's state as of a time.

An audit record is one line of the trail, whatever the source event:
- api: every REST call (ApiCalled, access topic): subject, method, path, status;
- entity: every decided entity write (EntityChanged): op put/delete/rule_state, ok or the error;
- activation: every finished or rejected activation (ActivationCompleted);
- subject: subject lifecycle (SubjectKeyAdded/Blocked/Deleted; never a key, only that it changed).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from contracts.events import (
    ActivationCompleted,
    ApiCalled,
    EntityChanged,
    Event,
    SubjectBlocked,
    SubjectDeleted,
    SubjectKeyAdded,
)
from projections import views

KINDS = ("api", "entity", "activation", "subject")
Doc = dict[str, Any]


@dataclass(frozen=True)
class Record:
    at: int  # ms since the epoch, the event's own time
    kind: str  # api | entity | activation | subject
    subject: str | None
    namespace: str | None
    entity: str | None  # "ns/name" or "ns/pkg/name"
    action: str  # api: GET/PUT/POST/DELETE; entity: put/delete/rule_state; activation: invoke; subject: ...
    outcome: str  # ok | error
    status: int | None  # HTTP status when there is one
    detail: str
    ref: str  # transaction, request or activation id
    topic: str = ""
    partition: int = 0
    offset: int = 0

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "time": iso(self.at)}


@dataclass(frozen=True)
class Filter:
    subject: str | None = None
    namespace: str | None = None
    entity: str | None = None  # glob on "ns/name"; without "/" also matches the last path segment
    action: str | None = None  # case-insensitive
    kinds: tuple[str, ...] = KINDS
    since: int | None = None
    until: int | None = None
    outcome: str | None = None  # ok | error | an HTTP status


_ENTITY_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/(actions|triggers|rules|packages)/(.+?)/?$")


def _api_entity(path: str, namespace: str | None) -> str | None:
    m = _ENTITY_PATH.match(path)
    if not m:
        return None
    ns = namespace if m.group(1) == "_" and namespace else unquote(m.group(1))
    return f"{ns}/{unquote(m.group(3))}"


def _annotation(record: Doc, key: str) -> Any:
    return next((a.get("value") for a in record.get("annotations") or [] if a.get("key") == key), None)


def once(logged: Iterable[tuple[str, int, int, Event]]) -> Iterator[tuple[str, int, int, Event]]:
    """Each event once, the first copy: a produce retried by a client without idempotence, or an event sent again
    byte for byte, is the same event (same event_id), not a second action.

    >>> a = ApiCalled(transaction_id="t", subject="s", namespace="n", method="GET", path="/", status=200,
    ...               duration_ms=1.0, event_id="e1")
    >>> [o for _, _, o, _ in once([("t", 0, 1, a), ("t", 0, 2, a)])]
    [1]
    """
    seen: set[str] = set()
    for item in logged:
        eid = item[3].event_id
        if eid not in seen:
            seen.add(eid)
            yield item


def to_record(ev: Event, topic: str = "", partition: int = 0, offset: int = 0) -> Record | None:
    """The audit line for an event, or None for events that are plumbing (pings, progress, ...)."""
    r = _record(ev)
    return None if r is None else replace(r, topic=topic, partition=partition, offset=offset)


def _record(ev: Event) -> Record | None:
    if isinstance(ev, ApiCalled):
        return Record(ev.at, "api", ev.subject, ev.namespace, _api_entity(ev.path, ev.namespace), ev.method,
                      "ok" if ev.status < 400 else "error", ev.status, f"{ev.method} {ev.path}",
                      ev.transaction_id)
    if isinstance(ev, EntityChanged):
        status = ev.error_status or 200
        detail = f"{ev.entity_type} {ev.doc_id}" + (f": {ev.error}" if ev.error else "")
        return Record(ev.at, "entity", ev.subject, ev.doc_id.split("/")[0], ev.doc_id, ev.op,
                      "error" if ev.error else "ok", status, detail, ev.request_id)
    if isinstance(ev, ActivationCompleted):
        rec = ev.record or {}
        path = _annotation(rec, "path") or (f"{ev.namespace}/{rec['name']}" if rec.get("name") else None)
        if ev.record is None:
            return Record(ev.at, "activation", None, ev.namespace, path, "invoke", "error", ev.rejected_status,
                          f"rejected: {ev.rejected}", ev.activation_id)
        resp = rec.get("response") or {}
        ok = bool(resp.get("success"))
        detail = f"{resp.get('status', '?')} in {rec.get('duration', '?')} ms"
        return Record(ev.at, "activation", rec.get("subject"), ev.namespace, path, "invoke",
                      "ok" if ok else "error", None, detail, ev.activation_id)
    if isinstance(ev, SubjectKeyAdded):
        return Record(ev.at, "subject", ev.subject, ev.namespace, None, "key_added", "ok", None,
                      f"key {ev.uuid} for namespace {ev.namespace}", ev.event_id)
    if isinstance(ev, SubjectBlocked):
        return Record(ev.at, "subject", ev.subject, None, None, "blocked" if ev.blocked else "unblocked", "ok",
                      None, "", ev.event_id)
    if isinstance(ev, SubjectDeleted):
        return Record(ev.at, "subject", ev.subject, None, None, "deleted", "ok", None, "", ev.event_id)
    return None


def matches(r: Record, f: Filter) -> bool:
    if r.kind not in f.kinds:
        return False
    if f.since is not None and r.at < f.since:
        return False
    if f.until is not None and r.at > f.until:
        return False
    if f.subject is not None and r.subject != f.subject:
        return False
    if f.namespace is not None and r.namespace != f.namespace:
        return False
    if f.action is not None and r.action.lower() != f.action.lower():
        return False
    if f.outcome is not None and f.outcome not in (r.outcome, str(r.status)):
        return False
    if f.entity is not None:
        if r.entity is None:
            return False
        names = [r.entity] if "/" in f.entity else [r.entity, r.entity.rsplit("/", 1)[-1]]
        if not any(fnmatch.fnmatchcase(n, f.entity) for n in names):
            return False
    return True


def state_as_of(changes: Iterable[tuple[int, int, Event]], doc_id: str, at_ms: int) -> Doc | None:
    """Fold the entity log (partition, offset, EntityChanged) up to `at_ms` with the projection rules."""
    doc: Doc | None = None
    for part, off, ev in changes:
        if ev.at > at_ms or (views.WHISKS, doc_id) not in views.targets(ev):
            continue
        if not views.already_applied(doc, part, off):
            doc = views.apply(views.WHISKS, doc_id, doc, ev, part, off)
    return views.public(doc) if doc is not None else None


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_time(text: str, now_ms: int) -> int:
    """ms since the epoch from: epoch ms ("1700000000000"), ISO 8601 ("2024-05-01T12:00:00Z", local time if
    no zone), "now", or an age ("90s", "10m", "2h", "1d" ago)."""
    t = text.strip()
    if t == "now":
        return now_ms
    if t.isdigit():
        return int(t)
    m = _RELATIVE.match(t)
    if m:
        return now_ms - int(float(m.group(1)) * _UNIT_MS[m.group(2)])
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError as e:
        raise ValueError(f"not a time: {text!r} (epoch ms, ISO 8601, now, or an age like 10m)") from e
    if dt.tzinfo is None:
        dt = dt.astimezone()
    return int(dt.timestamp() * 1000)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


COLUMNS = (("time", 24), ("kind", 10), ("subject", 12), ("action", 9), ("entity", 28), ("outcome", 7),
           ("status", 6), ("detail", 0))


def table(records: Iterable[Record]) -> list[str]:
    def cell(v: Any, width: int) -> str:
        s = "-" if v is None else str(v)
        if width and len(s) > width:
            s = s[: width - 1] + "…"
        return s.ljust(width) if width else s

    lines = [" ".join(cell(name.upper(), w) for name, w in COLUMNS)]
    for r in records:
        row = r.as_json()
        lines.append(" ".join(cell(row[name], w) for name, w in COLUMNS))
    return lines
