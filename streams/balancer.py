"""Pure invoker scheduling, as OpenWhisk's sharding balancer does it, minus the queues.

Each action has a home invoker (hash of namespace + action). We prefer, in order: a healthy invoker with free
memory and more warm containers for the action than activations of it in flight there (one is likely idle); one
that has the action warm at all; the first invoker with free memory stepping from home by a step co-prime to the
pool size; else the healthy invoker with the most free memory (it queues the work).
"""

from __future__ import annotations

import math
import zlib
from typing import Any

# An invoker silent this long gets no new work (OpenWhisk: 10 s). It must be shorter than the watchdog's
# DEAD_AFTER_MS, or work assigned in between is closed as lost at once, and a restarted invoker may run it too.
HEALTH_TIMEOUT_MS = 3000


def healthy(invokers: dict[int, dict[str, Any]], now_ms: int) -> list[int]:
    """Invokers whose last ping was read within HEALTH_TIMEOUT_MS; `heard` and now_ms are the worker's monotonic
    clock (streams/clock.py), so a wall-clock step changes nothing."""
    return sorted(i for i, s in invokers.items() if "heard" in s and now_ms - s["heard"] <= HEALTH_TIMEOUT_MS)


def free_mb(state: dict[str, Any], used: int) -> int:
    return int(state.get("user_memory_mb", 0)) - used


def schedule(
    invokers: dict[int, dict[str, Any]], used: dict[int, int], action_id: str, memory_mb: int, now_ms: int,
    running: dict[int, int] | None = None,
) -> int | None:
    """Pick an invoker; None when none is healthy. `running`: activations of this action in flight per invoker.

    >>> inv = {0: {"heard": 10, "user_memory_mb": 512, "warm": ["ns/a"]},
    ...        1: {"heard": 10, "user_memory_mb": 512, "warm": ["ns/a", "ns/a"]}}
    >>> schedule(inv, {}, "ns/a", 256, 20), schedule(inv, {}, "ns/a", 256, 20, running={0: 1})
    (0, 1)
    """
    ok = healthy(invokers, now_ms)
    if not ok:
        return None
    fits = [i for i in ok if free_mb(invokers[i], used.get(i, 0)) >= memory_mb]
    for i in fits:
        if invokers[i].get("warm", []).count(action_id) > (running or {}).get(i, 0):
            return i
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


# --- several workers: each owns some partitions and takes that share of every invoker ---------------------


def share(invokers: dict[int, dict[str, Any]], owned: int, total: int) -> dict[int, dict[str, Any]]:
    """Each worker schedules into its share of every invoker's memory, as OpenWhisk's controllers split invoker
    slots between them: owned/total of it, where owned is how many of the total partitions it holds.

    >>> share({0: {"user_memory_mb": 2048}}, 1, 2)[0]["user_memory_mb"]
    1024
    """
    if total <= 1 or owned >= total:
        return invokers
    return {i: {**s, "user_memory_mb": int(s.get("user_memory_mb", 0)) * max(owned, 1) // total}
            for i, s in invokers.items()}
