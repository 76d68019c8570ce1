"""Pure per-namespace throttles: fixed wall-clock minute windows and concurrent in-flight counts.

As OpenWhisk's Entitlement.checkThrottles: the rate is checked first, and its counter counts every attempt in the
minute, refused ones included (RateThrottler increments before comparing); the concurrency check compares the
activations already in flight with the limit (ActivationThrottler: ok while count < allowed).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from streams.watchdog import DEADLINE_GRACE_MS

DEFAULT_LIMITS = {"invocationsPerMinute": 60, "concurrentInvocations": 30, "firesPerMinute": 60}
HOLD_GRACE_MS = DEADLINE_GRACE_MS  # by then the watchdog has closed the activation anyway


def limit(limits: dict[str, Any], name: str) -> int:
    return int(limits.get(name, DEFAULT_LIMITS[name]))


def admit(
    state: dict[str, Any] | None, limits: dict[str, Any], now_ms: int, held: bool = False
) -> tuple[dict[str, Any], str | None]:
    """New state, and None when the invocation may go ahead or else the 429 message. `held`: this activation
    already holds a slot (its invocation is read again after a worker crash), so nothing is counted again.

    >>> st, msg = admit(None, {"invocationsPerMinute": 1}, 0)
    >>> msg is None, admit(st, {"invocationsPerMinute": 1}, 1)[1]
    (True, 'Too many requests in the last minute (count: 2, allowed: 1).')
    >>> admit(st, {"invocationsPerMinute": 1}, 1, held=True) == (st, None)
    True
    """
    st = dict(state or {"minute": 0, "count": 0, "inflight": 0})
    if held:
        return st, None
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


def release(state: dict[str, Any] | None) -> dict[str, Any]:
    st = dict(state or {"minute": 0, "count": 0, "inflight": 0})
    st["inflight"] = max(0, st["inflight"] - 1)
    return st


def hold(namespace: str, partition: int, action: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """What the holds table keeps for an admitted activation: until when it may count as in flight (its time
    limit plus the watchdog's grace, after which the watchdog has closed it anyway)."""
    timeout = int(action.get("limits", {}).get("timeout", 60000))
    return {"ns": namespace, "p": partition, "until": now_ms + timeout + HOLD_GRACE_MS}


def expired_holds(holds: Iterable[tuple[str, Any]], partition: int, now_ms: int) -> list[tuple[str, str]]:
    """(activation id, namespace) of the partition's holds past their time: their release never came.

    >>> expired_holds([("a", {"ns": "n", "p": 0, "until": 5}), ("b", {"ns": "n", "p": 1, "until": 5})], 0, 6)
    [('a', 'n')]
    """
    return [(a, h["ns"]) for a, h in holds if h and h.get("p") == partition and h["until"] < now_ms]


PRUNE_EVERY_MS = 5000


class Holds:
    """Activation ids that hold their namespace's concurrency slots: a changelogged table keyed by id, one small
    entry each, beside the per-namespace counts. Admitting or releasing an id twice, as a worker does when it
    re-reads events after a crash, counts once; a hold whose release never came expires. Used from agents only,
    on events of the activation's own partition, so every write lands in that partition's changelogs."""

    def __init__(self, app: Any, throttles: Any) -> None:
        self.table = app.Table("holds", default=None)
        self.throttles = throttles
        self.pruned: dict[int, int] = {}

    def held(self, activation_id: str) -> bool:
        return self.table.get(activation_id) is not None

    def take(self, namespace: str, activation_id: str, partition: int, action: dict[str, Any], now_ms: int) -> None:
        if not self.held(activation_id):
            self.table[activation_id] = hold(namespace, partition, action, now_ms)

    def release(self, namespace: str, activation_id: str) -> None:
        if self.held(activation_id):
            self.table.pop(activation_id, None)
            self.throttles[namespace] = release(self.throttles.get(namespace))

    def prune(self, partition: int, now_ms: int) -> None:
        if now_ms - self.pruned.get(partition, 0) < PRUNE_EVERY_MS:
            return
        self.pruned[partition] = now_ms
        for aid, ns in expired_holds(list(self.table.items()), partition, now_ms):
            self.release(ns, aid)
