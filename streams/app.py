"""The Faust worker: entity decider, auth (entitlement + throttles) and load balancer, as stateful agents.

Agents are thin: decode, call pure logic, update tables, send events. Tables are backed by changelog topics,
so a restarted worker recovers its state. concurrency=1 everywhere: decisions on one key must be ordered
(and faust #606 loses offsets with concurrency > 1).
"""

from __future__ import annotations

import logging
import os
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
    InvokerPing,
    SubjectBlocked,
    SubjectDeleted,
    SubjectKeyAdded,
)
from contracts.settings import Settings
from contracts.topics import Topics
from streams import balancer, rules, throttle, watchdog
from streams import decide as logic

log = logging.getLogger("streams")
MAX_INVOKERS = 16


def create_app(settings: Settings) -> faust.App:
    t = Topics(settings.prefix)
    app = faust.App(
        f"{settings.prefix}-streams",
        broker=f"kafka://{settings.kafka}",
        store="memory://",
        datadir=str(settings.home / "faust"),
        # Kubernetes chart: partitions bound how many workers share the load; must match the source topics.
        topic_partitions=int(os.environ.get("WSK_PARTITIONS", "1")),
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
    subjects_t, invocations, authorized = topic(t.subjects), topic(t.invocations), topic(t.authorized)
    completions, health = topic(t.completions), topic(t.health)
    assign_topics = {i: topic(t.invoker(i)) for i in range(MAX_INVOKERS)}

    entities = app.Table("entities", default=None)
    subjects = app.Table("subjects", default=None)
    throttles = app.Table("throttles", default=None)
    invokers = app.Table("invokers", default=None)
    slots = app.Table("slots", default=int)
    assigned = watchdog.Assigned(app)  # ids already assigned: at most once across a worker restart

    async def emit(tp: Any, key: str, ev: events.Event) -> None:
        await tp.send(key=key.encode(), value=events.encode(ev))

    @app.agent(commands, concurrency=1)
    async def decide_entities(stream: Any) -> None:
        async for raw in stream:
            cmd = _decode(raw)
            if not isinstance(cmd, EntityCommand):
                continue
            d = logic.decide(cmd, entities.get, _contents(entities, cmd.doc_id), events.now_ms())
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
            await emit(entities_t, cmd.doc_id.split("/")[0], out)

    @app.agent(subjects_t, concurrency=1)
    async def track_subjects(stream: Any) -> None:
        async for raw in stream:
            ev = _decode(raw)
            if isinstance(ev, SubjectKeyAdded):
                cur = subjects.get(ev.subject) or {"namespaces": [], "blocked": False, "limits": {}}
                ns = sorted({*cur["namespaces"], ev.namespace})
                subjects[ev.subject] = {**cur, "namespaces": ns, "limits": ev.limits or cur["limits"]}
            elif isinstance(ev, SubjectBlocked) and subjects.get(ev.subject):
                subjects[ev.subject] = {**subjects[ev.subject], "blocked": ev.blocked}
            elif isinstance(ev, SubjectDeleted):
                subjects.pop(ev.subject, None)

    @app.agent(invocations, concurrency=1)
    async def authorize(stream: Any) -> None:
        async for raw in stream:
            req = _decode(raw)
            if not isinstance(req, ActivationRequested):
                continue
            subj = subjects.get(req.subject)
            if subj is None or subj.get("blocked") or req.namespace not in subj["namespaces"]:
                await _reject(req, 403, "The supplied authentication is not authorized to access this resource.")
                continue
            st, refusal = throttle.admit(throttles.get(req.namespace), subj.get("limits", {}), req.at)
            throttles[req.namespace] = st
            if refusal:
                await _reject(req, 429, refusal)
                continue
            await emit(authorized, req.activation_id, ActivationAuthorized(request=req))

    async def _reject(req: ActivationRequested, status: int, msg: str) -> None:
        ev = ActivationCompleted(
            activation_id=req.activation_id, namespace=req.namespace, rejected_status=status, rejected=msg
        )
        await emit(completions, req.activation_id, ev)

    @app.agent(health, concurrency=1)
    async def track_invokers(stream: Any) -> None:
        async for raw in stream:
            ev = _decode(raw)
            if isinstance(ev, InvokerPing):
                invokers[str(ev.invoker)] = {
                    "seen": events.now_ms(), "user_memory_mb": ev.user_memory_mb, "warm": ev.warm,
                }

    @app.agent(authorized, concurrency=1)
    async def balance(stream: Any) -> None:
        async for raw in stream:
            ev = _decode(raw)
            if not isinstance(ev, ActivationAuthorized):
                continue
            req = ev.request
            if assigned.seen(req.activation_id):  # re-read after a worker crash (streams/watchdog.py)
                continue
            inv = {int(k): v for k, v in invokers.items() if v}
            used = {int(k): int(v) for k, v in slots.items()}
            mem = int(req.action.get("limits", {}).get("memory", 256))
            doc_id = f"{req.action['namespace']}/{req.action['name']}"
            target = balancer.schedule(inv, used, doc_id, mem, events.now_ms())
            if target is None or target not in assign_topics:
                await emit(completions, req.activation_id, ActivationCompleted(
                    activation_id=req.activation_id, namespace=req.namespace, rejected_status=503,
                    rejected="No invokers available.",
                ))
                continue
            slots[str(target)] = used.get(target, 0) + mem
            assigned.mark(req.activation_id, events.now_ms())
            await emit(assign_topics[target], req.activation_id, ActivationAssigned(invoker=target, request=req))

    @app.agent(completions, concurrency=1)
    async def settle(stream: Any) -> None:
        async for raw in stream:
            ev = _decode(raw)
            if not isinstance(ev, ActivationCompleted):
                continue
            if ev.rejected_status is None and ev.invoker is None:
                continue  # a trigger/sequence record (streams.rules, api.compositions): it held no slot
            if ev.rejected_status is None or ev.rejected_status == 503:
                throttles[ev.namespace] = throttle.release(throttles.get(ev.namespace))
            if ev.invoker is not None:
                key = str(ev.invoker)
                slots[key] = max(0, int(slots.get(key, 0)) - ev.memory_mb)

    rules.register(app, {"entities": entities, "subjects": subjects, "throttles": throttles},
                   {"fires": topic(t.fires), "authorized": authorized, "completions": completions,
                    "compositions": topic(t.compositions)})
    watchdog.register(app, [t.invoker(i) for i in range(MAX_INVOKERS)], completions, invokers, emit)
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
