"""Web actions: /api/v1/web/{ns}/{pkg|default}/{action}[.ext][/path], run as the action owner (spec 2.8).

The request becomes the action's arguments (pure `web_args`), the action runs through the ordinary invoke path
(api.invoke._submit, or api.compositions for sequences), and its result becomes the HTTP response according to
the extension (pure `web_response`).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from api import errors
from api.app import TAIL, VIEWS
from api.errors import error_response, json_response
from api.tail import Identity
from contracts import entities
from contracts.errors import WhiskError
from contracts.events import ActivationRequested, new_id
from projections.views import WHISKS
from streams.entities.logic import resolve_action_params

Doc = dict[str, Any]
EXTENSIONS = ("json", "html", "http", "svg", "text")
RESERVED = {"__ow_method", "__ow_headers", "__ow_path", "__ow_body", "__ow_query", "__ow_user"}
NOT_ALLOWED = "Request defines parameters that are not allowed (e.g., reserved properties)."
NOT_ACCEPTABLE = "Resource representation is only available with these types:\n"  # Pekko's 406 text
WAIT_S = 60.0
CORS_METHODS = "OPTIONS, GET, DELETE, POST, PUT, HEAD, PATCH"
CORS_HEADERS = "Authorization, Origin, X-Requested-With, Content-Type, Accept, User-Agent"
_B64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")


def add(app: web.Application) -> None:
    app.router.add_route("*", "/api/v1/web/{ns}/{pkg}/{rest:.+}", web_action)


# --- pure ------------------------------------------------------------------------------------------------------


def split_rest(rest: str) -> tuple[str, str, str]:
    """'name.ext/extra/path' -> (name, ext, '/extra/path'); no known extension -> whole segment, http."""
    seg, slash, path = rest.partition("/")
    path = slash + path if slash else ""
    name, dot, ext = seg.rpartition(".")
    if dot and ext in EXTENSIONS and name:
        return name, ext, path
    return seg, "http", path


def is_text(ctype: str) -> bool:
    main, _, sub = ctype.lower().partition("/")
    return main == "text" or sub in ("json", "xml", "javascript", "x-www-form-urlencoded") or sub.endswith(
        ("+json", "+xml"))


def _annotation(doc: Doc, key: str) -> Any:
    return next((a.get("value") for a in doc.get("annotations", []) if a.get("key") == key), None)


def _truthy(v: Any) -> bool:
    return v not in (None, False, 0, "")


def web_args(action: Doc, method: str, headers: dict[str, str], path: str, query: str, body: bytes, ctype: str,
             user: str | None) -> Doc:
    """The action's arguments from the request (raise 400 on reserved or final parameters)."""
    defined = [p for p in action.get("parameters", []) if not p.get("init")]
    args: Doc = {p["key"]: p["value"] for p in defined}
    ctx: Doc = {"__ow_method": method.lower(), "__ow_headers": headers, "__ow_path": path}
    if user is not None:
        ctx["__ow_user"] = user
    if _truthy(_annotation(action, "raw-http")):
        if not body:
            raw = ""
        elif is_text(ctype) and not ctype.lower().endswith("json"):
            raw = body.decode("utf-8", "replace")
        else:
            raw = base64.b64encode(body).decode()
        return {**args, **ctx, "__ow_query": query, "__ow_body": raw}
    given: Doc = dict(parse_qsl(query, keep_blank_values=True))
    if body:
        low = ctype.lower()
        parsed: Any = None
        if low.endswith("json"):
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError as e:
                raise errors.malformed(str(e)) from e
        if isinstance(parsed, dict):
            given.update(parsed)
        elif low == "application/x-www-form-urlencoded":
            given.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        elif low.endswith("json"):
            ctx["__ow_body"] = parsed
        elif is_text(low):
            ctx["__ow_body"] = body.decode("utf-8", "replace")
        else:
            ctx["__ow_body"] = base64.b64encode(body).decode()
    final = _truthy(_annotation(action, "final"))
    if given.keys() & RESERVED or (final and given.keys() & {p["key"] for p in defined}):
        raise WhiskError(400, NOT_ALLOWED)
    return {**args, **given, **ctx}


def _bad(kind: str) -> WhiskError:
    return WhiskError(400, f"Response is not valid '{kind}'.")


def web_response(ext: str, result: Any) -> tuple[int, dict[str, list[str]], bytes]:
    """(status, headers, body) for the action's result under the extension."""
    if ext == "json":
        if not isinstance(result, dict | list):
            raise _bad("application/json")
        return 200, {"Content-Type": ["application/json"]}, orjson.dumps(result)
    if ext in ("html", "svg"):
        ctype = "text/html" if ext == "html" else "image/svg+xml"
        body = result.get("body", result.get(ext)) if isinstance(result, dict) else None
        if not isinstance(body, str):
            raise _bad(ctype)
        return 200, {"Content-Type": [ctype]}, body.encode()
    if ext == "text":
        body = result.get("body", result.get("text")) if isinstance(result, dict) else None
        if body is None:
            raise WhiskError(404, "Response does not include requested property.")
        text = body if isinstance(body, str) else orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()
        return 200, {"Content-Type": ["text/plain"]}, text.encode()
    return http_response(result)


def http_response(result: Any) -> tuple[int, dict[str, list[str]], bytes]:
    if not isinstance(result, dict):
        raise _bad("message/http")
    hdrs = result.get("headers", {})
    if not isinstance(hdrs, dict):
        raise _bad("message/http")
    out: dict[str, list[str]] = {}
    for k, v in hdrs.items():
        vals = v if isinstance(v, list) else [v]
        if not all(isinstance(x, str | int | float | bool) for x in vals):
            raise _bad("message/http")
        out[k] = [str(x).lower() if isinstance(x, bool) else str(x) for x in vals]
    body = result.get("body")
    code = result.get("statusCode")
    if isinstance(code, str) and code.strip().isdigit():
        code = int(code)
    if code is not None and (not isinstance(code, int) or isinstance(code, bool) or not 100 <= code <= 599):
        raise _bad("message/http")
    if body is None or body == "":
        return code or 204, out, b""
    ctype_key = next((k for k in out if k.lower() == "content-type"), None)
    ctype = out[ctype_key][0] if ctype_key else ("text/html" if isinstance(body, str) else "application/json")
    if not ctype_key:
        out["Content-Type"] = [ctype]
    media = ctype.split(";")[0].strip().lower()
    if "/" not in media:
        raise WhiskError(400, "Response did not specify a known content-type.")
    if isinstance(body, str):
        if not is_text(media) or (media.endswith("json") and _looks_b64(body)):
            try:
                data = base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError) as e:
                if not is_text(media):
                    raise WhiskError(400, "Response type in header did not match generated content type.") from e
                data = body.encode()
        else:
            data = body.encode()
    elif media.endswith("json"):
        data = orjson.dumps(body)
    else:
        raise WhiskError(400, "Response type in header did not match generated content type.")
    return code or 200, out, data


def _looks_b64(s: str) -> bool:
    t = s.strip()
    return bool(t) and len(t) % 4 == 0 and bool(_B64.match(t)) and not t.isdigit()


def offered_type(ext: str, headers: dict[str, list[str]]) -> str:
    """The content type OpenWhisk's marshaller offers for a web response, as Pekko names it in a 406: `.text`
    completes with a String (open charset), the others with an entity of fixed type; text/* gets UTF-8."""
    if ext == "text":
        return "text/plain"
    ctype = next((v[0] for k, v in headers.items() if k.lower() == "content-type"), "application/json")
    media = ctype.split(";")[0].strip().lower()
    return f"{media}; charset=UTF-8" if media.startswith("text/") else media


def accepts(accept: str | None, media: str) -> bool:
    """Whether the Accept header takes `media` (Pekko's MediaTypeNegotiator): no header takes all; otherwise the
    most specific matching range decides (type/sub, then type/*, then */*; more parameters, then higher q first)
    and q=0 refuses. Parameters other than q must match the media type's (ours have none; charset is ignored).

    >>> accepts(None, "text/html"), accepts("application/json", "text/html"), accepts("text/*;q=0, */*", "text/html")
    (True, False, False)
    """
    ranges: list[tuple[int, int, float, str, str, bool]] = []
    for item in (accept or "").split(","):
        rng, *params = (p.strip() for p in item.split(";"))
        if not rng:
            continue
        main, slash, sub = rng.lower().partition("/")
        if not slash:
            return True  # an unparsable Accept header is ignored
        kvs = [(k.strip().lower(), v.strip()) for k, _, v in (p.partition("=") for p in params)]
        q = next((_qvalue(v) for k, v in kvs if k == "q"), 1.0)
        keys = [k for k, _ in kvs if k != "q"]
        rank = 2 if main == "*" else 1 if sub == "*" else 0
        matchable = all(k == "charset" for k in keys) if rank == 0 else not keys
        ranges.append((rank, -len(keys), -q, main, sub, matchable))
    if not ranges:
        return True
    m_main, _, m_sub = media.lower().partition("/")
    for rank, _, neg_q, main, sub, matchable in sorted(ranges, key=lambda r: r[:3]):
        if matchable and (rank == 2 or (main == m_main and (rank == 1 or sub == m_sub))):
            return -neg_q > 0
    return False


def _qvalue(v: str) -> float:
    try:
        return float(v)
    except ValueError:
        return 1.0  # as Pekko's MediaRange.splitOffQValue


def auth_ok(required: Any, creds_valid: bool, header: str | None) -> bool:
    """require-whisk-auth: true -> valid Basic credentials; string/number -> X-Require-Whisk-Auth equals it."""
    if required is None or required is False:
        return True
    if required is True:
        return creds_valid
    if isinstance(required, str | int) and not isinstance(required, bool):
        return header is not None and header == str(required)
    return False


def cors(request: web.Request) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": CORS_METHODS,
        "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers", CORS_HEADERS),
    }


# --- handler ---------------------------------------------------------------------------------------------------


async def web_action(request: web.Request) -> web.StreamResponse:
    name, ext, path = split_rest(request.match_info["rest"])
    return await respond(request, Call(request.match_info["ns"], request.match_info["pkg"], name, ext, path))


@dataclass(frozen=True)
class Call:
    """A web action call: from its URL, or from an API gateway route (which may change the verb and add headers)."""

    ns: str
    pkg: str
    name: str
    ext: str
    path: str
    method: str | None = None  # None: the request's
    headers: dict[str, str] = field(default_factory=dict)


async def respond(request: web.Request, call: Call) -> web.StreamResponse:
    request["web_offer"] = "application/json"  # errors are JSON; _web_action sets what its answer offers
    try:
        resp: web.StreamResponse = await _web_action(request, call)
    except WhiskError as e:
        hdr = {} if request.get("no_cors") else cors(request)
        resp = error_response(e.status, e.message, request["tid"], hdr)
        request["web_offer"] = "application/json"
    offer = request["web_offer"]
    accept = ", ".join(request.headers.getall("Accept", [])) or None
    if offer is not None and not accepts(accept, offer.split(";")[0]):
        # OpenWhisk completes through Pekko's content negotiation, whose rejection answers 406 outside the
        # web route: no CORS or activation id headers (the action has run all the same).
        request["no_cors"] = True
        return error_response(406, NOT_ACCEPTABLE + offer, request["tid"])
    return resp


async def _resolve(request: web.Request, ns: str, pkg: str, name: str) -> Doc:
    views = request.app[VIEWS]
    entities.validate_namespace(ns)
    if pkg == "default":
        action = await views.get(WHISKS, f"{ns}/{entities.validate_name(name)}", code=False)
        return {**action, "parameters": action.get("parameters", [])} if action else {}
    package = await views.get(WHISKS, f"{ns}/{entities.validate_name(pkg)}")
    binding = None
    if package is not None and package.get("binding"):
        binding, b = package, package["binding"]
        package = await views.get(WHISKS, f"{b['namespace']}/{b['name']}")
    if package is None or package.get("entityType") != "package":
        return {}
    action = await views.get(WHISKS, f"{package['namespace']}/{package['name']}/{entities.validate_name(name)}",
                             code=False)
    if action is None:
        return {}
    return {**action, "parameters": resolve_action_params(action, package, binding)}


async def _web_action(request: web.Request, call: Call) -> web.StreamResponse:
    ns, pkg, name, ext, path = call.ns, call.pkg, call.name, call.ext, call.path
    method = call.method or request.method
    headers = {k.lower(): v for k, v in request.headers.items()} | {k.lower(): v for k, v in call.headers.items()}
    tail = request.app[TAIL]
    owner = next((i for i in tail.identities.values() if i.namespace == ns and not i.blocked), None)
    try:
        action = await _resolve(request, ns, pkg, name) if owner else {}
    except WhiskError:
        action = {}
    if action.get("entityType") != "action" or _annotation(action, "web-export") is not True:
        raise WhiskError(404, errors.NOT_FOUND)
    custom_options = _truthy(_annotation(action, "web-custom-options"))
    request["no_cors"] = custom_options
    hdrs = {} if custom_options else cors(request)
    if method == "OPTIONS" and not custom_options:
        request["web_offer"] = "none/none"  # Pekko's HttpEntity.Empty has no content type, which it names so
        return web.Response(status=200, headers=hdrs)
    caller = _caller(request)
    if method != "OPTIONS" and not auth_ok(
            _annotation(action, "require-whisk-auth"), caller is not None, headers.get("x-require-whisk-auth")):
        raise WhiskError(401, errors.AUTH_INVALID)
    body = await request.read()
    if len(body) > entities.MAX_PAYLOAD_SIZE:
        raise WhiskError(413, f"Request larger than allowed: {len(body)} > {entities.MAX_PAYLOAD_SIZE} bytes.")
    args = web_args(action, method, headers, path, request.query_string, body,
                    request.content_type if body else "", caller)
    request["identity"] = owner  # runs as the owner: its namespace, its throttles
    aid, record = await _run(request, action, args)
    hdrs["x-openwhisk-activation-id"] = aid
    if record is None:
        return json_response({"error": "Response not yet ready.", "code": request["tid"]}, 202, hdrs)
    resp = record["response"]
    code = resp.get("statusCode", 3)
    if code in (2, 3):
        raise WhiskError(400, "There was an error processing your request.")
    result = resp.get("result", {})
    if code == 1 and isinstance(result, dict):
        result = result.get("error")
    status, out, data = web_response(ext, result)
    # An .http answer without a body is a bare response in OpenWhisk: no content negotiation.
    request["web_offer"] = offered_type(ext, out) if data or ext != "http" else None
    r = web.Response(status=status, body=data if status != 204 else None)
    for k, vals in out.items():
        for v in vals:
            r.headers.add(k, v)
    for k, v in hdrs.items():
        r.headers.setdefault(k, v)
    return r


def caller(request: web.Request) -> Identity | None:
    """The caller if valid Basic credentials came with the request (a web action's __ow_user), else None."""
    auth = request.headers.get("Authorization", "")
    scheme, _, cred = auth.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        ident = request.app[TAIL].authenticate(base64.b64decode(cred.strip(), validate=True).decode())
    except (ValueError, UnicodeDecodeError):
        return None
    return ident if ident is not None and not ident.blocked else None


def _caller(request: web.Request) -> str | None:
    ident = caller(request)
    return ident.namespace if ident is not None else None


async def _run(request: web.Request, action: Doc, args: Doc) -> tuple[str, Doc | None]:
    import asyncio

    from api import compositions
    from api.invoke import _submit

    ident = request["identity"]
    if compositions.is_composition(action):
        aid = new_id()
        task = asyncio.ensure_future(compositions.Composition(request).run(action, args, None, aid))
        compositions._TASKS.add(task)
        task.add_done_callback(compositions._done)
        try:
            return aid, await asyncio.wait_for(asyncio.shield(task), WAIT_S)
        except TimeoutError:
            return aid, None
    aid = new_id()
    request["activation_id"] = aid
    req = ActivationRequested(activation_id=aid, namespace=ident.namespace, subject=ident.subject, action=action,
                              params=args, blocking=True, transaction_id=request["tid"])
    return aid, await _submit(request, req, True, WAIT_S)
