"""Admission: entitlement, throttles and placement of an activation in one step, on state rebuilt from the log.

The state admission needs for a partition (the activations of its namespaces) is what that partition's log
already says: the assignments it sent to the invokers and the completions that came back. So the assignment is
the only write per admitted activation (no changelog, no second hop): when a worker takes a partition it reads
the last WINDOW_MS of both and knows again which activations are in flight (concurrency, invoker memory, the
watchdog's work), which ids were admitted or refused already (an invocation re-read after a crash is not run
twice: there is no window between a state write and the send, the send is the state), and each namespace's
count in the current minute.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from contracts import bus, events
from contracts.events import ActivationAssigned, ActivationCompleted, ActivationRequested
from contracts.topics import Topics
from streams import balancer, throttle, watchdog

log = logging.getLogger("streams.admission")
Json = dict[str, Any]

MAX_TIMEOUT_MS = 300_000  # contracts.entities' longest action time limit
# An activation still in flight was assigned less than this long ago (the watchdog closes it by then), and an
# invocation re-read after a crash was admitted within the last commit interval, far less than this.
WINDOW_MS = MAX_TIMEOUT_MS + watchdog.DEADLINE_GRACE_MS + 60_000
PRUNE_EVERY_MS = 10_000

FORBIDDEN = "The supplied authentication is not authorized to access this resource."
NO_INVOKERS = "No invokers available."


@dataclass
class Partition:
    """One partition's admission state, all of it derived from its assignments and completions."""

    number: int
    inflight: dict[str, Json] = field(default_factory=dict)  # activation id -> watchdog.entry
    per_ns: Counter[str] = field(default_factory=Counter)  # in-flight activations per namespace
    used: Counter[int] = field(default_factory=Counter)  # in-flight memory (MB) per invoker
    minutes: dict[str, Json] = field(default_factory=dict)  # namespace -> {minute, count}: the rate window
    decided: dict[str, int] = field(default_factory=dict)  # ids admitted or refused -> when (kept WINDOW_MS)
    pruned: int = 0

    def seen(self, activation_id: str) -> bool:
        return activation_id in self.decided

    def throttle_state(self, namespace: str) -> Json:
        return {**(self.minutes.get(namespace) or {"minute": 0, "count": 0}), "inflight": self.per_ns[namespace]}

    def admit(self, req: ActivationRequested, limits: Json, now_ms: int) -> str | None:
        """None when the namespace's throttles let the activation go ahead, else the 429 message (counted)."""
        st, refusal = throttle.admit(self.throttle_state(req.namespace), limits, now_ms)
        self.count(req.namespace, st)
        return refusal

    def count(self, namespace: str, st: Json) -> None:
        self.minutes[namespace] = {"minute": st["minute"], "count": st["count"]}

    def assigned(self, ev: ActivationAssigned) -> None:
        aid = ev.request.activation_id
        self.decided[aid] = ev.at
        if aid in self.inflight:
            return
        e = watchdog.entry(ev, self.number)
        self.inflight[aid] = e
        self.per_ns[e["namespace"]] += 1
        self.used[e["invoker"]] += e["memory"]

    def refused(self, activation_id: str, at: int) -> None:
        self.decided[activation_id] = at

    def completed(self, activation_id: str) -> None:
        e = self.inflight.pop(activation_id, None)
        if e is None:  # a rejection, a trigger's or a sequence's record, or a repeat
            return
        self.per_ns[e["namespace"]] -= 1
        self.used[e["invoker"]] -= e["memory"]
        if self.per_ns[e["namespace"]] <= 0:
            del self.per_ns[e["namespace"]]

    def prune(self, now_ms: int) -> None:
        if now_ms - self.pruned < PRUNE_EVERY_MS:
            return
        self.pruned = now_ms
        old = [a for a, at in self.decided.items() if now_ms - at > WINDOW_MS]
        for a in old:
            del self.decided[a]


def rebuild(number: int, log_events: Iterable[events.Event], now_ms: int) -> Partition:
    """A partition's state from its last WINDOW_MS of assignments and completions (in any order across topics).

    >>> req = ActivationRequested(activation_id="a", namespace="n", subject="s", at=0,
    ...                           action={"name": "x", "limits": {"memory": 128}}, params={})
    >>> p = rebuild(0, [ActivationAssigned(invoker=1, request=req, at=60_001)], 60_002)
    >>> p.seen("a"), p.per_ns["n"], p.used[1], p.minutes["n"]["count"]
    (True, 1, 128, 1)
    >>> p = rebuild(0, [ActivationCompleted(activation_id="a", namespace="n", invoker=1),
    ...                 ActivationAssigned(invoker=1, request=req, at=1)], 2)
    >>> p.seen("a"), p.inflight, p.used[1]
    (True, {}, 0)
    """
    p = Partition(number, pruned=now_ms)
    finished: list[str] = []
    minute = now_ms // 60000
    for ev in log_events:
        if isinstance(ev, ActivationAssigned):
            p.assigned(ev)
            counted = ev.at
            ns = ev.request.namespace
        elif isinstance(ev, ActivationCompleted):
            finished.append(ev.activation_id)
            if ev.rejected_status is None:
                continue
            p.refused(ev.activation_id, ev.at)
            if ev.rejected_status != 429:
                continue
            counted, ns = ev.at, ev.namespace
        else:
            continue
        if counted // 60000 == minute:  # refused attempts count too (throttle.admit)
            st = p.minutes.get(ns) or {"minute": minute, "count": 0}
            p.minutes[ns] = {"minute": minute, "count": st["count"] + 1}
    for aid in finished:
        p.completed(aid)
    return p


async def read_partition(bootstrap: str, topics: Topics, number: int, since_ms: int) -> list[events.Event]:
    """The assignments and completions of one partition number from `since_ms` to the log end as of now."""
    c = bus.consumer(bootstrap, group=None)
    await c.start()
    try:
        tps = [TopicPartition(t, number) for t in (topics.completions, *topics.assignments())]
        starts = await c.offsets_for_times({tp: since_ms for tp in tps})
        ends = await c.end_offsets(tps)
        todo = {tp: ends[tp] for tp in tps if starts.get(tp) is not None and starts[tp].offset < ends[tp]}
        c.assign(list(todo))  # partitions with nothing in the window are not read
        for tp in todo:
            c.seek(tp, starts[tp].offset)
        out: list[events.Event] = []
        while todo:
            batch = await c.getmany(*todo, timeout_ms=500)
            for m, ev in bus.decoded(batch, "admission log event"):
                tp = TopicPartition(m.topic, m.partition)
                if tp in todo and m.offset < todo[tp]:
                    out.append(ev)
            for tp in list(todo):
                if await c.position(tp) >= todo[tp]:
                    del todo[tp]
        return out
    finally:
        await c.stop()


class Admission:
    """The partitions' states of one worker: each built on first use after the worker took the partition."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        self.bootstrap, self.topics = bootstrap, topics
        self.parts: dict[int, Partition] = {}
        self._loading: dict[int, asyncio.Task[Partition]] = {}

    async def partition(self, number: int) -> Partition:
        p = self.parts.get(number)
        if p is not None:
            return p
        task = self._loading.get(number)  # agents and the watchdog may ask at once: read the log once
        if task is None:
            task = self._loading[number] = asyncio.create_task(self._load(number))
            task.add_done_callback(lambda _: self._loading.pop(number, None))
        return await asyncio.shield(task)

    async def _load(self, number: int) -> Partition:
        evs = await read_partition(self.bootstrap, self.topics, number, events.now_ms() - WINDOW_MS)
        p = self.parts[number] = rebuild(number, evs, events.now_ms())
        log.info("partition %d: rebuilt from %d log events, %d in flight", number, len(evs), len(p.inflight))
        return p

    def drop(self, numbers: Iterable[int]) -> None:
        """Partitions taken away: another worker writes them now, so their state must be read again if they
        come back."""
        for n in numbers:
            self.parts.pop(n, None)
            task = self._loading.pop(n, None)
            if task is not None:
                task.cancel()

    def used(self) -> dict[int, int]:
        """Memory in use per invoker over this worker's partitions."""
        total: Counter[int] = Counter()
        for p in self.parts.values():
            total.update(p.used)
        return dict(total)

    def inflight(self) -> dict[str, Json]:
        return {aid: e for p in self.parts.values() for aid, e in p.inflight.items()}


def place(req: ActivationRequested, invokers: dict[int, Json], used: dict[int, int], now_ms: int) -> int | None:
    """The invoker for an admitted activation (None: no healthy invoker)."""
    action = req.action
    mem = int(action.get("limits", {}).get("memory", 256))
    return balancer.schedule(invokers, used, f"{action['namespace']}/{action['name']}", mem, now_ms)
