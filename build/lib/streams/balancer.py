"""Pure invoker scheduling, as OpenWhisk's sharding balancer does it, minus the queues.

Each action has a home invoker (hash of namespace + action). We prefer, in order: a healthy invoker that has a
warm container for the action and free memory; the first invoker with free memory stepping from home by a
step co-prime to the pool size; else the healthy invoker with the most free memory (it queues the work).
"""

from __future__ import annotations

import math
import zlib
from typing import Any

HEALTH_TIMEOUT_MS = 3000  # an invoker that has not pinged for this long gets no new work


def healthy(invokers: dict[int, dict[str, Any]], now_ms: int) -> list[int]:
    return sorted(i for i, s in invokers.items() if now_ms - s.get("seen", 0) <= HEALTH_TIMEOUT_MS)


def free_mb(state: dict[str, Any], used: int) -> int:
    return int(state.get("user_memory_mb", 0)) - used


def schedule(
    invokers: dict[int, dict[str, Any]], used: dict[int, int], action_id: str, memory_mb: int, now_ms: int
) -> int | None:
    """Pick an invoker; None when none is healthy.

    >>> inv = {0: {"seen": 10, "user_memory_mb": 512, "warm": []},
    ...        1: {"seen": 10, "user_memory_mb": 512, "warm": ["ns/a"]}}
    >>> schedule(inv, {}, "ns/a", 256, 20)
    1
    """
    ok = healthy(invokers, now_ms)
    if not ok:
        return None
    fits = [i for i in ok if free_mb(invokers[i], used.get(i, 0)) >= memory_mb]
    for i in fits:
        if action_id in invokers[i].get("warm", []):
            return i
    n = len(ok)
    home = zlib.crc32(action_id.encode()) % n
    step = _coprime_step(n, action_id)
    for k in range(n):
        cand = ok[(home + k * step) % n]
        if cand in fits:
            return cand
    return max(ok, key=lambda i: free_mb(invokers[i], used.get(i, 0)))


def _coprime_step(n: int, action_id: str) -> int:
    if n <= 1:
        return 1
    steps = [s for s in range(1, n + 1) if math.gcd(s, n) == 1]
    return steps[zlib.adler32(action_id.encode()) % len(steps)]
