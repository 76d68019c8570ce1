"""Rebuild the projections (subjects, whisks, activations) from the Kafka log with the live rules.

Two modes:
- fresh (default): build generation n+1 in new databases beside the live ones, then flip the pointer
  (catalog.py) in one doc write; the live projector and the API follow it within about a second.
- in place: re-apply events onto the live databases (recreating them if they were deleted). Events already
  in a doc (`wsk_offset`) are skipped, so this is safe while the live projector runs.
Events are read per partition up to the end offsets seen at the start (plus a short catch-up before a
switch), batched large, and written with `_bulk_docs` while the next batch is read and decoded.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts import bus, events
from contracts.settings import Settings
from contracts.topics import Topics
from projections import catalog, views
from projections.couch import Couch
from projections.runner import Batch, decode_checked, project_batch

SOURCE_KINDS = ("subjects", "entities", "completions")


class ReplayError(Exception):
    """A replay that must not run as asked (message for the user)."""


@dataclass
class Stats:
    total: int = 0  # events to read (sum over partitions of end - start)
    events: int = 0  # events read
    docs: int = 0  # docs written
    poison: list[dict[str, Any]] = field(default_factory=list)  # undecodable events: skipped, reported
    seconds: float = 0.0
    generation: int = 0
    dbs: dict[str, str] = field(default_factory=dict)
    switched: bool = False
    dropped: list[str] = field(default_factory=list)
    resume: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        return {"events": self.events, "docs": self.docs, "poison": len(self.poison), "seconds": round(self.seconds, 3),
                "events_per_s": round(self.rate, 1), "generation": self.generation, "dbs": self.dbs,
                "switched": self.switched, "dropped": self.dropped, "resume": self.resume,
                "poison_events": self.poison[:20]}


def parse_offsets(specs: list[str], topics: Topics) -> dict[tuple[str, int | None], int]:
    """`N` (every partition), `entities=N` (every partition of one topic) or `entities:0=N`."""
    out: dict[tuple[str, int | None], int] = {}
    for spec in specs:
        where, sep, num = spec.rpartition("=")
        try:
            offset = int(num)
        except ValueError as e:
            raise ReplayError(f"bad offset {spec!r}: expected N, TOPIC=N or TOPIC:PARTITION=N") from e
        if not sep:
            out.update({(getattr(topics, k), None): offset for k in SOURCE_KINDS})
            continue
        kind, _, part = where.partition(":")
        if kind not in SOURCE_KINDS:
            raise ReplayError(f"bad offset {spec!r}: topic must be one of {', '.join(SOURCE_KINDS)}")
        if part and not part.isdigit():
            raise ReplayError(f"bad offset {spec!r}: partition must be a number")
        out[(getattr(topics, kind), int(part) if part else None)] = offset
    return out


def start_offset(tp: TopicPartition, begin: int, end: int, offsets: dict[tuple[str, int | None], int],
                 by_time: int | None) -> int:
    """Where to start one partition: a time's offset, else an explicit offset, else the beginning."""
    if by_time is not None:
        return max(begin, min(by_time, end))
    at = offsets.get((tp.topic, tp.partition), offsets.get((tp.topic, None)))
    return begin if at is None else max(begin, min(at, end))


class Writer:
    """Writes batches to CouchDB in threads while the event loop reads and decodes the next ones.

    Two lanes. Events of WRITE_ONLY views (activations: written blind with revisions from their offsets, so
    the order of the writes does not matter) go to `parallel` threads that take batches as they come: while
    one waits for the server, another prepares and sends the next request, so the server always has one to
    work on. Events of the other views (read, fold, write: order matters, `known` is shared) go to one thread
    in log order. Batches wait in bounded queues (`depth` per lane), which holds the reader back.
    """

    def __init__(self, couch: Couch, dbs: dict[str, str], known: dict[str, set[str]] | None, blind: bool,
                 stats: Stats, parallel: int = 2, depth: int = 1) -> None:
        self.couch, self.dbs, self.known, self.blind, self.stats = couch, dbs, known, blind, stats
        self.ordered: queue.Queue[Batch | None] = queue.Queue(maxsize=depth)
        self.free: queue.Queue[Batch | None] = queue.Queue(maxsize=depth)
        self.lock = threading.Lock()
        self.error: BaseException | None = None
        self.closing = False
        self.threads = [threading.Thread(target=self._work, args=(q,), name=f"replay-writer-{i}", daemon=True)
                        for i, q in enumerate([self.ordered] + [self.free] * parallel)]
        for t in self.threads:
            t.start()

    def _work(self, q: queue.Queue[Batch | None]) -> None:
        while True:
            batch = q.get()
            try:
                if batch is None:
                    return
                if self.error is None and not self.closing:  # after a failure the rest is drained, not written
                    n = project_batch(self.couch, self.dbs, batch, self.known, self.blind)
                    with self.lock:
                        self.stats.docs += n
            except BaseException as e:
                self.error = self.error or e
            finally:
                q.task_done()

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    async def submit(self, batch: Batch) -> None:
        self._check()
        free: Batch = []
        ordered: Batch = []
        for item in batch:
            ts = views.targets(item[2])
            if ts:
                (free if all(v in views.WRITE_ONLY for v, _ in ts) else ordered).append(item)
        for q, part in ((self.ordered, ordered), (self.free, free)):
            if part:
                try:
                    q.put_nowait(part)
                except queue.Full:
                    await asyncio.to_thread(q.put, part)  # the writers are behind: wait for a slot

    async def drain(self) -> None:
        """Wait until everything submitted is written; raises what a writer raised."""
        await asyncio.to_thread(self.ordered.join)
        await asyncio.to_thread(self.free.join)
        self._check()

    async def close(self) -> None:
        """Stop the threads; what is still queued (the replay failed or was interrupted) is not written."""
        self.closing = True
        for t in self.threads:
            await asyncio.to_thread((self.ordered if t is self.threads[0] else self.free).put, None)
        for t in self.threads:
            await asyncio.to_thread(t.join)


async def _read_to(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int], batch_size: int,
                   writer: Writer, stats: Stats, deadline: float, progress: Callable[[], None]) -> None:
    """Read every partition up to `ends`, handing batches of decoded events to `writer` (not waiting for them)."""
    batch: Batch = []
    left = {tp for tp, end in ends.items() if await consumer.position(tp) < end}
    while left:
        if time.monotonic() > deadline:
            raise ReplayError("replay timed out")
        records = await consumer.getmany(*left, timeout_ms=500, max_records=batch_size)
        for tp, msgs in records.items():
            for m in msgs:
                if m.offset >= ends[tp]:
                    break
                stats.events += 1
                try:
                    batch.append((m.partition, m.offset, decode_checked(m.value)))
                except events.DecodeError as e:
                    stats.poison.append({"topic": tp.topic, "partition": m.partition, "offset": m.offset,
                                         "reason": str(e)})
        for tp in list(left):  # position, not the last message: offsets can have gaps (control records)
            if await consumer.position(tp) >= ends[tp]:
                left.discard(tp)
        if len(batch) >= batch_size or (not left and batch):
            await writer.submit(batch)
            batch = []
            progress()
    for tp, end in ends.items():  # fetched past the end: rewind, a catch-up round starts there
        if await consumer.position(tp) > end:
            consumer.seek(tp, end)


async def replay(
    settings: Settings, *, in_place: bool = False, switch: bool = True, generation: int | None = None,
    from_offsets: list[str] | None = None, from_time_ms: int | None = None, drop_old: bool = False,
    batch_size: int = 5000, timeout_s: float = 3600.0, on_progress: Callable[[Stats], None] | None = None,
) -> Stats:
    topics = Topics(settings.prefix)
    couch = Couch(settings.couchdb)
    offsets = parse_offsets(from_offsets or [], topics)
    partial = bool(offsets) or from_time_ms is not None
    ptr = await asyncio.to_thread(catalog.read, couch, settings)
    stats = Stats()
    known: dict[str, set[str]] | None = None
    if in_place:
        stats.generation, stats.dbs, switch = ptr.generation, ptr.dbs, False
    else:
        if partial and switch:
            raise ReplayError("a replay from an offset or time builds a partial projection: use --in-place, "
                              "or --no-switch to build it beside the live one for inspection")
        existing = catalog.existing_generations(await asyncio.to_thread(couch.all_dbs), settings)
        stats.generation = generation if generation is not None else max(existing | {ptr.generation}) + 1
        if stats.generation == ptr.generation:
            raise ReplayError(f"generation {ptr.generation} is live: rebuild it with --in-place")
        stats.dbs = catalog.names(settings, stats.generation)
        for db in stats.dbs.values():
            await asyncio.to_thread(couch.delete_db, db)
        known = {view: set() for view in stats.dbs}
    await asyncio.to_thread(catalog.ensure_databases, couch, stats.dbs)

    sources = [getattr(topics, k) for k in SOURCE_KINDS]
    await bus.ensure_topics(settings.kafka, sources, settings.partitions)
    consumer = bus.consumer(settings.kafka, group=None)
    await consumer.start()
    started = time.monotonic()
    deadline = started + timeout_s

    def progress() -> None:
        stats.seconds = time.monotonic() - started
        if on_progress:
            on_progress(stats)

    writer = Writer(couch, stats.dbs, known, not in_place, stats)
    try:
        tps: list[TopicPartition] = []
        for topic in sources:
            tps += await bus.partitions(consumer, topic)
        consumer.assign(tps)
        begins, ends = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        by_time: dict[TopicPartition, int | None] = dict.fromkeys(tps)
        if from_time_ms is not None:
            found = await consumer.offsets_for_times(dict.fromkeys(tps, from_time_ms))
            by_time = {tp: (found[tp].offset if found.get(tp) else ends[tp]) for tp in tps}
        for tp in tps:
            consumer.seek(tp, start_offset(tp, begins[tp], ends[tp], offsets, by_time[tp]))
            stats.total += ends[tp] - await consumer.position(tp)
        await _read_to(consumer, ends, batch_size, writer, stats, deadline, progress)
        if switch:
            for _ in range(3):  # catch up with what arrived meanwhile, so the switch loses as little as possible
                newer = await consumer.end_offsets(tps)
                if newer == ends:
                    break
                stats.total += sum(newer[tp] - ends[tp] for tp in tps)
                ends = newer
                await _read_to(consumer, ends, batch_size, writer, stats, deadline, progress)
        await writer.drain()  # everything up to `ends` is written before the switch says to resume there
        stats.resume = {}
        for tp in tps:
            stats.resume.setdefault(tp.topic, {})[str(tp.partition)] = ends[tp]
    finally:
        await writer.close()
        await consumer.stop()
    stats.seconds = time.monotonic() - started
    if on_progress:
        on_progress(stats)
    if switch:
        await asyncio.to_thread(catalog.switch, couch, settings, ptr, stats.generation, stats.resume)
        stats.switched = True
        if drop_old and ptr.generation != stats.generation:
            await asyncio.sleep(catalog.FOLLOW_INTERVAL_S * 3)  # readers follow the pointer within about 1 s
            for db in ptr.dbs.values():
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(couch.delete_db, db)
                stats.dropped.append(db)
    return stats
