"""The API gateway: route management as OpenWhisk's clients call it, and serving the routes' URLs.

- Route management: /api/v1/web/whisk.system/apimgmt/{createApi,getApi,deleteApi}, the web actions that `wsk api`,
  the npm client's `routes` and the Serverless plugin call, answered here with routemgmt's shapes and texts.
  A change is an EntityCommand for an `api` entity (streams/entities/apis.py decides it), so it is on the log,
  projected into the whisks database, audited and replayed like any entity.
- Serving: /api/<tenant>/<basepath>/<path>, the URL OpenWhisk's gateway prints (the tenant is the uuid of the key
  that made the API), goes to the route's web action with the request's query, body and headers, the verb and
  the action's `require-whisk-auth` secret the route gives, and the API's CORS setting.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from api import web as web_actions
from api.app import TAIL, TOPICS, VIEWS
from api.errors import json_response
from api.routes import VIEW_TIMEOUT, decide_command
from api.tail import Identity
from contracts import apigw, events
from contracts.errors import WhiskError
from contracts.events import EntityCommand
from projections.views import WHISKS

Doc = dict[str, Any]
MGMT = r"/api/v1/web/whisk.system/apimgmt/{op:(createApi|getApi|deleteApi)}{ext:(\.(http|json))?}"
MGMT_STATUS = 502  # routemgmt rejects with a web action response of status 502


def add(app: web.Application) -> None:
    """Management before the generic web action route; serving after every /api/v1 route."""
    app.router.add_route("*", MGMT, manage)


def add_serving(app: web.Application) -> None:
    app.router.add_route("*", r"/api/{tenant:(?!v1(?:/|$))[^/]+}{path:(/.*)?}", serve)


class Routes:
    """The APIs of each namespace, for serving: read from the view once, then kept current by the API's tail of
    the entity log (a fill is kept only if no decision for that namespace arrived meanwhile)."""

    def __init__(self) -> None:
        self._apis: dict[str, dict[str, Doc]] = {}
        self._gen: dict[str, int] = {}

    def decided(self, doc_id: str, doc: Doc | None) -> None:
        ns, _, name = doc_id.partition("/")
        if not name.startswith("api:"):
            return
        self._gen[ns] = self._gen.get(ns, 0) + 1
        apis = self._apis.get(ns)
        if apis is not None:
            if doc is None:
                apis.pop(doc_id, None)
            else:
                apis[doc_id] = doc

    async def of(self, request: web.Request, ns: str) -> list[Doc]:
        if ns not in self._apis:
            gen = self._gen.get(ns, 0)
            docs = await _list(request, ns)
            if self._gen.get(ns, 0) != gen:
                return docs
            self._apis[ns] = {apigw.doc_id(ns, d["name"]): d for d in docs}
        return list(self._apis[ns].values())


ROUTES = web.AppKey("routes", Routes)


async def _list(request: web.Request, ns: str) -> list[Doc]:
    _, docs = await request.app[VIEWS].view(WHISKS, "whisks", "by_collection", start=[ns, "api", {}],
                                            end=[ns, "api"])
    return sorted((d for d in docs if d.get("entityType") == "api"), key=lambda d: str(d["name"]))


# --- route management -------------------------------------------------------------------------------------------


def _base_url(request: web.Request) -> str:
    proto = request.headers.get("X-Forwarded-Proto") or request.scheme
    return f"{proto}://{request.headers.get('X-Forwarded-Host') or request.host}"


async def _params(request: web.Request) -> Doc:
    """The web action's parameters: query, then a JSON object body over it."""
    params: Doc = dict(parse_qsl(request.query_string, keep_blank_values=True))
    raw = await request.read()
    if raw.strip():
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise WhiskError(400, f"The request content was malformed:\n{e}") from e
        if isinstance(body, dict):
            params.update(body)
    return params


def _answer(request: web.Request, body: Doc, status: int = 200) -> web.Response:
    """A routemgmt answer: .http (or no extension) answers its response; .json the response object itself."""
    if request.match_info.get("ext") == ".json":
        return json_response({"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": body})
    return json_response(body, status)


def _failure(request: web.Request, msg: str) -> web.Response:
    return _answer(request, {"error": msg, "code": request["tid"]}, MGMT_STATUS)


async def manage(request: web.Request) -> web.StreamResponse:
    if request.method == "OPTIONS":  # a web action's preflight
        return web.Response(status=200, headers=web_actions.cors(request))
    op = request.match_info["op"]
    params = await _params(request)
    caller = web_actions.caller(request)
    try:
        if op == "createApi":
            return await _create(request, params, caller)
        if op == "getApi":
            return await _get(request, params, caller)
        return await _delete(request, params, caller)
    except apigw.RouteError as e:
        return _failure(request, str(e))


async def _command(request: web.Request, caller: Identity, op: str, doc_id: str, body: Doc) -> Doc | None:
    """Send the change, wait for its decision and for the view to hold it; the written doc (None: deleted)."""
    cmd = EntityCommand(request_id=events.new_id(), op=op, entity_type="api", doc_id=doc_id,
                        subject=caller.subject, body=body)
    decided, partition, offset = await decide_command(request, cmd)
    if decided.error is not None:
        raise apigw.RouteError(decided.error)
    await request.app[TAIL].caught_up(request.app[TOPICS].entities, partition, offset, VIEW_TIMEOUT)
    return next((doc for wid, doc in decided.writes if wid == doc_id), None)


async def _create(request: web.Request, params: Doc, caller: Identity | None) -> web.Response:
    if caller is None:
        return _failure(request, "A valid auth key is required.")
    apidoc = apigw.with_namespace(apigw.validate_create(params.get("apidoc")), caller.namespace)
    rtype = str(params.get("responsetype") or "json")
    if rtype not in apigw.RESPONSE_TYPES:
        return _failure(request, f"API creation failure: responsetype '{rtype}' is not one of "
                                 f"{', '.join(apigw.RESPONSE_TYPES)}.")
    swagger = apidoc.get("swagger")
    basepath = str(swagger["basePath"] if swagger else apidoc["gatewayBasePath"])
    if not basepath.startswith("/"):
        return _failure(request, f"API creation failure: The base path '{basepath}' must begin with '/'.")
    body = {"apidoc": apidoc, "basepath": basepath, "tenant": caller.uuid, "responsetype": rtype}
    try:
        doc = await _command(request, caller, "put", apigw.doc_id(caller.namespace, basepath), body)
    except apigw.RouteError as e:
        return _failure(request, str(e))
    assert doc is not None
    return _answer(request, apigw.cli_api(doc, _base_url(request)))


def _select(apis: list[Doc], bp_or_name: str | None) -> list[Doc]:
    """routemgmt's getApis: a base path (starts with '/') or an API name (the swagger's title)."""
    if not bp_or_name:
        return apis
    if bp_or_name.startswith("/"):
        return [a for a in apis if a["name"] == bp_or_name]
    return [a for a in apis if apigw.api_name(a["apidoc"]) == bp_or_name]


def _int(params: Doc, name: str) -> int | None:
    v = params.get(name)
    try:
        return int(v) if v not in (None, "") else None
    except (TypeError, ValueError):
        return None


async def _get(request: web.Request, params: Doc, caller: Identity | None) -> web.Response:
    if caller is None:
        return _failure(request, "Invalid authentication.")
    apis = _select(await _list(request, caller.namespace), params.get("basepath"))
    skip, limit = _int(params, "skip") or 0, _int(params, "limit")
    apis = apis[skip:] if limit is None or limit <= 0 else apis[skip:skip + limit]
    base = _base_url(request)
    return _answer(request, {"apis": [{"id": "Not Used", "key": "Not Used", "value": apigw.cli_api(a, base)}
                                      for a in apis]})


async def _delete(request: web.Request, params: Doc, caller: Identity | None) -> web.Response:
    if caller is None:
        return _failure(request, "Invalid authentication.")
    bp_or_name = params.get("basepath")
    if not bp_or_name:
        return _failure(request, "basepath is required.")
    relpath, verb = params.get("relpath"), params.get("operation")
    if not relpath and verb:
        return _failure(request, "When specifying an operation, the path is required.")
    found = _select(await _list(request, caller.namespace), str(bp_or_name))
    if not found:
        return _failure(request, f"API deletion failure: API '{bp_or_name}' does not exist.")
    basepath = found[0]["name"]
    body = {"basepath": basepath, "relpath": relpath, "operation": str(verb).lower() if verb else None}
    try:
        await _command(request, caller, "delete", apigw.doc_id(caller.namespace, basepath), body)
    except apigw.RouteError as e:
        return _failure(request, str(e))
    return _answer(request, {})


# --- serving ----------------------------------------------------------------------------------------------------


def _gateway_error(request: web.Request, status: int, msg: str) -> web.Response:
    """openwhisk-apigateway's own errors ({status, message}), with OpenWhisk's error and code fields."""
    return json_response({"status": status, "message": f"Error: {msg}", "error": msg, "code": request["tid"]},
                         status)


async def serve(request: web.Request) -> web.StreamResponse:
    request["no_cors"] = True  # the API's CORS setting decides, below
    tenant, path = request.match_info["tenant"], request.match_info.get("path") or "/"
    owner = request.app[TAIL].identities.get(tenant)
    if owner is None or owner.blocked:
        return _gateway_error(request, 404, "Not found.")
    apis = [a for a in await request.app[ROUTES].of(request, owner.namespace) if a.get("tenantId") == tenant]
    match = apigw.find(apis, path)
    if match is None:
        return _gateway_error(request, 404, "Not found.")
    swagger = match.api["apidoc"]
    cors = apigw.cors_setting(swagger)
    origin = request.headers.get("Origin")
    if request.method == "OPTIONS" and cors:
        resp: web.StreamResponse = web.Response(status=200)
        if "Access-Control-Request-Headers" in request.headers:
            resp.headers["Access-Control-Allow-Headers"] = request.headers["Access-Control-Request-Headers"]
    elif (op := match.operations.get(request.method.lower())) is None:
        resp = _gateway_error(request, 404, "Whoops. Verb not supported.")
    elif (t := apigw.target(swagger, op, owner.namespace)) is None:
        resp = _gateway_error(request, 502, "The route's backend is not an OpenWhisk web action.")
    else:
        headers = {"X-Forwarded-Url": str(request.url)}
        if t.secret is not None:
            headers["X-Require-Whisk-Auth"] = t.secret
        action_path = path if t.pass_path else match.rest
        resp = await web_actions.respond(request, web_actions.Call(
            t.namespace, t.package, t.action, t.ext, action_path, t.method, headers))
        request["no_cors"] = True  # (the web action route sets it from the action's annotations)
    for k, v in apigw.cors_headers(cors, origin).items():
        if v is None:
            resp.headers.popall(k, None)
        else:
            resp.headers[k] = v
    return resp
