"""The API's view of the log: subjects (for auth), decisions, completions and projector progress.

One consumer without a group reads the tail of each topic; requests register futures before they send,
so no reply can be missed. Subjects are read from the start: they are the identity table.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from api.views import DocCache
from contracts import bus, events, keys
from contracts.events import (
    ActivationAssigned,
    ActivationCompleted,
    EntityChanged,
    ProjectionProgress,
    SubjectBlocked,
    SubjectDeleted,
    SubjectKeyAdded,
)
from contracts.topics import Topics

log = logging.getLogger("api.tail")


@dataclass
class Identity:
    subject: str
    namespace: str
    uuid: str
    key_salt: str
    key_hash: str
    limits: dict[str, Any]
    blocked: bool = False


class Tail:
    def __init__(self, bootstrap: str, topics: Topics) -> None:
        self.bootstrap = bootstrap
        self.t = topics
        self.identities: dict[str, Identity] = {}  # by uuid
        self.decisions: dict[str, asyncio.Future[tuple[EntityChanged, int, int]]] = {}
        self.completions: dict[str, asyncio.Future[ActivationCompleted]] = {}
        self.admissions: dict[str, asyncio.Future[bool]] = {}
        self.progress: dict[tuple[str, int], int] = {}
        self.completion_pos: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._progress_changed = asyncio.Condition()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        self.doc_cache: DocCache | None = None  # fed with every decided doc
        self.route_cache: Any = None  # api.gateway.Routes: fed with every decided doc too
        self.activation_secret: bytes | None = None  # verifies activation-scoped keys (contracts/keys.py)

    async def start(self) -> None:
        c = bus.consumer(self.bootstrap, group=None)
        await c.start()
        tail_topics = [self.t.entities, self.t.completions, self.t.progress, *self.t.assignments()]
        tps: list[TopicPartition] = []
        for topic in [self.t.subjects, *tail_topics]:
            tps += await bus.partitions(c, topic)
        c.assign(tps)
        subj = [tp for tp in tps if tp.topic == self.t.subjects]
        await c.seek_to_beginning(*subj)
        await c.seek_to_end(*[tp for tp in tps if tp.topic != self.t.subjects])
        for tp in tps:
            await c.position(tp)  # pin "end" now, before any request is sent
        self._consumer = c
        ends = await c.end_offsets(subj)
        self._task = asyncio.create_task(self._loop())
        # Ready once every existing subject event is in memory.
        while [tp for tp in subj if await c.position(tp) < ends[tp]]:
            await asyncio.sleep(0.05)
        self.ready.set()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        if self._consumer:
            await self._consumer.stop()

    async def _loop(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=500)
            except Exception as e:  # a broker restart must not end the tail: retry until it is back
                log.warning("tail fetch failed, retrying: %r", e)
                await asyncio.sleep(0.5)
                continue
            for msgs in batch.values():
                for m in msgs:
                    self._on_raw(m.value, m.topic, m.partition, m.offset)
            if any(tp.topic == self.t.progress for tp in batch):
                async with self._progress_changed:
                    self._progress_changed.notify_all()

    def _on_raw(self, raw: bytes | None, topic: str, partition: int, offset: int) -> None:
        """Activation events are read only as far as their ids, and built only when a request waits on them:
        every assignment and completion of the platform passes here."""
        try:
            d = orjson.loads(raw or b"")
            kind = d.get("type") if isinstance(d, dict) else None
            if kind == ActivationAssigned.TYPE:
                _resolve(self.admissions, d["request"]["activation_id"], True)  # admitted: a 202 answers now
                return
            if kind == ActivationCompleted.TYPE:
                aid = d["activation_id"]
                self.completion_pos[aid] = (partition, offset)
                if len(self.completion_pos) > 100_000:
                    self.completion_pos.popitem(last=False)
                if aid not in self.admissions and aid not in self.completions:
                    return
            ev = events.from_dict(d)
        except (orjson.JSONDecodeError, events.DecodeError, KeyError, TypeError) as e:
            log.warning("skipping undecodable event at %s:%d@%d: %s", topic, partition, offset, e)
            return
        try:
            self._on(ev, partition, offset)
        except Exception:  # a poison event must not end the tail (auth and every reply depend on it)
            log.exception("skipping event at %s:%d@%d", topic, partition, offset)

    def _on(self, ev: events.Event, partition: int, offset: int) -> None:
        if isinstance(ev, SubjectKeyAdded):
            self.identities = {u: i for u, i in self.identities.items()
                               if not (i.subject == ev.subject and i.namespace == ev.namespace)}
            self.identities[ev.uuid] = Identity(ev.subject, ev.namespace, ev.uuid, ev.key_salt, ev.key_hash, ev.limits)
        elif isinstance(ev, SubjectBlocked):
            for i in self.identities.values():
                if i.subject == ev.subject:
                    i.blocked = ev.blocked
        elif isinstance(ev, SubjectDeleted):
            self.identities = {u: i for u, i in self.identities.items() if i.subject != ev.subject}
        elif isinstance(ev, EntityChanged):
            for doc_id, doc in ev.writes:
                if self.doc_cache is not None:
                    self.doc_cache.decided(doc_id, doc)
                if self.route_cache is not None:
                    self.route_cache.decided(doc_id, doc)
            _resolve(self.decisions, ev.request_id, (ev, partition, offset))
        elif isinstance(ev, ActivationCompleted):
            _resolve(self.admissions, ev.activation_id, ev.rejected_status is None)
            _resolve(self.completions, ev.activation_id, ev)
        elif isinstance(ev, ProjectionProgress):
            key = (ev.topic, ev.partition)
            self.progress[key] = max(self.progress.get(key, 0), ev.offset)

    def authenticate(self, authkey: str) -> Identity | None:
        uid, key = keys.split(authkey)
        ident = self.identities.get(uid)
        if ident is not None:
            return ident if keys.verify(key, ident.key_salt, ident.key_hash) else None
        return self._activation_identity(authkey)

    def _activation_identity(self, authkey: str) -> Identity | None:
        """The caller behind an activation-scoped key, while that activation runs (its completion ends the key)."""
        if self.activation_secret is None:
            return None
        k = keys.read_minted(self.activation_secret, authkey, events.now_ms())
        if k is None or k.activation_id in self.completion_pos:
            return None
        return next((i for i in self.identities.values() if i.subject == k.subject and i.namespace == k.namespace),
                    None)

    async def caught_up(self, topic: str, partition: int, offset: int, timeout: float) -> bool:
        """Wait until the projector has written the event at `offset`."""
        async with self._progress_changed:
            try:
                await asyncio.wait_for(
                    self._progress_changed.wait_for(lambda: self.progress.get((topic, partition), 0) > offset),
                    timeout,
                )
                return True
            except TimeoutError:
                return False


def _resolve(table: dict[str, asyncio.Future[Any]], key: str, value: Any) -> None:
    fut = table.pop(key, None)
    if fut is not None and not fut.done():
        fut.set_result(value)
