"""A Faust app whose consumer's long poll is short.

faust-streaming builds its aiokafka consumer with fetch_max_wait_ms=1500, fixed (transport/drivers/aiokafka.py).
aiokafka keeps one fetch in flight per broker and leaves partitions whose records are not yet handed over out of
it, so when that fetch covers only quiet partitions (idle invoker topics, fires, commands) the broker holds it for
the full wait, and a busy partition's next records wait with it: admissions then took up to 1.5 s under load.
A 100 ms bound costs a few idle fetches a second.

Three more things faust-streaming does not do for us:
- Its producer is idempotent only inside transactions (`Producer._settings_extra`), so a produce retry (a request
  timed out after the broker had written the batch) wrote an assignment, a decision or a completion twice. Ours
  always is: acks=all + enable_idempotence, as contracts/bus.py's producers.
- Its revocation flushes the producer and commits, then tells the app (`on_partitions_revoked`). An agent that was
  awaiting something in between could still send for a partition another worker is about to take and re-decide
  from the log. `App.revoking` callbacks run first, before the flush: what was sent before them is in the log by
  the time the partition is handed over, and an agent checks them before each send (streams/app.py `Held`).
- An app without changelogged tables gets aiokafka's round-robin assignor instead of Faust's (`_create_worker_
  consumer`). Round robin may give partition i of `invocations` and of `fires` to different workers, which would
  then keep two admission states for one partition, and leaves `assignor.assigned_actives()` empty, so the
  watchdog would watch nothing. Ours always uses Faust's co-partitioning assignor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faust
from faust.transport.drivers import aiokafka as driver

FETCH_MAX_WAIT_MS = 100


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the consumer starts its fetcher
        consumer._partition_assignment_strategy = [self.app.assignor]  # read when it starts its coordinator
        return consumer


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Producer(driver.Producer):
    def _settings_extra(self) -> Any:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class _Transport(driver.Transport):
    Consumer = _Consumer
    Producer = _Producer


class App(faust.App):
    revoking: list[Callable[[set[int]], None]]

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)

    def _new_producer_transport(self) -> Any:  # the app's producer comes from this one, not from the above
        return _Transport(self.conf.broker_producer, self)

    async def _on_partitions_revoked(self, revoked: Any) -> None:
        numbers = {tp.partition for tp in revoked}
        for fn in getattr(self, "revoking", []):
            fn(numbers)
        await super()._on_partitions_revoked(revoked)
