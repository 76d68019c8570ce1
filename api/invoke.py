"""POST .../actions/{name}: resolve, emit ActivationRequested, wait for admission or completion."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from api import errors
from api.app import PRODUCER, TAIL, TOPICS, VIEWS, identity, read_json_object
from api.errors import json_response
from contracts import bus, entities
from contracts.errors import WhiskError
from contracts.events import ActivationCompleted, ActivationRequested, new_id
from projections.views import WHISKS
from streams.entities.logic import resolve_action_params

MAX_WAIT_MS = 60000
ADMISSION_TIMEOUT = 15.0
STATUS_BY_CODE = {0: 200, 1: 502, 2: 502, 3: 500}
BINDING_FIELD = "wsk_binding"  # internal: the binding an action was invoked through


def public_record(record: dict[str, Any]) -> dict[str, Any]:
    """The stored record keeps statusCode inside `response`; OpenWhisk shows it only in list summaries."""
    resp = {k: v for k, v in record.get("response", {}).items() if k != "statusCode"}
    return {**record, "response": resp}


def _truthy(v: Any) -> bool:
    return v not in (None, False, 0, "")


async def resolve_action(request: web.Request, ns: str, doc_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The action (as a reference: entities.action_ref) and its parameters merged package < binding < action
    (spec 4.2).

    `ns/pkg/name` may go through a binding: the action then lives in the bound package, and the record gets the
    `binding` annotation (carried to the invoker as the internal action field BINDING_FIELD).
    """
    views = request.app[VIEWS]
    caller = identity(request).namespace
    parts = doc_id.split("/")
    if len(parts) == 2:
        if ns != caller:  # only packages are shared across namespaces
            raise errors.not_authorized(doc_id)
        action = await _typed(views, doc_id, "action")
        return action, action.get("parameters", [])
    pkg = await views.get(WHISKS, "/".join(parts[:2]))
    if pkg is None or pkg.get("entityType") != "package":
        raise WhiskError(404, errors.NOT_FOUND)
    binding: dict[str, Any] | None = None
    if pkg.get("binding"):
        if ns != caller:  # another namespace's bindings are never shared
            raise errors.not_authorized(doc_id)
        binding = pkg
        b = pkg["binding"]
        pkg = await views.get(WHISKS, f"{b['namespace']}/{b['name']}")
        if pkg is None or pkg.get("entityType") != "package":
            raise WhiskError(404, errors.NOT_FOUND)
    if pkg["namespace"] != caller and not pkg.get("publish"):
        raise errors.not_authorized(doc_id)
    action = await _typed(views, f"{pkg['namespace']}/{pkg['name']}/{parts[2]}", "action")
    params = resolve_action_params(action, pkg, binding)
    if binding is not None:
        action = {**action, BINDING_FIELD: f"{binding['namespace']}/{binding['name']}"}
    return action, params


async def _typed(views: Any, doc_id: str, etype: str) -> dict[str, Any]:
    doc: dict[str, Any] | None = await views.get(WHISKS, doc_id, code=False)  # a reference: no code travels
    if doc is None:
        raise WhiskError(404, errors.NOT_FOUND)
    if doc.get("entityType") != etype:
        raise WhiskError(409, entities.CONFORMANCE)
    return doc


async def invoke_action(request: web.Request, ns: str, doc_id: str) -> web.Response:
    blocking = _flag(request, "blocking")
    result_only = _flag(request, "result")
    wait_ms = MAX_WAIT_MS
    if "timeout" in request.query:
        try:
            wait_ms = int(request.query["timeout"])
        except ValueError:
            wait_ms = -1
        if not 0 < wait_ms <= MAX_WAIT_MS:
            raise WhiskError(400, f"Timeout must be number of milliseconds up to {MAX_WAIT_MS}.")
    payload = await read_json_object(request, entities.MAX_PAYLOAD_SIZE)
    action, params = await resolve_action(request, ns, doc_id)
    from api import compositions  # sequences and conductors run here, as OpenWhisk's controller runs them

    if compositions.is_composition(action):
        return await compositions.invoke(request, action, payload, blocking, result_only, wait_ms)
    defined = {p["key"] for p in params}
    if _truthy(_annotation(action, "final")) and defined & payload.keys():
        raise WhiskError(400, "Request defines parameters that are not allowed (e.g., reserved properties).")
    merged = {p["key"]: p["value"] for p in params if not p.get("init")}
    merged.update(payload)
    action = {**action, "parameters": params}
    ident = identity(request)
    aid = new_id()
    request["activation_id"] = aid
    req = ActivationRequested(
        activation_id=aid, namespace=ident.namespace, subject=ident.subject, action=action, params=merged,
        blocking=blocking, transaction_id=request["tid"],
    )
    record = await _submit(request, req, blocking, wait_ms / 1000)
    hdr = {"x-openwhisk-activation-id": aid}
    if record is None:
        return json_response({"activationId": aid}, 202, hdr)
    status = STATUS_BY_CODE.get(record["response"].get("statusCode", 3), 500)
    if result_only:
        return json_response(record["response"].get("result", {}), status, hdr)
    return json_response({**public_record(record), "logs": []}, status, hdr)


async def _submit(
    request: web.Request, req: ActivationRequested, blocking: bool, wait_s: float
) -> dict[str, Any] | None:
    tail = request.app[TAIL]
    loop = asyncio.get_running_loop()
    admitted: asyncio.Future[bool] = loop.create_future()
    done: asyncio.Future[ActivationCompleted] = loop.create_future()
    tail.admissions[req.activation_id] = admitted
    tail.completions[req.activation_id] = done
    try:
        await bus.send(request.app[PRODUCER], request.app[TOPICS].invocations, req.namespace, req)
        try:
            ok = await asyncio.wait_for(asyncio.shield(admitted), ADMISSION_TIMEOUT)
        except TimeoutError as e:
            raise WhiskError(503, "The activation was accepted but not yet admitted; try again later.") from e
        if not ok:
            rej = await done
            raise WhiskError(rej.rejected_status or 500, rej.rejected or "Internal Server Error")
        if not blocking:
            return None
        try:
            completed = await asyncio.wait_for(asyncio.shield(done), wait_s)
        except TimeoutError:
            return None
        if completed.rejected_status is not None:
            raise WhiskError(completed.rejected_status, completed.rejected or "Internal Server Error")
        return completed.record
    finally:
        tail.admissions.pop(req.activation_id, None)
        tail.completions.pop(req.activation_id, None)


def _annotation(doc: dict[str, Any], key: str) -> Any:
    for a in doc.get("annotations", []):
        if a.get("key") == key:
            return a.get("value")
    return None


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "false").lower() in ("true", "yes", "on", "1")
