"""Consume the event log, apply the pure projection rules, write CouchDB in batches, then commit.

At-least-once: offsets are committed after the write, and a redelivered event is a no-op (see views.py).
After each batch a ProjectionProgress event tells API processes how far the views are, for read-your-writes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

from aiokafka import TopicPartition

from contracts import bus, events
from contracts.events import DeadLetter, Event, ProjectionProgress
from contracts.settings import Settings
from contracts.topics import Topics
from projections import views
from projections.couch import Couch

log = logging.getLogger("projections")


def database_names(settings: Settings) -> dict[str, str]:
    return {v: settings.db(v) for v in (views.SUBJECTS, views.WHISKS, views.ACTIVATIONS)}


def ensure_databases(couch: Couch, settings: Settings) -> None:
    for view, db in database_names(settings).items():
        couch.ensure_db(db, views.DESIGN_DOCS.get(view))


def project_batch(
    couch: Couch, dbs: dict[str, str], batch: list[tuple[int, int, Event]]
) -> int:
    """Apply one batch of (partition, offset, event); returns the number of docs written."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for _, _, ev in batch:
        for view, doc_id in views.targets(ev):
            wanted[view].add(doc_id)
    written = 0
    for view, ids in wanted.items():
        db = dbs[view]
        current: dict[str, Any] = couch.get_many(db, sorted(ids))
        touched: dict[str, dict[str, Any] | None] = {}
        for part, off, ev in batch:
            for v, doc_id in views.targets(ev):
                if v != view:
                    continue
                cur = touched[doc_id] if doc_id in touched else current.get(doc_id)
                if views.already_applied(cur, part, off):
                    continue
                touched[doc_id] = views.apply(view, doc_id, cur, ev, part, off)
        out = []
        for doc_id, doc in touched.items():
            rev = current.get(doc_id, {}).get("_rev")
            if doc is None:
                if rev:
                    out.append({"_id": doc_id, "_rev": rev, "_deleted": True})
            else:
                out.append({**doc, "_rev": rev} if rev else doc)
        couch.bulk(db, out)
        written += len(out)
    return written


async def run(settings: Settings, name: str = "projector", stop: asyncio.Event | None = None) -> None:
    topics = Topics(settings.prefix)
    couch = Couch(settings.couchdb)
    dbs = database_names(settings)
    await asyncio.to_thread(ensure_databases, couch, settings)
    sources = [topics.subjects, topics.entities, topics.completions]
    await bus.ensure_topics(settings.kafka, [*sources, topics.progress, topics.deadletter])
    consumer = bus.consumer(settings.kafka, *sources, group=f"{settings.prefix}-{name}")
    producer = bus.producer(settings.kafka)
    await consumer.start()
    await producer.start()
    log.info("projector started")
    try:
        while stop is None or not stop.is_set():
            records = await consumer.getmany(timeout_ms=200, max_records=500)
            if not records:
                continue
            batch: list[tuple[int, int, Event]] = []
            ends: dict[TopicPartition, int] = {}
            for tp, msgs in records.items():
                for m in msgs:
                    try:
                        batch.append((m.partition, m.offset, events.decode(m.value)))
                    except events.DecodeError as e:
                        raw = (m.value or b"")[:4096].decode("utf-8", "replace")
                        dl = DeadLetter(topic=tp.topic, partition=m.partition, offset=m.offset, reason=str(e), raw=raw)
                        await bus.send(producer, topics.deadletter, None, dl)
                ends[tp] = msgs[-1].offset + 1
            await asyncio.to_thread(project_batch, couch, dbs, batch)
            await consumer.commit({tp: off for tp, off in ends.items()})
            for tp, off in ends.items():
                ev = ProjectionProgress(projector=name, topic=tp.topic, partition=tp.partition, offset=off)
                await bus.send(producer, topics.progress, tp.topic, ev)
    finally:
        await consumer.stop()
        await producer.stop()
