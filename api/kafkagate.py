"""Fail fast with 503 while Kafka is unreachable, instead of hanging on a send (aiokafka waits up to
request_timeout_ms, 40 s) or answering 500.

A probe watches the bootstrap broker; while it is down, sends are refused before anything is queued, so a 503
means "not accepted". A send that was already queued when the broker died gets a 503 after SEND_TIMEOUT_S:
that one is ambiguous (the producer may still deliver it once the broker is back; docs/delivery-guarantees.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from contracts import bus
from contracts.errors import WhiskError

log = logging.getLogger("api.kafka")

UNAVAILABLE = "The event log (Kafka) is not reachable; the request was not accepted. Try again later."
SEND_TIMEOUT_S = 5.0
PROBE_EVERY_S = 0.5
PROBE_TIMEOUT_S = 1.0


def unavailable() -> WhiskError:
    return WhiskError(503, UNAVAILABLE)


class KafkaGate:
    def __init__(self, bootstrap: str, send_timeout_s: float = SEND_TIMEOUT_S) -> None:
        host, port = bootstrap.split(",")[0].rsplit(":", 1)
        self.addr = (host, int(port))
        self.send_timeout_s = send_timeout_s
        self.up = True
        self.refused = 0  # sends refused while down (audit events included)

    async def probe(self) -> bool:
        return await bus.broker_reachable(f"{self.addr[0]}:{self.addr[1]}", PROBE_TIMEOUT_S)

    async def watch(self) -> None:
        while True:
            up = await self.probe()
            if up != self.up:
                log.warning("kafka %s:%s is %s", *self.addr, "reachable again" if up else "UNREACHABLE")
                self.up = up
            await asyncio.sleep(PROBE_EVERY_S)

    def guard(self, producer: AIOKafkaProducer) -> AIOKafkaProducer:
        """Make producer.send_and_wait (the only send bus.send uses) refuse or time out with a 503."""
        inner: Callable[..., Awaitable[Any]] = producer.send_and_wait

        async def send_and_wait(*args: Any, **kwargs: Any) -> Any:
            if not self.up:
                self.refused += 1
                raise unavailable()
            try:
                return await asyncio.wait_for(inner(*args, **kwargs), self.send_timeout_s)
            except (KafkaError, TimeoutError) as e:
                log.warning("send failed: %r", e)
                raise unavailable() from e

        producer.send_and_wait = send_and_wait  # type: ignore[method-assign]
        return producer
