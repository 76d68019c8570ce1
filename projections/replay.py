"""Rebuild the projections (subjects, whisks, activations) from the Kafka log with the live rules.

Two modes:
- fresh (default): build generation n+1 in new databases beside the live ones, then flip the pointer
  (catalog.py) in one doc write; the live projector and the API follow it within about a second.
- in place: re-apply events onto the live databases (recreating them if they were deleted). Events already
  in a doc (`wsk_offset`) are skipped, so this is safe while the live projector runs.
Events are read per partition up to the end offsets seen at the start (plus a short catch-up before a
switch), batched large, and written with `_bulk_docs` while the next batch is read and decoded.

Progress goes to the log as ReplayProgress events on `<prefix>.replays` (keyed by generation): the first, then at
most one a second while reading, and the last (done or failed). The projections process folds them into
streamwhisk_replay_* metrics (`follow`), the console's Replay page reads the latest ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from contracts import bus, events, metrics
from contracts.events import ReplayProgress, new_id
from contracts.settings import Settings
from contracts.topics import Topics
from projections import catalog, views
from projections.couch import Couch
from projections.runner import Batch, decode_checked, project_batch

log = logging.getLogger("replay")
SOURCE_KINDS = ("subjects", "entities", "completions")
REPORT_EVERY_S = 1.0  # progress events while reading: at most this often (plus the first and the last)
FOLLOW_BACK = 2000  # progress events read back per partition when the projections process starts


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
    replay_id: str = field(default_factory=new_id)  # names this run in its progress events

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        return {"events": self.events, "total": self.total, "docs": self.docs, "poison": len(self.poison),
                "seconds": round(self.seconds, 3), "events_per_s": round(self.rate, 1), "generation": self.generation,
                "dbs": self.dbs, "switched": self.switched, "dropped": self.dropped, "resume": self.resume,
                "poison_events": self.poison[:20], "replay_id": self.replay_id}


# --- progress on the log (pure parts first) ---------------------------------------------------------------------


def report_due(last_sent: float | None, now: float, every_s: float = REPORT_EVERY_S) -> bool:
    """Whether a progress report goes out now while reading: the first always, then at most every `every_s`."""
    return last_sent is None or now - last_sent >= every_s


def progress_event(stats: Stats, phase: str, *, in_place: bool, switch: bool, topics: list[str],
                   error: str | None = None) -> ReplayProgress:
    return ReplayProgress(replay_id=stats.replay_id, generation=stats.generation, phase=phase, events=stats.events,
                          total=stats.total, docs=stats.docs, poison=len(stats.poison),
                          seconds=round(stats.seconds, 3), events_per_s=round(stats.rate, 1), in_place=in_place,
                          switch=switch, switched=stats.switched, topics=topics, error=error)


class Reporter:
    """Sends ReplayProgress events without waiting for their acks while reading (the replay's own pace comes
    first); a failing send is logged, never fails the replay."""

    def __init__(self, producer: AIOKafkaProducer | None, topic: str, stats: Stats, *, in_place: bool,
                 switch: bool, sources: list[str]) -> None:
        self.producer, self.topic, self.stats = producer, topic, stats
        self.in_place, self.switch, self.sources = in_place, switch, sources
        self.last_sent: float | None = None
        self.sent = 0

    async def report(self, phase: str, *, force: bool = False, error: str | None = None) -> None:
        now = time.monotonic()
        if self.producer is None or not (force or report_due(self.last_sent, now)):
            return
        self.last_sent = now
        ev = progress_event(self.stats, phase, in_place=self.in_place, switch=self.switch, topics=self.sources,
                            error=error)
        try:
            await self.producer.send(self.topic, events.encode(ev), key=str(ev.generation).encode())
            self.sent += 1
        except Exception as e:
            log.warning("replay progress not published: %r", e)

    async def flush(self) -> None:
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.producer.flush(), 10)


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
                   writer: Writer, stats: Stats, deadline: float, progress: Callable[[], Awaitable[None]]) -> None:
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
            await progress()
    for tp, end in ends.items():  # fetched past the end: rewind, a catch-up round starts there
        if await consumer.position(tp) > end:
            consumer.seek(tp, end)


async def replay(
    settings: Settings, *, in_place: bool = False, switch: bool = True, generation: int | None = None,
    from_offsets: list[str] | None = None, from_time_ms: int | None = None, drop_old: bool = False,
    batch_size: int = 5000, timeout_s: float = 3600.0, on_progress: Callable[[Stats], None] | None = None,
    publish: bool = True,
) -> Stats:
    """Rebuild, publishing ReplayProgress events on the `replays` topic unless `publish` is False."""
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
    await bus.ensure_topics(settings.kafka, [*sources, topics.replays] if publish else sources, settings.partitions)
    producer = bus.producer(settings.kafka) if publish else None
    if producer is not None:
        await producer.start()
    reporter = Reporter(producer, topics.replays, stats, in_place=in_place, switch=switch, sources=sources)
    try:
        await _replay(settings, couch, stats, reporter, ptr, known, offsets, from_time_ms, in_place=in_place,
                      switch=switch, drop_old=drop_old, batch_size=batch_size, timeout_s=timeout_s,
                      on_progress=on_progress)
    except BaseException as e:  # interrupted or failed: the last report says so (what was read stays counted)
        with contextlib.suppress(BaseException):
            await reporter.report("failed", force=True, error=f"{type(e).__name__}: {e}"[:500])
            await reporter.flush()
        raise
    finally:
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 10)
    return stats


async def _replay(settings: Settings, couch: Couch, stats: Stats, reporter: Reporter, ptr: catalog.Pointer,
                  known: dict[str, set[str]] | None, offsets: dict[tuple[str, int | None], int],
                  from_time_ms: int | None, *, in_place: bool, switch: bool, drop_old: bool, batch_size: int,
                  timeout_s: float, on_progress: Callable[[Stats], None] | None) -> None:
    sources = reporter.sources
    consumer = bus.consumer(settings.kafka, group=None)
    await consumer.start()
    started = time.monotonic()
    deadline = started + timeout_s

    async def progress() -> None:
        stats.seconds = time.monotonic() - started
        if on_progress:
            on_progress(stats)
        await reporter.report("reading")

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
        await reporter.report("started", force=True)
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
        await reporter.report("switching", force=True)
        await asyncio.to_thread(catalog.switch, couch, settings, ptr, stats.generation, stats.resume)
        stats.switched = True
        if drop_old and ptr.generation != stats.generation:
            await asyncio.sleep(catalog.FOLLOW_INTERVAL_S * 3)  # readers follow the pointer within about 1 s
            for db in ptr.dbs.values():
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(couch.delete_db, db)
                stats.dropped.append(db)
    await reporter.report("done", force=True)
    await reporter.flush()


# --- the projections process: progress events -> metrics --------------------------------------------------------


def to_metrics(ev: ReplayProgress) -> None:
    metrics.replay_progress(ev.generation, ev.events, ev.total, done=ev.phase == "done", run=ev.replay_id)


async def follow(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Serve streamwhisk_replay_* from the `replays` topic: its recent past first (a restart shows the last runs
    again), then new reports as they come. One group-less consumer, idle but for one fetch a second."""
    t = Topics(settings.prefix)
    await bus.ensure_topics(settings.kafka, [t.replays], settings.partitions)
    c = bus.consumer(settings.kafka, group=None)
    await c.start()
    ep = metrics.get()
    try:
        tps = await bus.partitions(c, t.replays)
        c.assign(tps)
        begins, ends = await c.beginning_offsets(tps), await c.end_offsets(tps)
        for tp in tps:
            c.seek(tp, max(begins[tp], ends[tp] - FOLLOW_BACK))
        if ep is not None:
            ep.lag.consumer("replays", c)
        while stop is None or not stop.is_set():
            batch = await c.getmany(timeout_ms=1000, max_records=1000)
            for _, ev in bus.decoded(batch, "replay progress"):
                if isinstance(ev, ReplayProgress):  # the topic holds nothing else today; tomorrow's types are skipped
                    to_metrics(ev)
    finally:
        if ep is not None:
            ep.lag.forget(c)
        await c.stop()
