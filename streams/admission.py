"""Admission: entitlement, throttles and placement of an activation in one step, on state rebuilt from the log.

The state admission needs for a partition (the activations of its namespaces) is what that partition's log
already says: the assignments it sent to the invokers and the completions that came back. So the assignment is
the only write per admitted activation (no changelog, no second hop): when a worker takes a partition it reads
the last WINDOW_MS of both and knows again which activations are in flight (concurrency, invoker memory, the
watchdog's work), which ids were admitted or refused already (an invocation re-read after a crash is not run
twice: there is no window between a state write and the send, the send is the state), and each namespace's
invocation and fire counts in the current minute (a fire's answer on the completions is its only write too).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from contracts import bus, events
from contracts.events import ActivationAssigned, ActivationCompleted, ActivationRequested
from contracts.topics import Topics
from streams import balancer, clock, throttle, watchdog

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
    running: Counter[tuple[int, str]] = field(default_factory=Counter)  # in flight per (invoker, action doc id)
    minutes: dict[str, Json] = field(default_factory=dict)  # namespace -> {minute, count}: the rate window
    fires: dict[str, Json] = field(default_factory=dict)  # namespace -> {minute, count}: firesPerMinute's window
    # ids admitted or refused -> when, on the worker's monotonic clock (streams/clock.py), kept WINDOW_MS
    decided: dict[str, int] = field(default_factory=dict)
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

    def fire_state(self, namespace: str) -> Json | None:
        return self.fires.get(namespace)

    def count_fire(self, namespace: str, st: Json) -> None:
        self.fires[namespace] = {"minute": st["minute"], "count": st["count"]}

    def assigned(self, ev: ActivationAssigned, since_ms: int) -> None:
        """`since_ms`: when, on the worker's monotonic clock (estimated for an assignment read back from the log)."""
        aid = ev.request.activation_id
        self.decided[aid] = since_ms
        if aid in self.inflight:
            return
        e = watchdog.entry(ev, self.number, since_ms)
        self.inflight[aid] = e
        self.per_ns[e["namespace"]] += 1
        self.used[e["invoker"]] += e["memory"]
        self.running[e["invoker"], _doc_id(e)] += 1

    def refused(self, activation_id: str, at: int) -> None:
        self.decided[activation_id] = at

    def answered(self, activation_id: str, at: int) -> None:
        """A final record was sent for the id (a trigger fire's): it is decided, as an admission is."""
        self.decided[activation_id] = at

    def completed(self, activation_id: str) -> None:
        e = self.inflight.pop(activation_id, None)
        if e is None:  # a rejection, a trigger's or a sequence's record, or a repeat
            return
        ns, run = e["namespace"], (e["invoker"], _doc_id(e))
        self.per_ns[ns] -= 1
        self.used[e["invoker"]] -= e["memory"]
        self.running[run] -= 1
        if self.per_ns[ns] <= 0:
            del self.per_ns[ns]
        if self.running[run] <= 0:
            del self.running[run]

    def prune(self, now_ms: int) -> None:
        if now_ms - self.pruned < PRUNE_EVERY_MS:
            return
        self.pruned = now_ms
        old = [a for a, at in self.decided.items() if now_ms - at > WINDOW_MS]
        for a in old:
            del self.decided[a]


def counts_fire(ev: ActivationCompleted) -> bool:
    """A fire's answer that counted toward firesPerMinute: its record, or "no active rules" (rules.admit_fire
    counted it); a 429 refusal, a 403 or a 404 did not."""
    return ev.fire and ev.rejected_status in (None, 204)


def _tick(window: dict[str, Json], namespace: str, minute: int) -> None:
    """One more in the namespace's count of the current minute."""
    window[namespace] = {"minute": minute, "count": (window.get(namespace) or {"count": 0})["count"] + 1}


def _doc_id(entry: Json) -> str:
    return f"{entry['action']['namespace']}/{entry['action']['name']}"


def rebuild(number: int, log_events: Iterable[events.Event], now_ms: int, mono_ms: int) -> Partition:
    """A partition's state from its last WINDOW_MS of assignments and completions (in any order across topics).
    now_ms (wall) places the events in the rate minute and estimates, once, how long ago each was on the worker's
    monotonic clock (mono_ms is now on it), which the state keeps from then on.

    >>> req = ActivationRequested(activation_id="a", namespace="n", subject="s", at=0,
    ...                           action={"name": "x", "limits": {"memory": 128}}, params={})
    >>> p = rebuild(0, [ActivationAssigned(invoker=1, request=req, at=60_001)], 60_002, 900_000)
    >>> p.seen("a"), p.per_ns["n"], p.used[1], p.minutes["n"]["count"], p.inflight["a"]["since"]
    (True, 1, 128, 1, 899999)
    >>> p = rebuild(0, [ActivationCompleted(activation_id="a", namespace="n", invoker=1),
    ...                 ActivationAssigned(invoker=1, request=req, at=1)], 2, 900_000)
    >>> p.seen("a"), p.inflight, p.used[1]
    (True, {}, 0)
    >>> fired = ActivationCompleted(activation_id="f", namespace="n", record={}, fire=True, at=60_001)
    >>> p = rebuild(0, [fired, fired], 60_002, 900_000)  # the same answer twice (a re-read): one fire
    >>> p.seen("f"), p.fires["n"]["count"], p.minutes
    (True, 1, {})
    """
    p = Partition(number, pruned=mono_ms)
    finished: list[str] = []
    minute = now_ms // 60000
    for ev in log_events:
        since = clock.learned(ev.at, now_ms, mono_ms)
        if isinstance(ev, ActivationAssigned):
            p.assigned(ev, since)
            counted = ev.at
            ns = ev.request.namespace
        elif isinstance(ev, ActivationCompleted) and ev.fire:
            if not p.seen(ev.activation_id) and counts_fire(ev) and ev.at // 60000 == minute:
                _tick(p.fires, ev.namespace, minute)
            p.answered(ev.activation_id, since)  # its fire is not answered twice
            continue
        elif isinstance(ev, ActivationCompleted):
            finished.append(ev.activation_id)
            if ev.rejected_status is None:
                p.answered(ev.activation_id, since)  # also a trigger record written before `fire` existed
                continue
            p.refused(ev.activation_id, since)
            if ev.rejected_status not in (429, 503):  # 503: admitted, then no invoker; 403: never counted
                continue
            counted, ns = ev.at, ev.namespace
        else:
            continue
        if counted // 60000 == minute:  # refused attempts count too (throttle.admit)
            _tick(p.minutes, ns, minute)
    for aid in finished:
        p.completed(aid)
    return p


async def read_partition(bootstrap: str, topics: Topics, number: int, since_ms: int) -> tuple[list[events.Event], int]:
    """The assignments and completions of one partition number from `since_ms` to the log end as of now, and
    that end's offset in the completions partition (where following it goes on)."""
    c = bus.consumer(bootstrap, group=None)
    await c.start()
    try:
        tps = [TopicPartition(t, number) for t in (topics.completions, *topics.assignments())]
        c.assign(tps)  # one metadata request for all the topics (offsets_for_times would ask topic by topic)
        starts = await c.offsets_for_times({tp: since_ms for tp in tps})
        ends = await c.end_offsets(tps)
        todo = {tp: ends[tp] for tp in tps if starts.get(tp) is not None and starts[tp].offset < ends[tp]}
        out: list[events.Event] = []
        if todo:
            c.assign(list(todo))  # partitions with nothing in the window are not read
            for tp in todo:
                c.seek(tp, starts[tp].offset)
        while todo:
            batch = await c.getmany(*todo, timeout_ms=500)
            for m, ev in bus.decoded(batch, "admission log event"):
                tp = TopicPartition(m.topic, m.partition)
                if tp in todo and m.offset < todo[tp]:
                    out.append(ev)
            for tp in list(todo):
                if await c.position(tp) >= todo[tp]:
                    del todo[tp]
        return out, ends[TopicPartition(topics.completions, number)]
    finally:
        await c.stop()


class Admission:
    """The partitions' states of one worker: each built on first use after the worker took the partition, then
    kept current by the worker's own assignments and by following the partition's completions from where the
    rebuild stopped (a plain consumer: nothing to commit, the state is rebuilt from the log anyway)."""

    def __init__(self, bootstrap: str, topics: Topics, on_completed: Callable[[str], None]) -> None:
        self.bootstrap, self.topics, self.on_completed = bootstrap, topics, on_completed
        self.parts: dict[int, Partition] = {}
        self._loading: dict[int, asyncio.Task[Partition]] = {}
        self._follow: dict[int, int | None] = {}  # partition -> offset to start at (None: being followed)
        self._moved = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._read = asyncio.Condition()  # notified after each batch of completions

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
        evs, end = await read_partition(self.bootstrap, self.topics, number, events.now_ms() - WINDOW_MS)
        p = self.parts[number] = rebuild(number, evs, events.now_ms(), clock.mono_ms())
        self._follow[number] = end
        self._moved.set()
        log.info("partition %d: rebuilt from %d log events, %d in flight", number, len(evs), len(p.inflight))
        return p

    def drop(self, numbers: Iterable[int]) -> None:
        """Partitions taken away: another worker writes them now, so their state must be read again if they
        come back."""
        for n in numbers:
            self.parts.pop(n, None)
            self._follow.pop(n, None)
            self._moved.set()
            task = self._loading.pop(n, None)
            if task is not None:
                task.cancel()

    async def admit(self, part: Partition, req: ActivationRequested, limits: Json, now_ms: int) -> str | None:
        """Partition.admit, on a state that is current where it matters (see `settle`)."""
        await self.settle(part, req.namespace, limits)
        return part.admit(req, limits, now_ms)

    async def settle(self, part: Partition, namespace: str, limits: Json) -> None:
        """When the namespace looks full, apply every completion so far before deciding: the completion of the
        caller's previous activation may be a few milliseconds behind its next request."""
        if part.per_ns[namespace] >= throttle.limit(limits, "concurrentInvocations"):
            await self.caught_up(part.number)

    async def caught_up(self, number: int, timeout_s: float = 2.0) -> bool:
        """Wait until the completions of partition `number` are applied up to the log end as of now."""
        c = self._consumer
        tp = TopicPartition(self.topics.completions, number)
        if c is None or number not in self._follow:
            return False
        end = (await c.end_offsets([tp]))[tp]

        async def reached() -> None:
            async with self._read:
                while self._follow.get(number, 0) is not None or await c.position(tp) < end:
                    await self._read.wait()

        try:
            await asyncio.wait_for(reached(), timeout_s)
            return True
        except (TimeoutError, KafkaError, AssertionError):  # AssertionError: the partition was just unassigned
            return False

    async def follow(self) -> None:
        """Apply the completions of the loaded partitions, until cancelled."""
        c = self._consumer = bus.consumer(self.bootstrap, group=None)
        await c.start()
        try:
            while True:
                if self._moved.is_set() and self._follow:  # (an empty assign() can hang aiokafka's fetcher)
                    self._moved.clear()
                    tps = {n: TopicPartition(self.topics.completions, n) for n in self._follow}
                    c.assign(list(tps.values()))
                    for n, at in self._follow.items():
                        if at is not None:
                            c.seek(tps[n], at)
                            self._follow[n] = None
                if not self._follow:
                    self._moved.clear()
                    await self._moved.wait()
                    continue
                try:
                    batch = await c.getmany(timeout_ms=100)
                except Exception as e:  # a broker restart must not end it
                    log.warning("completions: fetch failed, retrying: %r", e)
                    await asyncio.sleep(0.5)
                    continue
                for tp, msgs in batch.items():
                    p = self.parts.get(tp.partition)
                    for m in msgs:
                        aid = finished(m.value)
                        if aid is not None:
                            self.on_completed(aid)
                            if p is not None:
                                p.completed(aid)
                async with self._read:
                    self._read.notify_all()
        finally:
            self._consumer = None
            await c.stop()

    def used(self) -> dict[int, int]:
        """Memory in use per invoker over this worker's partitions."""
        total: Counter[int] = Counter()
        for p in self.parts.values():
            total.update(p.used)
        return dict(total)

    def inflight(self) -> dict[str, Json]:
        return {aid: e for p in self.parts.values() for aid, e in p.inflight.items()}

    def running(self, doc_id: str) -> dict[int, int]:
        """Activations of one action in flight per invoker, over this worker's partitions."""
        out: Counter[int] = Counter()
        for p in self.parts.values():
            for (inv, d), n in p.running.items():
                if d == doc_id:
                    out[inv] += n
        return dict(out)


def finished(raw: bytes | None) -> str | None:
    """The activation id of a completion event, read without building the event (records can be large).

    >>> finished(b'{"type": "activation.completed", "activation_id": "a", "record": {}}'), finished(b'{}')
    ('a', None)
    """
    try:
        d = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(d, dict) or d.get("type") != ActivationCompleted.TYPE:
        return None
    aid = d.get("activation_id")
    return aid if isinstance(aid, str) else None


def network(limits: Json) -> str | None:
    """The namespace limit `actionNetwork: "none"` takes the action network away (operators choose per tenant).

    >>> network({"actionNetwork": "none"}), network({})
    ('none', None)
    """
    return "none" if limits.get("actionNetwork") == "none" else None


def place(states: Admission, req: ActivationRequested, invokers: dict[int, Json], now_ms: int) -> int | None:
    """The invoker for an admitted activation (None: no healthy invoker); now_ms: monotonic, as the pings' `heard`."""
    action = req.action
    doc_id = f"{action['namespace']}/{action['name']}"
    mem = int(action.get("limits", {}).get("memory", 256))
    return balancer.schedule(invokers, states.used(), doc_id, mem, now_ms, states.running(doc_id))
