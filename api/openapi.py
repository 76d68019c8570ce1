"""Swagger 2.0 for GET /api/v1/api-docs, shaped like OpenWhisk's apiv1swagger.json (paths, params, models).

Built from tables rather than written out: one place lists the collections, their methods and query
parameters, so the document follows the routes. Adds what the upstream file lacks (spec 7): `count`,
the `actions/{packageName}/` listing, GET /api/v1.
"""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]

ERROR = {"type": "object", "required": ["error", "code"],
         "properties": {"error": {"type": "string"}, "code": {"type": "string"}}}
KEY_VALUE = {"type": "object", "required": ["key", "value"],
             "properties": {"key": {"type": "string"}, "value": {}, "init": {"type": "boolean"}}}
KEY_VALUES = {"type": "array", "items": {"$ref": "#/definitions/KeyValue"}}
ENTITY = {"namespace": {"type": "string"}, "name": {"type": "string"}, "version": {"type": "string"},
          "publish": {"type": "boolean"}, "annotations": KEY_VALUES, "updated": {"type": "integer"}}
LIMITS = {"type": "object", "properties": {k: {"type": "integer"} for k in
                                            ("timeout", "memory", "logs", "concurrency", "instances")}}
EXEC = {"type": "object", "required": ["kind"], "properties": {
    "kind": {"type": "string"}, "code": {"type": "string"}, "image": {"type": "string"},
    "main": {"type": "string"}, "binary": {"type": "boolean"},
    "components": {"type": "array", "items": {"type": "string"}}}}
PATH_REF = {"type": "object", "properties": {"path": {"type": "string"}, "name": {"type": "string"}}}

DEFINITIONS: Json = {
    "ErrorMessage": ERROR,
    "KeyValue": KEY_VALUE,
    "ActionExec": EXEC,
    "ActionLimits": LIMITS,
    "Action": {"type": "object", "properties": {**ENTITY, "exec": EXEC, "parameters": KEY_VALUES, "limits": LIMITS}},
    "ActionPut": {"type": "object", "properties": {
        "exec": EXEC, "parameters": KEY_VALUES, "limits": LIMITS, "version": {"type": "string"},
        "publish": {"type": "boolean"}, "annotations": KEY_VALUES,
        "delAnnotations": {"type": "array", "items": {"type": "string"}}}},
    "Trigger": {"type": "object", "properties": {**ENTITY, "parameters": KEY_VALUES, "limits": {"type": "object"},
                                                  "rules": {"type": "object"}}},
    "TriggerPut": {"type": "object", "properties": {"parameters": KEY_VALUES, "limits": {"type": "object"},
                                                     "version": {"type": "string"}, "publish": {"type": "boolean"},
                                                     "annotations": KEY_VALUES}},
    "Rule": {"type": "object", "properties": {**ENTITY, "trigger": PATH_REF, "action": PATH_REF,
                                               "status": {"type": "string", "enum": ["active", "inactive"]}}},
    "RulePut": {"type": "object", "properties": {"trigger": {"type": "string"}, "action": {"type": "string"},
                                                  "version": {"type": "string"}, "publish": {"type": "boolean"},
                                                  "annotations": KEY_VALUES}},
    "RuleStatus": {"type": "object", "required": ["status"],
                   "properties": {"status": {"type": "string", "enum": ["active", "inactive"]}}},
    "Package": {"type": "object", "properties": {**ENTITY, "parameters": KEY_VALUES, "binding": {"type": "object"},
                                                  "actions": {"type": "array", "items": {"type": "object"}},
                                                  "feeds": {"type": "array", "items": {"type": "object"}}}},
    "PackagePut": {"type": "object", "properties": {
        "binding": {"type": "object", "properties": {"namespace": {"type": "string"}, "name": {"type": "string"}}},
        "parameters": KEY_VALUES, "version": {"type": "string"}, "publish": {"type": "boolean"},
        "annotations": KEY_VALUES}},
    "Activation": {"type": "object", "properties": {
        **ENTITY, "activationId": {"type": "string"}, "subject": {"type": "string"}, "start": {"type": "integer"},
        "end": {"type": "integer"}, "duration": {"type": "integer"}, "cause": {"type": "string"},
        "response": {"type": "object"}, "logs": {"type": "array", "items": {"type": "string"}}}},
    "ActivationId": {"type": "object", "properties": {"activationId": {"type": "string"}}},
    "UserLimits": {"type": "object", "properties": {
        k: {"type": "integer"} for k in ("invocationsPerMinute", "concurrentInvocations", "firesPerMinute")}},
}


def _param(name: str, where: str, typ: str, desc: str, required: bool = False) -> Json:
    return {"name": name, "in": where, "type": typ, "description": desc, "required": required or where == "path"}


NS = _param("namespace", "path", "string", "The entity namespace; `_` is the caller's")
LIST_QUERY = [_param("limit", "query", "integer", "Number of entities to include (0 = 200, default 30)"),
              _param("skip", "query", "integer", "Number of entities to skip"),
              _param("count", "query", "boolean", "Only the number of entities: {\"<collection>\": N}")]
OVERWRITE = _param("overwrite", "query", "boolean", "Update an existing entity")
ERRORS = {str(s): {"description": d, "schema": {"$ref": "#/definitions/ErrorMessage"}} for s, d in (
    (400, "Bad request"), (401, "Unauthorized"), (403, "Forbidden"), (404, "Not found"), (409, "Conflict"),
    (413, "Request entity too large"), (500, "Server error"))}


def _op(summary: str, params: list[Json], ok: Json, tag: str, body: str | None = None) -> Json:
    if body is not None:
        schema = {"$ref": f"#/definitions/{body}"}
        params = [*params, {"name": "body", "in": "body", "required": True, "schema": schema}]
    return {"tags": [tag], "summary": summary, "parameters": params,
            "responses": {"200": {"description": "OK", "schema": ok}, **ERRORS}}


def _ref(model: str, many: bool = False) -> Json:
    ref = {"$ref": f"#/definitions/{model}"}
    return {"type": "array", "items": ref} if many else ref


def _collection(coll: str, model: str, key: str, post: tuple[str, str, Json] | None, pkg: bool = False) -> Json:
    """List, get/put/delete (and POST) paths of one collection; `pkg` adds the packaged variants."""
    name = _param(key, "path", "string", f"Name of the {model.lower()}")
    package = _param("packageName", "path", "string", "Name of the package")
    extra_get = [_param("code", "query", "boolean", "Include action code (default true)")] if model == "Action" else []
    extra_del = [_param("force", "query", "boolean", "Delete the package contents too")] if model == "Package" else []
    item: Json = {
        "get": _op(f"Get {model.lower()} information", [NS, name, *extra_get], _ref(model), coll),
        "put": _op(f"Create or update {model.lower()}", [NS, name, OVERWRITE], _ref(model), coll, f"{model}Put"),
        "delete": _op(f"Delete {model.lower()}", [NS, name, *extra_del], _ref(model), coll),
    }
    if post is not None:
        summary, body, ok = post
        item["post"] = _op(summary, [NS, name], ok, coll, body)
    paths = {f"/namespaces/{{namespace}}/{coll}": {"get": _op(f"Get all {coll}", [NS, *LIST_QUERY],
                                                              _ref(model, True), coll)},
             f"/namespaces/{{namespace}}/{coll}/{{{key}}}": item}
    if pkg:
        paths[f"/namespaces/{{namespace}}/{coll}/{{packageName}}/{{{key}}}"] = {
            m: {**op, "parameters": [NS, package, *op["parameters"][1:]]} for m, op in item.items()}
        paths[f"/namespaces/{{namespace}}/{coll}/{{packageName}}/"] = {
            "get": _op(f"Get all {coll} in a package (bindings resolved)", [NS, package, *LIST_QUERY],
                       _ref(model, True), coll)}
    return paths


def spec() -> Json:
    invoke_q = [_param("blocking", "query", "boolean", "Wait for the result"),
                _param("result", "query", "boolean", "Return only the result (blocking)"),
                _param("timeout", "query", "integer", "Blocking wait in ms (up to 60000)")]
    paths: Json = {
        "/namespaces": {"get": _op("Get all namespaces for the credentials", [], {"type": "array",
                                   "items": {"type": "string"}}, "Namespaces")},
        "/namespaces/{namespace}/limits": {"get": _op("Get the limits of a namespace", [NS], _ref("UserLimits"),
                                                      "Namespaces")},
        **_collection("actions", "Action", "actionName",
                      ("Invoke an action", "KeyValue", _ref("Activation")), pkg=True),
        **_collection("triggers", "Trigger", "triggerName", ("Fire a trigger", "KeyValue", _ref("ActivationId"))),
        **_collection("rules", "Rule", "ruleName", ("Enable or disable a rule", "RuleStatus", {"type": "object"})),
        **_collection("packages", "Package", "packageName", None),
        "/namespaces/{namespace}/activations": {"get": _op(
            "Get activation summaries", [NS, *LIST_QUERY, _param("name", "query", "string", "Action name filter"),
                                         _param("since", "query", "integer", "Epoch ms lower bound"),
                                         _param("upto", "query", "integer", "Epoch ms upper bound"),
                                         _param("docs", "query", "boolean", "Full records")],
            _ref("Activation", True), "Activations")},
    }
    aid = _param("activationid", "path", "string", "Activation id (32 hex characters)")
    for suffix, what in (("", "an activation record"), ("/logs", "the logs"), ("/result", "the result")):
        paths[f"/namespaces/{{namespace}}/activations/{{activationid}}{suffix}"] = {
            "get": _op(f"Get {what}", [NS, aid], _ref("Activation"), "Activations")}
    invoke_path = paths["/namespaces/{namespace}/actions/{actionName}"]["post"]
    invoke_path["parameters"] = [*invoke_path["parameters"], *invoke_q]
    return {
        "swagger": "2.0",
        "basePath": "/api/v1",
        "info": {"title": "Streamwhisk REST API (OpenWhisk compatible)", "version": "1.0.0"},
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "securityDefinitions": {"basicAuth": {"type": "basic", "description": "uuid:key of the subject"}},
        "security": [{"basicAuth": []}],
        "definitions": DEFINITIONS,
        "paths": paths,
    }
