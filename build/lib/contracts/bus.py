"""Kafka client settings, in one place, for every component (aiokafka)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from contracts import events
from contracts.events import Event

log = logging.getLogger(__name__)

# Action code may be up to 48 MB and travels in events; the broker allows 64 MB.
MAX_MESSAGE = 64 * 1024 * 1024


def producer(bootstrap: str) -> AIOKafkaProducer:
    # acks=all + idempotence: the event log must not lose or duplicate writes on retry.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=0,
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
    bootstrap: str, names: Iterable[str], partitions: int = 1, configs: dict[str, dict[str, str]] | None = None
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(n, partitions, 1, topic_configs=(configs or {}).get(n, {}))
            for n in names if n not in existing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
    finally:
        await admin.close()


async def partitions(c: AIOKafkaConsumer, topic: str, timeout_s: float = 30.0) -> list[TopicPartition]:
    """All partitions of a topic, for manual assignment (consumer.topics() does not refresh the client's view)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        cluster = await c._client.fetch_all_metadata()
        parts = cluster.partitions_for_topic(topic)
        if parts:
            return [TopicPartition(topic, p) for p in sorted(parts)]
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"topic {topic} has no partitions")
        await asyncio.sleep(0.2)
