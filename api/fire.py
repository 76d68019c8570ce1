"""POST .../triggers/{name}: emit TriggerFired, answer from the rules agent's reply (202, 204, 404 or 429)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from api import errors
from api.app import PRODUCER, TAIL, TOPICS, VIEWS, identity, read_json_object
from api.errors import json_response
from contracts import bus, entities
from contracts.errors import WhiskError
from contracts.events import ActivationCompleted, ActivationRequested, TriggerFired, new_id
from projections.views import WHISKS

REPLY_TIMEOUT = 30.0
PRIVATE_HEADERS = {"authorization", "cookie", "proxy-authorization"}


async def fire_trigger(request: web.Request, ns: str, doc_id: str) -> web.Response:
    payload = await read_json_object(request, entities.MAX_PAYLOAD_SIZE)
    ident = identity(request)
    trigger = await request.app[VIEWS].get(WHISKS, doc_id)
    if trigger is None:
        raise WhiskError(404, errors.NOT_FOUND)
    if trigger.get("entityType") != "trigger":
        raise WhiskError(409, entities.CONFORMANCE)
    if ns != ident.namespace:
        raise errors.not_authorized(doc_id)
    aid = new_id()
    headers = {k.lower(): v for k, v in request.headers.items() if k.lower() not in PRIVATE_HEADERS}
    ev = TriggerFired(
        activation_id=aid, namespace=ns, subject=ident.subject, trigger=doc_id, payload=payload, headers=headers,
        transaction_id=request["tid"],
    )
    reply = await send_fire(request.app, ev)
    if reply.rejected_status == 204:
        return web.Response(status=204)
    if reply.rejected_status is not None:
        raise WhiskError(reply.rejected_status, reply.rejected or "Internal Server Error")
    request["activation_id"] = aid
    return json_response({"activationId": aid}, 202, {"x-openwhisk-activation-id": aid})


async def send_fire(app: web.Application, ev: TriggerFired) -> ActivationCompleted:
    """Send and wait for the rules agent's answer (registered before sending, so it cannot be missed)."""
    tail = app[TAIL]
    fut: asyncio.Future[ActivationCompleted] = asyncio.get_running_loop().create_future()
    tail.completions[ev.activation_id] = fut
    try:
        await bus.send(app[PRODUCER], app[TOPICS].fires, ev.namespace, ev)
        return await asyncio.wait_for(fut, REPLY_TIMEOUT)
    except TimeoutError as e:
        raise WhiskError(503, "The trigger service did not answer in time; the fire may still be processed.") from e
    finally:
        tail.completions.pop(ev.activation_id, None)


async def invoke_feed(request: web.Request, action: dict[str, Any], payload: dict[str, Any], blocking: bool,
                      result_only: bool, wait_ms: int) -> web.Response:
    """A platform feed action (/whisk.system/alarms/*, /whisk.system/kafka/*): run by the feed service.

    The CLI's `authKey` parameter is checked here and never leaves the API; the trigger must be the caller's.
    """
    from api.invoke import STATUS_BY_CODE, public_record

    ident = identity(request)
    params = {p["key"]: p["value"] for p in action.get("parameters", []) if not p.get("init")}
    params.update(payload)
    key = params.pop("authKey", None)
    if key is not None:
        who = request.app[TAIL].authenticate(key) if isinstance(key, str) else None
        if who is None or who.namespace != ident.namespace:
            raise WhiskError(401, errors.AUTH_INVALID)
    aid = new_id()
    request["activation_id"] = aid
    req = ActivationRequested(
        activation_id=aid, namespace=ident.namespace, subject=ident.subject,
        action=entities.action_ref(action), params=params, blocking=blocking,  # exec.kind for the record
        transaction_id=request["tid"],
    )
    hdr = {"x-openwhisk-activation-id": aid}
    tail = request.app[TAIL]
    fut: asyncio.Future[ActivationCompleted] = asyncio.get_running_loop().create_future()
    if blocking:
        tail.completions[aid] = fut
    try:
        await bus.send(request.app[PRODUCER], request.app[TOPICS].feed_requests, str(params.get("triggerName")), req)
        if not blocking:
            return json_response({"activationId": aid}, 202, hdr)
        try:
            done = await asyncio.wait_for(fut, wait_ms / 1000)
        except TimeoutError:
            return json_response({"activationId": aid}, 202, hdr)
    finally:
        tail.completions.pop(aid, None)
    record = done.record or {}
    status = STATUS_BY_CODE.get(record.get("response", {}).get("statusCode", 3), 500)
    if result_only:
        return json_response(record["response"].get("result", {}), status, hdr)
    return json_response(public_record(record), status, hdr)
