"""Pure per-namespace throttles: fixed wall-clock minute windows and concurrent in-flight counts."""

from __future__ import annotations

from typing import Any

DEFAULT_LIMITS = {"invocationsPerMinute": 60, "concurrentInvocations": 30, "firesPerMinute": 60}


def limit(limits: dict[str, Any], name: str) -> int:
    return int(limits.get(name, DEFAULT_LIMITS[name]))


def admit(state: dict[str, Any] | None, limits: dict[str, Any], now_ms: int) -> tuple[dict[str, Any], str | None]:
    """New state and None when the invocation may go ahead, else the unchanged state and the 429 message."""
    st = dict(state or {"minute": 0, "count": 0, "inflight": 0})
    minute = now_ms // 60000
    if st["minute"] != minute:
        st["minute"], st["count"] = minute, 0
    per_min = limit(limits, "invocationsPerMinute")
    conc = limit(limits, "concurrentInvocations")
    if st["count"] + 1 > per_min:
        return st, f"Too many requests in the last minute (count: {st['count'] + 1}, allowed: {per_min})."
    if st["inflight"] + 1 > conc:
        return st, f"Too many concurrent requests in flight (count: {st['inflight'] + 1}, allowed: {conc})."
    st["count"] += 1
    st["inflight"] += 1
    return st, None


def release(state: dict[str, Any] | None) -> dict[str, Any]:
    st = dict(state or {"minute": 0, "count": 0, "inflight": 0})
    st["inflight"] = max(0, st["inflight"] - 1)
    return st
