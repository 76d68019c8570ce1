"""The API gateway: route management as the npm client and `wsk api` (openwhisk-client-go) send it, and requests
through the gateway URLs it prints (/api/<tenant>/<basepath>/<path>) reaching web actions."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import pytest
import requests

from cli.audit import read_log
from contracts import keys
from contracts.events import EntityChanged, EntityCommand
from contracts.topics import Topics
from tests import kafkalog
from tests.stack import Stack, run_npm_client

pytestmark = pytest.mark.integration

MGMT = "/api/v1/web/whisk.system/apimgmt"


def ok(out: dict[str, Any], *steps: str) -> None:
    bad = {s: out[s] for s in steps if isinstance(out.get(s), dict) and "error" in out[s] and "apis" not in out[s]}
    assert not bad, bad


def apidoc(out: dict[str, Any], step: str) -> dict[str, Any]:
    doc: dict[str, Any] = out[step]["apidoc"]
    return doc


def test_npm_client_routes_and_calls_through_the_gateway(stack: Stack) -> None:
    key = stack.subject("gwnpm")
    sfx = uuid.uuid4().hex[:6]
    out = run_npm_client("routes.js", stack, key, sfx, PHASE="create")
    ok(out, *(s for s in out if s.startswith(("action.", "route.")) and s != "route.param.json"))
    tenant = keys.split(key)[0]
    shop = f"{stack.url}/api/{tenant}/shop{sfx}"
    assert out["route.json"]["gwApiUrl"] == shop and out["route.json"]["gwApiActivated"] is True
    sw = apidoc(out, "route.http.post")
    assert sw["basePath"] == f"/shop{sfx}" and sw["info"]["title"] == f"/shop{sfx}"
    assert set(sw["paths"]) == {"/items", "/items/{id}"} and set(sw["paths"]["/items"]) == {"get", "post"}
    op = sw["paths"]["/items/{id}"]["get"]
    assert op["operationId"] == "getItemsId"
    assert op["parameters"] == [{"name": "id", "in": "path", "description": "Default description for 'id'",
                                 "required": True, "type": "string"}]
    assert op["x-openwhisk"] == {"url": f"{stack.url}/api/v1/web/gwnpm/default/gw-http-{sfx}.http",
                                 "namespace": "gwnpm", "package": "", "action": f"gw-http-{sfx}"}
    cases = sw["x-ibm-configuration"]["assembly"]["execute"][0]["operation-switch"]["case"]
    target = {c["operations"][0]: c["execute"][0]["invoke"]["target-url"] for c in cases}
    assert target["getItemsId"].endswith(f"/gw-http-{sfx}.http$(request.path)")
    assert target["getItems"].endswith(f"/gw-json-{sfx}.json")
    assert apidoc(out, "route.text")["info"]["title"] == "Pages API"  # the first route of a base path names it
    secure = apidoc(out, "route.secure")["x-ibm-configuration"]["assembly"]["execute"][0]["operation-switch"]
    assert secure["case"][0]["execute"][1] == {
        "set-variable": {"actions": [{"set": "message.headers.X-Require-Whisk-Auth", "value": "s3cr3t"}]}}
    assert out["route.param.json"]["statusCode"] == 502
    assert "The action must use a response type of '.http' in order to receive the path parameters." in \
        out["route.param.json"]["error"]
    assert {a["value"]["apidoc"]["basePath"] for a in out["list"]["apis"]} == {
        f"/shop{sfx}", f"/pages{sfx}", f"/plain{sfx}", f"/secure{sfx}"}
    assert [a["value"]["gwApiUrl"] for a in out["list.shop"]["apis"]] == [shop]
    assert [a["value"]["apidoc"]["basePath"] for a in out["get.byname"]["apis"]] == [f"/pages{sfx}"]
    assert out["get.missing"] == {"apis": []}
    secret = keys.split(key)[1]
    assert secret not in orjson.dumps(out["list"]).decode()  # the client sent its key as `authkey`; not kept

    # Through the gateway: each response type, path parameters, query and body.
    r = requests.get(f"{shop}/items", params={"name": "ann"}, timeout=90)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json"), r.text
    assert r.json() == {"hello": "ann", "path": "", "method": "get"}
    r = requests.get(f"{shop}/items/42", params={"q": "x"}, timeout=90)
    assert r.status_code == 200 and r.json() == {"path": f"/shop{sfx}/items/42", "method": "get", "q": "x"}, r.text
    assert r.headers["X-Path"] == f"/shop{sfx}/items/42"
    r = requests.post(f"{shop}/items", json={"a": 7}, timeout=90)
    assert r.status_code == 201 and r.json() == {"path": f"/shop{sfx}/items", "method": "post", "a": 7}, r.text
    pages = f"{stack.url}/api/{tenant}/pages{sfx}"
    r = requests.get(f"{pages}/text", params={"name": "bo"}, timeout=90)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    assert r.text == "plain words for bo"
    r = requests.get(f"{pages}/html", params={"name": "cy"}, timeout=90)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html") and r.text == "<h1>hi cy</h1>"
    # CORS as the gateway answers it (enabled by default for APIs made from endpoints)
    r = requests.options(f"{shop}/items/1", headers={"Origin": "https://app.example",
                                                     "Access-Control-Request-Headers": "X-Custom"}, timeout=30)
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert r.headers["Access-Control-Allow-Headers"] == "X-Custom"
    assert r.headers["Access-Control-Allow-Methods"] == "GET, POST, PUT, DELETE, PATCH, HEAD, OPTIONS"
    assert requests.get(f"{shop}/items", timeout=90).headers["Access-Control-Allow-Credentials"] == "true"
    # the route's secret reaches a require-whisk-auth action; its web URL without the secret is refused
    r = requests.get(f"{stack.url}/api/{tenant}/secure{sfx}/s", timeout=90)
    assert r.status_code == 200 and r.json() == {"secure": True}, r.text
    assert requests.get(f"{stack.url}/api/v1/web/gwnpm/default/gw-secure-{sfx}.json", timeout=90).status_code == 401
    # a route to an action that is not a web action: refused as OpenWhisk's controller refuses the web URL
    r = requests.get(f"{stack.url}/api/{tenant}/plain{sfx}/x", timeout=90)
    assert r.status_code == 404 and r.json()["error"] == "The requested resource does not exist.", r.text
    # the gateway's own answers
    r = requests.put(f"{shop}/items", timeout=30)
    assert r.status_code == 404 and r.json()["message"] == "Error: Whoops. Verb not supported."
    for url in (f"{stack.url}/api/{tenant}/nothing{sfx}/x", f"{stack.url}/api/{uuid.uuid4()}/shop{sfx}/items"):
        r = requests.get(url, timeout=30)
        assert r.status_code == 404 and r.json()["message"] == "Error: Not found." and "code" in r.json()

    out = run_npm_client("routes.js", stack, key, sfx, PHASE="delete")
    ok(out, "delete.verb", "delete.byname", "delete.shop")
    assert set(out["list.shop"]["apis"][0]["value"]["apidoc"]["paths"]["/items"]) == {"get"}
    assert out["delete.missing"]["statusCode"] == 502
    assert f"API deletion failure: API '/nothing{sfx}' does not exist." in out["delete.missing"]["error"]
    assert {a["value"]["apidoc"]["basePath"] for a in out["list"]["apis"]} == {f"/plain{sfx}", f"/secure{sfx}"}
    assert requests.get(f"{shop}/items", timeout=30).status_code == 404
    assert requests.get(f"{pages}/text", timeout=30).status_code == 404


def _cli(stack: Stack, key: str) -> requests.Session:
    s = requests.Session()
    s.auth = tuple(key.split(":", 1))  # type: ignore[assignment]
    s.headers["User-Agent"] = "OpenWhisk-CLI/1.0 (2021-04-01T23:49:54.523+0000) linux amd64"
    return s


def test_wsk_api_requests_as_the_cli_sends_them(stack: Stack) -> None:
    """The requests of `wsk api create|list|get|delete` (openwhisk-cli commands/api.go over client-go's
    whisk/api.go): .http URLs, options in the query (accesstoken, spaceguid, responsetype), the apidoc in the body,
    the swagger of --config-file as a JSON string."""
    key = stack.subject("gwcli")
    uid = keys.split(key)[0]
    c = stack.client(key)
    assert c.put("actions/books", {"exec": {"kind": "python:3", "code":
                  "def main(a):\n    return {'body': {'path': a['__ow_path'], 'verb': a['__ow_method']}}\n"},
                  "annotations": [{"key": "web-export", "value": True}]}).status_code == 200
    cli = _cli(stack, key)
    auth = {"spaceguid": uid, "accesstoken": "DUMMY TOKEN"}
    # wsk api create -n "Book Club" /club /books/{isbn} get books --response-type http
    body = {"apidoc": {"namespace": "_", "apiName": "Book Club", "gatewayBasePath": "/club",
                       "gatewayPath": "/books/{isbn}", "gatewayMethod": "get", "id": "API:_:/club/books/{isbn}",
                       "action": {"name": "books", "namespace": "gwcli", "backendMethod": "POST",
                                  "backendUrl": f"{stack.url}/api/v1/web/gwcli/default/books.http",
                                  "authkey": key},
                       "pathParameters": [{"name": "isbn", "in": "path", "required": True, "type": "string"}]}}
    r = cli.post(f"{stack.url}{MGMT}/createApi.http", params={**auth, "responsetype": "http"}, json=body, timeout=60)
    assert r.status_code == 200, r.text
    api = r.json()
    assert api["gwApiUrl"] == f"{stack.url}/api/{uid}/club" and api["apidoc"]["info"]["title"] == "Book Club"
    # wsk api create /club /books post books (json: no path parameters)
    body["apidoc"].update(gatewayPath="/books", gatewayMethod="post", pathParameters=None)
    r = cli.post(f"{stack.url}{MGMT}/createApi.http", params={**auth, "responsetype": "json"}, json=body, timeout=60)
    assert r.status_code == 200 and set(r.json()["apidoc"]["paths"]) == {"/books", "/books/{isbn}"}
    assert r.json()["apidoc"]["info"]["title"] == "Book Club"
    # wsk api list (limit/skip always sent) and wsk api get "Book Club"
    r = cli.get(f"{stack.url}{MGMT}/getApi.http", params={**auth, "limit": 0, "skip": 0}, timeout=60)
    assert r.status_code == 200 and [a["value"]["apidoc"]["basePath"] for a in r.json()["apis"]] == ["/club"]
    r = cli.get(f"{stack.url}{MGMT}/getApi.http", params={**auth, "basepath": "Book Club"}, timeout=60)
    assert r.json()["apis"][0]["value"]["gwApiUrl"] == f"{stack.url}/api/{uid}/club"
    assert requests.get(f"{stack.url}/api/{uid}/club/books/978-0596517748", timeout=90).json() == {
        "path": "/club/books/978-0596517748", "verb": "get"}
    assert requests.post(f"{stack.url}/api/{uid}/club/books", timeout=90).json() == {  # .json: the whole result
        "body": {"path": "", "verb": "post"}}

    # wsk api create --config-file: the swagger as the CLI reads it from the file (a string), CORS disabled
    exported = r.json()["apis"][0]["value"]["apidoc"]
    swagger = {**exported, "basePath": "/shelf", "info": {"title": "Shelf", "version": "1.0.0"},
               "x-ibm-configuration": {**exported["x-ibm-configuration"], "cors": {"enabled": False}}}
    r = cli.post(f"{stack.url}{MGMT}/createApi.http", params=auth, timeout=60,
                 json={"apidoc": {"namespace": "gwcli", "swagger": orjson.dumps(swagger).decode()}})
    assert r.status_code == 200 and r.json()["gwApiUrl"] == f"{stack.url}/api/{uid}/shelf", r.text
    r = requests.get(f"{stack.url}/api/{uid}/shelf/books/1", headers={"Origin": "https://x.example"}, timeout=90)
    assert r.json() == {"path": "/shelf/books/1", "verb": "get"}
    assert not [h for h in r.headers if h.lower().startswith("access-control-")], r.headers  # cors off: none
    r = requests.options(f"{stack.url}/api/{uid}/shelf/books/1", timeout=30)
    assert r.status_code == 404  # no preflight answer, and no OPTIONS operation

    # routemgmt's errors, with its texts and status (502)
    def create_error(doc: Any, who: requests.Session | Any = cli) -> tuple[int, str]:
        resp = who.post(f"{stack.url}{MGMT}/createApi.http", params=auth, json={"apidoc": doc}, timeout=60)
        return resp.status_code, resp.json()["error"]

    assert create_error({"namespace": "_", "swagger": "{nope"}) == (
        502, "swagger field cannot be parsed. Ensure it is valid JSON.")
    assert create_error({"namespace": "_", "swagger": {"paths": {}, "info": {}}}) == (
        502, "swagger is missing the basePath field.")
    assert create_error({"namespace": "_", "gatewayBasePath": "/x"}) == (502, "apidoc is missing the gatewayPath field")
    assert create_error({"namespace": "_"}, requests) == (502, "A valid auth key is required.")
    r = requests.get(f"{stack.url}{MGMT}/getApi.http", timeout=30)
    assert (r.status_code, r.json()["error"]) == (502, "Invalid authentication.")
    r = cli.delete(f"{stack.url}{MGMT}/deleteApi.http", params={**auth, "operation": "get"}, timeout=30)
    assert (r.status_code, r.json()["error"]) == (502, "basepath is required.")
    r = cli.delete(f"{stack.url}{MGMT}/deleteApi.http", params={**auth, "basepath": "/club", "operation": "get"},
                   timeout=30)
    assert r.json()["error"] == "When specifying an operation, the path is required."
    r = cli.delete(f"{stack.url}{MGMT}/deleteApi.http", timeout=30,
                   params={**auth, "basepath": "/club", "relpath": "/nope", "operation": "get"})
    assert r.json()["error"] == "API deletion failure: path '/nope' with operation 'get' does not exist in the API"

    # wsk api delete /club /books (every verb of the path), then the whole API by name
    r = cli.delete(f"{stack.url}{MGMT}/deleteApi.http", params={**auth, "basepath": "/club", "relpath": "/books"},
                   timeout=60)
    assert r.status_code == 200 and r.json() == {}
    assert requests.post(f"{stack.url}/api/{uid}/club/books", timeout=30).status_code == 404
    assert requests.get(f"{stack.url}/api/{uid}/club/books/1", timeout=90).status_code == 200
    for name in ("Book Club", "/shelf"):
        assert cli.delete(f"{stack.url}{MGMT}/deleteApi.http", params={**auth, "basepath": name},
                          timeout=60).status_code == 200
    r = cli.get(f"{stack.url}{MGMT}/getApi.http", params={**auth, "limit": 0, "skip": 0}, timeout=60)
    assert r.json() == {"apis": []}
    assert requests.get(f"{stack.url}/api/{uid}/club/books/1", timeout=30).status_code == 404


def test_route_changes_are_events_without_the_key(stack: Stack) -> None:
    """Every change is an EntityCommand/EntityChanged pair for an `api` entity; the key the client sent never
    reaches the log."""
    key = stack.subject("gwlog")
    uid, secret = keys.split(key)
    c = stack.client(key)
    assert c.put("actions/a", {"exec": {"kind": "python:3", "code": "def main(a):\n    return a\n"},
                               "annotations": [{"key": "web-export", "value": True}]}).status_code == 200
    body = {"apidoc": {"namespace": "_", "gatewayBasePath": "/logged", "gatewayPath": "/a", "gatewayMethod": "GET",
                       "action": {"name": "a", "namespace": "_", "backendMethod": "GET", "authkey": key,
                                  "backendUrl": f"{stack.url}/api/v1/web/_/default/a.http"}}}
    cli = _cli(stack, key)
    assert cli.post(f"{stack.url}{MGMT}/createApi.http", json=body, timeout=60).status_code == 200
    assert cli.delete(f"{stack.url}{MGMT}/deleteApi.http", params={"basepath": "/logged"}, timeout=60).json() == {}
    t = Topics(stack.settings.prefix)
    log = [ev for *_, ev in asyncio.run(read_log(stack.settings, [t.commands, t.entities]))
           if isinstance(ev, EntityCommand | EntityChanged) and ev.doc_id == "gwlog/api:/logged"]
    assert [ev.op for ev in log if isinstance(ev, EntityCommand)] == ["put", "delete"]
    changed = [ev for ev in log if isinstance(ev, EntityChanged)]
    assert [ev.op for ev in changed] == ["put", "delete"]
    written = changed[0].writes[0][1] or {}
    assert written["entityType"] == "api" and written["tenantId"] == uid and written["name"] == "/logged"
    assert changed[1].writes == [("gwlog/api:/logged", None)]
    assert not kafkalog.messages_about(stack.settings, kafkalog.topics(stack.settings), {secret})
