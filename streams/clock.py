"""The worker's clock for recency decisions: which invoker is alive, which activation is overdue, which decided id
is old enough to forget.

Each is judged on this process's monotonic clock, from when the worker learned the fact (a ping read, an
assignment sent), never by comparing wall times stamped by other processes: a wall-clock step (NTP, `date -s`)
would otherwise make every invoker look dead and every activation overdue at once (forward), or hide a dead one
for as long as the step (backward). Wall time is used once, to estimate the age of facts read back from the log
when the worker starts or takes a partition.
"""

from __future__ import annotations

import time


def mono_ms() -> int:
    return int(time.monotonic() * 1000)


def learned(at_ms: int, wall_now_ms: int, mono_now_ms: int) -> int:
    """The monotonic time of something stamped `at_ms` on some process's wall clock, estimated from the wall
    clocks' difference; never later than now (a stamp from the future counts as just now).

    >>> learned(1_000, 5_000, 100_000), learned(9_000, 5_000, 100_000)
    (96000, 100000)
    """
    return mono_now_ms - max(0, wall_now_ms - at_ms)
