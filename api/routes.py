"""Routes: info, namespaces, entity CRUD (as commands), invoke, activations."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from api import errors
from api import web as web_actions
from api.app import PRODUCER, TAIL, TOPICS, VIEWS, identity, read_json_object, resolve_ns
from api.errors import json_response
from api.fire import fire_trigger
from api.invoke import invoke_action, public_record
from contracts import bus, entities, events
from contracts.errors import WhiskError
from contracts.events import EntityChanged, EntityCommand
from projections.views import ACTIVATIONS, WHISKS
from streams.entities.logic import merge_parameters

Doc = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
COLLECTIONS = {"actions": "action", "triggers": "trigger", "rules": "rule", "packages": "package"}
# In OpenWhisk's order (entityOps = put | get | delete | post), which its 405 text and Allow header follow.
METHODS = {"actions": ("PUT", "GET", "DELETE", "POST"), "triggers": ("PUT", "GET", "DELETE", "POST"),
           "rules": ("PUT", "GET", "DELETE", "POST"), "packages": ("PUT", "GET", "DELETE")}
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
    # "*" routes answer OpenWhisk's 405 text for other methods (aiohttp's own 405 has another body).
    r.add_route("*", "/api/v1/namespaces", get_only(namespaces))
    r.add_route("*", "/api/v1/namespaces/{ns}/limits", get_only(limits))
    r.add_route("*", "/api/v1/namespaces/{ns}/activations", get_only(list_activations))
    r.add_route("*", "/api/v1/namespaces/{ns}/activations/{id}", get_only(get_activation))
    r.add_route("*", "/api/v1/namespaces/{ns}/activations/{id}/{part:(result|logs)}", get_only(get_activation))
    from api import gateway  # (imports this module)

    gateway.add(app)
    web_actions.add(app)
    for coll in COLLECTIONS:
        r.add_route("*", f"/api/v1/namespaces/{{ns}}/{coll}", get_only(list_entities))
        r.add_route("*", f"/api/v1/namespaces/{{ns}}/{coll}/{{rest:.+}}", entity)
    gateway.add_serving(app)


def get_only(handler: Handler) -> Handler:
    async def route(request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            raise errors.method_not_allowed(("GET",))
        return await handler(request)

    return route


def query_bool(request: web.Request, name: str, default: bool = False) -> bool:
    v = request.query.get(name)
    if v is None:
        return default
    if v.lower() in TRUE:
        return True
    if v.lower() in FALSE:
        return False
    raise WhiskError(400, f"The query parameter '{name}' was malformed:\n'{v}' is not a valid Boolean value")


def query_int(request: web.Request, name: str, default: int, coll: str, hi: int | None = None) -> int:
    """limit (0..hi) and skip (>= 0) with OpenWhisk's messages (`[C]RestAPIs.scala`, `[MSG]`)."""
    v = request.query.get(name)
    if v is None:
        return default
    try:
        n = int(v)
    except ValueError:
        n = None
    if n is None:
        detail = f"The value '{v}' is not an integer for {coll}."
    elif hi is not None and not 0 <= n <= hi:
        detail = f"The value '{n}' is not in the range of 0 to {hi} for {coll}."
    elif n < 0:
        detail = f"The value '{n}' is not greater than or equal to 0 for {coll}."
    else:
        return n
    raise WhiskError(400, f"The query parameter '{name}' was malformed:\n{detail}")


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
            "default_action_duration": lim["timeout"].default,
            "default_action_memory": lim["memory"].default * 1048576,
            "default_action_logs": lim["logs"].default * 1048576,
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


def _own(request: web.Request, ns: str, path: str | None = None) -> None:
    """Writes (and non-package reads) need the caller's own namespace; 403 names the resource."""
    entities.validate_namespace(ns)
    if ns != identity(request).namespace:
        raise errors.not_authorized(path or ns)


# --- entities: entitlement and reads ------------------------------------------------------------------


def _doc_ns_name(ns: str, rest: str) -> tuple[str, str]:
    """URL rest `name` or `pkg/name` -> (doc namespace, name)."""
    parts = rest.split("/")
    if len(parts) == 1:
        return ns, entities.validate_name(parts[0])
    if len(parts) == 2:
        return f"{ns}/{entities.validate_name(parts[0])}", entities.validate_name(parts[1])
    raise WhiskError(404, errors.NOT_FOUND)


async def _typed(request: web.Request, doc_id: str, etype: str) -> Doc:
    doc = await request.app[VIEWS].get(WHISKS, doc_id)
    if doc is None:
        raise WhiskError(404, errors.NOT_FOUND)
    if doc.get("entityType") != etype:
        raise WhiskError(409, entities.CONFORMANCE)
    return doc


async def readable_package(request: web.Request, pkg_id: str, resource: str) -> tuple[Doc, Doc]:
    """(package as addressed, package that holds the actions: itself or the bound one) if the caller may read it.

    OpenWhisk's PackageCollection.implicitRights: the owner reads its packages (missing -> 404); others read
    published non-bindings only, and get 403 for anything else, missing ones included (no existence leaks).
    A binding is readable when its bound package is, checked the same way.
    """
    me = identity(request).namespace
    owner = pkg_id.split("/")[0] == me
    pkg = await request.app[VIEWS].get(WHISKS, pkg_id)
    if pkg is None or pkg.get("entityType") != "package":
        if not owner:
            raise errors.not_authorized(resource)
        raise WhiskError(404, errors.NOT_FOUND) if pkg is None else WhiskError(409, entities.CONFORMANCE)
    binding = pkg.get("binding") or {}
    if not binding:
        if owner or pkg.get("publish"):
            return pkg, pkg
        raise errors.not_authorized(resource)
    if not owner:
        raise errors.not_authorized(resource)
    bound_owner = binding["namespace"] == me
    bound = await request.app[VIEWS].get(WHISKS, f"{binding['namespace']}/{binding['name']}")
    if bound is None or bound.get("entityType") != "package" or bound.get("binding"):
        raise WhiskError(404, errors.NOT_FOUND) if bound_owner else errors.not_authorized(resource)
    if not (bound_owner or bound.get("publish")):
        raise errors.not_authorized(resource)
    return pkg, bound


def _pkg_id(doc: Doc) -> str:
    return f"{doc['namespace']}/{doc['name']}"


async def get_entity(request: web.Request, etype: str, ns: str, doc_ns: str, name: str) -> web.Response:
    path = f"{doc_ns}/{name}"
    if etype == "package":
        pkg, holder = await readable_package(request, path, path)
        return json_response(await _package_view(request, pkg, holder))
    if etype == "action" and "/" in doc_ns:
        pkg, holder = await readable_package(request, doc_ns, path)
        doc = await _typed(request, f"{_pkg_id(holder)}/{name}", etype)
        # Spec 4.2: package < binding < action.
        overlay = pkg.get("parameters") if pkg is not holder else None
        doc["parameters"] = merge_parameters(holder.get("parameters"), overlay, doc.get("parameters"))
    else:
        _own(request, ns, path)
        doc = await _typed(request, path, etype)
    if etype == "action" and not query_bool(request, "code", True):
        doc["exec"] = {k: v for k, v in doc.get("exec", {}).items() if k != "code"}
    if etype == "rule":
        trig = await request.app[VIEWS].get(WHISKS, f"{doc['trigger']['path']}/{doc['trigger']['name']}")
        doc["status"] = _rule_status(doc, trig)
    return json_response(_strip(doc))


async def _package_view(request: web.Request, pkg: Doc, holder: Doc) -> Doc:
    """GET of a package: the package (a binding with params merged over its package's) plus the held actions."""
    _, docs = await request.app[VIEWS].view(
        WHISKS, "whisks", "by_package", start=[_pkg_id(holder), "action", {}], end=[_pkg_id(holder), "action"],
    )
    listed = [{"name": d["name"], "version": d["version"], "annotations": d.get("annotations", [])} for d in docs]
    is_feed = [any(a.get("key") == "feed" for a in item["annotations"]) for item in listed]
    params = pkg.get("parameters", [])
    if pkg is not holder:
        params = merge_parameters(holder.get("parameters"), params)
    return {
        **_strip(pkg), "parameters": params,
        "actions": [a for a, f in zip(listed, is_feed, strict=True) if not f],
        "feeds": [a for a, f in zip(listed, is_feed, strict=True) if f],
    }


def _rule_status(rule: Doc, trigger: Doc | None) -> str:
    if trigger is None:
        return "inactive"
    link = (trigger.get("rules") or {}).get(f"{rule['namespace']}/{rule['name']}")
    return str(link["status"]) if link else "inactive"


def _strip(doc: Doc) -> Doc:
    return {k: v for k, v in doc.items() if k != "entityType"}


# --- entities: writes ---------------------------------------------------------------------------------


async def entity(request: web.Request) -> web.StreamResponse:
    coll = request.path.split("/")[5]
    etype = COLLECTIONS[coll]
    ns = resolve_ns(request, request.match_info["ns"])
    entities.validate_namespace(ns)
    rest = request.match_info["rest"]
    m = request.method
    if m not in METHODS[coll] and m != "HEAD":
        raise errors.method_not_allowed(METHODS[coll])
    if rest.endswith("/") and coll == "actions" and m in ("GET", "HEAD"):
        return await list_entities(request, package=entities.validate_name(rest[:-1]))
    doc_ns, name = _doc_ns_name(ns, rest)
    if "/" in doc_ns and etype != "action":
        raise WhiskError(404, errors.NOT_FOUND)
    doc_id = f"{doc_ns}/{name}"
    if m in ("GET", "HEAD"):
        return await get_entity(request, etype, ns, doc_ns, name)
    if m in ("PUT", "DELETE") or etype == "rule":
        _own(request, ns, doc_id)
        return await write_entity(request, etype, doc_ns, name, doc_id)
    if etype == "action":
        return await invoke_action(request, ns, doc_id)
    return await fire_trigger(request, ns, doc_id)


async def _check_references(request: web.Request, etype: str, body: Doc) -> None:
    """READ rights on entities of other namespaces that a binding or rule refers to (403 as OpenWhisk).

    Same-namespace references are the decider's business (it answers 400/409 from its table).
    """
    me = identity(request).namespace
    refs: list[tuple[str, str]] = []  # (collection, "ns[/pkg]/name")
    if etype == "package" and body.get("binding"):
        refs.append(("package", f"{body['binding']['namespace']}/{body['binding']['name']}"))
    if etype == "rule":
        refs += [(f, f"{body[f]['path']}/{body[f]['name']}") for f in ("trigger", "action") if f in body]
    for kind, path in refs:
        if path.split("/")[0] == me:
            continue
        if kind == "package":
            await readable_package(request, path, path)
        elif kind == "action" and path.count("/") == 2:
            await readable_package(request, path.rpartition("/")[0], path)
        else:
            raise errors.not_authorized(path)


async def write_entity(request: web.Request, etype: str, doc_ns: str, name: str, doc_id: str) -> web.Response:
    m = request.method
    body: dict[str, Any] = {}
    if m == "PUT":
        raw = await read_json_object(request, strict=True)
        body = NORMALIZE[etype](doc_ns, name, raw, events.now_ms())
        await _check_references(request, etype, body)
        op = "put"
    elif m == "DELETE":
        op = "delete"
    else:
        body = await read_json_object(request, strict=True)
        op = "rule_state"
    cmd = EntityCommand(
        request_id=events.new_id(), op=op, entity_type=etype, doc_id=doc_id, subject=identity(request).subject,
        body=body, overwrite=query_bool(request, "overwrite"), force=query_bool(request, "force"),
    )
    decided, partition, offset = await decide_command(request, cmd)
    if decided.error is not None:
        raise WhiskError(decided.error_status or 400, decided.error)
    tail, topics = request.app[TAIL], request.app[TOPICS]
    # Read-your-writes: answer once the projection holds this decision.
    await tail.caught_up(topics.entities, partition, offset, VIEW_TIMEOUT)
    return json_response(answer(decided))


def answer(decided: EntityChanged) -> Doc:
    """The entity as the write left it: a PUT's result holds only what its written doc lacks (streams.decide)."""
    result = decided.result or {}
    if decided.op == "put":
        written = next((doc for wid, doc in decided.writes if wid == decided.doc_id and doc is not None), None)
        return _strip({**(written or {}), **result})
    return _strip(result)


async def decide_command(request: web.Request, cmd: EntityCommand) -> tuple[EntityChanged, int, int]:
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


# --- entities: lists ----------------------------------------------------------------------------------


async def list_entities(request: web.Request, package: str | None = None) -> web.Response:
    coll = request.path.split("/")[5]
    etype = COLLECTIONS[coll]
    ns = resolve_ns(request, request.match_info["ns"])
    entities.validate_namespace(ns)
    own = ns == identity(request).namespace
    limit = query_int(request, "limit", 30, coll, 200) or 200
    skip = query_int(request, "skip", 0, coll)
    count = query_bool(request, "count")
    if package is not None:
        _, holder = await readable_package(request, f"{ns}/{package}", f"{ns}/{package}")
        key: list[Any] = [_pkg_id(holder), etype]
        design_view, own = "by_package", True  # readable_package did the entitlement check
    elif not own and etype != "package":
        raise errors.not_authorized(ns)
    else:
        key, design_view = [ns, etype], "by_collection"
    n, docs = await request.app[VIEWS].view(
        WHISKS, "whisks", design_view, start=[*key, {}], end=key,
        limit=None if not own else limit, skip=0 if not own else skip, count=count and own,
    )
    if not own:  # other namespaces: only published packages that are not bindings
        public = [d for d in docs if d.get("publish") and not d.get("binding")]
        n, docs = len(public), public[skip:skip + limit]
    if count:
        return json_response({coll: n})
    return json_response([_summary(etype, d) for d in docs])


def _summary(etype: str, doc: Doc) -> Doc:
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
    limit = query_int(request, "limit", 30, "activations", 200) or 200
    skip = query_int(request, "skip", 0, "activations")
    docs_flag, count = query_bool(request, "docs"), query_bool(request, "count")
    if docs_flag and count:
        raise WhiskError(400, "The parameter 'docs' is not permitted with 'count'.")
    since, upto = _epoch(request, "since"), _epoch(request, "upto")
    name = activation_name_filter(request.query.get("name"))
    if name is not None:
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


def activation_name_filter(value: str | None) -> str | None:
    """The `name` filter as OpenWhisk's Activations.scala reads it (an EntityPath of at most two segments,
    empty segments dropped); a blank value means no filter.

    >>> activation_name_filter("/pkg/a/"), activation_name_filter(""), activation_name_filter("  ")
    ('pkg/a', None, None)
    """
    if value is None:
        return None
    parts = [p for p in value.split("/") if p]
    if parts and len(parts) <= 2 and all(entities.ENTITY_NAME_RE.match(p) for p in parts):
        return "/".join(parts)
    if not value.strip():
        return None
    raise WhiskError(400, f"Parameter may be a 'simple' name or 'package-name/simple' name: {value}")


def _epoch(request: web.Request, name: str) -> int | None:
    v = request.query.get(name)
    if v is None:
        return None
    try:
        return int(v)
    except ValueError as e:
        raise WhiskError(400, f"Parameter is not a valid value for epoch seconds: {v}") from e
