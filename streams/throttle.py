"""Pure per-namespace throttles: fixed wall-clock minute windows and concurrent in-flight counts.

As OpenWhisk's Entitlement.checkThrottles: the rate is checked first, and its counter counts every attempt in the
minute, refused ones included (RateThrottler increments before comparing); the concurrency check compares the
activations already in flight with the limit (ActivationThrottler: ok while count < allowed).
"""

from __future__ import annotations

from typing import Any

DEFAULT_LIMITS = {"invocationsPerMinute": 60, "concurrentInvocations": 30, "firesPerMinute": 60}


def limit(limits: dict[str, Any], name: str) -> int:
    return int(limits.get(name, DEFAULT_LIMITS[name]))


def admit(state: dict[str, Any] | None, limits: dict[str, Any], now_ms: int) -> tuple[dict[str, Any], str | None]:
    """New state, and None when the invocation may go ahead or else the 429 message.

    >>> st, msg = admit(None, {"invocationsPerMinute": 1}, 0)
    >>> msg is None, admit(st, {"invocationsPerMinute": 1}, 1)[1]
    (True, 'Too many requests in the last minute (count: 2, allowed: 1).')
    """
    st = dict(state or {"minute": 0, "count": 0, "inflight": 0})
    minute = now_ms // 60000
    if st["minute"] != minute:
        st["minute"], st["count"] = minute, 0
    per_min = limit(limits, "invocationsPerMinute")
    conc = limit(limits, "concurrentInvocations")
    st["count"] += 1
    if st["count"] > per_min:
        return st, f"Too many requests in the last minute (count: {st['count']}, allowed: {per_min})."
    if st["inflight"] >= conc:
        return st, f"Too many concurrent requests in flight (count: {st['inflight']}, allowed: {conc})."
    st["inflight"] += 1
    return st, None
