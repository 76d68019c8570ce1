"""A read-only view of a whole topic, folded into a dict (Kafka Streams' GlobalKTable): a consumer of no group
reads every partition, so every process that keeps one has all of it, a few milliseconds behind the log.

Views are eventually consistent; on a miss a reader calls `sync()`, which waits until the view has read up to
the log end as of that call, so something written just before is seen.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts import bus, events

log = logging.getLogger("contracts.logview")
Fold = Callable[[dict[Any, Any], events.Event], None]


class LogView:
    def __init__(self, bootstrap: str, topic: str, fold: Fold, since_ms: int | None = None) -> None:
        self.bootstrap, self.topic, self.fold, self.since_ms = bootstrap, topic, fold, since_ms
        self.data: dict[Any, Any] = {}
        self.ready = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._tps: list[TopicPartition] = []
        self._moved = asyncio.Condition()

    def get(self, key: Any) -> Any:
        return self.data.get(key)

    async def run(self) -> None:
        """Load up to the current end (then `ready`), then follow the topic until cancelled."""
        c = self._consumer = bus.consumer(self.bootstrap, group=None)
        await c.start()
        try:
            self._tps = await bus.partitions(c, self.topic)
            c.assign(self._tps)
            await self._seek_start(c)
            target = await c.end_offsets(self._tps)
            loaded = False
            while True:
                try:
                    batch = await c.getmany(timeout_ms=200)
                except Exception as e:  # a broker restart must not end the view
                    log.warning("view %s: fetch failed, retrying: %r", self.topic, e)
                    await asyncio.sleep(0.5)
                    continue
                for _, ev in bus.decoded(batch, f"{self.topic} event"):
                    self.fold(self.data, ev)
                async with self._moved:
                    self._moved.notify_all()
                if not loaded and await self._reached(target):
                    loaded = True
                    self.ready.set()
                    log.info("view %s loaded: %d keys", self.topic, len(self.data))
        finally:
            await c.stop()

    async def _seek_start(self, c: AIOKafkaConsumer) -> None:
        if self.since_ms is None:
            await c.seek_to_beginning(*self._tps)
            return
        found = await c.offsets_for_times({tp: events.now_ms() - self.since_ms for tp in self._tps})
        await c.seek_to_end(*[tp for tp, o in found.items() if o is None])
        for tp, o in found.items():
            if o is not None:
                c.seek(tp, o.offset)

    async def _reached(self, target: dict[TopicPartition, int]) -> bool:
        assert self._consumer is not None
        for tp, end in target.items():
            if await self._consumer.position(tp) < end:
                return False
        return True

    async def sync(self, timeout_s: float = 3.0) -> bool:
        """Wait until the view has read everything in the topic as of now; False on timeout."""
        await self.ready.wait()
        assert self._consumer is not None
        target = await self._consumer.end_offsets(self._tps)

        async def caught_up() -> None:
            async with self._moved:
                while not await self._reached(target):
                    await self._moved.wait()

        try:
            await asyncio.wait_for(caught_up(), timeout_s)
            return True
        except TimeoutError:
            log.warning("view %s: not caught up within %.1f s", self.topic, timeout_s)
            return False
