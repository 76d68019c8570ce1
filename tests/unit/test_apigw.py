"""The API gateway's pure parts: routemgmt's swagger edits and checks, the route decisions, and routing."""

from __future__ import annotations

from typing import Any

import pytest

from contracts import apigw
from contracts.apigw import RouteError
from streams.entities import apis

HOST = "https://wsk.example:443"


def endpoint(relpath: str = "/books", verb: str = "GET", action: str = "books", **more: Any) -> dict[str, Any]:
    return {"namespace": "guest", "gatewayBasePath": "/club", "gatewayPath": relpath, "gatewayMethod": verb,
            "action": {"name": action, "namespace": "guest", "backendMethod": "GET",
                       "backendUrl": f"{HOST}/api/v1/web/guest/default/{action}.http", **more}}


def test_operation_ids_as_routemgmt_makes_them() -> None:
    assert apigw.operation_id("GET", "/books/{isbn}") == "getBooksIsbn"
    assert apigw.operation_id("post", "/a-b/c_d/X.y") == "postA-bC_dXY"
    assert apigw.operation_id("delete", "/") == "delete"


def test_add_endpoint_builds_x_openwhisk_and_the_operation_switch() -> None:
    base = apigw.base_swagger("/club", "Book Club")
    assert base["info"] == {"title": "Book Club", "version": "1.0.0"} and base["x-ibm-configuration"] == {
        "assembly": {}, "cors": {"enabled": True}}
    sw = apigw.add_endpoint(base, endpoint("/books/{isbn}", action="shelf/books", secureKey="k",
                                           pathParameters=None), "http")
    op = sw["paths"]["/books/{isbn}"]["get"]
    assert op["operationId"] == "getBooksIsbn" and "parameters" not in op
    assert op["x-openwhisk"] == {"url": f"{HOST}/api/v1/web/guest/shelf/books.http", "namespace": "guest",
                                 "package": "shelf", "action": "books"}
    case = sw["x-ibm-configuration"]["assembly"]["execute"][0]["operation-switch"]["case"][0]
    assert case == {"operations": ["getBooksIsbn"], "execute": [
        {"invoke": {"target-url": f"{HOST}/api/v1/web/guest/shelf/books.http$(request.path)", "verb": "keep"}},
        {"set-variable": {"actions": [{"set": "message.headers.X-Require-Whisk-Auth", "value": "k"}]}}]}
    assert base["paths"] == {}  # the input is not changed
    again = apigw.add_endpoint(sw, endpoint("/books/{isbn}", action="other"), None)  # same verb: replaced
    cases = again["x-ibm-configuration"]["assembly"]["execute"][0]["operation-switch"]["case"]
    assert len(cases) == 1 and cases[0]["execute"] == [
        {"invoke": {"target-url": f"{HOST}/api/v1/web/guest/default/other.json", "verb": "keep"}}]


def test_remove_endpoint_texts_and_cases() -> None:
    sw = apigw.add_endpoint(apigw.add_endpoint(apigw.base_swagger("/c", None), endpoint("/b"), None),
                            endpoint("/b", "POST"), None)
    one = apigw.remove_endpoint(sw, "/b", "POST")
    assert set(one["paths"]["/b"]) == {"get"}
    assert [c["operations"] for c in one["x-ibm-configuration"]["assembly"]["execute"][0]["operation-switch"]
            ["case"]] == [["getB"]]
    assert apigw.remove_endpoint(sw, "/b", None)["paths"] == {}
    with pytest.raises(RouteError, match=r"^path '/x' does not exist in the API$"):
        apigw.remove_endpoint(sw, "/x", None)
    with pytest.raises(RouteError, match=r"^path '/b' with operation 'put' does not exist in the API$"):
        apigw.remove_endpoint(sw, "/b", "PUT")


@pytest.mark.parametrize(("doc", "message"), [
    (None, "apidoc is required."),
    ("{x", "apidoc field cannot be parsed. Ensure it is valid JSON."),
    (5, "apidoc field is of type number and should be a JSON object or a JSON string."),
    ({"x": 1}, "apidoc is missing the namespace field"),
    ({"namespace": "_", "swagger": "{}", "gatewayBasePath": "/a"},
     "swagger and gatewayBasePath are mutually exclusive and cannot be specified together."),
    ({"namespace": "_", "swagger": True}, "swagger field is boolean and should be an object or a JSON string."),
    ({"namespace": "_", "swagger": {"basePath": "/a", "paths": {"/": {}}}}, "swagger is missing the info field."),
    ({"namespace": "_", "gatewayBasePath": "/a", "gatewayPath": "/b"}, "apidoc is missing the gatewayMethod field"),
    ({"namespace": "_", "gatewayBasePath": "/a", "gatewayPath": "/b", "gatewayMethod": "get"},
     "apidoc is missing the action field."),
    ({**endpoint(), "action": {"name": "a"}}, "action is missing the backendMethod field."),
])
def test_create_arguments_are_checked_with_routemgmts_texts(doc: Any, message: str) -> None:
    with pytest.raises(RouteError) as e:
        apigw.validate_create(doc)
    assert str(e.value) == message


def test_the_callers_namespace_replaces_underscore_and_the_auth_key_is_dropped() -> None:
    doc = endpoint(authkey="uuid:secret")
    doc["action"].update(namespace="_", backendUrl=f"{HOST}/api/v1/web/_/default/books.http")
    out = apigw.with_namespace(doc, "alice")
    assert out["namespace"] == "alice" and "authkey" not in out["action"]
    assert out["action"]["namespace"] == "alice"
    assert out["action"]["backendUrl"] == f"{HOST}/api/v1/web/alice/default/books.http"


def test_path_parameters_need_http_declared_parameters_and_a_plain_base_path() -> None:
    json_param = apigw.add_endpoint(apigw.base_swagger("/c", None), endpoint("/b/{id}"), "json")
    with pytest.raises(RouteError, match=r"response type of '\.http'"):
        apigw.validate_swagger(json_param)
    undeclared = apigw.add_endpoint(apigw.base_swagger("/c", None), endpoint("/b/{id}"), "http")
    with pytest.raises(RouteError, match=r"^The parameter 'id' defined in path '/b/\{id\}' does not match any"):
        apigw.validate_swagger(undeclared)
    declared = apigw.add_endpoint(apigw.base_swagger("/c", None), endpoint(
        "/b/{id}", pathParameters=None) | {"pathParameters": [{"name": "id", "in": "path"}]}, "http")
    apigw.validate_swagger(declared)
    with pytest.raises(RouteError, match=r"^The base path \(/c/\{x\}\) cannot have parameters"):
        apigw.validate_swagger({**declared, "basePath": "/c/{x}"})
    with pytest.raises(RouteError, match=r"must end in '\$\(request\.path\)'"):
        cases = declared["x-ibm-configuration"]["assembly"]["execute"][0]["operation-switch"]["case"]
        cases[0]["execute"][0]["invoke"]["target-url"] = f"{HOST}/api/v1/web/guest/default/books.http"
        apigw.validate_swagger(declared)


def test_route_decisions_merge_replace_and_delete() -> None:
    store: dict[str, Any] = {}
    doc_id = apigw.doc_id("guest", "/club")

    def put(apidoc: dict[str, Any], tenant: str = "t1", rtype: str = "json") -> apis.Decision:
        d = apis.decide("put", doc_id, {"apidoc": apidoc, "basepath": "/club", "tenant": tenant,
                                        "responsetype": rtype}, store.get, 7)
        store.update(d.writes)
        return d

    d = put({**endpoint(), "apiName": "Book Club"})
    assert d.error is None and store[doc_id]["entityType"] == "api" and store[doc_id]["tenantId"] == "t1"
    put({**endpoint("/books", "POST"), "apiName": "ignored"}, tenant="t2")
    assert set(store[doc_id]["apidoc"]["paths"]["/books"]) == {"get", "post"}
    assert store[doc_id]["apidoc"]["info"]["title"] == "Book Club" and store[doc_id]["tenantId"] == "t1"
    bad = put(endpoint("/x/{id}"))
    assert bad.error is not None and bad.error.status == 502 and bad.writes == []
    assert bad.error.message.startswith("API creation failure: The action must use a response type of '.http'")
    swagger = {**apigw.base_swagger("/club", "New"), "paths": {}}
    put({"namespace": "guest", "swagger": swagger})
    assert store[doc_id]["apidoc"] == swagger  # a swagger replaces the whole API

    put(endpoint())
    put(endpoint("/books", "POST"))
    d = apis.decide("delete", doc_id, {"basepath": "/club", "relpath": "/books", "operation": "post"}, store.get, 8)
    store.update(d.writes)
    assert set(store[doc_id]["apidoc"]["paths"]["/books"]) == {"get"}
    d = apis.decide("delete", doc_id, {"basepath": "/club", "relpath": "/books", "operation": "get"}, store.get, 9)
    assert d.writes == [(doc_id, None)]  # its last path gone: the API goes
    missing = apis.decide("delete", apigw.doc_id("guest", "/none"), {"basepath": "/none"}, store.get, 9)
    assert missing.error is not None and missing.error.message == "API deletion failure: API '/none' does not exist."


def api(basepath: str, *relpaths: str) -> dict[str, Any]:
    sw = apigw.base_swagger(basepath, None)
    for rel in relpaths:
        sw = apigw.add_endpoint(sw, endpoint(rel), "http")
    return {"name": basepath, "tenantId": "t", "apidoc": sw}


def test_routing_exact_then_parameters_then_prefix() -> None:
    apis_ = [api("/club", "/books", "/books/{isbn}", "/books/new"), api("/", "/hello")]
    m = apigw.find(apis_, "/club/books/new")
    assert m is not None and m.relpath == "/books/new" and m.rest == ""
    m = apigw.find(apis_, "/club/books/123")
    assert m is not None and m.relpath == "/books/{isbn}"
    m = apigw.find(apis_, "/club/books/123/reviews/9")
    assert m is not None and m.relpath == "/books/{isbn}" and m.rest == "/reviews/9"
    m = apigw.find(apis_, "/hello/")
    assert m is not None and m.api["name"] == "/" and m.relpath == "/hello"
    assert apigw.find(apis_, "/club") is None and apigw.find(apis_, "/other") is None


def test_targets_from_the_operation_switch_or_x_openwhisk() -> None:
    sw = api("/club", "/books/{isbn}")["apidoc"]
    op = sw["paths"]["/books/{isbn}"]["get"]
    t = apigw.target(sw, op, "alice")
    assert t == apigw.Target("guest", "default", "books", "http", True, None, None)
    # a Serverless-style swagger: secret first, the invoke last, the namespace left as _
    sw2 = {"paths": {"/h": {"get": {"operationId": "get-/h", "x-openwhisk": {}}}}, "x-ibm-configuration": {
        "assembly": {"execute": [{"operation-switch": {"case": [{"operations": ["get-/h"], "execute": [
            {"set-variable": {"actions": [{"set": "message.headers.X-Require-Whisk-Auth", "value": True}]}},
            {"invoke": {"target-url": "https://h/api/v1/web/_/pkg/fn.json", "verb": "POST"}}]}]}}]}}}
    t = apigw.target(sw2, sw2["paths"]["/h"]["get"], "alice")
    assert t == apigw.Target("alice", "pkg", "fn", "json", False, "true", "POST")
    external = {"operationId": "x", "x-openwhisk": {"url": "https://elsewhere.example/api/things"}}
    assert apigw.target({"paths": {}}, external, "alice") is None


def test_cors_as_the_gateway_sets_it() -> None:
    assert apigw.cors_setting(apigw.base_swagger("/a", None)) is True
    assert apigw.cors_setting({"x-ibm-configuration": {"cors": {"enabled": False}}}) is False
    assert apigw.cors_setting({"swagger": "2.0"}) is None
    assert apigw.cors_headers(None, "o") == {}
    assert apigw.cors_headers(True, None)["Access-Control-Allow-Origin"] == "*"
    assert apigw.cors_headers(True, "https://o")["Access-Control-Allow-Origin"] == "https://o"
    assert set(apigw.cors_headers(False, "o").values()) == {None}


def test_managed_urls() -> None:
    assert apigw.managed_url("http://h:1/", "t", "/club") == "http://h:1/api/t/club"
    assert apigw.managed_url("http://h:1", "t", "/") == "http://h:1/api/t"
