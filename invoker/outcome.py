"""Pure interpretation of the container's replies into OpenWhisk activation results, and the record itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from invoker.containers import HttpResult

MAX_RESULT = 1048576
BINDING_FIELD = "wsk_binding"  # set by the API on an action invoked through a package binding
STATUS = {0: "success", 1: "application error", 2: "action developer error", 3: "whisk internal error"}


@dataclass(frozen=True)
class Outcome:
    status_code: int
    result: Any
    timed_out: bool = False
    size: int = 0

    @property
    def keep_container(self) -> bool:
        # A developer or internal error may leave the container in any state: never reuse it.
        return self.status_code in (0, 1)


def _error(code: int, msg: Any, **kw: Any) -> Outcome:
    return Outcome(code, {"error": msg}, **kw)


def from_init(r: HttpResult, timeout_ms: int, oom: bool = False) -> Outcome | None:
    """None when init succeeded."""
    if r.status == 200:
        return None
    if r.timed_out:
        return _error(2, f"The action exceeded its time limits of {timeout_ms} milliseconds during initialization.",
                      timed_out=True)
    if r.status is None:
        if oom:
            return _error(2, "The action exhausted its memory and was aborted.")
        return _error(2, "The action did not initialize and exited unexpectedly.")
    body = _json(r.body)
    if isinstance(body, dict) and "error" in body:
        return _error(2, body["error"])
    return _error(2, f"The action failed during initialization: {r.body.decode('utf-8', 'replace')}")


def from_run(r: HttpResult, timeout_ms: int, oom: bool = False) -> Outcome:
    if r.timed_out:
        return _error(2, f"The action exceeded its time limits of {timeout_ms} milliseconds.", timed_out=True)
    if r.status is None:
        if oom:
            return _error(2, "The action exhausted its memory and was aborted.")
        return _error(2, "The action did not produce a valid response and exited unexpectedly.")
    size = len(r.body)
    if size > MAX_RESULT:
        head = r.body[:MAX_RESULT].decode("utf-8", "replace")
        return _error(1, "The action produced a response that exceeded the allowed length: "
                         f"{size} > {MAX_RESULT} bytes. The truncated response was: {head}", size=size)
    body = _json(r.body)
    if isinstance(body, list | dict):
        size = len(orjson.dumps(body))  # compact JSON, whatever spacing the runtime used
    if r.status == 200 and isinstance(body, list):
        return Outcome(0, body, size=size)
    if isinstance(body, dict):
        if "error" in body:
            return Outcome(1 if r.status == 200 else 2, {"error": body["error"]}, size=size)
        if r.status == 200:
            return Outcome(0, body, size=size)
    return _error(2, "The action did not produce a valid JSON or JSON Array response: "
                     f"{r.body.decode('utf-8', 'replace')}", size=size)


def internal_error(msg: str) -> Outcome:
    return _error(3, msg)


def developer_error(msg: str) -> Outcome:
    return _error(2, msg)


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def record(
    *, activation_id: str, namespace: str, subject: str, action: dict[str, Any], outcome: Outcome,
    start: int, end: int, requested_at: int, init_ms: int | None, logs: list[str], cause: str | None = None,
) -> dict[str, Any]:
    kind = action.get("exec", {}).get("kind", "")
    annotations: list[dict[str, Any]] = [
        {"key": "path", "value": f"{action['namespace']}/{action['name']}"},
        {"key": "waitTime", "value": max(0, start - requested_at)},
        {"key": "kind", "value": kind},
        {"key": "timeout", "value": outcome.timed_out},
        {"key": "limits", "value": action.get("limits", {})},
    ]
    if init_ms is not None:
        annotations.append({"key": "initTime", "value": init_ms})
    if action.get(BINDING_FIELD):
        annotations.append({"key": "binding", "value": action[BINDING_FIELD]})
    response: dict[str, Any] = {
        "status": STATUS[outcome.status_code], "statusCode": outcome.status_code,
        "success": outcome.status_code == 0, "result": outcome.result,
    }
    if outcome.size:
        response["size"] = outcome.size
    rec: dict[str, Any] = {
        "namespace": namespace, "name": action["name"], "subject": subject, "activationId": activation_id,
        "start": start, "end": end, "duration": end - start, "response": response, "logs": logs,
        "version": action.get("version", "0.0.1"), "publish": False, "annotations": annotations,
    }
    if cause:
        rec["cause"] = cause
        annotations.append({"key": "causedBy", "value": "sequence"})  # inside a sequence or conductor
    return rec
