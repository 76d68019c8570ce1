"""Consume the event log, apply the pure projection rules, write CouchDB in batches, then commit.

At-least-once: offsets are committed after the write, and a redelivered event is a no-op (see views.py).
After each batch a ProjectionProgress event tells API processes how far the views are, for read-your-writes.
The databases written are the live generation named by the pointer in `<prefix>_meta` (catalog.py): when a
replay switches generations, the projector seeks back to where the replay stopped and goes on in the new one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any

import requests
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter

from contracts import bus, events, metrics
from contracts.events import DeadLetter, Event, ProjectionProgress
from contracts.settings import Settings
from contracts.topics import Topics
from projections import catalog, views
from projections.couch import Couch

log = logging.getLogger("projections")
Batch = list[tuple[int, int, Event]]
MAX_CONFLICT_RETRIES = 10
APPLIED = Counter("streamwhisk_projection_applied", "Events applied to the CouchDB views", ["projector"])


def database_names(settings: Settings) -> dict[str, str]:
    """Generation 0's names (a stack that never replayed); the live ones come from catalog.read/current."""
    return catalog.names(settings, 0)


def ensure_databases(couch: Couch, settings: Settings) -> None:
    catalog.ensure_databases(couch, catalog.read(couch, settings).dbs)


def decode_checked(raw: bytes | None) -> Event:
    """Decode and check that the projection rules can apply it; DecodeError means a poison event."""
    ev = events.decode(raw)
    views.check(ev)
    return ev


def project_batch(
    couch: Couch, dbs: dict[str, str], batch: Batch, known: dict[str, set[str]] | None = None, blind: bool = True,
) -> int:
    """Apply one batch of (partition, offset, event); returns the number of docs written.

    `known` (replay into fresh databases): the ids that exist, so ids never written are not read back.
    A conflict (another writer, e.g. a live projector during an in-place replay) re-reads and re-folds the
    doc: the rules are idempotent, so the result is the same whoever wrote first.
    Docs of WRITE_ONLY views (activations) are written with `new_edits: false` and the revision of their last
    event (views.revision): a redelivered event rewrites a revision the doc has (a no-op) and the highest
    offset wins. `blind` (default): they are not read first; otherwise (in-place replay) they are read, so
    what a doc has already is skipped and not counted as written.
    """
    per_doc: dict[str, dict[str, list[tuple[int, int, Event]]]] = defaultdict(lambda: defaultdict(list))
    for part, off, ev in batch:
        for view, doc_id in views.targets(ev):
            per_doc[view][doc_id].append((part, off, ev))  # batch order is offset order per partition
    written = 0
    for view, docs in per_doc.items():
        if view in views.WRITE_ONLY:
            written += _write_only(couch, dbs[view], view, docs, known, blind)
        else:
            written += _read_fold_write(couch, dbs[view], view, docs, known)
    return written


def _fold(view: str, doc_id: str, cur: Any, evs: list[tuple[int, int, Event]]) -> Any:
    new = cur
    for part, off, ev in evs:
        if not views.already_applied(new, part, off):
            new = views.apply(view, doc_id, new, ev, part, off)
    return new


def _write_only(couch: Couch, db: str, view: str, docs: dict[str, list[tuple[int, int, Event]]],
                known: dict[str, set[str]] | None, blind: bool) -> int:
    current: dict[str, Any] = {}
    if not blind:
        current = couch.get_many(db, list(docs) if known is None else [i for i in docs if i in known[view]])
    out = []
    for doc_id, evs in docs.items():
        cur = current.get(doc_id)
        new = _fold(view, doc_id, cur, evs)
        if new is cur or new is None:  # already there (or nothing to write: WRITE_ONLY views never delete)
            continue
        new["_rev"] = views.revision(new["wsk_partition"], new["wsk_offset"])  # `new` is apply()'s own dict
        out.append(new)
    couch.bulk_write(db, out, new_edits=False)
    if known is not None and not blind:  # blind writes never read, so they need no record of what exists
        known[view].update(d["_id"] for d in out)
    return len(out)


def _read_fold_write(couch: Couch, db: str, view: str, docs: dict[str, list[tuple[int, int, Event]]],
                     known: dict[str, set[str]] | None) -> int:
    written = 0
    pending = list(docs)
    for _ in range(MAX_CONFLICT_RETRIES):
        ids = pending if known is None else [i for i in pending if i in known[view]]
        current: dict[str, Any] = couch.get_many(db, ids)
        out = []
        for doc_id in pending:
            cur = current.get(doc_id)
            new = _fold(view, doc_id, cur, docs[doc_id])
            if new is cur:
                continue
            rev = cur.get("_rev") if cur else None
            if new is None:
                if rev:
                    out.append({"_id": doc_id, "_rev": rev, "_deleted": True})
            else:
                out.append({**new, "_rev": rev} if rev else {k: v for k, v in new.items() if k != "_rev"})
        conflicts = couch.bulk_write(db, out)
        written += len(out) - len(conflicts)
        if known is not None:
            for d in out:
                (known[view].discard if d.get("_deleted") else known[view].add)(d["_id"])
        if not conflicts:
            return written
        pending = conflicts
    raise RuntimeError(f"{db}: still conflicting after {MAX_CONFLICT_RETRIES} tries: {pending[:3]}")


def dead_letter(topic: str, partition: int, offset: int, raw: bytes | None, reason: str) -> DeadLetter:
    text = (raw or b"")[:4096].decode("utf-8", "replace")
    return DeadLetter(topic=topic, partition=partition, offset=offset, reason=reason, raw=text)


async def _follow_pointer(consumer: AIOKafkaConsumer, couch: Couch, settings: Settings,
                          ptr: catalog.Pointer) -> catalog.Pointer:
    """If a replay switched generations: use the new databases and seek back to where the replay stopped."""
    new = await asyncio.to_thread(catalog.read, couch, settings)
    if new.generation == ptr.generation and new.dbs == ptr.dbs:
        return ptr
    await asyncio.to_thread(catalog.ensure_databases, couch, new.dbs)
    for tp in consumer.assignment():
        at = new.resume_at(tp.topic, tp.partition)
        if at is not None and at < await consumer.position(tp):
            consumer.seek(tp, at)
    log.info("switched to generation %d (%s)", new.generation, new.dbs)
    return new


async def run(settings: Settings, name: str = "projector", stop: asyncio.Event | None = None) -> None:
    topics = Topics(settings.prefix)
    couch = Couch(settings.couchdb)
    ptr = await catalog.live(settings)
    await asyncio.to_thread(catalog.ensure_databases, couch, ptr.dbs)
    sources = [topics.subjects, topics.entities, topics.completions]
    await bus.ensure_topics(settings.kafka, [*sources, topics.progress, topics.deadletter], settings.partitions)
    consumer = bus.consumer(settings.kafka, *sources, group=f"{settings.prefix}-{name}")
    producer = bus.producer(settings.kafka)
    ep = metrics.get()
    if ep is not None:
        ep.lag.group(f"{settings.prefix}-{name}", sources)
    APPLIED.labels(name)  # the series exists (0) before the first batch
    await consumer.start()
    await producer.start()
    log.info("projector started (generation %d)", ptr.generation)
    checked = time.monotonic()
    try:
        while stop is None or not stop.is_set():
            if time.monotonic() - checked > catalog.FOLLOW_INTERVAL_S and consumer.assignment():
                try:
                    ptr = await _follow_pointer(consumer, couch, settings, ptr)
                except (requests.ConnectionError, requests.Timeout) as e:  # CouchDB down: check again later
                    log.warning("couchdb unreachable, catalog not checked: %r", e)
                checked = time.monotonic()
            records = await consumer.getmany(timeout_ms=200, max_records=500)
            if not records:
                continue
            batch: Batch = []
            ends: dict[TopicPartition, int] = {}
            for tp, msgs in records.items():
                for m in msgs:
                    try:
                        batch.append((m.partition, m.offset, decode_checked(m.value)))
                    except events.DecodeError as e:
                        log.warning("dead-lettering %s[%d]@%d: %s", tp.topic, m.partition, m.offset, e)
                        dl = dead_letter(tp.topic, m.partition, m.offset, m.value, str(e))
                        await bus.send(producer, topics.deadletter, None, dl)
                ends[tp] = msgs[-1].offset + 1
            while True:  # CouchDB unreachable: keep the batch (offsets stay uncommitted) and retry
                try:
                    await asyncio.to_thread(project_batch, couch, ptr.dbs, batch)
                    break
                except (requests.ConnectionError, requests.Timeout) as e:
                    log.warning("couchdb unreachable, retrying the batch: %r", e)
                    await asyncio.sleep(1.0)
                except requests.HTTPError as e:  # e.g. 500 while its disk is full: keep the batch, not crash-loop
                    if e.response is None or e.response.status_code < 500:
                        raise
                    log.warning("couchdb failed the batch, retrying: %r", e)
                    await asyncio.sleep(1.0)
            APPLIED.labels(name).inc(len(batch))
            try:
                await consumer.commit({tp: off for tp, off in ends.items()})
            except KafkaError as e:  # a rebalance (e.g. after a broker restart): redelivered events are no-ops
                log.warning("offset commit failed: %r", e)
            for tp, off in ends.items():
                ev = ProjectionProgress(projector=name, topic=tp.topic, partition=tp.partition, offset=off)
                await bus.send(producer, topics.progress, tp.topic, ev)
    finally:
        await consumer.stop()
        await producer.stop()
