"""Read-only views of whole topics that every streams worker keeps (Kafka Streams' GlobalKTable).

A Faust table lives on the partitions of the agent that writes it, so a worker sees only its own partitions'
keys. The agents also need reference data keyed otherwise: the subject behind an invocation (subjects are keyed
by subject), every invoker's health, and packages or actions of *other* namespaces (shared packages, bindings,
sequences, rules). A LogView reads every partition of one topic with a consumer of no group and folds it into a
dict, so every worker has all of it, a few milliseconds behind the log. faust-streaming's GlobalTable is not
used: with several workers it misses updates (faust-streaming#283) or loops in recovery (its own docstring).

Views are eventually consistent, as OpenWhisk's entity caches are; on a miss an agent calls `sync()`, which
waits until the view has read up to the log end as of that call, so a subject or package created just before
is seen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from contracts import events
from contracts.events import EntityChanged, InvokerPing, SubjectBlocked, SubjectDeleted, SubjectKeyAdded
from contracts.logview import LogView

Doc = dict[str, Any]
T = TypeVar("T")

HEALTH_WINDOW_MS = 60_000  # the health view starts this far back: older pings only say an invoker was alive once


# --- pure folds -------------------------------------------------------------------------------------------


def fold_subject(state: dict[str, Doc], ev: events.Event) -> None:
    """subject -> {namespaces, blocked, limits}, as OpenWhisk's identity view (keys stay with the API).

    >>> s: dict[str, Doc] = {}
    >>> fold_subject(s, SubjectKeyAdded(subject="u", namespace="n", uuid="x", key_salt="", key_hash=""))
    >>> fold_subject(s, SubjectBlocked(subject="u", blocked=True))
    >>> s["u"]["namespaces"], s["u"]["blocked"]
    (['n'], True)
    """
    if isinstance(ev, SubjectKeyAdded):
        cur = state.get(ev.subject) or {"namespaces": [], "blocked": False, "limits": {}}
        ns = sorted({*cur["namespaces"], ev.namespace})
        state[ev.subject] = {**cur, "namespaces": ns, "limits": ev.limits or cur["limits"]}
    elif isinstance(ev, SubjectBlocked) and ev.subject in state:
        state[ev.subject] = {**state[ev.subject], "blocked": ev.blocked}
    elif isinstance(ev, SubjectDeleted):
        state.pop(ev.subject, None)


def fold_invoker(state: dict[int, Doc], ev: events.Event) -> None:
    """invoker -> its latest ping; `seen` is the ping's own time, so a replayed old ping does not look fresh."""
    if isinstance(ev, InvokerPing):
        prev = state.get(ev.invoker)
        if prev is None or ev.at >= prev["seen"]:
            state[ev.invoker] = {"seen": ev.at, "user_memory_mb": ev.user_memory_mb, "warm": ev.warm}


def fold_entity(state: dict[str, Doc], ev: events.Event) -> None:
    """doc id -> the doc as decided (deleted docs are dropped)."""
    if isinstance(ev, EntityChanged):
        for doc_id, doc in ev.writes:
            if doc is None:
                state.pop(doc_id, None)
            else:
                state[doc_id] = doc


def root(doc_id: str) -> str:
    return doc_id.split("/", 1)[0]


class Routed:
    """Entity lookups for an agent handling one root namespace: that namespace from the worker's own Faust
    table (authoritative and in order), any other from the entity view. Remembers remote misses, so the agent
    can sync the view and decide once more when a miss may only mean "not read yet"."""

    def __init__(self, own_root: str, local: Callable[[str], Doc | None], remote: Callable[[str], Doc | None]):
        self.own_root, self.local, self.remote = own_root, local, remote
        self.remote_missed = False

    def __call__(self, doc_id: str) -> Doc | None:
        if root(doc_id) == self.own_root:
            return self.local(doc_id)
        doc = self.remote(doc_id)
        self.remote_missed |= doc is None
        return doc


class Views:
    """The three views a streams worker keeps: subjects, invoker health, entities."""

    def __init__(self, bootstrap: str, subjects: str, health: str, entities: str) -> None:
        self.subjects = LogView(bootstrap, subjects, fold_subject)
        self.invokers = LogView(bootstrap, health, fold_invoker, since_ms=HEALTH_WINDOW_MS)
        self.entities = LogView(bootstrap, entities, fold_entity)

    async def run(self) -> None:
        await asyncio.gather(self.subjects.run(), self.invokers.run(), self.entities.run())

    async def ready(self) -> None:
        for v in (self.subjects, self.invokers, self.entities):
            await v.ready.wait()

    async def subject(self, subject: str, namespace: str) -> Doc | None:
        """The subject's doc; read up to the log end first when it does not (yet) hold the namespace."""
        doc: Doc | None = self.subjects.get(subject)
        if doc is None or namespace not in doc["namespaces"]:
            await self.subjects.sync()
            doc = self.subjects.get(subject)
        return doc

    def lookup(self, own_root: str, local: Callable[[str], Doc | None]) -> Routed:
        return Routed(own_root, local, self.entities.get)

    async def decided(self, own_root: str, local: Callable[[str], Doc | None], decide: Callable[[Routed], T],
                      final: Callable[[T], bool] = lambda _: False) -> T:
        """decide(lookup), and once more after catching the entity view up when it missed another namespace's doc
        (it may only not have been read yet), unless `final` accepts the first answer."""
        lookup = self.lookup(own_root, local)
        out = decide(lookup)
        if lookup.remote_missed and not final(out):
            await self.entities.sync()
            out = decide(self.lookup(own_root, local))
        return out
