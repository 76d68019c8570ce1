"""Sequences and conductor actions, run in the API process as OpenWhisk's controller runs them.

Each component is an ordinary activation submitted through api.invoke._submit (blocking, with `cause` = the
composition's id); the composition's own record (logs = component ids, duration = their sum) is emitted as an
ActivationCompleted on the completions topic, so the projector stores it like any other.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, cast

from aiohttp import web

from api.app import DISK, PRODUCER, TOPICS, identity
from api.diskguard import accepted_work
from api.errors import json_response
from contracts import bus, entities
from contracts.errors import WhiskError
from contracts.events import ActivationCompleted, ActivationRequested, new_id, now_ms

log = logging.getLogger("api.compositions")
Doc = dict[str, Any]
MAX_COMPONENTS = entities.MAX_SEQUENCE_LENGTH  # atomic actions per composition (nested sequences expanded)
MAX_CONDUCTOR_RUNS = 2 * MAX_COMPONENTS + 1
WAIT_SLACK_S = 60.0  # a component may wait for a cold start and admission on top of its own time limit
STATUS = {0: "success", 1: "application error", 2: "action developer error", 3: "whisk internal error"}
_TASKS: set[asyncio.Task[Any]] = set()


def _annotation(doc: Doc, key: str) -> Any:
    return next((a.get("value") for a in doc.get("annotations", []) if a.get("key") == key), None)


def _truthy(v: Any) -> bool:
    return v not in (None, False, 0, "")


def is_sequence(action: Doc) -> bool:
    return bool(action.get("exec", {}).get("kind") == "sequence")


def is_conductor(action: Doc) -> bool:
    return not is_sequence(action) and _truthy(_annotation(action, "conductor"))


def is_composition(action: Doc) -> bool:
    """Actions the API runs itself: sequences, conductors and the platform's feed actions."""
    from feeds.service import feed_kind

    return is_sequence(action) or is_conductor(action) or feed_kind(action) is not None


def error_response(code: int, msg: str) -> Doc:
    return {"status": STATUS[code], "statusCode": code, "success": False, "result": {"error": msg}}


def conductor_step(result: Any) -> tuple[str | None, Any, Doc | None, Any]:
    """A conductor's result -> (next action or None, params, state, final result). Pure.

    Non-object params/state are boxed as {value: v} / {state: v}; with no `action` the composition ends with
    `params` if given, else the whole result.
    """
    if not isinstance(result, dict):
        return None, None, None, result
    params = result.get("params", {})
    if not isinstance(params, dict):
        params = {"value": params}
    state = result.get("state")
    if state is not None and not isinstance(state, dict):
        state = {"state": state}
    action = result.get("action")
    if action is None:
        return None, params, state, result.get("params", result)
    return str(action) if isinstance(action, str) else action, params, state, None


@dataclass
class Composition:
    """One top-level invoke: counts atomic components across nesting, collects memory for the limits annotation."""

    request: web.Request
    atomic: int = 0
    memory: list[int] = field(default_factory=list)

    @property
    def ident(self) -> Any:
        return identity(self.request)

    async def resolve(self, fqn: str) -> Doc:
        from api.invoke import resolve_action

        doc_id = fqn.lstrip("/")
        action, params = await resolve_action(self.request, doc_id.split("/")[0], doc_id)
        return {**action, "parameters": params}

    async def run(self, action: Doc, args: Any, cause: str | None, aid: str | None = None) -> Doc:
        """Run any action (primitive, sequence or conductor); returns its record (statusCode in response)."""
        if is_sequence(action):
            return await self.sequence(action, args, cause, aid or new_id())
        if is_conductor(action):
            return await self.conductor(action, args, cause, aid or new_id())
        self.atomic += 1
        return await self.primitive(action, args, cause)

    async def primitive(self, action: Doc, args: Any, cause: str | None) -> Doc:
        from api.invoke import _submit

        if isinstance(args, dict):
            params: Any = {p["key"]: p["value"] for p in action.get("parameters", []) if not p.get("init")}
            params.update(args)
        else:
            params = args  # an array result goes on as the whole argument, unmerged
        aid = new_id()
        limits = action.get("limits", {})
        self.memory.append(int(limits.get("memory", 256)))
        req = ActivationRequested(
            activation_id=aid, namespace=self.ident.namespace, subject=self.ident.subject, action=action,
            params=params, blocking=True, cause=cause, transaction_id=self.request["tid"],
        )
        wait_s = int(limits.get("timeout", 60000)) / 1000 + WAIT_SLACK_S
        try:
            record = await _submit(self.request, req, True, wait_s)
        except WhiskError as e:  # refused before running (throttle, no invoker)
            return {"activationId": None, "duration": 0, "response": error_response(1 if e.status < 500 else 3,
                                                                                       e.message)}
        if record is None:
            msg = f"Timeout reached when retrieving activation {aid} for sequence component."
            return {"activationId": aid, "duration": 0, "response": error_response(3, msg)}
        return record

    async def sequence(self, action: Doc, args: Any, cause: str | None, aid: str) -> Doc:
        start = now_ms()
        ids: list[str] = []
        duration = 0
        response: Doc = {"status": "success", "statusCode": 0, "success": True, "result": args}
        for fqn in action.get("exec", {}).get("components", []):
            if self.atomic >= MAX_COMPONENTS:
                response = error_response(1, "Too many actions in the sequence.")
                break
            try:
                component = await self.resolve(fqn)
            except WhiskError:
                response = error_response(1, "Sequence component does not exist.")
                break
            rec = await self.run(component, args, aid)
            if rec.get("activationId"):
                ids.append(rec["activationId"])
            duration += int(rec.get("duration", 0))
            response = rec["response"]
            if response.get("statusCode", 0) != 0:
                break
            args = response.get("result", {})
        return await self.record(action, aid, cause, start, duration, ids, response, "sequence")

    async def conductor(self, action: Doc, args: Any, cause: str | None, aid: str) -> Doc:
        start = now_ms()
        ids: list[str] = []
        duration, runs, components = 0, 0, 0
        params: Any = args
        state: Doc | None = None
        response: Doc
        while True:
            if runs >= MAX_CONDUCTOR_RUNS:
                response = error_response(1, "Too many actions in the composition.")
                break
            runs += 1
            self.atomic += 1
            rec = await self.primitive(action, params, aid)
            ids += [rec["activationId"]] if rec.get("activationId") else []
            duration += int(rec.get("duration", 0))
            response = rec["response"]
            if response.get("statusCode", 0) != 0:
                break
            nxt, params, state, final = conductor_step(response.get("result"))
            if nxt is None:
                response = {**response, "result": final}
                break
            components += 1
            if components > MAX_COMPONENTS:
                response = error_response(1, "Too many actions in the composition.")
                break
            try:
                if not isinstance(nxt, str):
                    raise WhiskError(400, "not a name")
                fqn = entities.fqn_doc_id(nxt, self.ident.namespace)
            except WhiskError:
                params = {"error": f"Failed to parse action name from json value {nxt}.", **(state or {})}
                continue
            try:
                component = await self.resolve(fqn)
            except WhiskError as e:
                msg = (f"Failed entitlement check for action with name '{nxt}' during composition." if e.status == 403
                       else f"Failed to resolve action with name '{nxt}' during composition.")
                params = {"error": msg, **(state or {})}
                continue
            crec = await self.run(component, params, aid)
            ids += [crec["activationId"]] if crec.get("activationId") else []
            duration += int(crec.get("duration", 0))
            result = crec["response"].get("result", {})
            params = {**(result if isinstance(result, dict) else {"value": result}), **(state or {})}
        return await self.record(action, aid, cause, start, duration, ids, response, "conductor")

    async def record(self, action: Doc, aid: str, cause: str | None, start: int, duration: int, ids: list[str],
                     response: Doc, what: str) -> Doc:
        limits = action.get("limits", {})
        ann: list[Doc] = [
            {"key": "path", "value": f"{action['namespace']}/{action['name']}"},
            {"key": "kind", "value": "sequence" if what == "sequence" else action.get("exec", {}).get("kind")},
            {"key": "waitTime", "value": 0},
            {"key": "limits", "value": {"timeout": limits.get("timeout", 60000), "logs": limits.get("logs", 10),
                                        "memory": max(self.memory, default=limits.get("memory", 256))}},
        ]
        ann.append({"key": "causedBy", "value": "sequence"} if cause else {"key": "topmost", "value": True})
        if what == "conductor":
            ann.append({"key": "conductor", "value": True})
        if action.get("wsk_binding"):
            ann.append({"key": "binding", "value": action["wsk_binding"]})
        rec: Doc = {
            "namespace": self.ident.namespace, "name": action["name"], "subject": self.ident.subject,
            "activationId": aid, "start": start, "end": now_ms(), "duration": duration, "response": response,
            "logs": ids, "version": action.get("version", "0.0.1"), "publish": False, "annotations": ann,
        }
        if cause:
            rec["cause"] = cause
        done = ActivationCompleted(activation_id=aid, namespace=self.ident.namespace, record=rec)
        await bus.send(self.request.app[PRODUCER], self.request.app[TOPICS].completions, done.namespace,
                       done)
        return rec


async def invoke(request: web.Request, action: Doc, payload: Doc, blocking: bool, result_only: bool,
                 wait_ms: int) -> web.Response:
    """POST on a sequence or conductor: 202 at once, or the record when it finishes within wait_ms."""
    from api.invoke import STATUS_BY_CODE, public_record

    if not is_sequence(action) and not is_conductor(action):
        from api.fire import invoke_feed

        return await invoke_feed(request, action, payload, blocking, result_only, wait_ms)
    request.app[DISK].check()  # refused before its 202; once accepted, its steps and record may use the reserve
    aid = new_id()
    request["activation_id"] = aid
    token = accepted_work.set(True)
    task = asyncio.create_task(Composition(request).run(action, payload, None, aid))
    accepted_work.reset(token)
    _TASKS.add(task)
    task.add_done_callback(_done)
    hdr = {"x-openwhisk-activation-id": aid}
    if not blocking:
        return json_response({"activationId": aid}, 202, hdr)
    try:
        record = await asyncio.wait_for(asyncio.shield(task), wait_ms / 1000)
    except TimeoutError:
        return json_response({"activationId": aid}, 202, hdr)
    status = STATUS_BY_CODE.get(record["response"].get("statusCode", 3), 500)
    if result_only:
        return json_response(record["response"].get("result", {}), status, hdr)
    return json_response(public_record(record), status, hdr)


def _done(task: asyncio.Task[Any]) -> None:
    _TASKS.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("composition failed", exc_info=task.exception())


class _InternalCall(dict[str, Any]):
    """Stands in for a web.Request when a rule fires a composition: Composition reads only these."""

    def __init__(self, app: web.Application, ident: Any, tid: str) -> None:
        super().__init__(identity=ident, tid=tid)
        self.app = app


async def run_rule_compositions(app: web.Application) -> None:
    """Run the sequences/conductors that rules fire. One API process of the group takes each, at most once."""
    from api.app import SETTINGS, TAIL

    settings, topics, tail = app[SETTINGS], app[TOPICS], app[TAIL]
    accepted_work.set(True)  # fired by an accepted trigger fire: these run on with a disk low (this task only)
    consumer = bus.consumer(settings.kafka, topics.compositions, group=f"{settings.prefix}-api-compositions")
    await consumer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for _, req in bus.decoded(batch, "composition request"):
                if isinstance(req, ActivationRequested):
                    _start_for_rule(app, tail, req)
            if batch:
                await consumer.commit()  # at most once, as for invokes: committed when started
    finally:
        await consumer.stop()


def _start_for_rule(app: web.Application, tail: Any, req: ActivationRequested) -> None:
    ident = next((i for i in tail.identities.values()
                  if i.subject == req.subject and i.namespace == req.namespace), None)
    if ident is None:
        log.warning("composition %s: subject %s is gone", req.activation_id, req.subject)
        return
    call = cast(web.Request, _InternalCall(app, ident, req.transaction_id or req.activation_id))
    task = asyncio.create_task(Composition(call).run(req.action, req.params, None, req.activation_id))
    _TASKS.add(task)
    task.add_done_callback(_done)
