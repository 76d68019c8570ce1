"""Pure per-namespace throttles: fixed wall-clock minute windows and concurrent in-flight counts.

As OpenWhisk's Entitlement.checkThrottles: the rate is checked first, and its counter counts every attempt in the
minute, refused ones included (RateThrottler increments before comparing); the concurrency check compares the
activations already in flight with the limit (ActivationThrottler: ok while count < allowed).
"""

from __future__ import annotations

from typing import Any

from streams.watchdog import DEADLINE_GRACE_MS

DEFAULT_LIMITS = {"invocationsPerMinute": 60, "concurrentInvocations": 30, "firesPerMinute": 60}
HOLD_GRACE_MS = DEADLINE_GRACE_MS  # by then the watchdog has closed the activation anyway
HOLD_MS = 60_000 + HOLD_GRACE_MS


def limit(limits: dict[str, Any], name: str) -> int:
    return int(limits.get(name, DEFAULT_LIMITS[name]))


def _current(state: dict[str, Any] | None, now_ms: int) -> dict[str, Any]:
    """A copy of the state, with expired in-flight entries dropped (a count from before ids were kept: reset)."""
    st = dict(state or {"minute": 0, "count": 0})
    held = st.get("inflight")
    st["inflight"] = {a: d for a, d in held.items() if d > now_ms} if isinstance(held, dict) else {}
    return st


def admit(
    state: dict[str, Any] | None, limits: dict[str, Any], now_ms: int, activation_id: str, hold_ms: int = HOLD_MS
) -> tuple[dict[str, Any], str | None]:
    """New state, and None when the invocation may go ahead or else the 429 message.

    In-flight activations are held by id until released or for hold_ms (the action's time limit plus the
    watchdog's grace): admitting or releasing the same id twice, as a worker does when it re-reads events after a
    crash, changes nothing, and an id whose release was missed frees itself.

    >>> st, msg = admit(None, {"invocationsPerMinute": 1}, 0, "a")
    >>> msg is None, admit(st, {"invocationsPerMinute": 1}, 1, "b")[1]
    (True, 'Too many requests in the last minute (count: 2, allowed: 1).')
    """
    st = _current(state, now_ms)
    minute = now_ms // 60000
    if st["minute"] != minute:
        st["minute"], st["count"] = minute, 0
    per_min = limit(limits, "invocationsPerMinute")
    conc = limit(limits, "concurrentInvocations")
    st["count"] += 1
    if st["count"] > per_min:
        return st, f"Too many requests in the last minute (count: {st['count']}, allowed: {per_min})."
    if activation_id not in st["inflight"] and len(st["inflight"]) >= conc:
        return st, f"Too many concurrent requests in flight (count: {len(st['inflight'])}, allowed: {conc})."
    st["inflight"] = {**st["inflight"], activation_id: now_ms + hold_ms}
    return st, None


def release(state: dict[str, Any] | None, activation_id: str, now_ms: int) -> dict[str, Any]:
    st = _current(state, now_ms)
    st["inflight"] = {a: d for a, d in st["inflight"].items() if a != activation_id}
    return st


def hold_ms(action: dict[str, Any]) -> int:
    """How long an admitted activation may count as in flight: its time limit plus the watchdog's grace."""
    return int(action.get("limits", {}).get("timeout", 60000)) + HOLD_GRACE_MS
