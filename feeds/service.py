"""The feed provider service: alarms and Kafka feeds as a platform service, state in a compacted topic.

- Feed actions (/whisk.system/alarms/{alarm,interval,once}, /whisk.system/kafka/{topic,connector}) are run by
  the API as requests on the feedreqs topic (auth keys stripped); this service applies the lifecycle event
  (CREATE/READ/UPDATE/DELETE/PAUSE/UNPAUSE), writes the feed's state (FeedChanged) and answers with the feed
  action's activation record on completions.
- Alarms fire TriggerFired on the fires topic with a deterministic activation id per (trigger, slot), then record
  the slot (FeedProgress). On start the service reloads its state and scans the fires topic from the oldest
  progress write for fires it sent but did not record, so a restart neither loses (missed slots are fired late)
  nor doubles a fire: effectively exactly once.
- Topic and connector feeds fire once per record (payload: the record's JSON object, else {value, topic,
  partition, offset}) from the end offsets taken at CREATE; progress is written after each fire (at least once).
  A connector feed first creates a Kafka Connect source connector writing to a per-trigger topic.
- A feed whose trigger is gone (deleted without the feed's DELETE) is disabled before it fires again, as OpenWhisk's
  alarms provider disables a trigger whose fire answers 404; the disabled state is feed state like the rest.
- On start it installs the /whisk.system catalog (feeds/catalog.py), following the entity log through a view that
  also tells whether a feed's trigger still exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from contracts import bus, entities, events
from contracts.events import (
    ActivationCompleted,
    ActivationRequested,
    FeedChanged,
    FeedProgress,
    TriggerFired,
)
from contracts.logview import LogView
from contracts.settings import Settings
from contracts.topics import Topics
from feeds import catalog, connect, schedule
from feeds.schedule import FeedError

log = logging.getLogger("feeds")
Doc = dict[str, Any]
ALARMS = ("alarm", "interval", "once")
KAFKA = ("topic", "connector")
RESERVED = ("lifecycleEvent", "triggerName", "authKey")
TICK_S = 0.2
SYSTEM = catalog.SYSTEM
CATALOGUE = {"alarms": ALARMS, "kafka": KAFKA}
# What OpenWhisk's alarms provider records when a fire answers 404 (provider/lib/utils.js disableTrigger).
GONE = {"kind": "AUTO", "statusCode": 404,
        "message": "Trigger automatically disabled: Received a 404 status code when firing the trigger"}


def feed_kind(action: Doc) -> str | None:
    """The feed kind of a platform feed action, else None."""
    ns, name = action.get("namespace", ""), action.get("name", "")
    pkg = ns.partition("/")[2]
    return name if ns.startswith(f"{SYSTEM}/") and name in CATALOGUE.get(pkg, ()) else None


def trigger_gone(doc: Doc | None) -> bool:
    """A fire of this trigger would answer 404: the rules agent finds no trigger doc in the entity log."""
    return doc is None or doc.get("entityType") != "trigger"


def feed_record(req: ActivationRequested, result: Doc, code: int, start: int, end: int) -> Doc:
    """The feed action's activation record, shaped as any action's (invoker/outcome.py), with the feed action's
    own kind: OpenWhisk's feed actions are nodejs actions, and their records say so."""
    action = req.action
    kind = (action.get("exec") or {}).get("kind") or entities.resolve_kind(catalog.KIND)
    status = {0: "success", 1: "application error", 3: "whisk internal error"}[code]
    return {
        "namespace": req.namespace, "name": action["name"], "subject": req.subject,
        "activationId": req.activation_id, "start": start, "end": end, "duration": end - start,
        "response": {"status": status, "statusCode": code, "success": code == 0, "result": result},
        "logs": [], "version": action.get("version", "0.0.1"), "publish": False,
        "annotations": [{"key": "path", "value": f"{action['namespace']}/{action['name']}"},
                        {"key": "waitTime", "value": max(0, start - req.at)}, {"key": "kind", "value": kind},
                        {"key": "timeout", "value": False}, {"key": "limits", "value": action.get("limits", {})}],
    }


def activation_id(trigger: str, slot: int) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"streamwhisk:{trigger}@{slot}").hex


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", s)


class FeedService:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.t = Topics(settings.prefix)
        self.feeds: dict[str, FeedChanged] = {}
        self.last: dict[str, int] = {}  # alarms: last slot fired
        self.offsets: dict[tuple[str, int], int] = {}  # topic feeds: next offset per (trigger, partition)
        self.written_at: dict[str, int] = {}  # when the latest state of each trigger was written
        self.readers: dict[str, asyncio.Task[None]] = {}
        self.producer: AIOKafkaProducer | None = None
        self.view = LogView(settings.kafka, self.t.entities, catalog.fold)  # whisk.system docs and triggers

    # --- plumbing -------------------------------------------------------------------------------------------

    async def send(self, topic: str, key: str, ev: events.Event) -> tuple[int, int]:
        assert self.producer is not None
        return await bus.send(self.producer, topic, key, ev)

    async def run(self) -> None:
        t = self.t
        await bus.ensure_topics(self.s.kafka, [t.fires, t.completions, t.commands, t.entities, t.feed_requests],
                                 self.s.partitions)
        await bus.ensure_topics(self.s.kafka, [t.feed_state], self.s.partitions,
                                configs={t.feed_state: {"cleanup.policy": "compact"}})
        self.producer = bus.producer(self.s.kafka)
        await self.producer.start()
        view = asyncio.create_task(self.view.run())
        try:
            await self.view.ready.wait()
            await self.install_catalogue()
            await self.load_state()
            await self.recover_fires()
            for trig, f in self.feeds.items():
                if f.kind in KAFKA and f.config is not None and f.status != "disabled":
                    self.start_reader(trig)
            log.info("feeds ready: %d feeds", len(self.feeds))
            await asyncio.gather(view, self.serve_requests(), self.alarm_loop())
        finally:
            view.cancel()
            for task in self.readers.values():
                task.cancel()
            await self.producer.stop()

    async def install_catalogue(self) -> None:
        """The whisk.system catalog (feeds/catalog.py): puts for what the entity log lacks or holds differently."""
        puts = catalog.changes(self.view.get, events.now_ms())
        for cmd in puts:
            await self.send(self.t.commands, SYSTEM, cmd)
        log.info("catalog: %d entities installed or updated", len(puts))

    async def _read_all(self, c: AIOKafkaConsumer, tps: list[TopicPartition], fn: Any) -> None:
        ends = await c.end_offsets(tps)
        while [tp for tp in tps if await c.position(tp) < ends[tp]]:
            batch = await c.getmany(timeout_ms=500)
            for msgs in batch.values():
                for m in msgs:
                    try:
                        fn(events.decode(m.value), m.timestamp)
                    except events.DecodeError:
                        continue

    async def load_state(self) -> None:
        c = bus.consumer(self.s.kafka, group=None)
        await c.start()
        try:
            tps = await bus.partitions(c, self.t.feed_state)
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            await self._read_all(c, tps, self.apply)
        finally:
            await c.stop()

    def apply(self, ev: events.Event, ts: int) -> None:
        if isinstance(ev, FeedChanged):
            if ev.config is None:
                self.feeds.pop(ev.trigger, None)
                self.last.pop(ev.trigger, None)
                self.offsets = {k: v for k, v in self.offsets.items() if k[0] != ev.trigger}
            else:
                self.feeds[ev.trigger] = ev
        elif isinstance(ev, FeedProgress):
            if ev.partition is None:
                self.last[ev.trigger] = max(self.last.get(ev.trigger, 0), ev.slot)
            else:
                self.offsets[(ev.trigger, ev.partition)] = ev.slot
        else:
            return
        self.written_at[ev.trigger] = ts

    async def recover_fires(self) -> None:
        """Fires sent but not recorded before a crash: scan the fires topic from the oldest alarm state write."""
        alarms = [t for t, f in self.feeds.items() if f.kind in ALARMS]
        if not alarms:
            return
        since = min(self.written_at.get(t, 0) for t in alarms) - 5000
        c = bus.consumer(self.s.kafka, group=None)
        await c.start()
        found: dict[str, int] = {}

        def see(ev: events.Event, ts: int) -> None:
            if isinstance(ev, TriggerFired) and ev.slot is not None and ev.source in ALARMS:
                found[ev.trigger] = max(found.get(ev.trigger, 0), ev.slot)

        try:
            tps = await bus.partitions(c, self.t.fires)
            c.assign(tps)
            starts = await c.offsets_for_times({tp: max(0, since) for tp in tps})
            for tp in tps:
                off = starts.get(tp)
                if off is None:
                    await c.seek_to_end(tp)
                else:
                    c.seek(tp, off.offset)
            await self._read_all(c, tps, see)
        finally:
            await c.stop()
        for trig, slot in found.items():
            if trig in self.feeds and slot > self.last.get(trig, 0):
                log.info("recovered an unrecorded fire of %s at slot %d", trig, slot)
                await self.progress(trig, slot)

    async def state(self, ev: FeedChanged) -> None:
        await self.send(self.t.feed_state, ev.trigger, ev)
        self.apply(ev, events.now_ms())

    async def progress(self, trigger: str, slot: int, partition: int | None = None) -> None:
        ev = FeedProgress(trigger=trigger, slot=slot, partition=partition)
        key = f"progress/{trigger}" + (f"/{partition}" if partition is not None else "")
        await self.send(self.t.feed_state, key, ev)
        self.apply(ev, events.now_ms())

    async def disable_if_gone(self, f: FeedChanged) -> bool:
        """OpenWhisk's alarms provider disables a trigger whose fire answers 404 (deleted without the feed's DELETE).
        Fires here get no HTTP answer, so ask the log the rules agent answers from; a miss is believed only once
        the view has caught up (else fire: the rules agent decides). The disabled state is kept like any other."""
        if not trigger_gone(self.view.get(f.trigger)):
            return False
        if not await self.view.sync() or not trigger_gone(self.view.get(f.trigger)):
            return False
        log.info("feed of %s disabled: its trigger is gone", f.trigger)
        await self.state(FeedChanged(trigger=f.trigger, subject=f.subject, namespace=f.namespace, kind=f.kind,
                                     config=f.config, status="disabled", reason=dict(GONE)))
        return True

    async def fire(self, f: FeedChanged, payload: Doc, aid: str, slot: int | None = None) -> None:
        ev = TriggerFired(activation_id=aid, namespace=f.namespace, subject=f.subject, trigger=f.trigger,
                          payload=payload, source=f.kind, slot=slot)
        await self.send(self.t.fires, f.namespace, ev)

    # --- alarms ---------------------------------------------------------------------------------------------

    async def alarm_loop(self) -> None:
        while True:
            now = events.now_ms()
            for trig, f in list(self.feeds.items()):
                if f.kind not in ALARMS or f.status != "active" or f.config is None:
                    continue
                for slot in schedule.due(f.kind, f.config, self.last.get(trig), now):
                    if await self.disable_if_gone(f):
                        break
                    payload = f.config.get("trigger_payload", {})
                    await self.fire(f, payload if isinstance(payload, dict) else {"payload": payload},
                                    activation_id(trig, slot), slot)
                    await self.progress(trig, slot)
            await asyncio.sleep(TICK_S)

    # --- kafka topics ---------------------------------------------------------------------------------------

    def start_reader(self, trigger: str) -> None:
        self.stop_reader(trigger)
        self.readers[trigger] = asyncio.create_task(self.read_topic(trigger))

    def stop_reader(self, trigger: str) -> None:
        task = self.readers.pop(trigger, None)
        if task is not None:
            task.cancel()

    async def read_topic(self, trigger: str) -> None:
        f = self.feeds[trigger]
        assert f.config is not None
        topic, start = f.config["topic"], {int(k): v for k, v in f.config.get("start", {}).items()}
        c = bus.consumer(self.s.kafka, group=None)
        await c.start()
        try:
            tps = await bus.partitions(c, topic)
            c.assign(tps)
            for tp in tps:
                c.seek(tp, self.offsets.get((trigger, tp.partition), start.get(tp.partition, 0)))
            while True:
                batch = await c.getmany(timeout_ms=500)
                for tp, msgs in batch.items():
                    for m in msgs:
                        f = self.feeds.get(trigger, f)
                        if f.status == "active":
                            if await self.disable_if_gone(f):
                                return
                            await self.fire(f, record_payload(m.value, topic, tp.partition, m.offset), events.new_id())
                        await self.progress(trigger, m.offset + 1, tp.partition)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("topic feed %s stopped", trigger)
        finally:
            await c.stop()

    # --- lifecycle ------------------------------------------------------------------------------------------

    async def serve_requests(self) -> None:
        c = bus.consumer(self.s.kafka, self.t.feed_requests, group=f"{self.s.prefix}-feeds")
        await c.start()
        try:
            while True:
                batch = await c.getmany(timeout_ms=500)
                for _, ev in bus.decoded(batch, "feed request"):
                    if isinstance(ev, ActivationRequested):
                        await self.handle(ev)
                if batch:
                    await c.commit()
        finally:
            await c.stop()

    async def handle(self, req: ActivationRequested) -> None:
        start, t0 = events.now_ms(), time.monotonic()
        try:
            result, code = await self.lifecycle(req), 0
        except FeedError as e:
            result, code = {"error": str(e)}, 1
        except Exception as e:
            log.exception("feed request failed")
            result, code = {"error": f"feed provider failed: {e}"}, 3
        end = start + int((time.monotonic() - t0) * 1000)  # a wall-clock step meanwhile is not its duration
        record = feed_record(req, result, code, start, end)
        done = ActivationCompleted(activation_id=req.activation_id, namespace=req.namespace, record=record)
        await self.send(self.t.completions, req.namespace, done)

    async def lifecycle(self, req: ActivationRequested) -> Doc:
        kind = feed_kind(req.action)
        p = req.params
        event, name = p.get("lifecycleEvent"), p.get("triggerName")
        if kind is None:
            raise FeedError("not a feed action")
        if not isinstance(name, str):
            raise FeedError("missing triggerName parameter")
        try:
            trigger = entities.fqn_doc_id(name, req.namespace)
        except Exception as e:
            raise FeedError(f"triggerName '{name}' is not valid") from e
        if trigger.split("/")[0] != req.namespace:
            raise FeedError(f"The supplied authentication is not authorized to access '{trigger}'.")
        user = {k: v for k, v in p.items() if k not in RESERVED}
        cur = self.feeds.get(trigger)
        if event == "CREATE":
            return await self.create(trigger, kind, req, user)
        if cur is None or cur.kind != kind:
            raise FeedError(f"trigger {trigger} has no {kind} feed")
        if event == "READ":
            status: Doc = {"active": cur.status == "active", "dateChanged": self.written_at.get(trigger)}
            if cur.reason is not None:
                status["reason"] = cur.reason
            return {"config": {k: v for k, v in (cur.config or {}).items() if k not in ("anchor", "stop", "start")},
                    "status": status}
        if event == "UPDATE":
            await self.delete(cur)
            return await self.create(trigger, kind, req, {**(cur.config or {}), **user}, anchor=False)
        if event == "DELETE":
            await self.delete(cur)
            return {}
        if event in ("PAUSE", "UNPAUSE"):
            await self.state(FeedChanged(trigger=trigger, subject=cur.subject, namespace=cur.namespace, kind=kind,
                                         config=cur.config, status="paused" if event == "PAUSE" else "active"))
            return {}
        raise FeedError(f"unsupported lifecycleEvent {event!r}")

    async def create(self, trigger: str, kind: str, req: ActivationRequested, user: Doc, anchor: bool = True) -> Doc:
        if kind in ALARMS:
            if not anchor:
                user = {k: v for k, v in user.items() if k not in ("anchor", "stop")}
            cfg = schedule.validate(kind, user, events.now_ms())
        else:
            cfg = await self.kafka_config(trigger, kind, user)
        old = self.feeds.get(trigger)
        if old is not None and old.config is not None:
            await self.delete(old)
        await self.state(FeedChanged(trigger=trigger, subject=req.subject, namespace=req.namespace, kind=kind,
                                     config=cfg))
        if kind in KAFKA:
            self.start_reader(trigger)
        return {}

    async def kafka_config(self, trigger: str, kind: str, user: Doc) -> Doc:
        cfg = dict(user)
        if kind == "connector":
            cfg["topic"] = f"{self.s.prefix}.feed.{_safe(trigger)}"
            cfg["connector"] = f"{self.s.prefix}-feed-{_safe(trigger)}"
            await bus.ensure_topics(self.s.kafka, [cfg["topic"]], self.s.partitions)
            conf = connect.connector_config(user, cfg["topic"])
            await connect.create(self.s.connect_port, cfg["connector"], conf)
        elif not isinstance(cfg.get("topic"), str) or not cfg["topic"]:
            raise FeedError("kafka topic feed is missing the topic parameter")
        c = bus.consumer(self.s.kafka, group=None)
        await c.start()
        try:
            tps = await bus.partitions(c, cfg["topic"], timeout_s=10)
            ends = await c.end_offsets(tps)
        except TimeoutError as e:
            raise FeedError(f"topic {cfg['topic']} does not exist") from e
        finally:
            await c.stop()
        cfg["start"] = {str(tp.partition): off for tp, off in ends.items()}
        return cfg

    async def delete(self, f: FeedChanged) -> None:
        self.stop_reader(f.trigger)
        if f.kind == "connector" and f.config and f.config.get("connector"):
            with contextlib.suppress(Exception):
                await connect.delete(self.s.connect_port, f.config["connector"])
        await self.state(FeedChanged(trigger=f.trigger, subject=f.subject, namespace=f.namespace, kind=f.kind,
                                     config=None))


def record_payload(value: bytes | None, topic: str, partition: int, offset: int) -> Doc:
    """A record's JSON object as the payload, else the value as text with its position."""
    text = (value or b"").decode("utf-8", "replace")
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        return parsed
    return {"value": parsed if parsed is not None else text, "topic": topic, "partition": partition,
            "offset": offset}
