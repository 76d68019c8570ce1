"""Refuse writes with 503 while the disk under Kafka's or PouchDB's data is almost full (a flood stage, as
Elasticsearch's), instead of accepting work the log or the views may fail to store.

Only sends through the API's guarded producer.send_and_wait are refused (entity writes, invokes, fires, feed
and gateway changes), before anything is sent, so such a 503 means "not accepted". Everything else keeps
writing into the reserve: the invokers' completions, Faust, the projector, the API's audit events, and work the
API already accepted (compositions it runs, marked with `accepted_work`), so nothing acknowledged is lost.
Reads are served from CouchDB as before. Writes are accepted again as soon as space returns.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from contracts.errors import WhiskError

log = logging.getLogger("api.disk")

MiB = 1 << 20
CHECK_EVERY_S = 1.0
# label -> (what it holds, whose data), for the error text; other labels are named as they are.
NAMES = {"kafka": ("event log", "Kafka data"), "pouchdb": ("database", "PouchDB data"),
         "couchdb": ("database", "CouchDB data")}

# Set in a task that continues work the API already accepted (its sends may use the reserve).
accepted_work: contextvars.ContextVar[bool] = contextvars.ContextVar("accepted_work", default=False)

Disk = tuple[Sequence[str], int]  # the labels of the dirs one filesystem holds, its free bytes


def _what(labels: Sequence[str]) -> str:
    if len(labels) == 1:
        if labels[0] not in NAMES:
            return f"the disk holding {labels[0]}"
        thing, data = NAMES[labels[0]]
        return f"the {thing}'s disk ({data})"
    things = [NAMES.get(x, (x, x)) for x in labels]
    return (f"the disk of the {' and the '.join(dict.fromkeys(t for t, _ in things))} "
            f"({', '.join(d for _, d in things)})")


def low_disks(disks: Sequence[Disk], reserve: int) -> str | None:
    """Which disks have less than `reserve` bytes free, as a sentence, or None."""
    low = [f"{_what(labels)} is almost full ({free // MiB} MiB free, {reserve // MiB} MiB reserved)"
           for labels, free in disks if free < reserve]
    text = " and ".join(low)
    return f"{text[0].upper()}{text[1:]}" if text else None


def refusal(disks: Sequence[Disk], reserve: int) -> str | None:
    """The 503 text while some disk has less than `reserve` bytes free, else None."""
    low = low_disks(disks, reserve)
    return f"{low}; the request was not accepted. Try again later." if low else None


def sample(dirs: Sequence[tuple[str, Path]]) -> list[Disk]:
    """Free bytes (for unprivileged writers, as statvfs f_bavail) of each filesystem holding a dir; dirs on one
    filesystem are one disk. A dir that does not exist (yet) is left out."""
    by_dev: dict[int, tuple[list[str], int]] = {}
    for label, path in dirs:
        try:
            dev = os.stat(path).st_dev
            st = os.statvfs(path)
        except OSError:
            continue
        by_dev.setdefault(dev, ([], st.f_bavail * st.f_frsize))[0].append(label)
    return [(labels, free) for labels, free in by_dev.values()]


class DiskGuard:
    def __init__(self, dirs: Sequence[tuple[str, Path]], reserve_mb: int) -> None:
        self.dirs = list(dirs)
        self.reserve = reserve_mb * MiB
        self.low: str | None = None  # the refusal text while a disk is low
        self.refused = 0

    def check(self) -> None:
        """Raise the 503 while a disk is low (for a request about to start work)."""
        if self.low is not None and not accepted_work.get():
            self.refused += 1
            raise WhiskError(503, self.low)

    def poll(self) -> None:
        low = refusal(sample(self.dirs), self.reserve) if self.dirs else None
        if (low is None) != (self.low is None):  # on a transition, not per second or per request
            if low:
                self.refused = 0
                log.warning("refusing writes: %s", low)
            else:
                log.warning("disk space is back above the reserve: accepting writes again (%d refused meanwhile)",
                            self.refused)
        self.low = low

    async def watch(self) -> None:
        while self.dirs:
            try:
                await asyncio.to_thread(self.poll)  # statvfs is cheap, but a hung NFS mount would block the loop
            except Exception:
                log.exception("disk check failed")
            await asyncio.sleep(CHECK_EVERY_S)

    def guard(self, producer: AIOKafkaProducer) -> AIOKafkaProducer:
        """Make producer.send_and_wait (the only send bus.send uses) refuse with the 503 while a disk is low."""
        inner: Callable[..., Awaitable[Any]] = producer.send_and_wait

        async def send_and_wait(*args: Any, **kwargs: Any) -> Any:
            self.check()
            return await inner(*args, **kwargs)

        producer.send_and_wait = send_and_wait  # type: ignore[method-assign]
        return producer
