"""Kafka client settings, in one place, for every component (aiokafka)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterable, Iterator
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError
from aiokafka.protocol.metadata import MetadataRequest

from contracts import events, readiness
from contracts.events import Event

log = logging.getLogger(__name__)

# Action code may be up to 48 MB and travels in events; the broker allows 64 MB.
MAX_MESSAGE = 64 * 1024 * 1024
BATCH = 1024 * 1024  # aiokafka's default is 16 KB, about ten ActivationRequested events (they carry the action)

FOREVER = {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}
DAY_MS = 24 * 3600 * 1000
# Topic settings by name (the part after the prefix); see docs/event-log.md. The event store topics keep
# everything (a full log, not compacted: replay and audit need every event); operational topics expire.
EVENT_STORE = ("subjects", "entities", "commands", "access", "deadletter", "fires")
OPERATIONAL_MS = {"invocations": 7 * DAY_MS, "health": DAY_MS, "progress": DAY_MS,
                  "feedreqs": 7 * DAY_MS, "replays": 7 * DAY_MS}


def activation_retention_ms() -> int:
    """Retention of the completions topic (activation records); -1 (default) keeps them all, so a replay
    rebuilds every activation. A finite value means replay rebuilds only the activations still in the log."""
    return int(os.environ.get("WSK_ACTIVATION_RETENTION_MS", "-1"))


def topic_configs(name: str) -> dict[str, str]:
    """Default configs for a new topic `<prefix>.<kind>` (explicit configs passed to ensure_topics win)."""
    kind = name.rsplit(".", 1)[-1]
    if kind in EVENT_STORE:
        return dict(FOREVER)
    if kind == "usermetrics":  # checkpoints of the activation metrics: the last one per key, kept whatever its age
        return {"cleanup.policy": "compact", "retention.ms": "-1", "min.compaction.lag.ms": "0",
                "segment.ms": str(3600 * 1000)}
    if kind == "completions":
        return {"cleanup.policy": "delete", "retention.ms": str(activation_retention_ms()), "retention.bytes": "-1"}
    if kind in OPERATIONAL_MS:
        return {"cleanup.policy": "delete", "retention.ms": str(OPERATIONAL_MS[kind])}
    if kind.startswith("invoker") and kind[7:].isdigit():
        return {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)}
    return {}


def producer(bootstrap: str) -> AIOKafkaProducer:
    # acks=all + idempotence: the event log must not lose or duplicate writes on retry.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=0,
        max_batch_size=BATCH,  # one batch per partition is in flight at a time: let a busy API send more per batch
        max_request_size=MAX_MESSAGE,
        metadata_max_age_ms=30000,
        connections_max_idle_ms=None,  # type: ignore[arg-type]  # avoids the reconnect after idle
    )


def consumer(bootstrap: str, *topics: str, group: str | None, from_start: bool = True) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_start else "latest",
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=MAX_MESSAGE,
        fetch_max_bytes=MAX_MESSAGE,
        metadata_max_age_ms=30000,
        session_timeout_ms=10000,
        heartbeat_interval_ms=3000,
        isolation_level="read_uncommitted",
    )


async def send(p: AIOKafkaProducer, topic: str, key: str | None, ev: Event) -> tuple[int, int]:
    """Send and wait for the ack; returns (partition, offset)."""
    md = await p.send_and_wait(topic, events.encode(ev), key=key.encode() if key is not None else None)
    return md.partition, md.offset


async def ensure_topics(
    bootstrap: str, names: Iterable[str], partitions: int, configs: dict[str, dict[str, str]] | None = None
) -> None:
    """Create the missing topics. Every topic the streams workers read must have the same partition count
    (Settings.partitions): Faust co-partitions topics by count, so partition i of each lands on one worker."""
    admin = await reachable_admin(bootstrap)
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(n, partitions, 1, topic_configs={**topic_configs(n), **(configs or {}).get(n, {})})
            for n in names if n not in existing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
    finally:
        await admin.close()


async def broker_reachable(bootstrap: str, timeout_s: float = 1.0) -> bool:
    """Whether the first bootstrap broker accepts a TCP connection now (a cheap probe, no Kafka request)."""
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    try:
        _, w = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout_s)
    except (OSError, TimeoutError):
        return False
    w.close()
    with contextlib.suppress(OSError):
        await w.wait_closed()
    return True


async def reachable_admin(bootstrap: str, say_every_s: float = 10.0) -> AIOKafkaAdminClient:
    """An admin client, once the broker answers: every component calls this first (ensure_topics), so each starts
    in any order and waits, saying so in its log, while Kafka is down instead of exiting."""
    waited, last_said = 0.0, -say_every_s
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            await admin.start()
            if waited:
                log.info("Kafka at %s is reachable after %.0f s", bootstrap, waited)
                readiness.ready()
            return admin
        except KafkaConnectionError as e:
            with contextlib.suppress(Exception):
                await admin.close()
            readiness.waiting(f"Kafka at {bootstrap}")
            if waited - last_said >= say_every_s:
                log.warning("waiting for Kafka at %s (%s)", bootstrap, e)
                last_said = waited
        await asyncio.sleep(1.0)
        waited += 1.0


async def partition_counts(bootstrap: str, names: Iterable[str]) -> dict[str, int]:
    """How many partitions each topic has (waiting for topics just made to show in the metadata)."""
    c = consumer(bootstrap, group=None)
    await c.start()
    try:
        return {n: len(await partitions(c, n)) for n in names}
    finally:
        await c.stop()


async def existing_partitions(c: AIOKafkaConsumer, topics: list[str]) -> dict[str, list[int]]:
    """Partitions of those of `topics` that exist: a metadata request naming only them and creating none (the
    broker may auto-create what a request names; asking for every topic is slow on a broker with thousands)."""
    node = c._client.get_random_node()
    req = MetadataRequest(topics, allow_auto_topic_creation=False)
    md = (await c._client.send(node, req)).to_object()
    return {t["topic"]: sorted(p["partition"] for p in t["partitions"]) for t in md["topics"]
            if t["error_code"] == 0 and t["partitions"]}


async def partitions(c: AIOKafkaConsumer, topic: str, timeout_s: float = 30.0) -> list[TopicPartition]:
    """All partitions of a topic, for manual assignment (consumer.topics() does not refresh the client's view)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        parts = (await existing_partitions(c, [topic])).get(topic)
        if parts:
            return [TopicPartition(topic, p) for p in parts]
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"topic {topic} has no partitions")
        await asyncio.sleep(0.2)


def decoded(batch: dict[TopicPartition, list[Any]], what: str = "event") -> Iterator[tuple[Any, Event]]:
    """(record, event) for every decodable message of a getmany() batch, in order; others are logged and skipped."""
    for msgs in batch.values():
        for m in msgs:
            try:
                yield m, events.decode(m.value)
            except events.DecodeError as e:
                log.warning("skipping undecodable %s at %s:%d@%d: %s", what, m.topic, m.partition, m.offset, e)
