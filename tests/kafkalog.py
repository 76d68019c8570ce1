"""Read a test stack's Kafka log directly: what travels is often the claim under test."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from contracts import bus
from contracts.settings import Settings


async def _topics(settings: Settings) -> list[str]:
    """Every topic of the stack: its own and Faust's internal ones (changelogs, repartitions)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka)
    await admin.start()
    try:
        return [n for n in await admin.list_topics() if n.startswith((f"{settings.prefix}.", f"{settings.prefix}-"))]
    finally:
        await admin.close()


def topics(settings: Settings) -> list[str]:
    return asyncio.run(_topics(settings))


def ends(settings: Settings) -> dict[str, int]:
    """Messages in every topic of the stack (its own topics and Faust's internal ones), summed over partitions."""
    async def read() -> dict[str, int]:
        names = await _topics(settings)
        consumer = bus.consumer(settings.kafka, group=None)
        await consumer.start()
        try:
            tps = [tp for n in names for tp in await bus.partitions(consumer, n)]
            offsets = await consumer.end_offsets(tps)
        finally:
            await consumer.stop()
        out: dict[str, int] = {}
        for tp, off in offsets.items():
            out[tp.topic] = out.get(tp.topic, 0) + off
        return out
    return asyncio.run(read())


def messages(settings: Settings, topics: list[str]) -> list[tuple[str, bytes]]:
    """(topic, raw value) of every message in `topics` up to their ends now, in order per partition."""
    async def read() -> list[tuple[str, bytes]]:
        consumer = bus.consumer(settings.kafka, group=None)
        await consumer.start()
        try:
            tps = [tp for n in topics for tp in await bus.partitions(consumer, n)]
            last = await consumer.end_offsets(tps)
            tps = [tp for tp in tps if last[tp] > 0]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            out: list[tuple[str, bytes]] = []
            todo: set[TopicPartition] = set(tps)
            while todo:
                for tp, msgs in (await consumer.getmany(*todo, timeout_ms=500)).items():
                    # tombstones (compacted deletes) have no value
                    out += [(tp.topic, m.value) for m in msgs if m.value is not None]
                todo = {tp for tp in todo if await consumer.position(tp) < last[tp]}
            return out
        finally:
            await consumer.stop()
    return asyncio.run(read())


def messages_about(settings: Settings, topics: list[str], ids: set[str]) -> list[tuple[str, bytes]]:
    """(topic, raw value) of every message in `topics` that names one of the activation ids."""
    return [(t, v) for t, v in messages(settings, topics) if any(i.encode() in v for i in ids)]
