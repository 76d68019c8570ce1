"""The Faust worker: entity decider, auth (entitlement + throttles) and load balancer, as stateful agents.

Agents are thin: decode, call pure logic, update tables, send events. Tables are backed by changelog topics,
so a restarted worker recovers its state. concurrency=1 everywhere: decisions on one key must be ordered
(and faust #606 loses offsets with concurrency > 1).

Several workers share the partitions (one consumer group). Every table is read and written only under the key
of the agent's own source topic, and everything about one namespace is keyed by it (contracts/topics.py), so the
state an event needs is on the worker that gets the event: entities by root namespace, throttles and fire counts
by namespace, slots and in-flight activations per partition. Reference data keyed otherwise (subjects, invoker
health, other namespaces' packages and actions) comes from views every worker keeps (streams/views.py).
"""

from __future__ import annotations

import logging
import os
from functools import partial
from typing import Any

import faust

from contracts import bus, events
from contracts.events import (
    ActivationAssigned,
    ActivationAuthorized,
    ActivationCompleted,
    ActivationRequested,
    EntityChanged,
    EntityCommand,
)
from contracts.settings import Settings
from contracts.topics import Topics
from streams import balancer, rules, throttle, transport, watchdog
from streams import decide as logic
from streams.views import Views, root

log = logging.getLogger("streams")
MAX_INVOKERS = 16


def create_app(settings: Settings, worker: int = 0) -> faust.App:
    t = Topics(settings.prefix)
    datadir = settings.home / "faust" / f"worker{worker}"
    datadir.parent.mkdir(parents=True, exist_ok=True)  # Faust makes the folder, not its parents
    app = transport.App(
        f"{settings.prefix}-streams",
        broker=f"kafka://{settings.kafka}",
        store="memory://",
        datadir=str(datadir),
        # Changelogs get the source topics' partition count: Faust co-partitions topics by count.
        topic_partitions=settings.partitions,
        topic_replication_factor=int(os.environ.get("WSK_REPLICATION", "1")),
        table_standby_replicas=0,
        web_enabled=False,
        broker_session_timeout=10,
        broker_heartbeat_interval=3,
        stream_wait_empty=False,
        producer_acks=-1,
        producer_max_request_size=bus.MAX_MESSAGE,
        producer_max_batch_size=bus.BATCH,
        broker_max_poll_records=500,  # bound each handoff from Faust's consumer thread
        consumer_max_fetch_size=bus.MAX_MESSAGE,
        consumer_auto_offset_reset="earliest",
        consumer_metadata_max_age_ms=30000,
        producer_metadata_max_age_ms=30000,
    )

    def topic(name: str) -> Any:
        return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    commands, entities_t = topic(t.commands), topic(t.entities)
    invocations, authorized, completions = topic(t.invocations), topic(t.authorized), topic(t.completions)
    assign_topics = {i: topic(t.invoker(i)) for i in range(MAX_INVOKERS)}

    entities = app.Table("entities", default=None)
    throttles = app.Table("throttles", default=None)
    slots = app.Table("slots", default=int)
    assigned = watchdog.Assigned(app)  # ids already assigned: at most once across a worker restart
    holds = throttle.Holds(app, throttles)  # ids holding concurrency slots: counted once across a restart
    views = Views(settings.kafka, t.subjects, t.health, t.entities)

    @app.task
    async def follow_views() -> None:
        await views.run()

    def owned() -> set[int]:
        """Partition numbers this worker holds now (the same numbers in every topic: co-partitioned)."""
        return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == t.authorized}

    async def emit(tp: Any, key: str, ev: events.Event) -> None:
        await tp.send(key=key.encode(), value=events.encode(ev))

    @app.agent(commands, concurrency=1)
    async def decide_entities(stream: Any) -> None:
        await views.ready()
        async for raw in stream:
            cmd = _decode(raw)
            if not isinstance(cmd, EntityCommand):
                continue
            decide = partial(logic.decide, cmd, contents=_contents(entities, cmd.doc_id), now_ms=events.now_ms())
            d = await views.decided(root(cmd.doc_id), entities.get, decide, final=lambda d: d.error is None)
            for doc_id, doc in d.writes:
                if doc is None:
                    entities.pop(doc_id, None)
                else:
                    entities[doc_id] = doc
            out = EntityChanged(
                request_id=cmd.request_id, subject=cmd.subject, op=cmd.op, entity_type=cmd.entity_type,
                doc_id=cmd.doc_id, writes=d.writes, result=d.result,
                error_status=d.error.status if d.error else None, error=d.error.message if d.error else None,
            )
            await emit(entities_t, root(cmd.doc_id), out)

    @app.agent(invocations, concurrency=1)
    async def authorize(stream: Any) -> None:
        await views.ready()
        async for event in stream.events():
            req = _decode(event.value)
            if not isinstance(req, ActivationRequested):
                continue
            if assigned.seen(req.activation_id):  # re-read after a crash: admitted and assigned before
                continue
            subj = await views.subject(req.subject, req.namespace)
            if subj is None or subj.get("blocked") or req.namespace not in subj["namespaces"]:
                await _reject(req, 403, "The supplied authentication is not authorized to access this resource.")
                continue
            part = event.message.partition
            holds.prune(part, events.now_ms())
            st, refusal = throttle.admit(throttles.get(req.namespace), subj.get("limits", {}), req.at,
                                         holds.held(req.activation_id))
            throttles[req.namespace] = st
            if refusal:
                await _reject(req, 429, refusal)
                continue
            holds.take(req.namespace, req.activation_id, part, req.action, req.at)
            await emit(authorized, req.namespace, ActivationAuthorized(request=req))

    async def _reject(req: ActivationRequested, status: int, msg: str) -> None:
        ev = ActivationCompleted(
            activation_id=req.activation_id, namespace=req.namespace, rejected_status=status, rejected=msg
        )
        await emit(completions, req.namespace, ev)

    @app.agent(authorized, concurrency=1)
    async def balance(stream: Any) -> None:
        await views.ready()
        async for event in stream.events():
            ev = _decode(event.value)
            if not isinstance(ev, ActivationAuthorized):
                continue
            req = ev.request
            if assigned.seen(req.activation_id):  # re-read after a worker crash (streams/watchdog.py)
                continue
            mine = owned()
            inv = balancer.share(dict(views.invokers.data), len(mine), settings.partitions)
            used = balancer.used_by(slots.items(), mine)
            mem = int(req.action.get("limits", {}).get("memory", 256))
            doc_id = f"{req.action['namespace']}/{req.action['name']}"
            target = balancer.schedule(inv, used, doc_id, mem, events.now_ms())
            if target is None or target not in assign_topics:
                await emit(completions, req.namespace, ActivationCompleted(
                    activation_id=req.activation_id, namespace=req.namespace, rejected_status=503,
                    rejected="No invokers available.",
                ))
                continue
            key = balancer.slot_key(target, event.message.partition)
            slots[key] = int(slots.get(key, 0)) + mem
            assigned.mark(req.activation_id, events.now_ms())
            await emit(assign_topics[target], req.namespace, ActivationAssigned(invoker=target, request=req))

    @app.agent(completions, concurrency=1)
    async def settle(stream: Any) -> None:
        async for event in stream.events():
            ev = _decode(event.value)
            if not isinstance(ev, ActivationCompleted):
                continue
            if ev.rejected_status is None and ev.invoker is None:
                continue  # a trigger/sequence record (streams.rules, api.compositions): it held no slot
            if ev.rejected_status is None or ev.rejected_status == 503:
                holds.release(ev.namespace, ev.activation_id)
            if ev.invoker is not None:
                key = balancer.slot_key(ev.invoker, event.message.partition)
                slots[key] = max(0, int(slots.get(key, 0)) - ev.memory_mb)

    rules.register(app, {"entities": entities, "throttles": throttles}, views, assigned.seen, holds,
                   {"fires": topic(t.fires), "authorized": authorized, "completions": completions,
                    "compositions": topic(t.compositions)})
    watchdog.register(app, [t.invoker(i) for i in range(MAX_INVOKERS)], completions, views.invokers, emit, owned)
    return app


def _decode(raw: bytes) -> events.Event | None:
    try:
        return events.decode(raw)
    except events.DecodeError as e:
        log.warning("skipping undecodable event: %s", e)
        return None


def _contents(table: Any, doc_id: str) -> list[str]:
    """Doc ids inside a package (for package delete)."""
    prefix = doc_id + "/"
    return [k for k in table if k.startswith(prefix)]
