"""The Faust worker: entity decider, admission (entitlement + throttles + load balancing) and rule matching.

Agents are thin: decode, call pure logic, update state, send events. The decisions' state is their own output
read back: the entity decider's is the entity log (streams/views.py EntityState), admission's the assignments
and completions (streams/admission.py). So the send is the only write, and a worker killed at any point either
sent a decision (the re-read input is skipped by its request or activation id) or left no trace of it (the input
is uncommitted and decided again); the fire counts too (a fire's answer). No changelogged table. concurrency=1
everywhere: decisions on one key must be ordered (and faust #606 loses offsets with concurrency > 1).

Several workers share the partitions (one consumer group). Everything about one namespace is keyed by it
(contracts/topics.py), so the state an event needs is on the worker that gets the event: entities by root
namespace, throttles, in-flight activations and fire counts by partition. Reference data keyed otherwise
(subjects, invoker health, other namespaces' packages and actions) comes from views every worker keeps
(streams/views.py).
"""

from __future__ import annotations

import logging
import os
from functools import partial
from typing import Any

import faust
from prometheus_client.core import GaugeMetricFamily

from contracts import bus, events, metrics
from contracts.events import (
    ActivationAssigned,
    ActivationCompleted,
    ActivationRequested,
    EntityChanged,
    EntityCommand,
)
from contracts.settings import Settings
from contracts.topics import Topics
from streams import admission, balancer, clock, rules, transport, watchdog
from streams import decide as logic
from streams.admission import Admission, Partition
from streams.views import Views, root

log = logging.getLogger("streams")


class Held:
    """Which partitions' entity log this worker has read to the end since it got them, and a revocation count:
    an agent that took an event before a revocation must not send for it after (the new owner decides it)."""

    def __init__(self) -> None:
        self.fresh: set[int] = set()
        self.epoch = 0

    def revoke(self, numbers: set[int]) -> None:
        self.fresh -= numbers
        self.epoch += 1


def create_app(settings: Settings, worker: int = 0) -> faust.App:
    t = Topics(settings.prefix)
    datadir = settings.home / "faust" / f"worker{worker}"
    datadir.parent.mkdir(parents=True, exist_ok=True)  # Faust makes the folder, not its parents
    app = transport.App(
        f"{settings.prefix}-streams",
        broker=f"kafka://{settings.kafka}",
        store="memory://",
        datadir=str(datadir),
        # The topics Faust declares get the source topics' partition count: it co-partitions topics by count.
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
    invocations, completions = topic(t.invocations), topic(t.completions)
    assign_topics = {i: topic(name) for i, name in enumerate(t.assignments())}

    views = Views(settings.kafka, t.subjects, t.health, t.entities)
    entities = views.entity_state()
    dog = watchdog.Watchdog(views.invokers)
    states = Admission(settings.kafka, t, dog.completed)
    held = Held()

    def revoking(numbers: set[int]) -> None:
        """Before Faust flushes and commits for a revocation: sends from now on would race the new owner."""
        held.revoke(numbers)
        states.drop(numbers)
        entities.clear()

    app.revoking = [revoking]

    async def entity_log_read(number: int) -> None:
        """On the first event of a partition this worker just got: read the entity log to its end (the previous
        owner's last decisions included) before deciding anything with it."""
        if number in held.fresh:
            return
        epoch = held.epoch
        while not await views.entities.sync(timeout_s=10.0):
            pass
        if held.epoch == epoch:
            held.fresh.add(number)

    @app.task
    async def follow_views() -> None:
        await views.run()

    @app.task
    async def follow_completions() -> None:
        await states.follow()

    @app.task
    async def serve_metrics() -> None:
        """/metrics: this worker's share of the group's lag, and invoker health as its balancer sees it."""
        ep = await metrics.serve(f"streams{worker or ''}", settings.home, settings.kafka, component="streams")
        ep.lag.group(f"{settings.prefix}-streams", [t.commands, t.invocations, t.fires], owned=owned)

        def health() -> Any:
            g = GaugeMetricFamily("streamwhisk_invoker_healthy", "1 if the balancer routes work to the invoker",
                                  labels=["invoker"])
            data = dict(views.invokers.data)
            ok = set(balancer.healthy(data, clock.mono_ms()))
            for i in sorted(data):
                g.add_metric([str(i)], 1 if i in ok else 0)
            yield g

        metrics.register("streamwhisk_invoker_healthy", health)

    def owned() -> set[int]:
        """Partition numbers this worker holds now (the same numbers in every topic: co-partitioned)."""
        return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == t.invocations}

    async def emit(tp: Any, key: str, ev: events.Event) -> None:
        await tp.send(key=key.encode(), value=events.encode(ev))

    def mine_still(part: Partition) -> bool:
        """False once the partition was revoked (and its state dropped) while an agent was deciding for it."""
        return states.parts.get(part.number) is part

    async def reject(req: ActivationRequested, part: Partition, status: int, msg: str) -> None:
        if not mine_still(part):
            return
        part.refused(req.activation_id, clock.mono_ms())
        await emit(completions, req.namespace, ActivationCompleted(
            activation_id=req.activation_id, namespace=req.namespace, rejected_status=status, rejected=msg))

    async def start(req: ActivationRequested, part: Partition, limits: dict[str, Any]) -> None:
        """Place an admitted activation and send it to its invoker: the one write admission makes."""
        mine = owned()
        inv = balancer.share(dict(views.invokers.data), len(mine), settings.partitions)
        target = admission.place(states, req, inv, clock.mono_ms())
        if target is None or target not in assign_topics:
            await reject(req, part, 503, admission.NO_INVOKERS)
            return
        ev = ActivationAssigned(invoker=target, request=req, network=admission.network(limits))
        if not mine_still(part):
            return
        part.assigned(ev, clock.mono_ms())
        await emit(assign_topics[target], req.namespace, ev)

    @app.agent(commands, concurrency=1)
    async def decide_entities(stream: Any) -> None:
        await views.ready()
        async for event in stream.events():
            cmd = _decode(event.value)
            if not isinstance(cmd, EntityCommand):
                continue
            await entity_log_read(event.message.partition)
            epoch = held.epoch
            if entities.decided(cmd.request_id):  # re-read after a crash, or sent twice: decided once
                log.info("entity command %s was decided already", cmd.request_id)
                continue
            decide = partial(logic.decide, cmd, contents=entities.contents(cmd.doc_id + "/"), now_ms=events.now_ms())
            d = await views.decided(root(cmd.doc_id), entities.get, decide, final=lambda d: d.error is None)
            out = EntityChanged(
                request_id=cmd.request_id, subject=cmd.subject, op=cmd.op, entity_type=cmd.entity_type,
                doc_id=cmd.doc_id, writes=d.writes, result=d.result,
                error_status=d.error.status if d.error else None, error=d.error.message if d.error else None,
            )
            if held.epoch != epoch:  # revoked meanwhile: the new owner decides it
                continue
            entities.add(cmd.request_id, d.writes)
            await emit(entities_t, root(cmd.doc_id), out)

    @app.agent(invocations, concurrency=1)
    async def admit(stream: Any) -> None:
        """Entitlement, throttles and placement: one hop from the API to the invoker."""
        await views.ready()
        async for event in stream.events():
            req = _decode(event.value)
            if not isinstance(req, ActivationRequested):
                continue
            part = await states.partition(event.message.partition)
            if part.seen(req.activation_id):  # re-read after a crash: decided before, and that is in the log
                continue
            part.prune(clock.mono_ms())
            subj = await views.subject(req.subject, req.namespace)
            if subj is None or subj.get("blocked") or req.namespace not in subj["namespaces"]:
                await reject(req, part, 403, admission.FORBIDDEN)
                continue
            refusal = await states.admit(part, req, subj.get("limits", {}), req.at)
            if refusal:
                await reject(req, part, 429, refusal)
                continue
            await start(req, part, subj.get("limits", {}))

    @app.timer(interval=watchdog.SWEEP_EVERY_S)
    async def sweep() -> None:
        mine = owned()
        for n in mine:  # a partition taken over from a dead worker is watched before its first new event
            await states.partition(n)
        bus_up = await bus.broker_reachable(settings.kafka, 0.5)
        for done in dog.due(states.inflight(), mine, clock.mono_ms(), bus_up):
            if done.activation_id in states.inflight():  # (its partition was not revoked since)
                await emit(completions, done.namespace, done)
            else:
                dog.closing.discard(done.activation_id)

    rules.register(app, entities, views, states, start, entity_log_read,
                   {"fires": topic(t.fires), "completions": completions, "compositions": topic(t.compositions)})
    return app


def _decode(raw: bytes) -> events.Event | None:
    try:
        return events.decode(raw)
    except events.DecodeError as e:
        log.warning("skipping undecodable event: %s", e)
        return None

