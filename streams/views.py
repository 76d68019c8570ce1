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
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from contracts import events
from contracts.events import EntityChanged, InvokerPing, SubjectBlocked, SubjectDeleted, SubjectKeyAdded
from contracts.logview import LogView
from streams import clock

Doc = dict[str, Any]
T = TypeVar("T")

HEALTH_WINDOW_MS = 60_000  # the health view starts this far back: older pings only say an invoker was alive once
# Request ids of the latest entity decisions that the view remembers. A command re-read after a crash is one of
# the uncommitted last few of its partition, so its decision (if any) is among the latest in the entity log.
REQUESTS_KEPT = 200_000


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


def fold_invoker(state: dict[int, Doc], ev: events.Event, heard_ms: int) -> None:
    """invoker -> its latest ping, and `heard`: when this worker read it (monotonic ms; see Views._fold_invoker).
    An invoker's pings share its key's partition, so the last one read is the latest, whatever its wall time.
    `restarted`: when the first ping of a new incarnation was heard after one of another (0: no restart seen).

    >>> s: dict[int, Doc] = {}
    >>> fold_invoker(s, InvokerPing(invoker=1, user_memory_mb=512, free_memory_mb=0, at=5000, incarnation="a"), 100)
    >>> fold_invoker(s, InvokerPing(invoker=1, user_memory_mb=256, free_memory_mb=0, at=1000, incarnation="a"), 200)
    >>> s  # (the second ping's wall clock stepped back: nothing changes)
    {1: {'heard': 200, 'user_memory_mb': 256, 'warm': [], 'incarnation': 'a', 'restarted': 0}}
    >>> fold_invoker(s, InvokerPing(invoker=1, user_memory_mb=256, free_memory_mb=0, incarnation="b"), 300)
    >>> fold_invoker(s, InvokerPing(invoker=1, user_memory_mb=256, free_memory_mb=0, incarnation="b"), 400)
    >>> s[1]["restarted"]
    300
    """
    if isinstance(ev, InvokerPing):
        prev = state.get(ev.invoker, {})
        changed = bool(prev.get("incarnation")) and prev["incarnation"] != ev.incarnation
        state[ev.invoker] = {"heard": heard_ms, "user_memory_mb": ev.user_memory_mb, "warm": ev.warm,
                             "incarnation": ev.incarnation,
                             "restarted": heard_ms if changed else int(prev.get("restarted", 0))}


def fold_entity(state: dict[str, Doc], ev: events.Event) -> None:
    """doc id -> the doc as decided (deleted docs are dropped)."""
    if isinstance(ev, EntityChanged):
        for doc_id, doc in ev.writes:
            if doc is None:
                state.pop(doc_id, None)
            else:
                state[doc_id] = doc


class Requests:
    """The request ids of the latest entity decisions read from the log (the newest REQUESTS_KEPT)."""

    def __init__(self, keep: int = REQUESTS_KEPT) -> None:
        self.keep = keep
        self.ids: OrderedDict[str, None] = OrderedDict()

    def fold(self, ev: events.Event) -> None:
        if isinstance(ev, EntityChanged):
            self.ids[ev.request_id] = None
            if len(self.ids) > self.keep:
                self.ids.popitem(last=False)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self.ids


class EntityState:
    """The entity decider's state: the entity log itself (the view every worker keeps), plus this worker's own
    decisions that the view has not read back yet.

    There is no table of our own to write next to the log, so nothing can diverge from it: a worker killed
    between deciding and sending left no trace but the command, which is uncommitted and decided again after
    the restart; one killed after the send left the decision in the log, and the re-read command is skipped
    (`decided`), so a request id has one decision (one EntityChanged, one audit line).

    >>> view: dict[str, Doc] = {"n/a": {"v": 1}}
    >>> read = Requests()
    >>> st = EntityState(view.get, lambda: view, read)
    >>> st.add("r1", [("n/a", None), ("n/p/b", {"v": 2})])
    >>> st.get("n/a"), st.get("n/p/b"), st.contents("n/p/"), st.decided("r1")
    (None, {'v': 2}, ['n/p/b'], True)
    >>> fold_entity(view, EntityChanged(request_id="r1", subject="", op="", entity_type="", doc_id="n/a",
    ...                                 writes=[("n/a", None), ("n/p/b", {"v": 2})]))
    >>> read.fold(EntityChanged(request_id="r1", subject="", op="", entity_type="", doc_id="n/a"))
    >>> _ = st.get("n/a"); st.pending, st.decided("r1"), st.decided("r2")
    (OrderedDict(), True, False)
    """

    def __init__(self, view_get: Callable[[str], Doc | None], view_data: Callable[[], dict[str, Doc]],
                 read: Requests) -> None:
        self.view_get, self.view_data, self.read = view_get, view_data, read
        self.pending: OrderedDict[str, list[tuple[str, Doc | None]]] = OrderedDict()  # request id -> writes

    def add(self, request_id: str, writes: Iterable[tuple[str, Doc | None]]) -> None:
        self.pending[request_id] = list(writes)

    def decided(self, request_id: str) -> bool:
        return request_id in self.pending or request_id in self.read

    def trim(self) -> None:
        """Forget own decisions the view has read (a doc's decisions share one partition: read in order)."""
        for rid in [r for r in self.pending if r in self.read]:
            del self.pending[rid]

    def clear(self) -> None:
        """Partitions were revoked: what was sent is in the log (the revocation flushed first); read it there."""
        self.pending.clear()

    def get(self, doc_id: str) -> Doc | None:
        if self.pending:
            self.trim()
            for writes in reversed(self.pending.values()):
                for wid, doc in reversed(writes):
                    if wid == doc_id:
                        return doc
        return self.view_get(doc_id)

    def contents(self, prefix: str) -> list[str]:
        """Doc ids that start with `prefix` (a package's contents)."""
        self.trim()
        out = {k for k in self.view_data() if k.startswith(prefix)}
        for writes in self.pending.values():
            for wid, doc in writes:
                if wid.startswith(prefix):
                    (out.discard if doc is None else out.add)(wid)
        return sorted(out)


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
        self.invokers = LogView(bootstrap, health, self._fold_invoker, since_ms=HEALTH_WINDOW_MS)
        self.requests = Requests()  # entity decisions read, by request id
        self.entities = LogView(bootstrap, entities, self._fold_entity)

    def _fold_invoker(self, state: dict[int, Doc], ev: events.Event) -> None:
        """A ping read live was heard now; one read back while loading (from before this worker started) was
        heard as long ago as its wall time says, estimated once, so a dead invoker's last ping does not look fresh."""
        now = clock.mono_ms()
        loaded = self.invokers.ready.is_set()
        fold_invoker(state, ev, now if loaded else clock.learned(ev.at, events.now_ms(), now))

    def _fold_entity(self, state: dict[str, Doc], ev: events.Event) -> None:
        fold_entity(state, ev)
        self.requests.fold(ev)

    def entity_state(self) -> EntityState:
        return EntityState(self.entities.get, lambda: self.entities.data, self.requests)

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
