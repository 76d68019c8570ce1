"""Dead-invoker watchdog: every assigned activation ends with exactly one final record.

OpenWhisk drops an invoker's in-flight activations when it dies and writes no record (spec 0.1). Here admission
(streams/admission.py) knows the assigned-but-not-completed activations of its partitions, from the log.
When an invoker has missed its pings for DEAD_AFTER_MS, or an activation outlives its time limit by
DEADLINE_GRACE_MS, the watchdog emits an ActivationCompleted with a "whisk internal error" record (statusCode 3).
Execution stays at most once: nothing is retried; a late real completion replaces the record (last wins).

Both are measured on this worker's monotonic clock (streams/clock.py): since it last read a ping of the invoker,
since it assigned the activation (for one rebuilt from the log, an estimate made once). So a wall-clock step
neither closes live work nor hides a dead invoker.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from contracts.events import ActivationAssigned, ActivationCompleted
from contracts.logview import LogView

log = logging.getLogger("streams.watchdog")
Json = dict[str, Any]

DEAD_AFTER_MS = 5000  # the balancer stops routing after 3 s; in-flight work is declared lost after 5 s
DEADLINE_GRACE_MS = 120_000  # backstop for work lost without a dead invoker (e.g. an invoker restart)
SWEEP_EVERY_S = 1.0
STALLED_AFTER_MS = 3000  # a sweep this late means the worker itself stood still (starved of CPU, paused)

DEAD_MESSAGE = ("The invoker running this activation (invoker{n}) stopped responding; "
                "the action may or may not have run. It was not retried.")
RESTART_MESSAGE = ("The invoker running this activation (invoker{n}) restarted before completing it; "
                   "the action may or may not have run. It was not retried.")
DEADLINE_MESSAGE = ("The activation did not complete within its time limit plus {grace} s; "
                    "the invoker is presumed to have lost it. It was not retried.")


def entry(ev: ActivationAssigned, partition: int, since_ms: int) -> Json:
    """What the watchdog keeps per in-flight activation (enough to write its record, and whose it is).
    `since`: when it was assigned, on this worker's monotonic clock; `assigned`: the wall time, for the record."""
    req, action = ev.request, ev.request.action
    limits = action.get("limits", {})
    return {
        "invoker": ev.invoker, "partition": partition, "namespace": req.namespace, "subject": req.subject,
        "assigned": ev.at, "since": since_ms,
        "requested": req.at, "cause": req.cause, "memory": int(limits.get("memory", 256)),
        "timeout": int(limits.get("timeout", 60000)),
        "action": {"namespace": action.get("namespace", req.namespace), "name": action.get("name", ""),
                   "version": action.get("version", "0.0.1"), "limits": limits,
                   "kind": action.get("exec", {}).get("kind", "")},
    }


def orphans(
    inflight: Mapping[str, Json], invokers: Mapping[int, Json], now_ms: int, watching_since_ms: int,
    partitions: set[int] | None = None,
) -> list[tuple[str, str]]:
    """(activation id, reason) for every in-flight activation to close now, of the given partitions only (a
    worker may still hold entries of partitions that moved to another worker; those are the other's to close).

    Times are this worker's monotonic ms: `now_ms`, each invoker's `heard` (its last ping read), each entry's
    `since` (assigned) and `watching_since_ms`. An invoker counts as dead when neither a ping nor the watchdog's
    own start (or the end of its last stall, `watching_since`) is recent: after a worker restart the invokers get
    DEAD_AFTER_MS to ping again.

    >>> fl = {"a": {"invoker": 0, "since": 0, "timeout": 1000}, "b": {"invoker": 1, "since": 0, "timeout": 1000}}
    >>> orphans(fl, {0: {"heard": 9000}, 1: {"heard": 1000}}, 9500, 0)
    [('b', 'dead')]
    >>> orphans(fl, {0: {"heard": 200_000}, 1: {"heard": 200_000}}, 200_000, 0)
    [('a', 'deadline'), ('b', 'deadline')]
    >>> orphans(fl, {0: {"heard": 9000}, 1: {"heard": 1000}}, 9500, 0, partitions={1})
    []
    """
    out = []
    for aid, e in inflight.items():
        if partitions is not None and int(e.get("partition", 0)) not in partitions:
            continue
        inv = invokers.get(int(e["invoker"]), {})
        heard = max(int(inv.get("heard", 0)), watching_since_ms)
        if now_ms - heard > DEAD_AFTER_MS:
            out.append((aid, "dead"))
        elif int(e["since"]) < int(inv.get("restarted", 0)):  # assigned to the process before; the new one skips it
            out.append((aid, "restarted"))
        elif now_ms - int(e["since"]) > int(e["timeout"]) + DEADLINE_GRACE_MS:
            out.append((aid, "deadline"))
    return out


def watching_since(started: int | None, last_sweep: int | None, now_ms: int) -> int:
    """From when the watchdog counts an invoker's silence: its own start, or the end of its own last stall (a worker
    that stood still read no pings meanwhile, so their absence says nothing about the invokers). Monotonic ms.

    >>> watching_since(None, None, 5000), watching_since(0, 4000, 5000), watching_since(0, 1000, 5000)
    (5000, 0, 5000)
    """
    if started is None or (last_sweep is not None and now_ms - last_sweep > STALLED_AFTER_MS):
        return now_ms
    return started


def error_completion(activation_id: str, e: Json, reason: str, now_ms: int) -> ActivationCompleted:
    """A final record in OpenWhisk's shape, status "whisk internal error". `now_ms` is monotonic, as `since`: start
    is the assignment's wall time and end = start + the time since, whatever the wall clock did meanwhile."""
    a = e["action"]
    msg = {"dead": DEAD_MESSAGE, "restarted": RESTART_MESSAGE}.get(reason, DEADLINE_MESSAGE).format(
        n=e["invoker"], grace=DEADLINE_GRACE_MS // 1000)
    start, duration = int(e["assigned"]), max(0, now_ms - int(e["since"]))
    rec: Json = {
        "namespace": e["namespace"], "name": a["name"], "subject": e["subject"], "activationId": activation_id,
        "start": start, "end": start + duration, "duration": duration,
        "response": {"status": "whisk internal error", "statusCode": 3, "success": False, "result": {"error": msg}},
        "logs": [], "version": a["version"], "publish": False,
        "annotations": [
            {"key": "path", "value": f"{a['namespace']}/{a['name']}"},
            {"key": "waitTime", "value": max(0, start - int(e["requested"]))},
            {"key": "kind", "value": a["kind"]},
            {"key": "timeout", "value": False},
            {"key": "limits", "value": a["limits"]},
        ],
    }
    if e.get("cause"):
        rec["cause"] = e["cause"]
    return ActivationCompleted(activation_id=activation_id, namespace=e["namespace"], invoker=int(e["invoker"]),
                               record=rec, memory_mb=int(e["memory"]))


class Watchdog:
    """Closes the in-flight activations of dead invokers, and those long past their deadline, once each. After its
    own start, or a sweep that came late (the worker stood still), invokers get DEAD_AFTER_MS to be heard again."""

    def __init__(self, invokers: LogView) -> None:
        self.invokers = invokers
        self.closing: set[str] = set()  # emitted, not yet seen back on completions (one close per activation)
        self.started: int | None = None
        self.swept: int | None = None

    def completed(self, activation_id: str) -> None:
        self.closing.discard(activation_id)

    def due(self, inflight: Mapping[str, Json], partitions: set[int], now_ms: int,
            bus_up: bool = True) -> list[ActivationCompleted]:
        """The error records to emit now for the given partitions' in-flight activations (`now_ms`: monotonic).
        While Kafka is unreachable no ping can be read, so silence says nothing: as after a stall, invokers get
        DEAD_AFTER_MS from its return (a close decided meanwhile would land after the real completion)."""
        if not self.invokers.ready.is_set():  # until the health view is loaded every invoker would look silent
            return []
        if not bus_up:
            if self.swept is not None:
                log.warning("Kafka is unreachable: no invoker is declared dead until it is back")
            self.started, self.swept = now_ms, None
            return []
        since = watching_since(self.started, self.swept, now_ms)
        if self.started is not None and since != self.started:
            log.warning("the worker stood still for %.1f s: invokers get %.0f s to be heard again",
                        (now_ms - (self.swept or now_ms)) / 1000, DEAD_AFTER_MS / 1000)
        self.started, self.swept = since, now_ms
        current = {k: v for k, v in inflight.items() if k not in self.closing}
        out = []
        for aid, reason in orphans(current, dict(self.invokers.data), now_ms, self.started, partitions):
            self.closing.add(aid)
            log.warning("closing activation %s (invoker%s, %s)", aid, current[aid]["invoker"], reason)
            out.append(error_completion(aid, current[aid], reason, now_ms))
        return out
