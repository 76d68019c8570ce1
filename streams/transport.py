"""A Faust app whose consumer's long poll is short.

faust-streaming builds its aiokafka consumer with fetch_max_wait_ms=1500, fixed (transport/drivers/aiokafka.py).
aiokafka keeps one fetch in flight per broker and leaves partitions whose records are not yet handed over out of
it, so when that fetch covers only quiet partitions (idle invoker topics, fires, commands) the broker holds it for
the full wait, and a busy partition's next records wait with it: admissions then took up to 1.5 s under load.
A 100 ms bound costs a few idle fetches a second.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as driver

FETCH_MAX_WAIT_MS = 100


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the consumer starts its fetcher
        return consumer


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(driver.Transport):
    Consumer = _Consumer


class App(faust.App):
    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)
