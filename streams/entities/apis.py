"""The API gateway's routes as entities: one `api` doc per namespace and base path (contracts/apigw.py).

The API checks the request and resolves names; the decision (merge an endpoint into the current API, replace it
with a swagger, remove a path or verb) is made here, against the log's current state, so concurrent changes to
one API are applied one after the other and none is lost.
"""

from __future__ import annotations

from contracts import apigw
from contracts.errors import WhiskError
from streams.entities.logic import Decision, Doc, Lookup

CREATE_FAILED = "API creation failure: "
DELETE_FAILED = "API deletion failure: "
FAILED = 502  # routemgmt answers its failures as a web action response with status 502


def decide(op: str, doc_id: str, body: Doc, lookup: Lookup, now_ms: int) -> Decision:
    current = lookup(doc_id)
    if current is not None and current.get("entityType") != "api":
        current = None
    try:
        if op == "put":
            return _put(doc_id, body, current, now_ms)
        if op == "delete":
            return _delete(doc_id, body, current, now_ms)
    except apigw.RouteError as e:
        prefix = CREATE_FAILED if op == "put" else DELETE_FAILED
        return Decision([], None, WhiskError(FAILED, prefix + str(e)))
    return Decision([], None, WhiskError(400, f"unknown operation {op}"))


def _doc(doc_id: str, body: Doc, swagger: Doc, tenant: str, now_ms: int) -> Doc:
    ns = doc_id.split("/", 1)[0]
    return {"entityType": "api", "namespace": ns, "name": body["basepath"], "tenantId": tenant,
            "apidoc": swagger, "updated": now_ms}


def _put(doc_id: str, body: Doc, current: Doc | None, now_ms: int) -> Decision:
    apidoc: Doc = body["apidoc"]
    if apidoc.get("swagger"):
        swagger = apidoc["swagger"]  # the whole API, replacing what was there
    else:
        base = current["apidoc"] if current else apigw.base_swagger(body["basepath"], apidoc.get("apiName"))
        swagger = apigw.add_endpoint(base, apidoc, body.get("responsetype"))
    apigw.validate_swagger(swagger)
    tenant = current["tenantId"] if current else body["tenant"]  # the API keeps its URL
    doc = _doc(doc_id, body, swagger, tenant, now_ms)
    return Decision([(doc_id, doc)], None)


def _delete(doc_id: str, body: Doc, current: Doc | None, now_ms: int) -> Decision:
    if current is None:
        raise apigw.RouteError(f"API '{body['basepath']}' does not exist.")
    relpath = body.get("relpath")
    if not relpath:
        return Decision([(doc_id, None)], None)
    swagger = apigw.remove_endpoint(current["apidoc"], relpath, body.get("operation"))
    if not swagger.get("paths"):
        return Decision([(doc_id, None)], None)
    return Decision([(doc_id, _doc(doc_id, {"basepath": current["name"]}, swagger, current["tenantId"], now_ms))],
                    None)
