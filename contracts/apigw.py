"""The API gateway's routes, pure: OpenWhisk's route management and how a gateway request finds its web action.

Route management follows OpenWhisk's `core/routemgmt` actions (createApi, getApi, deleteApi; the flow the CLI and
the npm client take, with an access token): an API is one swagger document per namespace and base path; an
endpoint adds `x-openwhisk` to its operation and an `operation-switch` case (target URL, verb, the action's
`require-whisk-auth` secret) to `x-ibm-configuration`. Serving follows openwhisk-apigateway's routing: the
resource is found by exact path, then path parameters, then shorter prefixes; `$(request.path)` at the end of a
target URL passes the request's path on as the web action's path (its `__ow_path`).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

import orjson

Doc = dict[str, Any]
VERBS = ("get", "put", "post", "delete", "patch", "head", "options")
RESPONSE_TYPES = ("json", "http", "text", "html", "svg")
ALLOW_METHODS = "GET, POST, PUT, DELETE, PATCH, HEAD, OPTIONS"
AUTH_HEADER = "message.headers.X-Require-Whisk-Auth"
REQUEST_PATH = "$(request.path)"
_PARAM_IN_PATH = re.compile(r"/\{([^/]+)\}/|/\{([^/]+)\}$")
_PARAM_NAMES = re.compile(r"\{([^/]+)\}")
_ACTION_URL = re.compile(r"(\w+)://([:/\w.\-]+)/api/v\d/web/([@\w .\-]+)/([@\w .\-]+)/([@\w .\-/]+)\.(\w+)")
_FQ_NAME = re.compile(r"/?([@ .\-\w]*)/?([@ .\-\w]*)/?([@ .\-\w]*)")
_TARGET = re.compile(r"/api/v\d+/web/([^/]+)/([^/]+)/([^/]+?)\.(json|http|text|html|svg)(\$\(request\.path\))?$")


class RouteError(ValueError):
    """A request OpenWhisk's routemgmt refuses; the message is its text."""


def doc_id(namespace: str, basepath: str) -> str:
    """Entity id of an API: one per namespace and base path (':' cannot appear in an entity name)."""
    return f"{namespace}/api:{basepath}"


def operation_id(verb: str, relpath: str) -> str:
    """routemgmt's makeOperationId: 'get' + '/books/{isbn}' -> 'getBooksIsbn'."""
    words = re.sub(r"[^0-9a-z_-]", " ", relpath, flags=re.IGNORECASE)
    camel = re.sub(r"\w\S*", lambda m: m[0][0].upper() + m[0][1:].lower(), words)
    return verb.lower() + re.sub(r"\s", "", camel)


def path_parameters(path: str) -> list[str]:
    return _PARAM_NAMES.findall(path)


def base_swagger(basepath: str, api_name: str | None) -> Doc:
    return {"swagger": "2.0", "info": {"title": api_name or basepath, "version": "1.0.0"}, "basePath": basepath,
            "paths": {}, "x-ibm-configuration": {"assembly": {}, "cors": {"enabled": True}}}


def _fq_parts(fq: str) -> tuple[str, str, str]:
    """(namespace, package, action) of '/ns/pkg/a', 'pkg/a' or 'a' (routemgmt's parseActionName)."""
    m = _FQ_NAME.match(fq)
    a, b, c = (m.group(1), m.group(2), m.group(3)) if m else ("", "", "")
    if c:
        return a, b, c
    if b:
        return "", a, b
    return "", "", a


def web_action_url(action: Doc, response_type: str, target: bool = False) -> str:
    """routemgmt's makeWebActionBackendUrl: the host of the client's backendUrl, the action as a web URL."""
    m = _ACTION_URL.match(str(action.get("backendUrl", "")))
    if m is None:
        raise RouteError(f"API swagger generation error: backendUrl {action.get('backendUrl')!r} is not a web "
                         "action URL (https://HOST/api/v1/web/NAMESPACE/PACKAGE/ACTION.EXT)")
    _, pkg, name = _fq_parts(str(action.get("name", "")))
    req_path = REQUEST_PATH if target and response_type == "http" else ""
    return f"{m[1]}://{m[2]}/api/v1/web/{action['namespace']}/{pkg or 'default'}/{name}.{response_type}{req_path}"


def _cases(swagger: Doc) -> list[Doc]:
    execute = swagger.get("x-ibm-configuration", {}).get("assembly", {}).get("execute") or [{}]
    cases: list[Doc] = execute[0].setdefault("operation-switch", {}).setdefault("case", [])
    return cases


def add_endpoint(swagger: Doc, endpoint: Doc, response_type: str | None) -> Doc:
    """routemgmt's addEndpointToSwaggerApi: a new swagger with the endpoint's path and verb (replacing it)."""
    out = copy.deepcopy(swagger)
    verb = str(endpoint["gatewayMethod"]).lower()
    relpath = str(endpoint["gatewayPath"])
    op_id = operation_id(verb, relpath)
    rtype = response_type or "json"
    action = endpoint["action"]
    _, pkg, name = _fq_parts(str(action["name"]))
    operation: Doc = {"operationId": op_id}
    if endpoint.get("pathParameters") is not None:
        operation["parameters"] = endpoint["pathParameters"]
    operation["x-openwhisk"] = {"url": web_action_url(action, rtype), "namespace": action["namespace"],
                                "package": pkg, "action": name}
    operation["responses"] = {"default": {"description": "Default response"}}
    out.setdefault("paths", {}).setdefault(relpath, {})[verb] = operation
    assembly = out.setdefault("x-ibm-configuration", {}).setdefault("assembly", {})
    assembly.setdefault("execute", [{}])
    cases = _cases(out)
    case: Doc = {"operations": [op_id],
                 "execute": [{"invoke": {"target-url": web_action_url(action, rtype, True), "verb": "keep"}}]}
    if action.get("secureKey"):
        case["execute"].append({"set-variable": {"actions": [{"set": AUTH_HEADER, "value": action["secureKey"]}]}})
    idx = next((i for i, c in enumerate(cases) if (c.get("operations") or [None])[0] == op_id), len(cases))
    cases[idx:idx + 1] = [case]
    return out


def remove_endpoint(swagger: Doc, relpath: str | None, verb: str | None) -> Doc:
    """routemgmt's removeEndpointFromSwaggerApi: a path (every verb) or one verb of it."""
    if not relpath:
        raise RouteError("No path provided; nothing to remove")
    out = copy.deepcopy(swagger)
    paths = out.get("paths", {})
    if relpath not in paths or (verb and verb.lower() not in paths[relpath]):
        where = f"path '{relpath}'" + (f" with operation '{verb.lower()}'" if verb else "")
        raise RouteError(f"{where} does not exist in the API")
    verbs = [verb.lower()] if verb else list(paths[relpath])
    for v in verbs:
        paths[relpath].pop(v, None)
    if not paths[relpath]:
        del paths[relpath]
    gone = {operation_id(v, relpath) for v in verbs}
    cases = out.get("x-ibm-configuration", {}).get("assembly", {}).get("execute")
    if cases:
        sw = cases[0].get("operation-switch", {})
        sw["case"] = [c for c in sw.get("case", []) if (c.get("operations") or [None])[0] not in gone]
    return out


def _target_urls(swagger: Doc) -> dict[str, str]:
    """operationId -> target-url from the operation-switch cases (routemgmt's generateTargetUrlMap)."""
    out: dict[str, str] = {}
    for case in _switch_cases(swagger):
        ops, execs = case.get("operations") or [], case.get("execute") or []
        for op, ex in zip(ops, execs, strict=False):
            url = (ex or {}).get("invoke", {}).get("target-url") if isinstance(ex, dict) else None
            if url:
                out[op] = url
    return out


def _switch_cases(swagger: Doc) -> list[Doc]:
    config = swagger.get("x-gateway-configuration") or swagger.get("x-ibm-configuration") or {}
    cases: list[Doc] = []
    for ex in (config.get("assembly") or {}).get("execute") or []:
        if isinstance(ex, dict):
            cases += (ex.get("operation-switch") or {}).get("case") or []
    return [c for c in cases if isinstance(c, dict)]


def validate_swagger(swagger: Doc) -> None:
    """routemgmt's validateFinalSwagger: path parameters need the .http response type and declared parameters."""
    if _PARAM_IN_PATH.search(str(swagger.get("basePath") or "")):
        raise RouteError(f"The base path ({swagger['basePath']}) cannot have parameters. Only the relative path "
                         "supports path parameters.")
    targets = _target_urls(swagger)
    for key, ops in (swagger.get("paths") or {}).items():
        if not _PARAM_IN_PATH.search(key) or not isinstance(ops, dict):
            continue
        shared = ops.get("parameters") or []
        for verb, op in ops.items():
            if verb == "parameters" or not isinstance(op, dict):
                continue
            url = (op.get("x-openwhisk") or {}).get("url")
            if url and not url.endswith(".http"):
                raise RouteError("The action must use a response type of '.http' in order to receive the path "
                                 "parameters.")
            op_id = op.get("operationId")
            if op_id in targets and not targets[op_id].endswith(".http" + REQUEST_PATH):
                raise RouteError(f"The target-url for operationId '{op_id}' must end in '$(request.path)' in order "
                                 "for actions to receive the path parameters.")
            declared = {p.get("name") for p in [*shared, *(op.get("parameters") or [])] if isinstance(p, dict)}
            for name in path_parameters(key):
                if name not in declared:
                    raise RouteError(f"The parameter '{name}' defined in path '{key}' does not match any of the "
                                     "parameters defined for the path in the swagger file.")


def validate_create(apidoc: Any) -> Doc:
    """routemgmt createApi's argument checks (apidoc as an object or a JSON string); returns the apidoc with
    its swagger parsed."""
    if not apidoc:
        raise RouteError("apidoc is required.")
    doc = dict(_object(apidoc, "apidoc field", "is of type", "a JSON object"))
    if not doc.get("namespace"):
        raise RouteError("apidoc is missing the namespace field")
    swagger = doc.get("swagger")
    if swagger:
        if doc.get("gatewayBasePath"):
            raise RouteError("swagger and gatewayBasePath are mutually exclusive and cannot be specified together.")
        swagger = _object(swagger, "swagger field", "is", "an object")
        for field in ("basePath", "paths", "info"):
            if not swagger.get(field):
                raise RouteError(f"swagger is missing the {field} field.")
        doc["swagger"] = swagger
        return doc
    for field in ("gatewayBasePath", "gatewayPath", "gatewayMethod"):
        if not doc.get(field):
            raise RouteError(f"apidoc is missing the {field} field")
    action = doc.get("action")
    if not isinstance(action, dict) or not action:
        raise RouteError("apidoc is missing the action field.")
    for field in ("backendMethod", "backendUrl", "namespace", "name"):
        if not action.get(field):
            raise RouteError(f"action is missing the {field} field.")
    return doc


def _object(value: Any, what: str, is_: str, expected: str) -> Doc:
    """An object given as itself or as a JSON string, else routemgmt's text for `what`."""
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError as e:
            raise RouteError(f"{what} cannot be parsed. Ensure it is valid JSON.") from e
    if not isinstance(value, dict):
        raise RouteError(f"{what} {is_} {_js_type(value)} and should be {expected} or a JSON string.")
    return value


def _js_type(v: Any) -> str:
    return "boolean" if isinstance(v, bool) else "number" if isinstance(v, int | float) else "object"


def with_namespace(apidoc: Doc, namespace: str) -> Doc:
    """routemgmt's updateNamespace: the caller's namespace for the API and for an action given as '_'; the
    client's auth key (the v1 gateway's `authkey`) is dropped, it is never stored."""
    doc = {**apidoc, "namespace": namespace}
    action = doc.get("action")
    if isinstance(action, dict):
        action = {k: v for k, v in action.items() if k != "authkey"}
        if action.get("namespace") == "_":
            action["namespace"] = namespace
            action["backendUrl"] = re.sub(r"/api/v1/web/[\w@.-]+/", f"/api/v1/web/{namespace}/",
                                          str(action.get("backendUrl", "")), count=1)
        doc["action"] = action
    return doc


def api_name(swagger: Doc) -> str:
    return str((swagger.get("info") or {}).get("title", ""))


def managed_url(base_url: str, tenant: str, basepath: str) -> str:
    """The API's gateway URL, as openwhisk-apigateway makes it: <host>/api/<tenant>[/<basepath>]."""
    bp = basepath.strip("/")
    return f"{base_url.rstrip('/')}/api/{tenant}" + (f"/{bp}" if bp else "")


# --- serving ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where an operation goes: a web action, its response type, and what the gateway adds to the request."""

    namespace: str
    package: str
    action: str
    ext: str
    pass_path: bool  # target URL ends in $(request.path): the request's path becomes the action's path
    secret: str | None  # X-Require-Whisk-Auth the gateway sets (the action's require-whisk-auth value)
    method: str | None  # backend verb; None keeps the request's


@dataclass(frozen=True)
class Match:
    api: Doc
    relpath: str
    operations: dict[str, Doc]
    rest: str  # the request's path beyond the resource's (a prefix match), "" for a whole match


def _segments(path: str) -> list[str]:
    return [s for s in path.split("/") if s]


def _matches(key: list[str], path: list[str]) -> bool | None:
    """True: exact; False: by path parameters; None: no match."""
    if len(key) != len(path):
        return None
    exact = True
    for k, p in zip(key, path, strict=True):
        if k == p:
            continue
        if not (k.startswith("{") and k.endswith("}") and len(k) > 2):
            return None
        exact = False
    return exact


def find(apis: list[Doc], path: str) -> Match | None:
    """The resource for a gateway path (after /api/<tenant>): basePath + relative path, exact before
    parameterized; failing both, the longest prefix that matches (openwhisk-apigateway's slowLookup)."""
    resources: list[tuple[list[str], Doc, str, Doc]] = []
    for api in apis:
        sw = api.get("apidoc") or {}
        for rel, ops in (sw.get("paths") or {}).items():
            if isinstance(ops, dict):
                resources.append((_segments(str(sw.get("basePath", "/"))) + _segments(rel), api, rel, ops))
    segs = _segments(path)
    for n in range(len(segs), -1, -1):
        head = segs[:n]
        hits = [(r, m) for r in resources if (m := _matches(r[0], head)) is not None]
        if hits:
            (_, api, rel, ops), _ = max(hits, key=lambda h: h[1])  # an exact match wins
            rest = "/" + "/".join(segs[n:]) if segs[n:] else ""
            return Match(api, rel, {v.lower(): o for v, o in ops.items() if isinstance(o, dict)}, rest)
    return None


def target(swagger: Doc, op: Doc, owner: str) -> Target | None:
    """The web action behind an operation: the operation-switch case's target (as the gateway reads it), else
    the operation's x-openwhisk URL; None if it is not an OpenWhisk web action URL."""
    op_id = op.get("operationId")
    case = next((c for c in _switch_cases(swagger) if op_id in (c.get("operations") or [])), None)
    url, method, secret = None, None, None
    for ex in (case or {}).get("execute") or []:
        if not isinstance(ex, dict):
            continue
        inv = ex.get("invoke")
        if isinstance(inv, dict) and inv.get("target-url"):
            url = str(inv["target-url"])
            method = None if str(inv.get("verb", "keep")).lower() == "keep" else str(inv["verb"]).upper()
        for act in (ex.get("set-variable") or {}).get("actions") or []:
            if isinstance(act, dict) and act.get("set") == AUTH_HEADER:
                value = act.get("value")
                secret = orjson.dumps(value).decode() if isinstance(value, bool) else str(value)
    if url is None:
        url = (op.get("x-openwhisk") or {}).get("url")
    m = _TARGET.search(re.sub(r"^\w+://[^/]+", "", str(url or "")))
    if m is None:
        return None
    ns = owner if m[1] == "_" else m[1]
    return Target(ns, m[2], m[3], m[4], bool(m[5]), secret, method)


def cors_setting(swagger: Doc) -> bool | None:
    """x-ibm-configuration.cors.enabled: True/False; None when the API says nothing (headers pass as they are)."""
    config = swagger.get("x-gateway-configuration") or swagger.get("x-ibm-configuration") or {}
    cors = config.get("cors") if isinstance(config, dict) else None
    if not isinstance(cors, dict):
        return None
    enabled = cors.get("enabled")
    return enabled if isinstance(enabled, bool) else None


CORS_KEYS = ("Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
             "Access-Control-Allow-Credentials", "Access-Control-Expose-Headers", "Access-Control-Max-Age")


def cors_headers(enabled: bool | None, origin: str | None) -> dict[str, str | None]:
    """What the gateway sets on every answer (None: removes)."""
    if enabled is None:
        return {}
    if not enabled:
        return dict.fromkeys(CORS_KEYS)
    return {"Access-Control-Allow-Origin": origin or "*", "Access-Control-Allow-Methods": ALLOW_METHODS,
            "Access-Control-Allow-Credentials": "true"}


def cli_api(doc: Doc, base_url: str) -> Doc:
    """An API as getApi/createApi answer it (generateCliApiFromGwApi's value)."""
    return {"namespace": "Not Used", "gwApiActivated": True, "tenantId": "Not Used",
            "gwApiUrl": managed_url(base_url, doc["tenantId"], doc["name"]), "apidoc": doc["apidoc"]}
