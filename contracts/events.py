"""Typed events: the only contract between components.

Every event is a frozen dataclass with a TYPE tag and a schema version. Add fields only with defaults;
a breaking change gets a new TYPE. Auth keys never appear here in plaintext, only their hashes.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

SCHEMA_VERSION = 1
Json = dict[str, Any]
Upcaster = Callable[[Json], Json]

# (type, v) -> function turning an encoded event of version v into version v+1. Adding a field with a default
# needs no upcaster (decode defaults it); renaming or reshaping a field does: register one here, bump
# SCHEMA_VERSION, and events written by every older version still decode (and replay).
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(type_: str, from_v: int) -> Callable[[Upcaster], Upcaster]:
    def register(fn: Upcaster) -> Upcaster:
        UPCASTERS[(type_, from_v)] = fn
        return fn

    return register


def upcast(d: Json) -> Json:
    """Bring an encoded event up to SCHEMA_VERSION; events without `v` are version 0."""
    v = d.get("v", 0)
    if not isinstance(v, int):
        raise DecodeError(f"bad schema version: {v!r}")
    while v < SCHEMA_VERSION:
        fn = UPCASTERS.get((d["type"], v))
        if fn is not None:
            d = fn(dict(d))
        v += 1
    return {**d, "v": v} if d.get("v") != v else d


class DecodeError(ValueError):
    """A message that is not a valid event; it goes to the dead-letter topic."""


def now_ms() -> int:
    return int(time.time() * 1000)


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, kw_only=True)
class Event:
    TYPE: ClassVar[str] = ""
    event_id: str = field(default_factory=new_id)
    at: int = field(default_factory=now_ms)


# --- subjects ---------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SubjectKeyAdded(Event):
    """A subject gets (or keeps) a namespace and a key; only the salted hash of the key is carried."""

    TYPE: ClassVar[str] = "subject.key_added"
    subject: str
    namespace: str
    uuid: str
    key_salt: str
    key_hash: str
    limits: Json = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class SubjectBlocked(Event):
    TYPE: ClassVar[str] = "subject.blocked"
    subject: str
    blocked: bool = True


@dataclass(frozen=True, kw_only=True)
class SubjectDeleted(Event):
    TYPE: ClassVar[str] = "subject.deleted"
    subject: str


# --- entities ---------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class EntityCommand(Event):
    """API asks to change an entity; the entity agent decides."""

    TYPE: ClassVar[str] = "entity.command"
    request_id: str
    op: str  # put | delete | rule_state
    entity_type: str  # action | trigger | rule | package
    doc_id: str  # "ns/name" or "ns/pkg/name"
    subject: str
    body: Json = field(default_factory=dict)
    overwrite: bool = False
    force: bool = False


@dataclass(frozen=True, kw_only=True)
class EntityChanged(Event):
    """The decision: docs written (doc None = deleted), or the error, for one command."""

    TYPE: ClassVar[str] = "entity.changed"
    request_id: str
    subject: str
    op: str
    entity_type: str
    doc_id: str
    writes: list[tuple[str, Json | None]] = field(default_factory=list)
    result: Json | None = None
    error_status: int | None = None
    error: str | None = None


# --- activations ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ActivationRequested(Event):
    """API resolved the action (with merged parameters) and asks to run it."""

    TYPE: ClassVar[str] = "activation.requested"
    activation_id: str
    namespace: str  # invoking namespace
    subject: str
    action: Json  # a reference: the action doc, parameters merged, code replaced by exec.digest (entities.action_ref)
    params: Json
    blocking: bool = False
    cause: str | None = None
    transaction_id: str = ""


@dataclass(frozen=True, kw_only=True)
class ActivationAssigned(Event):
    """Admission's one output for an admitted activation (entitlement, throttles and placement are one step)."""

    TYPE: ClassVar[str] = "activation.assigned"
    invoker: int
    request: ActivationRequested
    network: str | None = None  # "none": the namespace's limits take the action network away


@dataclass(frozen=True, kw_only=True)
class ActivationCompleted(Event):
    """The activation record (OpenWhisk shape) or a rejection before any invoker ran it."""

    TYPE: ClassVar[str] = "activation.completed"
    activation_id: str
    namespace: str
    invoker: int | None = None
    record: Json | None = None  # full activation record, None when rejected
    rejected_status: int | None = None  # HTTP status for throttles/entitlement failures
    rejected: str | None = None
    memory_mb: int = 0
    fire: bool = False  # the answer to a trigger fire (admission rebuilds the fire counts from these)


@dataclass(frozen=True, kw_only=True)
class InvokerPing(Event):
    TYPE: ClassVar[str] = "invoker.ping"
    invoker: int
    user_memory_mb: int
    free_memory_mb: int
    warm: list[str] = field(default_factory=list)  # action doc ids with a warm container
    incarnation: str = ""  # new at each invoker start: a change tells the watchdog the process restarted


# --- audit and plumbing -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ApiCalled(Event):
    TYPE: ClassVar[str] = "api.called"
    transaction_id: str
    subject: str | None
    namespace: str | None
    method: str
    path: str
    status: int
    duration_ms: float
    activation_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class ProjectionProgress(Event):
    """A projector wrote everything up to (not including) `offset` of topic/partition."""

    TYPE: ClassVar[str] = "projection.progress"
    projector: str
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, kw_only=True)
class DeadLetter(Event):
    TYPE: ClassVar[str] = "deadletter"
    topic: str
    partition: int
    offset: int
    reason: str
    raw: str


EVENT_TYPES: dict[str, type[Event]] = {
    cls.TYPE: cls
    for cls in (
        SubjectKeyAdded, SubjectBlocked, SubjectDeleted, EntityCommand, EntityChanged,
        ActivationRequested, ActivationAssigned, ActivationCompleted,
        InvokerPing, ApiCalled, ProjectionProgress, DeadLetter,
    )
}


# --- triggers and feeds (appended; registered below) ---------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TriggerFired(Event):
    """A trigger fired (by the API or a feed); the rules agent answers on completions with `activation_id`:
    the trigger's record (202), or rejected_status 204 (no active rule), 404 or 429."""

    TYPE: ClassVar[str] = "trigger.fired"
    activation_id: str
    namespace: str  # the trigger's namespace
    subject: str  # who fires: the trigger's owner
    trigger: str  # doc id "ns/name"
    payload: Json = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    transaction_id: str = ""
    source: str = "api"  # api | feed kind
    slot: int | None = None  # alarm slot (epoch ms) for feed fires, to find a fire that was sent but not recorded


@dataclass(frozen=True, kw_only=True)
class FeedChanged(Event):
    """A feed's state, compacted by trigger: the feed service's source of truth (config None = deleted)."""

    TYPE: ClassVar[str] = "feed.changed"
    trigger: str  # doc id "ns/name"
    subject: str = ""
    namespace: str = ""
    kind: str = ""  # alarm | interval | once | topic | connector
    config: Json | None = None
    status: str = "active"  # active | paused | disabled (by the platform, see reason)
    reason: Json | None = None  # why it was disabled, as OpenWhisk's alarms provider says: {kind, statusCode, message}


@dataclass(frozen=True, kw_only=True)
class FeedProgress(Event):
    """How far a feed has fired (compacted by "progress/<trigger>[/<partition>]")."""

    TYPE: ClassVar[str] = "feed.progress"
    trigger: str
    slot: int  # alarms: last slot fired (epoch ms); topic feeds: next offset to read
    partition: int | None = None  # topic feeds: the source partition


EVENT_TYPES.update({cls.TYPE: cls for cls in (TriggerFired, FeedChanged, FeedProgress)})


# --- replay (appended; registered below) ----------------------------------------------------------------------

REPLAY_PHASES = ("started", "reading", "switching", "done", "failed")


@dataclass(frozen=True, kw_only=True)
class ReplayProgress(Event):
    """How far one `streamwhisk replay` run is (topic `replays`, keyed by generation): about once a second while
    it reads, plus its first and last report. Figures are absolute, so the last event of a run says it all."""

    TYPE: ClassVar[str] = "replay.progress"
    replay_id: str  # one run; a generation rebuilt again gets a new one
    generation: int  # the generation written (the live one for --in-place)
    phase: str = "reading"  # REPLAY_PHASES; done and failed are the last report of a run
    events: int = 0  # events read so far (poison ones included)
    total: int = 0  # events to read (grows while a switching replay catches up)
    docs: int = 0  # docs written so far
    poison: int = 0
    seconds: float = 0.0  # since reading started
    events_per_s: float = 0.0
    in_place: bool = False
    switch: bool = True  # whether it makes the generation live at the end
    switched: bool = False
    topics: list[str] = field(default_factory=list)
    error: str | None = None  # why it failed

    @property
    def finished(self) -> bool:
        return self.phase in ("done", "failed")

    @property
    def ratio(self) -> float:
        """Share read, 0..1: 1 once done (offsets can have gaps, so events may stay a little under total)."""
        if self.phase == "done":
            return 1.0
        return min(1.0, self.events / self.total) if self.total > 0 else 0.0


EVENT_TYPES[ReplayProgress.TYPE] = ReplayProgress
# Nested event fields, rebuilt on decode.
_NESTED: dict[str, type[Event]] = {"request": ActivationRequested}


def to_dict(ev: Event) -> Json:
    d: Json = {"type": ev.TYPE, "v": SCHEMA_VERSION}
    for f in dataclasses.fields(ev):
        val = getattr(ev, f.name)
        d[f.name] = to_dict(val) if isinstance(val, Event) else val
    return d


def from_dict(d: Json) -> Event:
    try:
        cls = EVENT_TYPES[d["type"]]
    except (KeyError, TypeError) as e:
        raise DecodeError(f"unknown event type: {d.get('type') if isinstance(d, dict) else d!r}") from e
    try:
        d = upcast(d)
    except (KeyError, TypeError, ValueError) as e:
        raise DecodeError(f"{cls.TYPE}: cannot upcast v{d.get('v', 0)}: {e}") from e
    names = {f.name for f in dataclasses.fields(cls)}
    # Fields unknown to this version are ignored, missing ones take their defaults: old events replay.
    kw = {k: v for k, v in d.items() if k in names}
    for k, sub in _NESTED.items():
        if isinstance(kw.get(k), dict):
            kw[k] = from_dict(kw[k]) if "type" in kw[k] else sub(**kw[k])
    if "writes" in kw:
        kw["writes"] = [tuple(w) for w in kw["writes"]]
    try:
        return cls(**kw)
    except TypeError as e:
        raise DecodeError(f"{cls.TYPE}: {e}") from e


def encode(ev: Event) -> bytes:
    return orjson.dumps(to_dict(ev))


def decode(raw: bytes | None) -> Event:
    if raw is None:
        raise DecodeError("empty message")
    try:
        d = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise DecodeError(f"not JSON: {e}") from e
    if not isinstance(d, dict):
        raise DecodeError("not a JSON object")
    return from_dict(d)
