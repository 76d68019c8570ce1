"""Routes: info, namespaces, entity CRUD (as commands), invoke, activations."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from api import errors
from api.app import PRODUCER, TAIL, TOPICS, VIEWS, identity, read_json_object, resolve_ns
from api.errors import json_response
from api.invoke import invoke_action, public_record
from contracts import bus, entities, events
from contracts.errors import WhiskError
from contracts.events import EntityChanged, EntityCommand
from projections.views import ACTIVATIONS, WHISKS

COLLECTIONS = {"actions": "action", "triggers": "trigger", "rules": "rule", "packages": "package"}
NORMALIZE = {
    "action": entities.normalize_action_put,
    "trigger": entities.normalize_trigger_put,
    "rule": entities.normalize_rule_put,
    "package": entities.normalize_package_put,
}
TRUE = {"true", "yes", "on", "1"}
FALSE = {"false", "no", "off", "0"}
DECISION_TIMEOUT = 30.0
VIEW_TIMEOUT = 10.0


def add(app: web.Application) -> None:
    r = app.router
    r.add_get("/", info)
    r.add_get("/api/v1", api_info)
    r.add_get("/api/v1/", api_info)
    r.add_get("/api/v1/api-docs", api_docs)
    r.add_get("/api/v1/namespaces", namespaces)
    r.add_get("/api/v1/namespaces/{ns}/limits", limits)
    r.add_get("/api/v1/namespaces/{ns}/activations", list_activations)
    r.add_get("/api/v1/namespaces/{ns}/activations/{id}", get_activation)
    r.add_get("/api/v1/namespaces/{ns}/activations/{id}/{part:(result|logs)}", get_activation)
    for coll in COLLECTIONS:
        r.add_get(f"/api/v1/namespaces/{{ns}}/{coll}", list_entities)
        r.add_route("*", f"/api/v1/namespaces/{{ns}}/{coll}/{{rest:.+}}", entity)


def query_bool(request: web.Request, name: str, default: bool = False) -> bool:
    v = request.query.get(name)
    if v is None:
        return default
    if v.lower() in TRUE:
        return True
    if v.lower() in FALSE:
        return False
    raise WhiskError(400, f"The query parameter '{name}' was malformed:\n'{v}' is not a valid Boolean value")


def query_int(request: web.Request, name: str, default: int, coll: str, lo: int = 0, hi: int | None = None) -> int:
    v = request.query.get(name)
    if v is None:
        return default
    try:
        n = int(v)
    except ValueError as e:
        raise WhiskError(400, f"The query parameter '{name}' was malformed:\nThe value '{v}' is not an integer for "
                              f"{coll}.") from e
    if n < lo or (hi is not None and n > hi):
        rng = f"in the range of {lo} to {hi}" if hi is not None else f"at least {lo}"
        raise WhiskError(400, f"The query parameter '{name}' was malformed:\nThe value '{v}' is not {rng} for {coll}.")
    return n


# --- info ---------------------------------------------------------------------------------------------


async def info(request: web.Request) -> web.Response:
    lim = entities.LIMITS
    return json_response({
        "description": "OpenWhisk", "support": {"github": "streamwhisk", "slack": ""},
        "api_paths": ["/api/v1"],
        "limits": {
            "actions_per_minute": 60, "triggers_per_minute": 60, "concurrent_actions": 30,
            "sequence_length": entities.MAX_SEQUENCE_LENGTH,
            "min_action_duration": lim["timeout"].min, "max_action_duration": lim["timeout"].max,
            "min_action_memory": lim["memory"].min * 1048576, "max_action_memory": lim["memory"].max * 1048576,
            "min_action_logs": lim["logs"].min * 1048576, "max_action_logs": lim["logs"].max * 1048576,
        },
        "runtimes": entities.runtimes_info(),
    })


async def api_info(request: web.Request) -> web.Response:
    return json_response({
        "description": "OpenWhisk API", "api_version": "1.0.0", "api_version_path": "v1",
        "build": "streamwhisk", "buildno": "0.1.0",
        "swagger_paths": {"ui": "/docs", "api-docs": "/api-docs"},
    })


async def api_docs(request: web.Request) -> web.Response:
    from api.openapi import spec

    return json_response(spec())


async def namespaces(request: web.Request) -> web.Response:
    return json_response([identity(request).namespace])


async def limits(request: web.Request) -> web.Response:
    ns = resolve_ns(request, request.match_info["ns"])
    _own(request, ns)
    lim = entities.LIMITS
    user = identity(request).limits
    return json_response({
        "invocationsPerMinute": user.get("invocationsPerMinute", 60),
        "concurrentInvocations": user.get("concurrentInvocations", 30),
        "firesPerMinute": user.get("firesPerMinute", 60),
        "maxActionMemory": lim["memory"].max, "minActionMemory": lim["memory"].min,
        "maxActionLogs": lim["logs"].max, "minActionLogs": lim["logs"].min,
        "maxActionTimeout": lim["timeout"].max, "minActionTimeout": lim["timeout"].min,
        "maxActionConcurrency": lim["concurrency"].max, "minActionConcurrency": lim["concurrency"].min,
        "maxParameterSize": "1 MB", "maxActionInstances": user.get("concurrentInvocations", 30),
    })


def _own(request: web.Request, ns: str) -> None:
    entities.validate_namespace(ns)
    if ns != identity(request).namespace:
        raise errors.not_authorized(ns)


# --- entities -----------------------------------------------------------------------------------------


def _doc_ns_name(ns: str, rest: str) -> tuple[str, str]:
    """URL rest `name` or `pkg/name` -> (doc namespace, name)."""
    parts = rest.split("/")
    if len(parts) == 1:
        return ns, entities.validate_name(parts[0])
    if len(parts) == 2:
        return f"{ns}/{entities.validate_name(parts[0])}", entities.validate_name(parts[1])
    raise WhiskError(404, errors.NOT_FOUND)


async def entity(request: web.Request) -> web.StreamResponse:
    coll = request.path.split("/")[5]
    etype = COLLECTIONS[coll]
    ns = resolve_ns(request, request.match_info["ns"])
    entities.validate_namespace(ns)
    rest = request.match_info["rest"]
    if rest.endswith("/") and coll == "actions" and request.method == "GET":
        return await list_entities(request, package=entities.validate_name(rest[:-1]))
    doc_ns, name = _doc_ns_name(ns, rest)
    if "/" in doc_ns and etype != "action":
        raise WhiskError(404, errors.NOT_FOUND)
    doc_id = f"{doc_ns}/{name}"
    m = request.method
    if m == "GET":
        return await get_entity(request, etype, ns, doc_id)
    if m in ("PUT", "DELETE") or (m == "POST" and etype == "rule"):
        _own(request, ns)
        return await write_entity(request, etype, doc_ns, name, doc_id)
    if m == "POST" and etype == "action":
        return await invoke_action(request, ns, doc_id)
    if m == "POST" and etype == "trigger":
        raise WhiskError(501, "Trigger fire is not implemented yet.")
    raise web.HTTPMethodNotAllowed(m, ["GET", "PUT", "DELETE", "POST"])


async def get_entity(request: web.Request, etype: str, ns: str, doc_id: str) -> web.Response:
    views = request.app[VIEWS]
    doc = await views.get(WHISKS, doc_id)
    if doc is None:
        raise WhiskError(404, errors.NOT_FOUND)
    if doc.get("entityType") != etype:
        raise WhiskError(409, entities.CONFORMANCE)
    if ns != identity(request).namespace:
        await _check_shared(request, doc)
    if etype == "action" and not query_bool(request, "code", True):
        doc["exec"] = {k: v for k, v in doc.get("exec", {}).items() if k != "code"}
    if etype == "rule":
        trig = await views.get(WHISKS, f"{doc['trigger']['path']}/{doc['trigger']['name']}")
        doc["status"] = _rule_status(doc, trig)
    return json_response(_strip(doc))


def _rule_status(rule: dict[str, Any], trigger: dict[str, Any] | None) -> str:
    if trigger is None:
        return "inactive"
    link = (trigger.get("rules") or {}).get(f"{rule['namespace']}/{rule['name']}")
    return str(link["status"]) if link else "inactive"


async def _check_shared(request: web.Request, doc: dict[str, Any]) -> None:
    """Another namespace's package (or an action in it) is readable only when the package is published."""
    ns = doc["namespace"]
    pkg_id = f"{ns}/{doc['name']}" if doc.get("entityType") == "package" else ns
    pkg = doc if doc.get("entityType") == "package" else await request.app[VIEWS].get(WHISKS, pkg_id)
    if "/" not in pkg_id or pkg is None or not pkg.get("publish"):
        raise errors.not_authorized(f"{doc['namespace']}/{doc['name']}")


def _strip(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "entityType"}


async def write_entity(request: web.Request, etype: str, doc_ns: str, name: str, doc_id: str) -> web.Response:
    m = request.method
    body: dict[str, Any] = {}
    if m == "PUT":
        raw = await read_json_object(request)
        body = NORMALIZE[etype](doc_ns, name, raw, events.now_ms())
        op = "put"
    elif m == "DELETE":
        op = "delete"
    else:
        body = await read_json_object(request)
        op = "rule_state"
    cmd = EntityCommand(
        request_id=events.new_id(), op=op, entity_type=etype, doc_id=doc_id, subject=identity(request).subject,
        body=body, overwrite=query_bool(request, "overwrite"), force=query_bool(request, "force"),
    )
    decided, partition, offset = await _decide(request, cmd)
    if decided.error is not None:
        raise WhiskError(decided.error_status or 400, decided.error)
    tail, topics = request.app[TAIL], request.app[TOPICS]
    # Read-your-writes: answer once the projection holds this decision.
    await tail.caught_up(topics.entities, partition, offset, VIEW_TIMEOUT)
    return json_response(_strip(decided.result) if decided.result is not None else {})


async def _decide(request: web.Request, cmd: EntityCommand) -> tuple[EntityChanged, int, int]:
    tail = request.app[TAIL]
    fut: asyncio.Future[tuple[EntityChanged, int, int]] = asyncio.get_running_loop().create_future()
    tail.decisions[cmd.request_id] = fut
    try:
        await bus.send(request.app[PRODUCER], request.app[TOPICS].commands, cmd.doc_id.split("/")[0], cmd)
        return await asyncio.wait_for(fut, DECISION_TIMEOUT)
    except TimeoutError as e:
        raise WhiskError(503, "The entity service did not answer in time; the request may still be applied.") from e
    finally:
        tail.decisions.pop(cmd.request_id, None)


async def list_entities(request: web.Request, package: str | None = None) -> web.Response:
    coll = request.path.split("/")[5]
    etype = COLLECTIONS[coll]
    ns = resolve_ns(request, request.match_info["ns"])
    entities.validate_namespace(ns)
    own = ns == identity(request).namespace
    if not own and etype != "package" and package is None:
        raise errors.not_authorized(ns)
    limit = query_int(request, "limit", 30, coll, 0, 200) or 200
    skip = query_int(request, "skip", 0, coll)
    count = query_bool(request, "count")
    views = request.app[VIEWS]
    if package is not None:
        pkg = await views.get(WHISKS, f"{ns}/{package}")
        if pkg is None or pkg.get("entityType") != "package":
            raise WhiskError(404, errors.NOT_FOUND)
        if not own:
            await _check_shared(request, pkg)
        key: list[Any] = [f"{ns}/{package}", etype]
        design_view = "by_package"
    else:
        key, design_view = [ns, etype], "by_collection"
    n, docs = await views.view(
        WHISKS, "whisks", design_view, start=[*key, {}], end=key,
        limit=None if not own else limit, skip=0 if not own else skip, count=count and own,
    )
    if not own:  # other namespaces: only published packages that are not bindings
        docs = [d for d in docs if d.get("publish") and not d.get("binding")][skip:skip + limit]
        n = len(docs)
    if count:
        return json_response({coll: n})
    return json_response([_summary(etype, d) for d in docs])


def _summary(etype: str, doc: dict[str, Any]) -> dict[str, Any]:
    keep = ["namespace", "name", "version", "publish", "annotations", "updated"]
    out = {k: doc[k] for k in keep if k in doc}
    if etype == "action":
        out["limits"] = doc.get("limits", {})
        out["exec"] = {"binary": bool(doc.get("exec", {}).get("binary", False))}
    elif etype == "package":
        b = doc.get("binding") or {}
        out["binding"] = b if b else False
    elif etype == "rule":
        out = _strip(doc)
    return out


# --- activations --------------------------------------------------------------------------------------


async def get_activation(request: web.Request) -> web.Response:
    ns = resolve_ns(request, request.match_info["ns"])
    _own(request, ns)
    aid = request.match_info["id"]
    if len(aid) != 32:
        raise WhiskError(400, f"Activation id length is {len(aid)} but must be 32.")
    if any(c not in "0123456789abcdef" for c in aid):
        raise WhiskError(400, "The activation id is not valid.")
    tail, topics = request.app[TAIL], request.app[TOPICS]
    pos = tail.completion_pos.get(aid)
    if pos is not None:  # this API saw it complete: make sure the view has it
        await tail.caught_up(topics.completions, pos[0], pos[1], VIEW_TIMEOUT)
    doc = await request.app[VIEWS].get(ACTIVATIONS, f"{ns}/{aid}")
    if doc is None:
        raise WhiskError(404, errors.NOT_FOUND)
    part = request.match_info.get("part")
    if part == "logs":
        return json_response({"logs": doc.get("logs", [])})
    rec = public_record(doc)
    return json_response(rec["response"] if part == "result" else rec)


async def list_activations(request: web.Request) -> web.Response:
    ns = resolve_ns(request, request.match_info["ns"])
    _own(request, ns)
    limit = query_int(request, "limit", 30, "activations", 0, 200) or 200
    skip = query_int(request, "skip", 0, "activations")
    docs_flag, count = query_bool(request, "docs"), query_bool(request, "count")
    if docs_flag and count:
        raise WhiskError(400, "The parameter 'docs' is not permitted with 'count'.")
    since, upto = _epoch(request, "since"), _epoch(request, "upto")
    name = request.query.get("name")
    if name is not None:
        parts = name.split("/")
        if len(parts) > 2 or not all(entities.ENTITY_NAME_RE.match(p) for p in parts):
            raise WhiskError(400, f"Parameter may be a 'simple' name or 'package-name/simple' name: {name}")
        prefix: list[Any] = [ns, name]
        design_view = "by_name"
    else:
        prefix, design_view = [ns], "by_namespace"
    hi: Any = upto if upto is not None else {}
    lo = since if since is not None else 0
    n, docs = await request.app[VIEWS].view(
        ACTIVATIONS, "activations", design_view, start=[*prefix, hi], end=[*prefix, lo],
        limit=limit, skip=skip, count=count,
    )
    if count:
        return json_response({"activations": n})
    if docs_flag:
        return json_response(docs)
    keep = ["namespace", "name", "version", "publish", "annotations", "activationId", "start", "end", "duration",
            "cause"]
    out = []
    for d in docs:
        s = {k: d[k] for k in keep if k in d}
        s["statusCode"] = d.get("response", {}).get("statusCode", 0)
        out.append(s)
    return json_response(out)


def _epoch(request: web.Request, name: str) -> int | None:
    v = request.query.get(name)
    if v is None:
        return None
    try:
        return int(v)
    except ValueError as e:
        raise WhiskError(400, f"Parameter is not a valid value for epoch seconds: {v}") from e
